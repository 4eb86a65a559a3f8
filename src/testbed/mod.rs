//! A real homeserver and a real housekeep on this machine, for the
//! integration tests, the benchmarks and `housekeep demo`.
//!
//! Nothing here is mocked: Synapse comes from PyPI (installed once into the
//! project's cache folder), housekeep runs as its own process with the config
//! and registration an operator would write, and the database is a real
//! SQLite file or a fresh PostgreSQL database.

pub mod demo;
mod demo_encrypted;
mod encrypted;
mod fixture;
mod link;
mod proxy;
pub mod seed;
mod shared;
mod synapse;
mod user;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub use encrypted::EncryptedClient;
pub use fixture::SynapseFixture;
pub use link::CuttableLink;
pub use proxy::HealthProxy;
pub use shared::keep_logs as keep_shared_synapse_logs;
pub use synapse::{E2EE_CONFIG, SYNAPSE_VERSION, Synapse, ensure_installed, write_silent_registration};
pub use user::{MatrixUser, encode};

use crate::config::Config;
use crate::registration;
use crate::store::Backend;
use crate::store::Store;

/// `$HOUSEKEEP_CACHE_DIR`, else `.cache` in the source tree.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HOUSEKEEP_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"))
}

/// An HTTP client for tests and benches (see [`crate::homeserver::http_client`]).
pub fn http() -> reqwest::Client {
    crate::homeserver::http_client().build().expect("an HTTP client with default settings")
}

/// A port nothing listens on, for a process of the test bed to listen on.
///
/// Not the kernel's pick for port 0: that comes from the ephemeral range,
/// which every outgoing connection (to Synapse, to PostgreSQL) draws from
/// too, so between this check and the process's own bind a connection can
/// take it (seen: a shared Synapse failing to listen, and three tests with
/// it). Below that range only listeners take ports: one is drawn at random
/// there, never twice in one run.
pub fn free_port() -> anyhow::Result<u16> {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    // Linux's default range starts at 32768; a lowered one leaves less room.
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (20_000, ephemeral_low.saturating_sub(1));
    if low < high {
        let mut given = GIVEN.lock().expect("not poisoned");
        for _ in 0..1000 {
            let port = rand::rng().random_range(low..=high);
            if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A database made for one run and dropped after it.
pub struct TestDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// SQLite: a file in `dir`. PostgreSQL: a new database on
    /// `$HOUSEKEEP_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`).
    pub async fn create(backend: Backend, dir: &Path) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                Ok(Self { url: format!("sqlite://{}?mode=rwc", dir.join("housekeep.db").display()), postgres: None })
            }
            Backend::Postgres => {
                let server = std::env::var("HOUSEKEEP_TEST_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
                let name = format!("housekeep_test_{:016x}", rand::random::<u64>());
                sqlx::any::install_default_drivers();
                let mut admin = sqlx::AnyConnection::connect_with_url(&format!("{server}/postgres")).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
                Ok(Self { url: format!("{server}/{name}"), postgres: Some((server, name)) })
            }
        }
    }

    /// Drops a PostgreSQL database (closing other sessions); SQLite files go with their folder.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        if let Some((server, name)) = self.postgres {
            let mut admin = sqlx::AnyConnection::connect_with_url(&format!("{server}/postgres")).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut admin)
                .await?;
        }
        Ok(())
    }
}

trait ConnectWithUrl: Sized {
    async fn connect_with_url(url: &str) -> anyhow::Result<Self>;
}

impl ConnectWithUrl for sqlx::AnyConnection {
    async fn connect_with_url(url: &str) -> anyhow::Result<Self> {
        use sqlx::Connection;
        Self::connect(url).await.with_context(|| format!("cannot connect to {url}"))
    }
}

