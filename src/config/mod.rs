//! The one YAML config file, typed and validated at start-up: the sections
//! (`sections`), the checks serde cannot make (`validate`), and loading
//! (here). A leaf: it imports nothing else of housekeep.
//!
//! Every error names the key it is about (`appservice.port: …`) so an operator
//! can fix the file without reading code. Secrets can come from the
//! environment instead of the file: `HOUSEKEEP_AS_TOKEN`, `HOUSEKEEP_HS_TOKEN`,
//! `HOUSEKEEP_DATABASE_URL`.

mod duration;
mod schedule;
mod sections;
mod validate;

pub use schedule::Schedule;
pub use sections::*;

use std::path::{Path, PathBuf};

use anyhow::Context;
use ruma::{OwnedUserId, UserId};
use serde::Deserialize;

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
    pub reports: ReportsConfig,
    #[serde(default)]
    pub e2ee: E2eeConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
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
            .field("reports", &self.reports)
            .field("e2ee", &self.e2ee)
            .field("policy", &self.policy)
            .field("stats", &self.stats)
            .field("logging", &self.logging)
            .field("web", &self.web)
            .finish()
    }
}

/// A warning that the file at `path` can be read by others than its owner
/// (`"{path} is readable by others (mode 644) and {what}"`), if it can.
/// For files holding secrets: the config, the SQLite database.
pub fn readable_by_others(path: &Path, what: &str) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o077 != 0)
            .then(|| format!("{} is readable by others (mode {:o}) and {what}", path.display(), mode & 0o777))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, what);
        None
    }
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
        readable_by_others(path, "holds the appservice tokens: chmod 600 it")
    }

    /// Parses the YAML text. An error names the key it is at
    /// (`stats.retention: line 113 …`) before the parser's own words and snippet.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| {
            let key = e.location().and_then(|at| usize::try_from(at.line()).ok()).and_then(|line| key_at(text, line));
            match key {
                Some(key) => {
                    let text = e.to_string();
                    anyhow::anyhow!("{key}: {}", text.strip_prefix("error: ").unwrap_or(&text))
                }
                None => anyhow::anyhow!("{e}"),
            }
        })
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

    pub fn bot_user_id(&self) -> anyhow::Result<OwnedUserId> {
        Ok(UserId::parse(format!("@{}:{}", self.appservice.bot_localpart, self.homeserver.domain))?)
    }
}

