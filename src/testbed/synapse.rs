//! A throwaway Synapse from PyPI: installed once into the project's cache
//! folder, configured per run, started and stopped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{MatrixUser, cache_dir, free_port, terminate, wait_healthy};

/// The Synapse every test and the demo run against (see shared synapse-notes).
pub const SYNAPSE_VERSION: &str = "1.163.2";
const SHARED_SECRET: &str = "housekeep_testbed_shared_secret";

/// Installs Synapse into `<cache>/synapse-<version>` unless it is there, and
/// returns the venv's python. A file lock keeps parallel test binaries from
/// installing twice.
pub async fn ensure_installed() -> anyhow::Result<PathBuf> {
    let cache = cache_dir();
    let venv = cache.join(format!("synapse-{SYNAPSE_VERSION}"));
    let python = venv.join("bin").join("python");
    let marker = venv.join(".housekeep-installed");
    if marker.exists() {
        return Ok(python);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let lock_path = cache.join(format!("synapse-{SYNAPSE_VERSION}.lock"));
    tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
        let lock = std::fs::File::create(&lock_path)?;
        lock.lock()?;
        if marker.exists() {
            return Ok(python);
        }
        let system_python = std::env::var("HOUSEKEEP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        eprintln!("installing Synapse {SYNAPSE_VERSION} into {} (once; about a minute)", venv.display());
        run_checked(std::process::Command::new(&system_python).args(["-m", "venv"]).arg(&venv))?;
        run_checked(
            std::process::Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("matrix-synapse=={SYNAPSE_VERSION}")),
        )?;
        std::fs::write(&marker, SYNAPSE_VERSION)?;
        Ok(python)
    })
    .await?
}