/// Writes a housekeep config for a homeserver at `homeserver_url`, listening
/// on a free port, then fills in tokens the way an operator would
/// (`generate-registration`). Returns the config and the registration path.
pub fn write_config(
    dir: &Path,
    homeserver_url: &str,
    database_url: &str,
) -> anyhow::Result<(PathBuf, Config, PathBuf)> {
    write_tenant_config(dir, homeserver_url, database_url, "")
}

/// [`write_config`] for one tenant of a shared Synapse: `prefix` goes before
/// the appservice ID, the bot's localpart, the admin room's alias and the
/// moderators' localparts (`@t3-admin`, `@t3-alice`), so tenants never meet.
fn write_tenant_config(
    dir: &Path,
    homeserver_url: &str,
    database_url: &str,
    prefix: &str,
) -> anyhow::Result<(PathBuf, Config, PathBuf)> {
    let port = free_port()?;
    let web_port = free_port()?;
    let config_path = dir.join("config.yaml");
    let example = include_str!("../../config/example.yaml");
    let text = example
        .replace("url: http://127.0.0.1:8008", &format!("url: {homeserver_url}"))
        .replace("domain: example.org", "domain: localhost")
        .replace("address: http://127.0.0.1:29330", &format!("address: http://127.0.0.1:{port}"))
        .replace("port: 29330", &format!("port: {port}"))
        .replace("url: sqlite://housekeep.db?mode=rwc", &format!("url: \"{database_url}\""))
        .replace("id: housekeep", &format!("id: {prefix}housekeep"))
        .replace("bot_localpart: housekeep", &format!("bot_localpart: {prefix}housekeep"))
        .replace("#housekeep-admin:example.org", &format!("#{prefix}housekeep-admin:localhost"))
        .replace("[\"@alice:example.org\"]", &format!("[\"@{prefix}admin:localhost\", \"@{prefix}alice:localhost\"]"))
        // Tests that want the first-start backfill turn it on.
        .replace("on_first_start: true", "on_first_start: false")
        // The dashboard on, on a port of its own.
        .replace("hostname: null        # e.g. 127.0.0.1", "hostname: 127.0.0.1")
        .replace("port: null            # e.g. 29331", &format!("port: {web_port}"));
    std::fs::write(&config_path, text)?;
    let (config, yaml) = registration::generate(&config_path)?;
    let registration_path = dir.join("registration.yaml");
    std::fs::write(&registration_path, yaml)?;
    Ok((config_path, config, registration_path))
}

/// A housekeep process (`housekeep run -c …`). Killed when dropped.
pub struct Housekeep {
    child: Child,
    binary: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    pub base_url: String,
}

