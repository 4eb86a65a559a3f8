//! The checks serde cannot make: ranges, cross-field rules, non-empty
//! secrets. Every error starts with the key it is about (`appservice.port: …`).

use std::time::Duration;

use anyhow::{Context, bail};

use super::DATABASE_URL_SCHEMES;
use super::{AdminConfig, Config, MAX_STATS_DAYS, MediaConfig, QueueCaps, StatsConfig, WebConfig};

/// Synapse retries a 413 forever, so the limit must fit any transaction it
/// can send (100 events of up to 64 KiB, plus ephemeral data).
const MIN_BODY_BYTES: usize = 8 * 1024 * 1024;

const DAY: Duration = Duration::from_secs(86_400);

impl Config {
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
        self.validate_listeners()?;
        if !DATABASE_URL_SCHEMES.iter().any(|scheme| self.database.url.starts_with(scheme)) {
            bail!("database.url: must start with sqlite: or postgres://");
        }
        if self.database.max_connections == Some(0) {
            bail!("database.max_connections: must be at least 1");
        }
        self.validate_admin()?;
        if self.jobs.max_concurrent == 0 || self.jobs.max_concurrent > 64 {
            bail!("jobs.max_concurrent: must be between 1 and 64, got {}", self.jobs.max_concurrent);
        }
        if !(1..=64).contains(&self.jobs.homeserver_concurrency) {
            bail!("jobs.homeserver_concurrency: must be between 1 and 64, got {}", self.jobs.homeserver_concurrency);
        }
        if !(100..=100_000).contains(&self.backfill.chunk_events) {
            bail!("backfill.chunk_events: must be between 100 and 100000, got {}", self.backfill.chunk_events);
        }
        if !(10..=1000).contains(&self.backfill.page_events) {
            bail!("backfill.page_events: must be between 10 and 1000, got {}", self.backfill.page_events);
        }
        if self.backfill.max_pages_per_room == 0 {
            bail!("backfill.max_pages_per_room: must be at least 1");
        }
        if !(1..=32).contains(&self.backfill.parallel_rooms) {
            bail!("backfill.parallel_rooms: must be between 1 and 32, got {}", self.backfill.parallel_rooms);
        }
        self.media.validate()?;
        if self.reports.poll_interval < std::time::Duration::from_secs(1) {
            bail!("reports.poll_interval: must be at least 1s");
        }
        self.stats.validate(self.appservice.port)?;
        for (n, list) in self.policy.lists.iter().enumerate() {
            if let Err(error) = ruma::RoomOrAliasId::parse(list.room()) {
                bail!("policy.lists[{n}]: {:?} is not a room ID or alias: {error}", list.room());
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| anyhow::anyhow!("logging.level: {e}"))?;
        self.web.validate()
    }

    /// `homeserver` and `appservice`: URLs, the listener, the bot's name.
    fn validate_listeners(&self) -> anyhow::Result<()> {
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
        Ok(())
    }

    /// `admin`: the room, the prefix, who may command and what needs confirming.
    fn validate_admin(&self) -> anyhow::Result<()> {
        let admin: &AdminConfig = &self.admin;
        if !(admin.room.starts_with('!') || admin.room.starts_with('#')) {
            bail!("admin.room: must be a room ID (!…) or alias (#…), got {:?}", admin.room);
        }
        if let Err(error) = ruma::RoomOrAliasId::parse(&admin.room) {
            bail!("admin.room: {:?} is not a valid room ID or alias: {error}", admin.room);
        }
        if admin.command_prefix.is_empty() || admin.command_prefix.chars().any(char::is_whitespace) {
            bail!("admin.command_prefix: must be non-empty and without spaces");
        }
        if admin.confirm_expiry < Duration::from_secs(10) || admin.confirm_expiry > 7 * DAY {
            bail!(
                "admin.confirm_expiry: must be between 10s and 7d, got {}",
                humantime::format_duration(admin.confirm_expiry)
            );
        }
        if admin.encrypted == Some(true) && !self.e2ee.enabled {
            bail!("admin.encrypted: true needs e2ee.enabled: true, or the bot could not read its own admin room");
        }
        if admin.moderators.is_empty() && admin.moderator_power_level.is_none() {
            bail!(
                "admin.moderators: is empty and admin.moderator_power_level is not set: nobody could command the bot"
            );
        }
        if let Some(level) = admin.moderator_power_level
            && level < 1
        {
            bail!("admin.moderator_power_level: must be at least 1 (everyone in a room has 0), got {level}");
        }
        if !admin.allow_remote_moderators
            && let Some(remote) = admin.moderators.iter().find(|m| m.server_name() != self.homeserver.domain)
        {
            bail!(
                "admin.moderators: {remote} is not on {}; set admin.allow_remote_moderators: true to allow \
                 moderators of other servers",
                self.homeserver.domain
            );
        }
        for (key, threshold) in [
            ("admin.confirm_threshold", Some(admin.confirm_threshold)),
            ("admin.two_person_threshold", admin.two_person_threshold),
        ] {
            if let Some(t) = threshold
                && (t.events < 0 || t.media < 0)
            {
                bail!("{key}: events and media must not be negative");
            }
        }
        Ok(())
    }
}