fn run_checked(command: &mut std::process::Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// A running Synapse (killed when dropped), or one tenant's handle on a
/// Synapse shared by many tests (see `shared`).
pub struct Synapse {
    /// `None` on a shared Synapse: the tests do not own its process.
    child: Option<Child>,
    pub url: String,
    pub server_name: String,
    pub dir: PathBuf,
    port: u16,
    http: reqwest::Client,
    /// More `homeserver.yaml`, kept across restarts.
    extra_config: String,
    registrations: Vec<PathBuf>,
    /// Put before every localpart [`register_user`](Self::register_user)
    /// is given: each tenant of a shared Synapse has its own users.
    user_prefix: String,
}

/// What Synapse (1.163) needs to give an appservice end-to-end encryption:
/// to-device messages (MSC2409) and device lists with one-time key counts
/// (MSC3202) in its transactions. Device masquerading (`?device_id=`) and
/// `PUT /devices/{id}` by an appservice need nothing since 1.141.
pub const E2EE_CONFIG: &str = "experimental_features:
  msc2409_to_device_messages_enabled: true
  msc3202_transaction_extensions: true
";

/// A registration for another appservice that receives nothing (`url:
/// null`): what a bridge does to the appservice stream position, so that a
/// registration added later is not sent the server's history (synapse-notes §10).
pub fn write_silent_registration(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("other-appservice.yaml");
    std::fs::write(
        &path,
        "id: other\nurl: null\nas_token: \"other_as_token\"\nhs_token: \"other_hs_token\"\n\
         sender_localpart: other\nrate_limited: false\nnamespaces:\n  users: [{exclusive: true, regex: \"@other_.*:localhost\"}]\n  \
         aliases: []\n  rooms: []\n",
    )?;
    Ok(path)
}

impl Synapse {
    /// Writes `homeserver.yaml` into `dir` (SQLite, no rate limits, the given
    /// appservice registration) and starts Synapse on a free port.
    pub async fn start(dir: &Path, registration: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, &[registration], free_port()?, String::new()).await
    }

    /// [`start`](Self::start) with several registrations.
    pub async fn start_registrations(dir: &Path, registrations: &[&Path]) -> anyhow::Result<Self> {
        Self::start_with(dir, registrations, free_port()?, String::new()).await
    }

    /// [`start`](Self::start) with more `homeserver.yaml` (`extra`, kept across restarts).
    pub async fn start_with_config(dir: &Path, registration: &Path, extra: &str) -> anyhow::Result<Self> {
        Self::start_with(dir, &[registration], free_port()?, extra.to_owned()).await
    }

    /// Stops Synapse and starts it again on the same port and database,
    /// with these registrations (an operator adding an appservice).
    pub async fn restart_with(self, registrations: &[&Path]) -> anyhow::Result<Self> {
        let extra = self.extra_config.clone();
        self.restart_with_config(registrations, &extra).await
    }

    /// [`restart_with`](Self::restart_with), with more `homeserver.yaml`
    /// (`report_stats: true` and its endpoint, say). Phone-home timers are
    /// short here: the first report 3 s after start, then every 20 s
    /// (synapse-notes).
    pub async fn restart_with_config(mut self, registrations: &[&Path], extra: &str) -> anyhow::Result<Self> {
        self.own_child()?;
        let (dir, port) = (self.dir.clone(), self.port);
        self.stop().await?;
        Self::start_with(&dir, registrations, port, extra.to_owned()).await
    }

    /// Restarts in place with the same registrations and more
    /// `homeserver.yaml` (see [`restart_with_config`](Self::restart_with_config)).
    pub async fn reconfigure(&mut self, extra: &str) -> anyhow::Result<()> {
        self.halt().await?;
        self.extra_config = extra.to_owned();
        self.resume().await
    }

    /// Stops the process, keeping everything else: the homeserver is down
    /// until [`resume`](Self::resume).
    pub async fn halt(&mut self) -> anyhow::Result<()> {
        let child = self.own_child()?;
        if terminate(child).await?.is_none() {
            child.kill().await?;
        }
        Ok(())
    }

    /// The process, if this test owns it: a shared Synapse is never
    /// stopped or reconfigured by one of its tenants.
    fn own_child(&mut self) -> anyhow::Result<&mut Child> {
        self.child
            .as_mut()
            .context("a shared Synapse cannot be stopped or reconfigured: start the testbed with its own")
    }

    /// One tenant's handle on a Synapse shared by many tests: users it
    /// registers get `user_prefix` before their localpart.
    pub(super) fn tenant(url: &str, dir: &Path, port: u16, user_prefix: &str) -> Self {
        Self {
            child: None,
            url: url.to_owned(),
            server_name: "localhost".to_owned(),
            dir: dir.to_owned(),
            port,
            http: super::http(),
            extra_config: String::new(),
            registrations: Vec::new(),
            user_prefix: user_prefix.to_owned(),
        }
    }

    /// Starts again after [`halt`](Self::halt), on the same port and data.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        self.own_child()?;
        let extra = self.extra_config.clone();
        let registrations = self.registrations.clone();
        let registrations: Vec<&Path> = registrations.iter().map(PathBuf::as_path).collect();
        *self = Self::start_with(&self.dir, &registrations, self.port, extra).await?;
        Ok(())
    }

    async fn start_with(dir: &Path, registrations: &[&Path], port: u16, extra: String) -> anyhow::Result<Self> {
        let child = spawn(dir, registrations, port, &extra, false).await?;
        Ok(Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            server_name: "localhost".to_owned(),
            dir: dir.to_owned(),
            port,
            http: super::http(),
            extra_config: extra,
            registrations: registrations.iter().map(|r| r.to_path_buf()).collect(),
            user_prefix: String::new(),
        })
    }

    /// The process ID, while it runs (`None` on a shared Synapse).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Registers a user through the shared-secret admin API and logs them in.
    pub async fn register_user(&self, localpart: &str, admin: bool) -> anyhow::Result<MatrixUser> {
        let endpoint = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: Value = self.http.get(&endpoint).send().await?.error_for_status()?.json().await?;
        let nonce = nonce["nonce"].as_str().context("no nonce")?;
        let localpart = &format!("{}{localpart}", self.user_prefix);
        let password = format!("{localpart}-password");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).expect("any key length");
        for part in [nonce, localpart, &password] {
            mac.update(part.as_bytes());
            mac.update(b"\x00");
        }
        mac.update(if admin { b"admin" } else { b"notadmin" });
        let body = json!({
            "nonce": nonce, "username": localpart, "password": password, "admin": admin,
            "mac": hex::encode(mac.finalize().into_bytes()),
        });
        let response = self.http.post(&endpoint).json(&body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("registering {localpart} failed: {status} {answer}");
        }
        Ok(MatrixUser::new(
            &self.url,
            answer["user_id"].as_str().context("no user_id")?,
            answer["access_token"].as_str().context("no access_token")?,
        ))
    }

    /// SIGTERM, then wait (Synapse exits cleanly in about a second).
    /// On a shared Synapse, nothing: it stops when the test process ends.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && terminate(child).await?.is_none()
        {
            child.kill().await?;
        }
        Ok(())
    }
}