impl Housekeep {
    pub async fn spawn(binary: &Path, config_path: &Path, base_url: &str) -> anyhow::Result<Self> {
        let log_path = config_path.with_file_name("housekeep.log");
        let child = spawn_run(binary, config_path, &log_path)?;
        let mut housekeep = Self {
            child,
            binary: binary.to_owned(),
            config_path: config_path.to_owned(),
            log_path,
            base_url: base_url.to_owned(),
        };
        housekeep.wait_healthy().await?;
        Ok(housekeep)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.base_url);
        wait_healthy(&mut self.child, &url, Duration::from_secs(30), "housekeep", &self.log_path).await
    }

    /// Starts a second housekeep that finds the database's instance lock
    /// taken: it waits as a standby; returns once its `/health` says so.
    pub async fn spawn_standby(binary: &Path, config_path: &Path, base_url: &str) -> anyhow::Result<Self> {
        let log_path = config_path.with_file_name("housekeep.log");
        let child = spawn_run(binary, config_path, &log_path)?;
        let housekeep = Self {
            child,
            binary: binary.to_owned(),
            config_path: config_path.to_owned(),
            log_path,
            base_url: base_url.to_owned(),
        };
        eventually(Duration::from_secs(30), "the second housekeep to stand by", || async {
            Ok(housekeep.health().await.ok().filter(|(status, body)| *status == 503 && body.starts_with("standby")))
        })
        .await?;
        Ok(housekeep)
    }

    /// The process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub async fn kill_9(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Starts the same binary and config again (after a kill or stop).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        self.child = spawn_run(&self.binary, &self.config_path, &self.log_path)?;
        self.wait_healthy().await
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let (status, _) = self.sigterm().await?;
        if !status.success() {
            bail!("housekeep exited with {status}; see {}", self.log_path.display());
        }
        Ok(())
    }

    /// SIGTERM, as a supervisor stops it: the exit status and how long the
    /// exit took. Fails if it did not exit within 15 s.
    pub async fn sigterm(&mut self) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
        let started = Instant::now();
        match terminate(&mut self.child).await? {
            Some(status) => Ok((status, started.elapsed())),
            None => bail!("housekeep did not stop on SIGTERM; see {}", self.log_path.display()),
        }
    }

    /// Waits until `/health` names nothing housekeep waits for: the bot is
    /// registered and in the admin room, so a command sent now is answered.
    /// A start shares two cores with three other tests' and their Synapse:
    /// it gets its own budget rather than eating the first command's.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let last = std::sync::Mutex::new(String::new());
        let ready = eventually(Duration::from_secs(90), "housekeep to be ready", || async {
            let (status, body) = self.health().await?;
            let ready = status == 200 && !body.contains("waiting for");
            *last.lock().expect("not poisoned") = body;
            Ok(ready.then_some(()))
        })
        .await;
        let last = last.into_inner().expect("not poisoned");
        ready.with_context(|| format!("/health said: {last}; see {}", self.log_path.display()))?;
        self.wait_for_synapse_to_settle().await
    }

    /// Waits until no transaction has arrived for a while (at most 15 s).
    /// Synapse, which tried to reach housekeep before it ran, is recovering
    /// (housekeep's start-up ping makes it resend at once); an event
    /// created in the few milliseconds while that recovery ends is stranded
    /// by Synapse until its next failed send (a Synapse race, see the
    /// README's "What the appservice endpoint guarantees"). A test sending
    /// its first command right then would wait for the bot's nudge to bring
    /// it (10 quiet seconds, then Synapse's retry); a moderator meets that
    /// wait only if they type in that instant of a restart.
    async fn wait_for_synapse_to_settle(&self) -> anyhow::Result<()> {
        const QUIET: Duration = Duration::from_secs(1);
        let received = async || -> anyhow::Result<String> {
            let metrics = self.metrics().await?;
            Ok(metrics.lines().filter(|l| l.starts_with("housekeep_appservice_transactions_total")).collect())
        };
        let started = Instant::now();
        let (mut seen, mut since) = (received().await?, Instant::now());
        while since.elapsed() < QUIET && started.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = received().await?;
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
        }
        Ok(())
    }

    /// Its log so far.
    pub fn log(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.log_path)?)
    }

    /// `/health`: its status code and body (`OK`, then what housekeep waits for).
    pub async fn health(&self) -> anyhow::Result<(u16, String)> {
        let response = http().get(format!("{}/health", self.base_url)).send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(http().get(format!("{}/metrics", self.base_url)).send().await?.error_for_status()?.text().await?)
    }
}

/// Waits until `url` answers 2xx, failing early if the process exits.
async fn wait_healthy(child: &mut Child, url: &str, limit: Duration, what: &str, log: &Path) -> anyhow::Result<()> {
    let http = http();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            // The folder may be gone by the time anyone looks: say why here.
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
            bail!("{what} exited ({status}) before answering; the end of {}:\n  {tail}", log.display());
        }
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{what} did not answer {url} within {limit:?}; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then up to 15 s for a clean exit; `None` if it did not exit.
async fn terminate(child: &mut Child) -> anyhow::Result<Option<std::process::ExitStatus>> {
    if let Some(pid) = child.id() {
        Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
    }
    Ok(tokio::time::timeout(Duration::from_secs(15), child.wait()).await.ok().transpose()?)
}

