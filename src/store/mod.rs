//! All SQL lives under this module, one file per table family.
//!
//! One code path for both backends: sqlx's `Any` driver with runtime queries
//! and only TEXT / BIGINT / BOOLEAN columns. A fixed statement is a const
//! with `$n` placeholders (SQLite accepts them too), read into a
//! `#[derive(sqlx::FromRow)]` row whose every column has a name (`AS name`);
//! a list of values is one JSON-array parameter (`sql::in_json`, TEXT
//! columns only); a statement whose conditions vary is built with
//! `sql::Sql`, which numbers its own placeholders (never mix in `$n`).
//! A new query gets a call in `tests/it/store.rs`'s
//! `every_query_reads_its_rows_by_name`, which runs on both dialects.
//! Migrations are per dialect, side by side in `migrations/`.

mod audit;
mod backfill;
mod crypto;
mod events;
mod fetch;
mod inbox;
mod instance;
mod jobs;
pub mod kept;
mod media;
mod policy;
mod purge;
mod queue;
mod redactions;
mod reports;
mod sessions;
mod sql;
mod stats;
mod txns;
mod uri_hash;
mod watermark;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

pub use audit::{AuditEntry, AuditFilter, AuditRecord};
pub use backfill::{gap_reason, is_gap_reason};
pub use crypto::{CryptoRow, CryptoWrite};
pub use events::{IndexCounts, IndexEstimate, IndexSummary, StoredEvent, StoredMediaRef};
pub use fetch::{BlockedHash, DueMedia, FetchState, Fetched, QueueHead};
pub use inbox::{InboxItem, InboxKind, PendingItem};
pub use instance::InstanceLock;
pub use jobs::{
    CancelOutcome, ConfirmError, FinishedPlan, ItemResult, ItemState, Job, JobItem, JobState, JobToken, NewJob,
};
pub use kept::{Figure, KeptFigures, refresh_kept_figures};
pub use media::{KindCount, MediaId, MediaSelectionStats, QuarantineRecord, RefsOf, Scope};
pub use policy::{Claim, PolicyList, StoredRule};
pub use purge::{EventFilter, EventSelectionStats, SelectedEvent, SelectionMedia};
pub use queue::{QueuePolicy, QueuePriority, QueueSkip, SkipReason, origin_of};
pub use redactions::RedactionCheck;
pub use reports::{EventReportRow, Footprint, KeptReport, ReportFilter};
pub use sessions::Session;
pub use stats::{DayActivity, ModerationTotals, ReportStored, StoredReport, TopBy};
pub use txns::TxnOutcome;
pub use watermark::Watermark;

/// Per-connection SQLite settings.
/// - WAL with synchronous NORMAL: a commit survives a process crash (kill -9);
///   only an OS crash or power cut can lose the newest commits.
/// - A 64 MiB page cache and a memory map keep the index B-trees out of read() calls.
/// - No automatic checkpoints: a checkpoint inside a commit stalled that
///   transaction's acknowledgement (p99 17 ms); [`Store::connect`] runs
///   them in the background instead ([`checkpoint_wal`]).
/// - A WAL file reused up to 256 MiB rather than cut back to a smaller size
///   at every restart: growing the file again costs the kernel a zeroed
///   block per frame written (15 % of the writer's time in a profile of
///   a growing WAL).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
     PRAGMA cache_size = -65536; PRAGMA mmap_size = 1073741824; PRAGMA temp_store = MEMORY; \
     PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 268435456;";
/// How often the background checkpoint copies the WAL back into the database file.
const SQLITE_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// WAL frames (pages) past which the checkpointer holds bulk writes back
/// for a moment to start the WAL over: 16,384 pages of 4 KiB, 64 MiB.
const SQLITE_WAL_FRAMES_BOUND: i64 = 16_384;
/// How long the restarting checkpoint waits for a writer outside the bulk
/// writes (a job's, the inbox's) and for readers of older snapshots before
/// it gives up until the next round.
const SQLITE_RESTART_WAIT: &str = "PRAGMA busy_timeout = 250";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Where an index row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An appservice transaction.
    Live,
    /// History pagination.
    Backfill,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Backfill => "backfill",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Held shared by each bulk write (an appservice transaction, a backfill
    /// batch) for the life of its database transaction, and alone by the
    /// SQLite checkpointer while it restarts the WAL: SQLite's own lock is
    /// no queue, so a checkpoint waiting on it loses to writers that commit
    /// back to back. Tokio's lock is fair: writes that arrive while the
    /// checkpointer waits queue behind it.
    bulk_writes: Arc<RwLock<()>>,
    /// How indexed media enters the download queue ([`Store::with_media_queue`]).
    media_queue: Arc<QueuePolicy>,
    /// Slow figures kept and recomputed ahead (see `kept`).
    kept: Arc<KeptFigures>,
}

