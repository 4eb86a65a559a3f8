//! The one YAML config file, typed and validated at start-up.
//!
//! Every error names the key it is about (`appservice.port: …`) so an operator
//! can fix the file without reading code. Secrets can come from the
//! environment instead of the file: `HOUSEKEEP_AS_TOKEN`, `HOUSEKEEP_HS_TOKEN`,
//! `HOUSEKEEP_DATABASE_URL`.

mod schedule;

pub use schedule::Schedule;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde::Deserialize;
use url::Url;

/// Environment variables that override secrets in the file.
pub const ENV_AS_TOKEN: &str = "HOUSEKEEP_AS_TOKEN";
pub const ENV_HS_TOKEN: &str = "HOUSEKEEP_HS_TOKEN";
pub const ENV_DATABASE_URL: &str = "HOUSEKEEP_DATABASE_URL";

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub homeserver: HomeserverConfig,
    pub appservice: AppserviceConfig,
    pub database: DatabaseConfig,
    pub admin: AdminConfig,
    #[serde(default)]
    pub jobs: JobsConfig,
    #[serde(default)]
    pub backfill: BackfillConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub stats: StatsConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub web: WebConfig,
}

/// Written by hand: the tokens and the database URL's password stay out of logs.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("homeserver", &self.homeserver)
            .field("appservice", &self.appservice)
            .field("database", &self.database)
            .field("admin", &self.admin)
            .field("jobs", &self.jobs)
            .field("backfill", &self.backfill)
            .field("media", &self.media)
            .field("stats", &self.stats)
            .field("logging", &self.logging)
            .field("web", &self.web)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverConfig {
    /// Client-Server API base URL.
    pub url: Url,
    /// The homeserver's `server_name`.
    pub domain: OwnedServerName,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppserviceConfig {
    pub id: String,
    /// Where the homeserver reaches housekeep (the registration's `url`).
    pub address: Url,
    /// Bind address of the listener.
    pub hostname: IpAddr,
    pub port: u16,
    pub bot_localpart: String,
    #[serde(default)]
    pub as_token: String,
    #[serde(default)]
    pub hs_token: String,
    /// Largest transaction body accepted, in bytes. Synapse sends at most 100
    /// events of at most 64 KiB each, plus ephemeral data.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for AppserviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |token: &str| if token.is_empty() { "<empty>" } else { "<redacted>" };
        f.debug_struct("AppserviceConfig")
            .field("id", &self.id)
            .field("address", &self.address.as_str())
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("bot_localpart", &self.bot_localpart)
            .field("as_token", &secret(&self.as_token))
            .field("hs_token", &secret(&self.hs_token))
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/dbname`.
    pub url: String,
    /// Pool size. SQLite has one writer anyway; PostgreSQL benefits from more.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Room ID or alias of the admin room.
    pub room: String,
    /// When `room` is an alias on this homeserver that does not exist, the
    /// bot creates the room under it and invites the moderators.
    #[serde(default = "default_true")]
    pub create_if_missing: bool,
    #[serde(default)]
    pub moderators: Vec<OwnedUserId>,
    #[serde(default = "default_command_prefix")]
    pub command_prefix: String,
    /// Users at or above this power level in the admin room may command the
    /// bot too. `None`: only the `moderators` list.
    #[serde(default)]
    pub moderator_power_level: Option<i64>,
    /// How long a plan waits for `!confirm` or a ✅ reaction (`10m`, `1h`).
    #[serde(default = "default_confirm_expiry")]
    pub confirm_expiry: String,
    /// Whether users of other homeservers may be moderators. Off: a remote
    /// server decides who its users are, so it could make anyone one.
    #[serde(default)]
    pub allow_remote_moderators: bool,
    /// Above this, `--yes` is refused: the plan waits for `!confirm` or ✅.
    #[serde(default = "default_confirm_threshold")]
    pub confirm_threshold: Threshold,
    /// Above this, the confirmation must come from a moderator other than
    /// the one who asked. `None`: one moderator is enough.
    #[serde(default)]
    pub two_person_threshold: Option<Threshold>,
}

/// A selection size: more events *or* more media than this is above it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub events: i64,
    pub media: i64,
}

/// The job runner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs running at once. Moderation jobs never wait behind background
    /// ones for longer than one of their batches.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Homeserver calls in flight per job (redactions, quarantines). Synapse
    /// serialises the events of one room, so more helps only so far; a
    /// homeserver with workers takes more.
    #[serde(default = "default_homeserver_concurrency")]
    pub homeserver_concurrency: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { max_concurrent: default_max_concurrent(), homeserver_concurrency: default_homeserver_concurrency() }
    }
}

/// Reading room history into the index.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    /// On the first start with an empty index, backfill every room.
    #[serde(default = "default_true")]
    pub on_first_start: bool,
    /// Events read (and their media downloaded) per checkpointed batch.
    #[serde(default = "default_chunk_events")]
    pub chunk_events: u32,
    /// Pages (of up to 1,000 events) read from one room in one backfill.
    #[serde(default = "default_max_pages_per_room")]
    pub max_pages_per_room: u32,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            on_first_start: true,
            chunk_events: default_chunk_events(),
            max_pages_per_room: default_max_pages_per_room(),
        }
    }
}

/// Synapse's phone-home reports and the summaries housekeep posts.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// The secret in `report_stats_endpoint`'s URL; empty: reports are refused
    /// (`housekeep stats-endpoint` generates it).
    #[serde(default)]
    pub secret: String,
    /// A listener of its own for reports; unset: the appservice listener takes them.
    #[serde(default)]
    pub hostname: Option<IpAddr>,
    #[serde(default)]
    pub port: Option<u16>,
    /// The base URL Synapse reaches the report endpoint at; unset: the
    /// appservice address (or `http://hostname:port` with a listener of its own).
    #[serde(default)]
    pub public_url: Option<Url>,
    /// Reports kept this long (`400d`); older ones are dropped.
    #[serde(default = "default_stats_retention")]
    pub retention: String,
    /// Reports accepted per source address per minute; more get 429.
    #[serde(default = "default_reports_per_minute")]
    pub reports_per_minute: u32,
    /// Summaries posted by themselves.
    #[serde(default)]
    pub summaries: Vec<SummaryConfig>,
}

impl std::fmt::Debug for StatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsConfig")
            .field("secret", &if self.secret.is_empty() { "<empty>" } else { "<redacted>" })
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("public_url", &self.public_url.as_ref().map(Url::as_str))
            .field("retention", &self.retention)
            .field("reports_per_minute", &self.reports_per_minute)
            .field("summaries", &self.summaries)
            .finish()
    }
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            secret: String::new(),
            hostname: None,
            port: None,
            public_url: None,
            retention: default_stats_retention(),
            reports_per_minute: default_reports_per_minute(),
            summaries: Vec::new(),
        }
    }
}