fn spawn_run(binary: &Path, config_path: &Path, log_path: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path)?;
    Command::new(binary)
        .arg("run")
        .arg("-c")
        .arg(config_path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// What a [`Testbed`] is made of before housekeep starts.
struct Parts {
    dir: tempfile::TempDir,
    synapse: Synapse,
    config_path: PathBuf,
    config: Config,
    database: TestDatabase,
    admin: MatrixUser,
}

/// Synapse + housekeep + a database, wired like a real deployment.
pub struct Testbed {
    pub dir: tempfile::TempDir,
    pub synapse: Synapse,
    pub housekeep: Housekeep,
    pub config: Config,
    pub config_path: PathBuf,
    pub database: TestDatabase,
    /// A server admin (`@admin:localhost`; on a shared Synapse, with the
    /// tenant's prefix: `@t0x3-admin:localhost`), listed as moderator.
    pub admin: MatrixUser,
}

impl Testbed {
    /// housekeep on `backend`, registered with a Synapse shared with other
    /// tests (a tenant of its own: its users are `@t…-admin`, `@t…-alice`;
    /// see `shared`). For tests that stop, reconfigure or read the log of
    /// the homeserver, or need the every-room registration: [`start_own`](Self::start_own).
    pub async fn start(backend: Backend, housekeep_binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("housekeep-testbed-").tempdir()?;
        let database = TestDatabase::create(backend, dir.path()).await?;
        let (synapse, tenant) = shared::take_tenant().await?;
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, tenant.config(&database.url))?;
        let config = Config::load(&config_path)?;
        Self::start_housekeep(dir, synapse, config_path, config, database, housekeep_binary).await
    }

    /// Like [`start`](Self::start), with a Synapse of its own (and the
    /// registration an operator writes).
    pub async fn start_own(backend: Backend, housekeep_binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("housekeep-testbed-").tempdir()?;
        let database = TestDatabase::create(backend, dir.path()).await?;
        let (synapse, config_path, config) = start_synapse(dir.path(), &database.url).await?;
        Self::start_housekeep(dir, synapse, config_path, config, database, housekeep_binary).await
    }

    /// Like [`start_own`](Self::start_own), with end-to-end encryption (see
    /// [`start_encrypted_synapse`]): the bot makes the admin room, encrypted,
    /// and the server admin joins it when invited.
    pub async fn start_encrypted(backend: Backend, housekeep_binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("housekeep-testbed-").tempdir()?;
        let database = TestDatabase::create(backend, dir.path()).await?;
        let (synapse, config_path, config) = start_encrypted_synapse(dir.path(), &database.url, |text| {
            // What each transaction brings the crypto machine, in the log.
            text.replace("\n  level: info\n", "\n  level: \"info,housekeep::crypto=debug\"\n")
        })
        .await?;
        let admin = synapse.register_user("admin", true).await?;
        let base_url = format!("http://127.0.0.1:{}", config.appservice.port);
        let housekeep = Housekeep::spawn(housekeep_binary, &config_path, &base_url).await?;
        housekeep.wait_ready().await?;
        join_when_invited(&admin, &config.admin.room).await?;
        Ok(Self { dir, synapse, housekeep, config, config_path, database, admin })
    }

    /// Registers the server admin, creates the admin room and starts housekeep.
    async fn start_housekeep(
        dir: tempfile::TempDir,
        synapse: Synapse,
        config_path: PathBuf,
        config: Config,
        database: TestDatabase,
        housekeep_binary: &Path,
    ) -> anyhow::Result<Self> {
        let admin = synapse.register_user("admin", true).await?;
        let parts = Parts { dir, synapse, config_path, config, database, admin };
        Self::start_housekeep_with(parts, housekeep_binary).await
    }

    /// Creates the admin room as `parts.admin` and starts housekeep.
    async fn start_housekeep_with(parts: Parts, housekeep_binary: &Path) -> anyhow::Result<Self> {
        let Parts { dir, synapse, config_path, config, database, admin } = parts;
        create_admin_room(&admin, &config).await?;
        let base_url = format!("http://127.0.0.1:{}", config.appservice.port);
        let housekeep = Housekeep::spawn(housekeep_binary, &config_path, &base_url).await?;
        housekeep.wait_ready().await?;
        Ok(Self { dir, synapse, housekeep, config, config_path, database, admin })
    }

    /// Like [`start`](Self::start), but with history written before
    /// housekeep's registration existed. With `another_appservice` (a
    /// bridge, as most servers have) Synapse sends housekeep none of it
    /// (synapse-notes §10), so only backfill can bring it in; without, Synapse
    /// replays all of it to housekeep as transactions. `history` runs against
    /// the homeserver before housekeep is registered, as the server admin;
    /// `edit_config` may change housekeep's config before it starts.
    pub async fn start_after_history<T>(
        backend: Backend,
        housekeep_binary: &Path,
        another_appservice: bool,
        history: impl AsyncFnOnce(&Synapse, &MatrixUser) -> anyhow::Result<T>,
        edit_config: impl FnOnce(String) -> String,
    ) -> anyhow::Result<(Self, T)> {
        let dir = tempfile::Builder::new().prefix("housekeep-testbed-").tempdir()?;
        let database = TestDatabase::create(backend, dir.path()).await?;
        let (synapse, config_path, config, admin, seeded) =
            start_synapse_after_history(dir.path(), &database.url, another_appservice, "admin", history, edit_config)
                .await?;
        let parts = Parts { dir, synapse, config_path, config, database, admin };
        Ok((Self::start_housekeep_with(parts, housekeep_binary).await?, seeded))
    }

    /// [`start_after_history`](Self::start_after_history) with another
    /// appservice, on a fresh copy of a [`SynapseFixture`]'s Synapse (its
    /// history written once and kept in the cache): Synapse sends housekeep
    /// none of that history, only backfill brings it in. The admin is the
    /// fixture's; `edit_config` may change housekeep's config before it starts.
    pub async fn start_from_fixture<T>(
        backend: Backend,
        housekeep_binary: &Path,
        fixture: &SynapseFixture<T>,
        edit_config: impl FnOnce(String) -> String,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("housekeep-testbed-").tempdir()?;
        let database = TestDatabase::create(backend, dir.path()).await?;
        let synapse_dir = dir.path().join("synapse");
        fixture.copy_synapse_to(&synapse_dir).await?;
        let (config_path, _, registration_path) = write_config(dir.path(), PLACEHOLDER_URL, &database.url)?;
        let other = write_silent_registration(dir.path())?;
        let synapse = Synapse::start_registrations(&synapse_dir, &[&other, &registration_path]).await?;
        let config = point_at_homeserver(&config_path, &synapse, edit_config)?;
        let admin = MatrixUser::new(&synapse.url, &fixture.admin_user_id, &fixture.admin_token);
        let parts = Parts { dir, synapse, config_path, config, database, admin };
        Self::start_housekeep_with(parts, housekeep_binary).await
    }

    /// The admin room's ID.
    pub async fn admin_room(&self) -> anyhow::Result<String> {
        let alias = encode(&self.config.admin.room);
        let answer = self
            .admin
            .request(reqwest::Method::GET, &format!("/_matrix/client/v3/directory/room/{alias}"), None)
            .await?;
        Ok(answer["room_id"].as_str().context("no room_id")?.to_owned())
    }

    /// Makes the bot a server admin, as the README tells operators to, once
    /// housekeep has registered it.
    pub async fn make_bot_admin(&self) -> anyhow::Result<()> {
        let bot = encode(self.config.bot_user_id()?.as_str());
        let path = format!("/_synapse/admin/v2/users/{bot}");
        // Four tests start their housekeep at once on two cores: a start
        // (migrations included) has taken over 30 s here under load.
        eventually(Duration::from_secs(60), "housekeep to register its bot user", || async {
            Ok(self.admin.request(reqwest::Method::GET, &path, None).await.ok().map(|_| ()))
        })
        .await?;
        self.admin
            .request(
                reqwest::Method::PUT,
                &format!("/_synapse/admin/v2/users/{bot}"),
                Some(serde_json::json!({"admin": true})),
            )
            .await?;
        Ok(())
    }

    /// The bot itself, acting with the appservice token (as Synapse lets
    /// an appservice act for its users).
    pub fn bot(&self) -> anyhow::Result<MatrixUser> {
        Ok(MatrixUser::new(&self.synapse.url, self.config.bot_user_id()?.as_str(), &self.config.appservice.as_token))
    }

    /// Changes housekeep's config as an operator would (`edit` gets the
    /// file's text) and restarts it.
    pub async fn reconfigure(&mut self, edit: impl FnOnce(String) -> String) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config_path)?;
        std::fs::write(&self.config_path, edit(text))?;
        self.config = Config::load(&self.config_path)?;
        self.housekeep.restart().await
    }

    /// Sends housekeep an appservice transaction directly, as the homeserver
    /// would (with its hs_token): for events a remote server could have
    /// sent that this local homeserver cannot be made to produce.
    pub async fn push_transaction(&self, txn_id: &str, events: Vec<serde_json::Value>) -> anyhow::Result<()> {
        let response = self.put_transaction(txn_id, &events).await?;
        let status = response.status();
        if !status.is_success() {
            bail!("transaction {txn_id} refused: {status} {}", response.text().await?);
        }
        Ok(())
    }

    /// [`push_transaction`](Self::push_transaction) whatever the answer: the response.
    pub async fn put_transaction(
        &self,
        txn_id: &str,
        events: &[serde_json::Value],
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}/_matrix/app/v1/transactions/{}", self.housekeep.base_url, encode(txn_id));
        Ok(http()
            .put(url)
            .bearer_auth(&self.config.appservice.hs_token)
            .json(&serde_json::json!({ "events": events }))
            .send()
            .await?)
    }

    /// A second connection to housekeep's database, to check what it holds.
    pub async fn store(&self) -> anyhow::Result<Store> {
        Store::connect(&self.database.url, Some(2)).await
    }

    /// Stops everything and drops the database. On failure the folder is kept
    /// and its path printed, for the logs.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.housekeep.stop().await?;
        self.synapse.stop().await?;
        self.database.drop_database().await?;
        Ok(())
    }

    /// Keeps the folder (logs) after a failure.
    pub fn keep_dir(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_owned()
    }
}