/// The SQLite file of `url`, if it is a file (not an in-memory database:
/// sqlx names those `file:sqlx-in-memory-N`).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (path.as_os_str() != ":memory:" && !path.as_os_str().is_empty()).then(|| path.to_owned())
}

/// Creates the SQLite file, when it does not exist yet, readable by its
/// owner only: it holds the sender tokens of running purges and the
/// dashboard's sessions. SQLite gives its `-wal` and `-shm` files the
/// database file's mode.
fn create_private(url: &str) -> anyhow::Result<()> {
    // Only where the URL lets SQLite create it (`mode=rwc`): a mistyped
    // path without it stays an error, not a new empty database.
    let Some(path) = sqlite_file(url).filter(|_| url.contains("mode=rwc")) else { return Ok(()) };
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(&path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A folder that does not exist: sqlx says so better.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot create the database file {}", path.display())),
    }
}

/// A warning when the SQLite file of `url` can be read by others, as for
/// the config file; checked at start.
pub fn sqlite_exposure(url: &str) -> Option<String> {
    let path = sqlite_file(url)?;
    // The -wal and -shm of a database from before housekeep made it
    // private keep their old mode.
    ["", "-wal", "-shm"].iter().find_map(|suffix| {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        crate::config::readable_by_others(
            &file,
            "holds sender tokens and dashboard sessions: chmod 600 it (and the database's other files)",
        )
    })
}

/// A pool of `connections` to `url`, each set up for `backend`.
async fn open_pool(url: &str, backend: Backend, connections: u32) -> anyhow::Result<(AnyPool, AnyConnectOptions)> {
    let options = AnyConnectOptions::from_str(url)
        .context("database.url: not a valid database URL")?
        // Statement logging at INFO would print every insert.
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    // A database that does not answer fails a request within seconds
    // (a 5xx the homeserver retries), rather than holding it for 30.
    let mut pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10)).max_connections(connections);
    if backend == Backend::Sqlite {
        pool = pool.after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(SQLITE_PRAGMAS).await?;
                Ok(())
            })
        });
    }
    let pool = pool
        .connect_with(options.clone())
        .await
        .with_context(|| format!("cannot connect to the database ({})", crate::config::redact_url(url)))?;
    Ok((pool, options))
}

impl Store {
    /// Indexing queues media for download by `policy` (see `store::queue`);
    /// the default knows no local server and has the default caps.
    pub fn with_media_queue(mut self, policy: QueuePolicy) -> Self {
        self.media_queue = Arc::new(policy);
        self
    }

    /// The same database through a pool of its own of `connections`: for a
    /// front-end strangers can reach (the dashboard), so that a flood of its
    /// requests can never take the connections the indexer needs.
    pub async fn with_own_pool(&self, url: &str, connections: u32) -> anyhow::Result<Self> {
        let (pool, _) = open_pool(url, self.backend, connections).await?;
        Ok(Self {
            pool,
            backend: self.backend,
            bulk_writes: self.bulk_writes.clone(),
            media_queue: self.media_queue.clone(),
            kept: self.kept.clone(),
        })
    }

    /// Connects and, for SQLite, switches the file to WAL so readers (commands,
    /// `/metrics`) never block the transaction writer.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).context("database.url: must start with sqlite: or postgres://")?;
        if backend == Backend::Sqlite {
            create_private(url)?;
        }
        let connections = max_connections.unwrap_or(match backend {
            // Readers are cheap under WAL; writers queue on the file's lock.
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        });
        let (pool, options) = open_pool(url, backend, connections).await?;
        let bulk_writes = Arc::new(RwLock::new(()));
        if backend == Backend::Sqlite {
            // Its own connection, outside the pool: it waits for the writer
            // only briefly, which a pooled connection must not.
            let mut checkpointer = options.connect().await.context("cannot open the SQLite checkpoint connection")?;
            checkpointer.execute(SQLITE_PRAGMAS).await?;
            checkpointer.execute(SQLITE_RESTART_WAIT).await?;
            tokio::spawn(checkpoint_wal(pool.clone(), checkpointer, bulk_writes.clone()));
        }
        Ok(Self { pool, backend, bulk_writes, media_queue: Arc::default(), kept: Arc::default() })
    }

    /// Starts the database transaction of a bulk write; keep the guard
    /// until it is committed or dropped (see [`Store::bulk_writes`]).
    pub(super) async fn begin_bulk_write(
        &self,
    ) -> anyhow::Result<(OwnedRwLockReadGuard<()>, sqlx::Transaction<'static, sqlx::Any>)> {
        let gate = self.bulk_writes.clone().read_owned().await;
        Ok((gate, self.pool.begin().await?))
    }

    /// Applies pending migrations of this backend's dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.context("database migration failed")?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Cheap liveness check for `/health`.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Copies committed WAL frames into the database file, off the commit path,