/// Writes `homeserver.yaml` (and the launcher, log config and signing key)
/// into `dir`, starts Synapse there and waits until it answers on `port`.
/// `remove_dir_on_exit`: the launcher deletes `dir` when it exits with its
/// parent (a shared Synapse, whose folder no test owns), unless a file
/// `keep` was put there (see `shared::keep_logs`).
pub(super) async fn spawn(
    dir: &Path,
    registrations: &[&Path],
    port: u16,
    extra: &str,
    remove_dir_on_exit: bool,
) -> anyhow::Result<Child> {
    let python = ensure_installed().await?;
    std::fs::create_dir_all(dir)?;
    let config = dir.join("homeserver.yaml");
    let mut yaml = homeserver_yaml(dir, port, registrations);
    if extra.contains("report_stats:") {
        yaml = yaml.replace("report_stats: false\n", "");
    }
    yaml.push_str(extra);
    std::fs::write(&config, yaml)?;
    let launcher = dir.join("launcher.py");
    std::fs::write(&launcher, LAUNCHER)?;
    std::fs::write(dir.join("log.config"), log_config(dir))?;
    copy_signing_key(&python, &config, &dir.join("localhost.signing.key")).await?;
    let mut command = Command::new(&python);
    command
        .arg(&launcher)
        .arg("-c")
        .arg(&config)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .kill_on_drop(true)
        // Read by the launcher: a parent gone before Python started is noticed too.
        .env("HOUSEKEEP_PARENT_PID", std::process::id().to_string());
    if remove_dir_on_exit {
        command.env("HOUSEKEEP_REMOVE_ON_EXIT", dir);
    }
    let mut child = command.spawn().context("cannot start Synapse")?;
    let (health, log) = (format!("http://127.0.0.1:{port}/health"), dir.join("homeserver.log"));
    wait_healthy(&mut child, &health, Duration::from_secs(90), "Synapse", &log).await?;
    Ok(child)
}

/// Puts a signing key at `key`: one generated once (`--generate-keys`, a
/// second Python start-up of about two seconds) and kept in the cache
/// folder, then copied. Test homeservers never federate, so sharing one key
/// between them shows nobody anything.
async fn copy_signing_key(python: &Path, config: &Path, key: &Path) -> anyhow::Result<()> {
    let cached = cache_dir().join(format!("synapse-{SYNAPSE_VERSION}-localhost.signing.key"));
    if !cached.exists() {
        let status = Command::new(python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(config)
            .arg("--generate-keys")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("synapse --generate-keys failed: {status}");
        }
        // Written aside, then renamed: a test starting at the same moment
        // sees either no key or a whole one.
        let partial = cached.with_extension(format!("partial-{}", std::process::id()));
        std::fs::copy(key, &partial)?;
        std::fs::rename(&partial, &cached)?;
        return Ok(());
    }
    std::fs::copy(&cached, key).with_context(|| format!("cannot copy {}", cached.display()))?;
    Ok(())
}

/// Synapse with phone-home timers short enough for a test, which exits
/// when its parent does: a test process that is killed (or a shared
/// Synapse's, which no test stops) leaves no homeserver behind.
const LAUNCHER: &str = "\
import os, shutil, threading, time

def exit_with_parent(parent=int(os.environ['HOUSEKEEP_PARENT_PID'])):
    while os.getppid() == parent:
        time.sleep(0.5)
    remove = os.environ.get('HOUSEKEEP_REMOVE_ON_EXIT')
    if remove and not os.path.exists(os.path.join(remove, 'keep')):
        shutil.rmtree(remove, ignore_errors=True)
    os._exit(0)

threading.Thread(target=exit_with_parent, daemon=True).start()

from synapse.util.duration import Duration
import synapse.app.phone_stats_home as ph
ph.INITIAL_DELAY_BEFORE_FIRST_PHONE_HOME = Duration(seconds=3)
ph.PHONE_HOME_INTERVAL = Duration(seconds=20)
from synapse.app.homeserver import main
main()
";

fn homeserver_yaml(dir: &Path, port: u16, registrations: &[&Path]) -> String {
    let dir = dir.display();
    let registration = registrations.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
    format!(
        r#"server_name: "localhost"
pid_file: {dir}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args: {{database: {dir}/homeserver.db}}
log_config: {dir}/log.config
media_store_path: {dir}/media_store
enable_media_repo: true
signing_key_path: {dir}/localhost.signing.key
registration_shared_secret: "{SHARED_SECRET}"
macaroon_secret_key: "housekeep_testbed_macaroon"
form_secret: "housekeep_testbed_form"
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
bcrypt_rounds: 4
enable_registration: false
app_service_config_files: [{registration}]
rc_message: &rl {{per_second: 10000, burst_count: 100000}}
rc_login: {{address: *rl, account: *rl, failed_attempts: *rl}}
rc_joins: {{local: *rl, remote: *rl}}
rc_invites: {{per_room: *rl, per_user: *rl, per_issuer: *rl}}
rc_presence: {{per_user: *rl}}
rc_registration: *rl
rc_joins_per_room: *rl
rc_admin_redaction: *rl
rc_media_create: *rl
rc_room_creation: *rl
rc_3pid_validation: *rl
rc_third_party_invite: *rl
rc_delayed_event_mgmt: *rl
rc_reports: *rl
rc_user_directory: *rl
rc_profile: *rl
"#
    )
}

fn log_config(dir: &Path) -> String {
    format!(
        r#"version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filters: [context]
    filename: {}/homeserver.log
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"#,
        dir.display()
    )
}