/// Synapse with history written before housekeep's registration existed
/// (see [`Testbed::start_after_history`]): writes housekeep's config and
/// registration into `dir`, starts Synapse without them (with another,
/// silent appservice if `another_appservice`), registers `admin_user` as a
/// server admin and runs `history` as them, then restarts Synapse with
/// housekeep's registration added. Returns Synapse, the config path, the
/// config, the admin and what `history` returned.
pub async fn start_synapse_after_history<T>(
    dir: &Path,
    database_url: &str,
    another_appservice: bool,
    admin_user: &str,
    history: impl AsyncFnOnce(&Synapse, &MatrixUser) -> anyhow::Result<T>,
    edit_config: impl FnOnce(String) -> String,
) -> anyhow::Result<(Synapse, PathBuf, Config, MatrixUser, T)> {
    let (config_path, _, registration_path) = write_config(dir, PLACEHOLDER_URL, database_url)?;
    let other = write_silent_registration(dir)?;
    let before: Vec<&Path> = if another_appservice { vec![&other] } else { vec![] };
    let synapse = Synapse::start_registrations(&dir.join("synapse"), &before).await?;
    let admin = synapse.register_user(admin_user, true).await?;
    let seeded = history(&synapse, &admin).await?;
    let after: Vec<&Path> = before.into_iter().chain([registration_path.as_path()]).collect();
    let synapse = synapse.restart_with(&after).await?;
    let config = point_at_homeserver(&config_path, &synapse, edit_config)?;
    Ok((synapse, config_path, config, admin, seeded))
}