impl StatsConfig {
    pub fn retention(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.retention)
            .map_err(|e| anyhow::anyhow!("stats.retention: {e} (examples: 400d, 90d)"))
    }
}

/// The dashboard: off unless `hostname` and `port` are set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default)]
    pub hostname: Option<IpAddr>,
    #[serde(default)]
    pub port: Option<u16>,
    /// The URL moderators open (behind a reverse proxy: its https URL);
    /// unset: `http://hostname:port`. Cookies are `Secure` when it is https.
    #[serde(default)]
    pub public_url: Option<Url>,
    /// How long a sign-in lasts (`12h`); `!dashboard logout-all` ends every one.
    #[serde(default)]
    pub session_lifetime: Option<String>,
}

impl WebConfig {
    /// Where to listen, when the dashboard is on.
    pub fn listen(&self) -> Option<(IpAddr, u16)> {
        self.hostname.zip(self.port)
    }

    /// The base URL of sign-in links, when the dashboard is on.
    pub fn public_url(&self) -> Option<Url> {
        let (hostname, port) = self.listen()?;
        let url = match &self.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{}/", std::net::SocketAddr::from((hostname, port)))).ok()?,
        };
        Some(url)
    }

    pub fn session_lifetime(&self) -> anyhow::Result<std::time::Duration> {
        match &self.session_lifetime {
            None => Ok(std::time::Duration::from_secs(12 * 3600)),
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("web.session_lifetime: {e} (examples: 12h, 30m, 7d)")),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.hostname.is_some() != self.port.is_some() {
            bail!("web.hostname and web.port: set both to turn the dashboard on, or neither");
        }
        if self.port == Some(0) {
            bail!("web.port: must not be 0");
        }
        if let Some(url) = &self.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            bail!("web.public_url: must be http:// or https://, got {url}");
        }
        // The pages link to absolute paths (`/jobs`, `/static/app.js`), so
        // the dashboard must be served at the root of its host.
        if let Some(url) = &self.public_url
            && url.path() != "/"
        {
            bail!(
                "web.public_url: the dashboard is served at the root of its host; give a URL without a path (e.g. https://housekeep.example.org/), got {url}"
            );
        }
        let lifetime = self.session_lifetime()?;
        if lifetime < std::time::Duration::from_secs(60) || lifetime > std::time::Duration::from_secs(90 * 86_400) {
            bail!("web.session_lifetime: must be between 1m and 90d");
        }
        Ok(())
    }
}