/// The dotted key (`stats.retention`) of the block-style `key: value` on
/// line `line` (1-based), from the keys above it at lesser indentation;
/// list items add no index. `None` where the line holds no key.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    fn key_of(line: &str) -> Option<(usize, &str)> {
        // A list item's key stands after its `- `.
        let item = line.trim_start().trim_start_matches("- ").trim_start();
        let indent = line.len() - item.len();
        let (key, _) = item.split_once(':')?;
        let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        plain.then_some((indent, key))
    }
    let (mut indent, key) = key_of(lines.get(line.checked_sub(1)?)?)?;
    let mut path = vec![key];
    for above in lines[..line - 1].iter().rev() {
        if indent == 0 {
            break;
        }
        if let Some((above_indent, key)) = key_of(above)
            && above_indent < indent
            && !above.trim_start().starts_with('#')
        {
            path.push(key);
            indent = above_indent;
        }
    }
    path.reverse();
    Some(path.join("."))
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
        assert_eq!(config.web.session_lifetime(), std::time::Duration::from_secs(12 * 3600));
        assert_eq!(config.web.recheck_moderator_every(), std::time::Duration::from_secs(5 * 60));
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
            ("recheck_moderator_every: 5m", "recheck_moderator_every: 2d", "web.recheck_moderator_every"),
            ("recheck_moderator_every: 5m", "recheck_moderator_every: 0s", "web.recheck_moderator_every"),
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
            ("per_event: 32", "per_event: 0", "media.queue.per_event"),
            ("per_origin: 1000", "per_origin: 10", "per_origin at least per_sender"),
            ("page_events: 1000", "page_events: 1001", "backfill.page_events"),
            ("page_events: 1000", "page_events: 9", "backfill.page_events"),
        ];
        for (from, to, key) in cases {
            assert!(EXAMPLE.contains(from), "example lacks {from}");
            let text = EXAMPLE.replace(from, to);
            let err = Config::parse(&text).and_then(|c| c.validate_shape()).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
    }

    #[test]
    fn the_media_queue_caps_default_to_the_examples() {
        let example = example().media.queue;
        assert_eq!(example, QueueCaps::default());
        assert_eq!((example.per_event, example.per_sender, example.per_origin), (32, 100, 1000));
    }

    #[test]
    fn durations_are_parsed_at_load_and_bad_ones_name_their_key() {
        let config = example();
        assert_eq!(config.admin.confirm_expiry, std::time::Duration::from_secs(600));
        assert_eq!(config.media.stall_timeout, std::time::Duration::from_secs(60));
        assert_eq!(config.stats.retention, std::time::Duration::from_secs(400 * 86_400));
        for (from, to, key) in [
            ("confirm_expiry: 10m", "confirm_expiry: soon", "confirm_expiry"),
            ("download_timeout: 10m", "download_timeout: 10 parsecs", "download_timeout"),
            ("retry_delay: 30s", "retry_delay: 30", "retry_delay"),
            ("retention: 400d", "retention: forever", "retention"),
        ] {
            assert!(EXAMPLE.contains(from), "example lacks {from}");
            let err = Config::parse(&EXAMPLE.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("is not a duration") && err.contains("examples"), "{to}: {err}");
        }
        let err = Config::parse(&EXAMPLE.replace("retention: 400d", "retention: 400x")).unwrap_err().to_string();
        assert!(err.starts_with("stats.retention: line "), "{err}");
        let err = Config::parse(&EXAMPLE.replace("session_lifetime: 12h", "session_lifetime: soon")).unwrap_err();
        assert!(err.to_string().starts_with("web.session_lifetime: "), "{err}");
    }

    /// A schedule is parsed with the config, once: a bad one names its key.
    #[test]
    fn a_schedule_is_typed_when_the_config_is_read() {
        let summary = "summaries:\n    - room: \"#ops:example.org\"\n      schedule: {}\n";
        let config =
            Config::parse(&EXAMPLE.replace("summaries: []\n", &summary.replace("{}", "weekly mon 09:00"))).unwrap();
        assert_eq!(config.stats.summaries[0].schedule.weekday, Some(jiff::civil::Weekday::Monday));
        let bad = EXAMPLE.replace("summaries: []\n", &summary.replace("{}", "fortnightly 09:00"));
        let err = Config::parse(&bad).unwrap_err().to_string();
        assert!(err.starts_with("stats.summaries.schedule: line ") && err.contains("weekly WEEKDAY"), "{err}");
    }

    #[test]
    fn a_line_is_named_by_its_dotted_key() {
        let text =
            "stats:\n  # a comment: here\n  summaries:\n    - room: \"!r:x\"\n      days: many\nweb:\n  port: 1\n";
        assert_eq!(key_at(text, 5).as_deref(), Some("stats.summaries.days"));
        assert_eq!(key_at(text, 4).as_deref(), Some("stats.summaries.room"));
        assert_eq!(key_at(text, 7).as_deref(), Some("web.port"));
        assert_eq!(key_at(text, 2), None, "a comment");
        assert_eq!(key_at(text, 99), None);
    }

    #[test]
    fn unknown_and_mistyped_keys_are_rejected_with_their_name() {
        let err = Config::parse(&EXAMPLE.replace("port: 29330", "port: 29330\n  prot: 1")).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let err = Config::parse(&EXAMPLE.replace("port: 29330", "port: lots")).unwrap_err();
        assert!(err.to_string().starts_with("appservice.port: "), "{err}");
    }
}