/// The registration must exist before Synapse starts, and Synapse's port is
/// known only after: housekeep's config is written with this homeserver
/// URL, then [`point_at_homeserver`] fills in the real one.
const PLACEHOLDER_URL: &str = "http://127.0.0.1:1";

/// Puts `synapse`'s URL into the config at `config_path` (written with
/// [`PLACEHOLDER_URL`]), applies `edit_config` and loads it.
fn point_at_homeserver(
    config_path: &Path,
    synapse: &Synapse,
    edit_config: impl FnOnce(String) -> String,
) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(config_path)?.replace(PLACEHOLDER_URL, &synapse.url);
    std::fs::write(config_path, edit_config(text))?;
    Config::load(config_path)
}

/// Writes housekeep's config and registration into `dir` and starts Synapse
/// with that registration; returns Synapse, the config path and the config.
pub async fn start_synapse(dir: &Path, database_url: &str) -> anyhow::Result<(Synapse, PathBuf, Config)> {
    let (config_path, _, registration_path) = write_config(dir, PLACEHOLDER_URL, database_url)?;
    let synapse = Synapse::start(&dir.join("synapse"), &registration_path).await?;
    let config = point_at_homeserver(&config_path, &synapse, |text| text)?;
    Ok((synapse, config_path, config))
}