/// A summary posted on schedule.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Room ID or alias (the bot must be able to post there).
    pub room: String,
    /// `daily 09:00`, `daily 09:00 Europe/Berlin`, `weekly monday 09:00 UTC`.
    pub schedule: String,
    /// Days summarized (the whole days before each post).
    #[serde(default = "default_summary_days")]
    pub days: u32,
    /// Name the busiest rooms and senders of the whole server (off: only
    /// counts, for rooms whose members should not see that).
    #[serde(default)]
    pub include_top: bool,
}

/// Downloading and hashing every referenced media.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Downloads at once.
    #[serde(default = "default_download_concurrency")]
    pub download_concurrency: usize,
    /// The longest one download may take (`10m`).
    #[serde(default = "default_download_timeout")]
    pub download_timeout: String,
    /// A download that receives nothing for this long is stopped and tried again later (`60s`).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: String,
    /// Failed attempts before a download is abandoned (`!backfill retry-failed` tries again).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait after a first failed download; each further one waits four times longer (`30s`).
    #[serde(default = "default_retry_delay")]
    pub retry_delay: String,
    /// Files quarantined as soon as housekeep downloads one (any mxc URI, any room).
    #[serde(default)]
    pub blocklist: Vec<BlocklistEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlocklistEntry {
    pub sha256: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            download_concurrency: default_download_concurrency(),
            download_timeout: default_download_timeout(),
            stall_timeout: default_stall_timeout(),
            max_attempts: default_max_attempts(),
            retry_delay: default_retry_delay(),
            blocklist: Vec::new(),
        }
    }
}

impl MediaConfig {
    pub fn download_timeout(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.download_timeout)
            .map_err(|e| anyhow::anyhow!("media.download_timeout: {e} (examples: 10m, 1h)"))
    }

    pub fn retry_delay(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.retry_delay)
            .map_err(|e| anyhow::anyhow!("media.retry_delay: {e} (examples: 30s, 5m)"))
    }

    pub fn stall_timeout(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.stall_timeout)
            .map_err(|e| anyhow::anyhow!("media.stall_timeout: {e} (examples: 60s, 5m)"))
    }
}

