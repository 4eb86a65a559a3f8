//! One housekeep per database: two processes would run the same jobs and
//! answer the same commands (a rolling deploy, a second copy started by
//! hand). The running one holds a lock the other cannot take:
//!
//! - PostgreSQL: a session advisory lock on a connection kept for the
//!   process's life (released by the server when the process dies);
//! - SQLite: an exclusive lock on `<database file>.lock` (released by the
//!   OS when the process dies, even by `kill -9`).

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use super::{Backend, Store};

/// The advisory lock's key: "housekeep" in ASCII, first 8 bytes.
const ADVISORY_KEY: i64 = 0x686f_7573_656b_6565;

/// Held while this process runs; dropping it lets another start.
pub enum InstanceLock {
    Postgres(sqlx::AnyConnection),
    File(std::fs::File),
    /// An in-memory database: nothing to share.
    None,
}

impl Store {
    /// Takes the instance lock, or says which database another housekeep holds.
    pub async fn claim_instance(&self, url: &str) -> anyhow::Result<InstanceLock> {
        self.try_claim_instance(url).await?.ok_or_else(|| held_elsewhere(url))
    }

    /// Takes the instance lock; `None` while another housekeep holds it
    /// (PostgreSQL; on SQLite that is an error saying so).
    pub async fn try_claim_instance(&self, url: &str) -> anyhow::Result<Option<InstanceLock>> {
        match self.backend {
            Backend::Postgres => Ok(self.try_advisory_lock().await?.map(InstanceLock::Postgres)),
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
                let file = options.get_filename();
                if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
                    return Ok(Some(InstanceLock::None));
                }
                let mut path = file.as_os_str().to_owned();
                path.push(".lock");
                let lock = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("cannot open the lock file {}", path.to_string_lossy()))?;
                match lock.try_lock() {
                    Ok(()) => Ok(Some(InstanceLock::File(lock))),
                    Err(std::fs::TryLockError::WouldBlock) => Err(held_elsewhere(url)),
                    Err(std::fs::TryLockError::Error(error)) => {
                        Err(error).with_context(|| format!("cannot lock {}", path.to_string_lossy()))
                    }
                }
            }
        }
    }

    /// The advisory lock on a connection of its own; `None` if another holds it.
    async fn try_advisory_lock(&self) -> anyhow::Result<Option<sqlx::AnyConnection>> {
        let mut conn = self.pool.acquire().await?.detach();
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(ADVISORY_KEY).fetch_one(&mut conn).await?;
        if locked {
            Ok(Some(conn))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Holds the lock until shutdown. PostgreSQL releases an advisory lock
    /// with its connection, so a database restart or outage drops it: its
    /// connection is checked every few seconds, and once the database
    /// answers again the lock is taken again. If another housekeep took it
    /// meanwhile, this one must stop: returns the error. At shutdown, returns
    /// the lock, for the caller to drop once everything has stopped.
    pub async fn keep_instance(
        &self,
        mut lock: InstanceLock,
        url: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<InstanceLock> {
        let InstanceLock::Postgres(conn) = &mut lock else {
            // A file lock or nothing: the OS holds it for the process's life.
            shutdown.cancelled().await;
            return Ok(lock);
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(lock),
                _ = tokio::time::sleep(LOCK_CHECK_INTERVAL) => {}
            }
            // A half-open connection (a failover) must not hang the check.
            if matches!(tokio::time::timeout(LOCK_PING_TIMEOUT, conn.ping()).await, Ok(Ok(()))) {
                continue;
            }
            tracing::warn!("lost the database connection that holds the instance lock; taking it again");
            let mut delay = Duration::from_secs(1);
            loop {
                match self.try_advisory_lock().await {
                    Ok(Some(again)) => {
                        *conn = again;
                        tracing::info!("instance lock taken again");
                        break;
                    }
                    Ok(None) => {
                        return Err(
                            held_elsewhere(url).context("the instance lock was taken while the database was away")
                        );
                    }
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), ?delay, "cannot take the instance lock again yet");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(lock),
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
    }
}

/// How often the PostgreSQL lock's connection is checked, and how long it may take to answer.
const LOCK_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const LOCK_PING_TIMEOUT: Duration = Duration::from_secs(5);

fn held_elsewhere(url: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "another housekeep is running against this database ({}): stop it first \
         (two would run the same jobs and answer each command twice)",
        crate::config::redact_url(url)
    )
}

impl Store {
    /// The room `alias` last resolved to, if it ever did.
    pub async fn remembered_alias(&self, alias: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT room_id FROM resolved_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Remembers what `alias` resolved to.
    pub async fn remember_alias(&self, alias: &str, room_id: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO resolved_aliases (alias, room_id, resolved_at) VALUES ($1, $2, $3) \
             ON CONFLICT (alias) DO UPDATE SET room_id = excluded.room_id, resolved_at = excluded.resolved_at",
        )
        .bind(alias)
        .bind(room_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