/// Writes housekeep's config with end-to-end encryption on into `dir`
/// (`e2ee.enabled`; `admin.encrypted: true`, so the admin room the bot makes
/// is encrypted), then `edit_config`, and the registration that goes with
/// it; starts Synapse with [`E2EE_CONFIG`]. Returns Synapse, the config path
/// and the config.
pub async fn start_encrypted_synapse(
    dir: &Path,
    database_url: &str,
    edit_config: impl FnOnce(String) -> String,
) -> anyhow::Result<(Synapse, PathBuf, Config)> {
    let (config_path, _, registration_path) = write_config(dir, PLACEHOLDER_URL, database_url)?;
    let text = std::fs::read_to_string(&config_path)?
        .replace(
            "  enabled: false\n  # What moderators' clients show",
            "  enabled: true\n  # What moderators' clients show",
        )
        .replace("\n  encrypted: null\n", "\n  encrypted: true\n");
    std::fs::write(&config_path, edit_config(text))?;
    let (_, registration) = registration::generate(&config_path)?;
    std::fs::write(&registration_path, registration)?;
    let synapse = Synapse::start_with_config(&dir.join("synapse"), &registration_path, E2EE_CONFIG).await?;
    let config = point_at_homeserver(&config_path, &synapse, |text| text)?;
    anyhow::ensure!(
        config.e2ee.enabled && config.admin.encrypted == Some(true),
        "e2ee.enabled and admin.encrypted did not make it into the config"
    );
    Ok((synapse, config_path, config))
}

/// Joins `room` (an alias) as soon as `user` is invited: what a moderator
/// does when the bot made the admin room. Its room ID.
pub async fn join_when_invited(user: &MatrixUser, room: &str) -> anyhow::Result<String> {
    eventually(Duration::from_secs(60), &format!("an invite of {} into {room}", user.user_id), || async {
        Ok(user.join(room).await.ok())
    })
    .await
}

/// Creates the admin room under the configured alias, as `moderator`, and
/// invites the bot: what an operator does before starting housekeep.
pub async fn create_admin_room(moderator: &MatrixUser, config: &Config) -> anyhow::Result<String> {
    let alias = &config.admin.room;
    let localpart = alias.trim_start_matches('#').split(':').next().unwrap_or_default();
    moderator
        .create_room(serde_json::json!({
            "name": "housekeep admin", "room_alias_name": localpart, "preset": "private_chat",
            "invite": [config.bot_user_id()?.as_str()],
        }))
        .await
}

/// Polls `check` until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
