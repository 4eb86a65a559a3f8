//! The config's sections as the YAML file has them: one struct a section,
//! with its defaults. Durations are typed, parsed when the file is read
//! (`duration`); the checks serde cannot make are in `validate`.

use std::net::IpAddr;
use std::time::Duration;

use ruma::{OwnedServerName, OwnedUserId};
use serde::Deserialize;
use url::Url;

/// A sign-in's lifetime when `web.session_lifetime` is unset.
const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How often a signed-in user is checked again when `web.recheck_moderator_every` is unset.
const DEFAULT_RECHECK_MODERATOR_EVERY: Duration = Duration::from_secs(5 * 60);

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
    /// Whether a room `create_if_missing` makes is end-to-end encrypted:
    /// `true` (needs `e2ee.enabled`), `false`, or `None`, what the
    /// homeserver does for new private rooms. `false` cannot stop a server
    /// that encrypts every new private room.
    #[serde(default)]
    pub encrypted: Option<bool>,
    #[serde(default)]
    pub moderators: Vec<OwnedUserId>,
    #[serde(default = "default_command_prefix")]
    pub command_prefix: String,
    /// Users at or above this power level in the admin room may command the
    /// bot too. `None`: only the `moderators` list.
    #[serde(default)]
    pub moderator_power_level: Option<i64>,
    /// How long a plan waits for `!confirm` or a ✅ reaction (`10m`, `1h`).
    #[serde(default = "default_confirm_expiry", deserialize_with = "super::duration::deserialize")]
    pub confirm_expiry: Duration,
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
    /// Events asked for per page of a room's history, 10 to 1,000 (Synapse's
    /// most). Synapse's CPU per page grows with the page (seconds for 1,000
    /// events of a deep room): smaller pages spread that load thinner.
    #[serde(default = "default_page_events")]
    pub page_events: u32,
    /// Pages read from one room in one backfill.
    #[serde(default = "default_max_pages_per_room")]
    pub max_pages_per_room: u32,
    /// Rooms read at once, 1 to 32: each batch reads a chunk of each, so a
    /// server of many small rooms is not read one round trip at a time.
    #[serde(default = "default_parallel_rooms")]
    pub parallel_rooms: u32,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            on_first_start: true,
            chunk_events: default_chunk_events(),
            page_events: default_page_events(),
            max_pages_per_room: default_max_pages_per_room(),
            parallel_rooms: default_parallel_rooms(),
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
    #[serde(default = "default_stats_retention", deserialize_with = "super::duration::deserialize")]
    pub retention: Duration,
    /// Refused reports (missing or wrong secret) per source address per
    /// minute; more get 429.
    #[serde(default = "default_reports_per_minute")]
    pub reports_per_minute: u32,
    /// The homeservers whose reports are taken; empty: `homeserver.domain`
    /// only ([`StatsConfig::accepted_homeservers`]).
    #[serde(default)]
    pub homeservers: Vec<OwnedServerName>,
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
            .field("homeservers", &self.homeservers)
            .field("summaries", &self.summaries)
            .finish()
    }
}

impl StatsConfig {
    /// The homeservers whose reports are taken: `stats.homeservers`, or
    /// `domain` (the homeserver's own name) when it is empty.
    pub fn accepted_homeservers(&self, domain: &OwnedServerName) -> Vec<String> {
        if self.homeservers.is_empty() {
            vec![domain.to_string()]
        } else {
            self.homeservers.iter().map(ToString::to_string).collect()
        }
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
            homeservers: Vec::new(),
            summaries: Vec::new(),
        }
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
    /// Unset (or `null`): 12 hours.
    #[serde(default, deserialize_with = "super::duration::option::deserialize")]
    pub session_lifetime: Option<Duration>,
    /// How often a session's user is checked again against the moderator
    /// rule (`admin.*`); one who is no longer a moderator is signed out.
    /// Unset (or `null`): 5 minutes.
    #[serde(default, deserialize_with = "super::duration::option::deserialize")]
    pub recheck_moderator_every: Option<Duration>,
}

impl WebConfig {
    /// Where to listen, when the dashboard is on.
    pub fn listen(&self) -> Option<(IpAddr, u16)> {
        self.hostname.zip(self.port)
    }

    /// The dashboard's URL, when it is on.
    pub fn public_url(&self) -> Option<Url> {
        let (hostname, port) = self.listen()?;
        let url = match &self.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{}/", std::net::SocketAddr::from((hostname, port)))).ok()?,
        };
        Some(url)
    }

    /// How long a sign-in lasts.
    pub fn session_lifetime(&self) -> Duration {
        self.session_lifetime.unwrap_or(DEFAULT_SESSION_LIFETIME)
    }

    /// How often a session's user is checked again.
    pub fn recheck_moderator_every(&self) -> Duration {
        self.recheck_moderator_every.unwrap_or(DEFAULT_RECHECK_MODERATOR_EVERY)
    }
}