impl AdminConfig {
    pub fn confirm_expiry(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.confirm_expiry)
            .map_err(|e| anyhow::anyhow!("admin.confirm_expiry: {e} (examples: 10m, 1h)"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A `tracing` filter, e.g. `info` or `housekeep=debug,info`. `RUST_LOG` wins if set.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::default() }
    }
}

fn default_max_body_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_command_prefix() -> String {
    "!".to_owned()
}
fn default_confirm_expiry() -> String {
    "10m".to_owned()
}
fn default_confirm_threshold() -> Threshold {
    Threshold { events: 1000, media: 100 }
}
fn default_max_concurrent() -> usize {
    4
}
fn default_homeserver_concurrency() -> usize {
    8
}
fn default_true() -> bool {
    true
}
fn default_chunk_events() -> u32 {
    5000
}
fn default_max_pages_per_room() -> u32 {
    10_000
}
fn default_download_concurrency() -> usize {
    32
}
fn default_download_timeout() -> String {
    "10m".to_owned()
}
fn default_stall_timeout() -> String {
    "60s".to_owned()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_stats_retention() -> String {
    "400d".to_owned()
}

fn default_reports_per_minute() -> u32 {
    30
}

fn default_summary_days() -> u32 {
    7
}

fn default_retry_delay() -> String {
    "30s".to_owned()
}
/// Synapse retries a 413 forever, so the limit must fit any transaction it
/// can send (100 events of up to 64 KiB, plus ephemeral data).
const MIN_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The URL schemes `database.url` may have: SQLite's, then PostgreSQL's two.
pub const DATABASE_URL_SCHEMES: [&str; 3] = ["sqlite:", "postgres://", "postgresql://"];

/// The most days `!stats --days` and a scheduled summary may cover.
pub const MAX_STATS_DAYS: u32 = 365;

/// Hides the password in a database URL before it is logged or shown: in
/// the user-info part, and in a `password=` query parameter (libpq's form).
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<a database URL that does not parse>".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let has_secret_query = parsed.query_pairs().any(|(key, _)| is_secret_key(&key));
    if has_secret_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_secret_key(&key) { "***".to_owned() } else { value.into_owned() };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn is_secret_key(key: &str) -> bool {
    matches!(key.to_ascii_lowercase().as_str(), "password" | "pass" | "sslpassword")
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Config {
    /// Reads, applies environment overrides, and validates.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut config = Self::load_unvalidated(path)?;
        config.validate().with_context(|| format!("invalid config {}", path.display()))?;
        Ok(config)
    }

    /// Reads and applies environment overrides without checking the tokens, for
    /// `generate-registration`, which is what fills them in.
    pub fn load_unvalidated(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config = Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))?;
        config.apply_env();
        Ok(config)
    }

    /// Why the config file at `path` should be locked down, if it should:
    /// it holds the appservice tokens (an admin credential when the bot is a
    /// server admin) and maybe the database password, so only its owner
    /// should read it. Logged as a warning at start, not refused: some
    /// set-ups (a container's read-only mount) cannot change the mode.
    pub fn exposure(path: &Path) -> Option<String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).ok()?.permissions().mode();
            (mode & 0o077 != 0).then(|| {
                format!(
                    "{} is readable by others (mode {:o}) and holds the appservice tokens: chmod 600 it",
                    path.display(),
                    mode & 0o777
                )
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn apply_env(&mut self) {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        if let Some(v) = var(ENV_AS_TOKEN) {
            self.appservice.as_token = v;
        }
        if let Some(v) = var(ENV_HS_TOKEN) {
            self.appservice.hs_token = v;
        }
        if let Some(v) = var(ENV_DATABASE_URL) {
            self.database.url = v;
        }
    }

    /// Checks what serde cannot: cross-field rules and non-empty secrets.
    pub fn validate(&mut self) -> anyhow::Result<()> {
        self.validate_shape()?;
        for (key, token) in
            [("appservice.as_token", &self.appservice.as_token), ("appservice.hs_token", &self.appservice.hs_token)]
        {
            if token.is_empty() {
                bail!("{key}: is empty; run `housekeep generate-registration -c <config>` to fill it in");
            }
        }
        if self.appservice.as_token == self.appservice.hs_token {
            bail!("appservice.hs_token: must differ from appservice.as_token");
        }
        Ok(())
    }

    /// The checks that hold before tokens exist.
    pub fn validate_shape(&self) -> anyhow::Result<()> {
        if !matches!(self.homeserver.url.scheme(), "http" | "https") {
            bail!("homeserver.url: must be http:// or https://, got {}", self.homeserver.url);
        }
        if !matches!(self.appservice.address.scheme(), "http" | "https") {
            bail!("appservice.address: must be http:// or https://, got {}", self.appservice.address);
        }
        if self.appservice.id.is_empty() {
            bail!("appservice.id: must not be empty");
        }
        if self.appservice.port == 0 {
            bail!("appservice.port: must not be 0");
        }
        if self.appservice.max_body_bytes < MIN_BODY_BYTES {
            bail!(
                "appservice.max_body_bytes: must be at least {MIN_BODY_BYTES} (8 MiB): Synapse sends up to 100 events \
                 of up to 64 KiB in one transaction and retries a refused one forever"
            );
        }
        // The spec's grammar for new user IDs; the homeserver refuses anything else at registration.
        let localpart = &self.appservice.bot_localpart;
        if localpart.is_empty()
            || !localpart
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
        {
            bail!("appservice.bot_localpart: {localpart:?} may only contain a-z, 0-9 and . _ = - / +");
        }
        self.bot_user_id().context("appservice.bot_localpart: not a valid user localpart")?;
        if !DATABASE_URL_SCHEMES.iter().any(|scheme| self.database.url.starts_with(scheme)) {
            bail!("database.url: must start with sqlite: or postgres://");
        }
        if self.database.max_connections == Some(0) {
            bail!("database.max_connections: must be at least 1");
        }
        if !(self.admin.room.starts_with('!') || self.admin.room.starts_with('#')) {
            bail!("admin.room: must be a room ID (!…) or alias (#…), got {:?}", self.admin.room);
        }
        if let Err(error) = ruma::RoomOrAliasId::parse(&self.admin.room) {
            bail!("admin.room: {:?} is not a valid room ID or alias: {error}", self.admin.room);
        }
        if self.admin.command_prefix.is_empty() || self.admin.command_prefix.chars().any(char::is_whitespace) {
            bail!("admin.command_prefix: must be non-empty and without spaces");
        }
        let expiry = self.admin.confirm_expiry()?;
        if expiry < std::time::Duration::from_secs(10) || expiry > std::time::Duration::from_secs(7 * 86400) {
            bail!("admin.confirm_expiry: must be between 10s and 7d, got {}", self.admin.confirm_expiry);
        }
        if self.admin.moderators.is_empty() && self.admin.moderator_power_level.is_none() {
            bail!(
                "admin.moderators: is empty and admin.moderator_power_level is not set: nobody could command the bot"
            );
        }
        if let Some(level) = self.admin.moderator_power_level
            && level < 1
        {
            bail!("admin.moderator_power_level: must be at least 1 (everyone in a room has 0), got {level}");
        }
        if !self.admin.allow_remote_moderators
            && let Some(remote) = self.admin.moderators.iter().find(|m| m.server_name() != self.homeserver.domain)
        {
            bail!(
                "admin.moderators: {remote} is not on {}; set admin.allow_remote_moderators: true to allow \
                 moderators of other servers",
                self.homeserver.domain
            );
        }
        for (key, threshold) in [
            ("admin.confirm_threshold", Some(self.admin.confirm_threshold)),
            ("admin.two_person_threshold", self.admin.two_person_threshold),
        ] {
            if let Some(t) = threshold
                && (t.events < 0 || t.media < 0)
            {
                bail!("{key}: events and media must not be negative");
            }
        }
        if self.jobs.max_concurrent == 0 || self.jobs.max_concurrent > 64 {
            bail!("jobs.max_concurrent: must be between 1 and 64, got {}", self.jobs.max_concurrent);
        }
        if !(1..=64).contains(&self.jobs.homeserver_concurrency) {
            bail!("jobs.homeserver_concurrency: must be between 1 and 64, got {}", self.jobs.homeserver_concurrency);
        }
        if !(100..=100_000).contains(&self.backfill.chunk_events) {
            bail!("backfill.chunk_events: must be between 100 and 100000, got {}", self.backfill.chunk_events);
        }
        if self.backfill.max_pages_per_room == 0 {
            bail!("backfill.max_pages_per_room: must be at least 1");
        }
        if !(1..=256).contains(&self.media.download_concurrency) {
            bail!("media.download_concurrency: must be between 1 and 256, got {}", self.media.download_concurrency);
        }
        let (download, stall) = (self.media.download_timeout()?, self.media.stall_timeout()?);
        if stall.is_zero() || download < stall {
            bail!("media.stall_timeout: must be more than 0 and at most media.download_timeout");
        }
        self.media.retry_delay()?;
        if !(1..=20).contains(&self.media.max_attempts) {
            bail!("media.max_attempts: must be between 1 and 20, got {}", self.media.max_attempts);
        }
        for entry in &self.media.blocklist {
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("media.blocklist: {:?} is not a SHA-256 (64 hexadecimal characters)", entry.sha256);
            }
        }
        if self.stats.hostname.is_some() != self.stats.port.is_some() {
            bail!("stats.hostname and stats.port: set both (a listener of its own) or neither");
        }
        if self.stats.port == Some(0) || self.stats.port == Some(self.appservice.port) {
            bail!("stats.port: must not be 0 or appservice.port (leave both unset to share that listener)");
        }
        if !self.stats.secret.is_empty() && self.stats.secret.len() < 16 {
            bail!("stats.secret: at least 16 characters (housekeep stats-endpoint generates one)");
        }
        let retention = self.stats.retention()?;
        if retention < std::time::Duration::from_secs(86400)
            || retention > std::time::Duration::from_secs(100 * 365 * 86400)
        {
            bail!("stats.retention: between 1d and 100 years");
        }
        if !(1..=10_000).contains(&self.stats.reports_per_minute) {
            bail!("stats.reports_per_minute: must be between 1 and 10000");
        }
        let mut seen = std::collections::HashSet::new();
        for (n, summary) in self.stats.summaries.iter().enumerate() {
            if !(summary.room.starts_with('!') || summary.room.starts_with('#')) {
                bail!("stats.summaries[{n}].room: must be a room ID (!…) or alias (#…), got {:?}", summary.room);
            }
            let schedule = Schedule::parse(&summary.schedule)
                .map_err(|e| anyhow::anyhow!("stats.summaries[{n}].schedule: {e}"))?;
            if !seen.insert((summary.room.clone(), schedule.key())) {
                bail!("stats.summaries[{n}]: the same room and schedule as an earlier entry");
            }
            if !(1..=MAX_STATS_DAYS).contains(&summary.days) {
                bail!("stats.summaries[{n}].days: must be between 1 and {}", MAX_STATS_DAYS);
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| anyhow::anyhow!("logging.level: {e}"))?;
        self.web.validate()
    }

    pub fn bot_user_id(&self) -> anyhow::Result<OwnedUserId> {
        Ok(UserId::parse(format!("@{}:{}", self.appservice.bot_localpart, self.homeserver.domain))?)
    }
}

/// Where the config file is, defaulting to `config.yaml` in the working directory.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Path to the YAML config file.
    #[arg(short, long, env = "HOUSEKEEP_CONFIG", default_value = "config.yaml")]
    pub config: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../config/example.yaml");

    fn example() -> Config {
        Config::parse(EXAMPLE).expect("example config parses")
    }

    #[cfg(unix)]
    #[test]
    fn a_config_others_can_read_is_pointed_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(&path).unwrap();
            file.write_all(EXAMPLE.as_bytes()).unwrap();
        }
        assert_eq!(Config::exposure(&path), None, "mode 600");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = Config::exposure(&path).unwrap();
        assert!(warning.contains("mode 644") && warning.contains("chmod 600"), "{warning}");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db?mode=rwc"), "sqlite://x.db?mode=rwc");
        let query = redact_url("postgres://u@h/db?sslmode=require&password=hunter2");
        assert!(!query.contains("hunter2") && query.contains("password=***") && query.contains("sslmode"), "{query}");
        assert!(!redact_url("postgres://u:p@[bad").contains(":p@"));
    }

    #[test]
    fn example_config_parses_and_needs_tokens() {
        let mut config = example();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("appservice.as_token"), "{err}");
        config.appservice.as_token = "a".into();
        config.appservice.hs_token = "b".into();
        config.validate().unwrap();
        assert_eq!(config.bot_user_id().unwrap().as_str(), "@housekeep:example.org");
    }

    #[test]
    fn the_dashboard_is_off_unless_both_listener_keys_are_set() {
        let config = example();
        assert_eq!((config.web.listen(), config.web.public_url()), (None, None));
        assert_eq!(config.web.session_lifetime().unwrap(), std::time::Duration::from_secs(12 * 3600));
        let on = EXAMPLE
            .replace("hostname: null        # e.g. 127.0.0.1", "hostname: 127.0.0.1")
            .replace("port: null            # e.g. 29331", "port: 29331");
        let config = Config::parse(&on).unwrap();
        config.validate_shape().unwrap();
        assert_eq!(config.web.public_url().unwrap().as_str(), "http://127.0.0.1:29331/");
        let proxied = on.replace(
            "  public_url: null\n  # How long a sign-in",
            "  public_url: https://hk.example.org/\n  # How long a sign-in",
        );
        assert_eq!(Config::parse(&proxied).unwrap().web.public_url().unwrap().as_str(), "https://hk.example.org/");
        for (from, to, says) in [
            ("port: 29331", "port: null", "web.hostname and web.port"),
            ("port: 29331", "port: 0", "web.port"),
            ("session_lifetime: 12h", "session_lifetime: 10s", "web.session_lifetime"),
            (
                "public_url: null\n  # How long",
                "public_url: https://example.org/housekeep/\n  # How long",
                "without a path",
            ),
            ("public_url: null\n  # How long", "public_url: ftp://example.org/\n  # How long", "web.public_url"),
            ("session_lifetime: 12h", "session_lifetime: soon", "web.session_lifetime"),
        ] {
            let text = on.replace(from, to);
            let err = Config::parse(&text).and_then(|c| c.validate_shape()).unwrap_err().to_string();
            assert!(err.contains(says), "{to}: {err}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("port: 29330", "port: 0", "appservice.port"),
            ("url: sqlite://housekeep.db?mode=rwc", "url: mysql://x", "database.url"),
            ("bot_localpart: housekeep", "bot_localpart: \"Bad Name\"", "appservice.bot_localpart"),
            ("command_prefix: \"!\"", "command_prefix: \"\"", "admin.command_prefix"),
        ];
        for (from, to, key) in cases {
            assert!(EXAMPLE.contains(from), "example lacks {from}");
            let text = EXAMPLE.replace(from, to);
            let err = Config::parse(&text).and_then(|c| c.validate_shape()).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
    }

    #[test]
    fn unknown_and_mistyped_keys_are_rejected_with_their_name() {
        let err = Config::parse(&EXAMPLE.replace("port: 29330", "port: 29330\n  prot: 1")).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let err = Config::parse(&EXAMPLE.replace("port: 29330", "port: lots")).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }
}