/// and keeps the WAL bounded. Ends when the pool is closed.
async fn checkpoint_wal(pool: AnyPool, mut conn: sqlx::AnyConnection, bulk_writes: Arc<RwLock<()>>) {
    let mut interval = tokio::time::interval(SQLITE_CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wal = WalRounds::default();
    while !pool.is_closed() {
        interval.tick().await;
        if let Err(error) = checkpoint_round(&mut conn, &bulk_writes, &mut wal).await
            && !pool.is_closed()
        {
            tracing::warn!(%error, "SQLite WAL checkpoint failed; will retry");
        }
    }
}

/// What the checkpointer remembers from one round to the next.
#[derive(Default)]
struct WalRounds {
    /// The WAL's frame count after the last RESTART: the WAL still shows it
    /// until the next commit starts it over, which needs no second RESTART.
    last_restart: Option<i64>,
    /// After a RESTART a reader kept from finishing (it still reads an
    /// older snapshot: a long dashboard query), the next waits until the
    /// WAL has grown by another bound, so bulk writes are not held back
    /// every round for as long as that reader lives.
    retry_above: i64,
}

/// A PASSIVE checkpoint never blocks the writer, but under a steady stream
/// of commits (backfill, a busy homeserver) the WAL never starts over: a
/// commit writes the WAL from its beginning only if its transaction began
/// after every frame had been copied back, and back-to-back commits each
/// begin before the checkpoint has copied the one before (the WAL grew by
/// gigabytes in a minute of the index bench, and every read looked through
/// it). So once the WAL passes [`SQLITE_WAL_FRAMES_BOUND`], a RESTART
/// checkpoint runs with bulk writes held back at [`Store::bulk_writes`]: it
/// copies what the last commits added, and the next write begins on a
/// fully copied WAL. That costs the writes held back the copy of about one
/// round's frames (tens of milliseconds) once every few seconds of full
/// load.
async fn checkpoint_round(
    conn: &mut sqlx::AnyConnection,
    bulk_writes: &RwLock<()>,
    wal: &mut WalRounds,
) -> anyhow::Result<()> {
    let (_, frames) = checkpoint(conn, "PRAGMA wal_checkpoint(PASSIVE)").await?;
    if frames <= SQLITE_WAL_FRAMES_BOUND.max(wal.retry_above) || wal.last_restart == Some(frames) {
        return Ok(());
    }
    let _held_back = bulk_writes.write().await;
    let (busy, frames) = checkpoint(conn, "PRAGMA wal_checkpoint(RESTART)").await?;
    wal.last_restart = Some(frames);
    wal.retry_above = if busy {
        tracing::info!(frames, "a reader kept the SQLite WAL from starting over; trying again once it grew further");
        frames + SQLITE_WAL_FRAMES_BOUND
    } else {
        0
    };
    Ok(())
}

/// Runs one checkpoint: whether it gave up waiting for a writer or a reader
/// outside the gate (busy: not an error, a later round tries again), and the
/// WAL's length in frames (pages).
async fn checkpoint(conn: &mut sqlx::AnyConnection, pragma: &'static str) -> anyhow::Result<(bool, i64)> {
    let row: WalCheckpoint = sqlx::query_as(pragma).fetch_one(&mut *conn).await?;
    Ok((row.busy != 0, row.log))
}

/// A `PRAGMA wal_checkpoint` answer.
#[derive(sqlx::FromRow)]
struct WalCheckpoint {
    busy: i64,
    /// The WAL's length in frames.
    log: i64,
}

/// Which database backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of a `database.url`; `None` for a scheme housekeep does
    /// not speak ([`crate::config::DATABASE_URL_SCHEMES`] lists those it does).
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_the_config_accepts_has_a_backend() {
        for scheme in crate::config::DATABASE_URL_SCHEMES {
            assert!(Backend::from_url(&format!("{scheme}x")).is_some(), "{scheme}");
        }
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }
}