/// A summary posted on schedule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Room ID or alias (the bot must be able to post there).
    pub room: String,
    /// `daily 09:00`, `daily 09:00 Europe/Berlin`, `weekly monday 09:00 UTC`.
    pub schedule: super::Schedule,
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
    #[serde(default = "default_download_timeout", deserialize_with = "super::duration::deserialize")]
    pub download_timeout: Duration,
    /// A download that receives nothing for this long is stopped and tried again later (`60s`).
    #[serde(default = "default_stall_timeout", deserialize_with = "super::duration::deserialize")]
    pub stall_timeout: Duration,
    /// Failed attempts before a download is abandoned (`!backfill retry-failed` tries again).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait after a first failed download; each further one waits four times longer (`30s`).
    #[serde(default = "default_retry_delay", deserialize_with = "super::duration::deserialize")]
    pub retry_delay: Duration,
    /// Files quarantined as soon as housekeep downloads one (any mxc URI, any room).
    #[serde(default)]
    pub blocklist: Vec<BlocklistEntry>,
    /// How much of the download queue one event, sender or server may take.
    #[serde(default)]
    pub queue: QueueCaps,
}

/// Caps on the media download queue (`media.queue`): beyond them media is
/// indexed but not downloaded (so not hashed), each skip logged and counted.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueCaps {
    /// Media queued per event at most, the strongest references first.
    #[serde(default = "default_queue_per_event")]
    pub per_event: usize,
    /// Remote media and mentions one sender may have waiting at once.
    #[serde(default = "default_queue_per_sender")]
    pub per_sender: u32,
    /// Remote media and mentions the senders of one server may have waiting at once.
    #[serde(default = "default_queue_per_origin")]
    pub per_origin: u32,
}

impl Default for QueueCaps {
    fn default() -> Self {
        Self {
            per_event: default_queue_per_event(),
            per_sender: default_queue_per_sender(),
            per_origin: default_queue_per_origin(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlocklistEntry {
    pub sha256: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Synapse's event reports (what users report with their client), posted
/// to the admin room as they arrive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Whether reports are watched at all (the bot must be a server admin).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often Synapse is asked for new reports.
    #[serde(default = "default_reports_poll_interval", deserialize_with = "super::duration::deserialize")]
    pub poll_interval: Duration,
}

/// `e2ee`: the bot's device and end-to-end encryption.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E2eeConfig {
    /// Off by default: it needs the homeserver's experimental appservice
    /// extensions (to-device messages, device lists, key counts).
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_device_display_name")]
    pub device_display_name: String,
}

impl Default for E2eeConfig {
    fn default() -> Self {
        Self { enabled: false, device_display_name: default_device_display_name() }
    }
}

fn default_device_display_name() -> String {
    "housekeep".to_owned()
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self { enabled: true, poll_interval: default_reports_poll_interval() }
    }
}

fn default_reports_poll_interval() -> Duration {
    Duration::from_secs(15)
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
            queue: QueueCaps::default(),
        }
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
fn default_confirm_expiry() -> Duration {
    Duration::from_secs(10 * 60)
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
fn default_page_events() -> u32 {
    1000
}
fn default_max_pages_per_room() -> u32 {
    10_000
}
fn default_parallel_rooms() -> u32 {
    4
}
fn default_download_concurrency() -> usize {
    32
}
fn default_download_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_stall_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_queue_per_event() -> usize {
    32
}
fn default_queue_per_sender() -> u32 {
    100
}
fn default_queue_per_origin() -> u32 {
    1000
}
fn default_stats_retention() -> Duration {
    Duration::from_secs(400 * 86_400)
}

fn default_reports_per_minute() -> u32 {
    30
}

fn default_summary_days() -> u32 {
    7
}

fn default_retry_delay() -> Duration {
    Duration::from_secs(30)
}
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

/// Policy lists (ban lists, `m.policy.rule.*`) housekeep watches and turns
/// into plans: see the README's "Policy lists".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rooms (IDs or aliases, local or remote) watched from the start, each
    /// `"#bans:example.org"` or `{room: "#bans:example.org", action: auto}`.
    #[serde(default)]
    pub lists: Vec<PolicyListEntry>,
    /// A rule's plan takes what its targets sent within this long before the
    /// rule arrived (`30d`); default: everything indexed.
    #[serde(default, deserialize_with = "super::duration::option::deserialize")]
    pub lookback: Option<Duration>,
    /// What a user rule's plan does to the account of a user of this
    /// homeserver before its events are redacted: `suspend` (default),
    /// `lock`, `deactivate` (never runs without a moderator's confirmation)
    /// or `none`.
    #[serde(default)]
    pub sanction: PolicySanction,
}

/// One watched list in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PolicyListEntry {
    /// A room ID or alias, with the default action (`plan`).
    Room(String),
    Full {
        room: String,
        #[serde(default)]
        action: ListAction,
    },
}

impl PolicyListEntry {
    pub fn room(&self) -> &str {
        match self {
            Self::Room(room) | Self::Full { room, .. } => room,
        }
    }

    pub fn action(&self) -> ListAction {
        match self {
            Self::Room(_) => ListAction::default(),
            Self::Full { action, .. } => *action,
        }
    }
}

/// What a list's new rules do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListAction {
    /// Post the plan; it waits for ✅ or `!confirm`.
    #[default]
    Plan,
    /// Post the plan and run it at once when it is within
    /// `admin.confirm_threshold` (and can be undone); above, it waits.
    Auto,
}

impl ListAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Auto => "auto",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "plan" => Some(Self::Plan),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// The sanction a user rule's plan applies to a local account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySanction {
    None,
    #[default]
    Suspend,
    Lock,
    Deactivate,
}