impl MediaConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=256).contains(&self.download_concurrency) {
            bail!("media.download_concurrency: must be between 1 and 256, got {}", self.download_concurrency);
        }
        if self.stall_timeout.is_zero() || self.download_timeout < self.stall_timeout {
            bail!("media.stall_timeout: must be more than 0 and at most media.download_timeout");
        }
        if !(1..=20).contains(&self.max_attempts) {
            bail!("media.max_attempts: must be between 1 and 20, got {}", self.max_attempts);
        }
        let QueueCaps { per_event, per_sender, per_origin } = self.queue;
        if !(1..=10_000).contains(&per_event) {
            bail!("media.queue.per_event: must be between 1 and 10000, got {per_event}");
        }
        if per_sender == 0 || per_origin < per_sender {
            bail!("media.queue: per_sender must be at least 1, and per_origin at least per_sender");
        }
        for entry in &self.blocklist {
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("media.blocklist: {:?} is not a SHA-256 (64 hexadecimal characters)", entry.sha256);
            }
        }
        Ok(())
    }
}

impl StatsConfig {
    fn validate(&self, appservice_port: u16) -> anyhow::Result<()> {
        if self.hostname.is_some() != self.port.is_some() {
            bail!("stats.hostname and stats.port: set both (a listener of its own) or neither");
        }
        if self.port == Some(0) || self.port == Some(appservice_port) {
            bail!("stats.port: must not be 0 or appservice.port (leave both unset to share that listener)");
        }
        if !self.secret.is_empty() && self.secret.len() < 16 {
            bail!("stats.secret: at least 16 characters (housekeep stats-endpoint generates one)");
        }
        if self.retention < DAY || self.retention > 100 * 365 * DAY {
            bail!("stats.retention: between 1d and 100 years");
        }
        if !(1..=10_000).contains(&self.reports_per_minute) {
            bail!("stats.reports_per_minute: must be between 1 and 10000");
        }
        let mut seen = std::collections::HashSet::new();
        for (n, summary) in self.summaries.iter().enumerate() {
            if !(summary.room.starts_with('!') || summary.room.starts_with('#')) {
                bail!("stats.summaries[{n}].room: must be a room ID (!…) or alias (#…), got {:?}", summary.room);
            }
            let schedule = &summary.schedule;
            if !seen.insert((summary.room.clone(), schedule.key())) {
                bail!("stats.summaries[{n}]: the same room and schedule as an earlier entry");
            }
            if !(1..=MAX_STATS_DAYS).contains(&summary.days) {
                bail!("stats.summaries[{n}].days: must be between 1 and {}", MAX_STATS_DAYS);
            }
        }
        Ok(())
    }
}

impl WebConfig {
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
        let lifetime = self.session_lifetime();
        if lifetime < Duration::from_secs(60) || lifetime > 90 * DAY {
            bail!("web.session_lifetime: must be between 1m and 90d");
        }
        let recheck = self.recheck_moderator_every();
        if recheck < Duration::from_secs(1) || recheck > Duration::from_secs(24 * 3600) {
            bail!("web.recheck_moderator_every: must be between 1s and 24h");
        }
        Ok(())
    }
}
