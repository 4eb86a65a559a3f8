//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Everything housekeep skips is counted here with a reason label, so "nothing
//! silently dropped" can be checked from the outside.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::store::{QueuePriority, QueueSkip};

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TxnOutcome {
    Indexed,
    Duplicate,
    Rejected,
    Failed,
}

impl TxnOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Indexed => "indexed",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: TxnOutcome,
}

/// Which listener closed a connection early, and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `appservice`, `stats` or `web`.
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Which worker a panic was caught in (`job`, `inbox`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PanicLabel {
    pub worker: &'static str,
}

/// How a media download went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabel {
    /// `fetched`, `failed` (retried later), `abandoned`, `unavailable` (404).
    pub outcome: &'static str,
}

/// A priority of the media download queue (`store::QueuePriority`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabel {
    /// `local`, `remote`, `history`, `mention`.
    pub priority: &'static str,
}

impl PriorityLabel {
    pub fn of(priority: QueuePriority) -> Self {
        Self { priority: priority.as_str() }
    }
}

/// Which cap left media out of the download queue (`store::SkipReason`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabel {
    /// `per_event`, `per_sender`, `per_origin`.
    pub reason: &'static str,
}

/// What enforcing the hash blocklist on one media did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlocklistLabel {
    /// `quarantined`, `skipped` (protected media), `failed` (the homeserver refused).
    pub outcome: &'static str,
}

/// What came of a phone-home report.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatsLabel {
    /// `stored`, `duplicate`, `invalid`, `too_large`, `unauthenticated`, `forbidden`, `rate_limited`, `disabled`, `failed`.
    pub outcome: &'static str,
}

/// What came of a dashboard sign-in code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignInLabel {
    /// `code_shown`, `approved`, `signed_in`, `unknown_code` (a `!dashboard <code>` no browser waits
    /// with), `expired`, `displaced` (by newer codes from the same address), `refused_full`, `voided`.
    pub outcome: &'static str,
}

/// Why dashboard sessions ended before their time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionEndLabel {
    /// `sign_out`, `logout_all`, `no_longer_moderator`.
    pub reason: &'static str,
}

/// How a backfill walk of one room ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WalkLabel {
    /// `creation`, `local_start`, `indexed`, `since`, `page_limit`, `loop`, `refused`, `failed`.
    pub end: &'static str,
}

/// How a redaction by someone other than its target's sender was judged.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// `applied`, `not_applied` (the homeserver did not apply it), `unknown_target`.
    pub verdict: &'static str,
}

/// Why an input was skipped.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RejectReason {
    /// An event in a transaction lacked a required field or was not an object.
    BadEvent,
    /// A string that looked like an mxc URI failed strict parsing.
    BadMxc,
    /// A request with a wrong or missing hs_token.
    BadToken,
    /// A transaction body that was not JSON or not a transaction.
    BadTransaction,
    /// A command or ✅ routed to the bot from a room that turned out not to
    /// be the admin room (routed before the alias was resolved).
    NotAdminRoom,
    /// A command or ✅ not kept while the admin room is unknown (see
    /// `appservice::route::Admission`).
    AdminRoomUnknown,
    /// A transaction's to-device messages, key counts or device lists that
    /// came before the bot's device ran (at start) or that its crypto
    /// machine could not take; each such transaction counts once.
    CryptoDataLost,
    /// An encrypted message in the admin room from a non-moderator that the
    /// bot cannot decrypt: not waited for, not answered.
    UnreadableFromNonModerator,
    /// A request to verify the bot's device from someone who is not a
    /// moderator: cancelled.
    VerificationFromNonModerator,
    /// A request to verify the bot's device not taken: as many wait or are
    /// under way as it takes, or whether its sender is a moderator could not
    /// be told. Cancelled, or left to time out; they may ask again.
    VerificationNotTaken,
    /// A room key (Megolm session) for a room other than the admin room:
    /// not kept (the bot reads no other room).
    RoomKeyOutsideAdminRoom,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadEvent => "bad_event",
            Self::BadMxc => "bad_mxc",
            Self::BadToken => "bad_token",
            Self::BadTransaction => "bad_transaction",
            Self::NotAdminRoom => "not_admin_room",
            Self::AdminRoomUnknown => "admin_room_unknown",
            Self::CryptoDataLost => "crypto_data_lost",
            Self::UnreadableFromNonModerator => "unreadable_from_non_moderator",
            Self::VerificationFromNonModerator => "verification_from_non_moderator",
            Self::VerificationNotTaken => "verification_not_taken",
            Self::RoomKeyOutsideAdminRoom => "room_key_outside_admin_room",
        }
    }
}

/// Label values in Prometheus' snake_case rather than Rust's variant names.
macro_rules! label_value_as_str {
    ($($ty:ty),*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    )*};
}
label_value_as_str!(TxnOutcome, RejectReason);

/// What became of event reports: `seen` (new to housekeep), `posted`
/// (each its own notice), `summarized` (named in one notice for many),
/// `unpostable` (its notice failed to post, given up on).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabel {
    pub outcome: &'static str,
}

/// What became of policy list rules: `baseline` (there when a list was
/// first read), `held` (the list sent more than housekeep plans for at
/// once: waits for `!policy apply`), `planned`, `matched_nothing`,
/// `refused` (unsafe, or reaching too much: the admin room is told),
/// `malformed`, `removed`, `ignored` (a recommendation housekeep does not
/// act on, or an older spelling of a rule the list holds).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyRuleLabel {
    pub outcome: &'static str,
}

/// What housekeep waits for (`homeserver`, `admin_room` at start-up; `database` after a failed commit).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabel {
    pub what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: RejectReason,
}

pub struct Metrics {
    registry: Registry,
    /// 1 while this housekeep waits as a standby (README: "A standby").
    pub standby: Gauge,
    pub transactions: Family<OutcomeLabel, Counter>,
    pub transaction_seconds: Histogram,
    pub events_indexed: Counter,
    pub events_received: Counter,
    pub media_refs_indexed: Family<KindLabel, Counter>,
    pub redactions_applied: Counter,
    pub ephemeral_received: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    /// Seconds between the newest indexed event's origin_server_ts and its commit.
    pub index_lag_seconds: Gauge<f64, AtomicU64>,
    pub commands_handled: Counter,
    pub bot_items_failed: Counter,
    pub txn_gaps: Counter,
    pub nudges_sent: Counter,
    pub panics: Family<PanicLabel, Counter>,
    pub redactions_to_check: Counter,
    pub redaction_verdicts: Family<VerdictLabel, Counter>,
    pub media_downloads: Family<FetchLabel, Counter>,
    pub media_bytes: Counter,
    pub media_stalls: Counter,
    /// Seconds the oldest due media of each priority has waited.
    pub media_queue_oldest: Family<PriorityLabel, Gauge<f64, AtomicU64>>,
    pub media_queue_skipped: Family<SkipLabel, Counter>,
    pub blocklist: Family<BlocklistLabel, Counter>,
    pub backfill_rooms: Family<WalkLabel, Counter>,
    pub stats_reports: Family<StatsLabel, Counter>,
    pub listener_closed: Family<ListenerLabel, Counter>,
    pub dashboard_sign_ins: Family<SignInLabel, Counter>,
    pub dashboard_sessions_ended: Family<SessionEndLabel, Counter>,
    pub summaries_posted: Counter,
    pub backfill_events: Counter,
    pub backfill_pages: Counter,
    /// Event reports new to housekeep, and how the admin room was told.
    pub event_reports: Family<ReportLabel, Counter>,
    /// Policy list rules, by what came of them.
    pub policy_rules: Family<PolicyRuleLabel, Counter>,
    /// 1 while start-up waits for something; the reasons are in `waits`.
    pub waiting: Family<WaitLabel, Gauge>,
    waits: Mutex<BTreeMap<&'static str, String>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("housekeep");
        let transactions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "appservice_transactions",
            "Appservice transactions received, by outcome",
            transactions.clone(),
        );
        let transaction_seconds = Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]);
        registry.register(
            "appservice_transaction_seconds",
            "Time from receiving a transaction to its commit",
            transaction_seconds.clone(),
        );
        let events_received = Counter::default();
        registry.register("events_received", "Timeline events received in transactions", events_received.clone());
        let events_indexed = Counter::default();
        registry.register("events_indexed", "Events newly written to the index", events_indexed.clone());
        let media_refs_indexed = Family::<KindLabel, Counter>::default();
        registry.register(
            "media_refs_indexed",
            "Media references in indexed transactions, by kind (repeats of known ones included)",
            media_refs_indexed.clone(),
        );
        let redactions_applied = Counter::default();
        registry.register("redactions_applied", "Indexed events marked redacted", redactions_applied.clone());
        let ephemeral_received = Counter::default();
        registry.register(
            "ephemeral_received",
            "Ephemeral and to-device entries received (accepted, not indexed)",
            ephemeral_received.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register("rejected_inputs", "Inputs skipped, by reason (each is also logged)", rejected.clone());
        let standby = Gauge::default();
        registry.register(
            "standby",
            "1 while this housekeep waits as a standby for the instance lock (it serves /health and /metrics \
             only), 0 once it runs",
            standby.clone(),
        );
        let index_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "index_lag_seconds",
            "Age of the newest indexed event when it was committed",
            index_lag_seconds.clone(),
        );
        let commands_handled = Counter::default();
        registry.register("commands_handled", "Admin-room commands executed for moderators", commands_handled.clone());
        let bot_items_failed = Counter::default();
        registry.register(
            "bot_items_failed",
            "Admin-room events given up after repeated failures (each is logged and audited)",
            bot_items_failed.clone(),
        );
        let txn_gaps = Counter::default();
        registry.register(
            "appservice_txn_gaps",
            "Transactions that never arrived, even after asking the homeserver to resend",
            txn_gaps.clone(),
        );
        let nudges_sent = Counter::default();
        registry.register(
            "appservice_nudges",
            "Events the bot sent itself after a quiet spell following a possible homeserver recovery; \
             the transaction carrying one is refused once, so the homeserver sends first any it stranded",
            nudges_sent.clone(),
        );
        let panics = Family::<PanicLabel, Counter>::default();
        registry.register(
            "panics",
            "Bugs caught: a job or an admin-room event whose handling panicked (each failed, logged and audited)",
            panics.clone(),
        );
        let redactions_to_check = Counter::default();
        registry.register(
            "redactions_to_check",
            "Redactions by someone other than the target's sender, queued to ask the homeserver whether it applied them",
            redactions_to_check.clone(),
        );
        let redaction_verdicts = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "redaction_verdicts",
            "Queued redactions judged with the homeserver, by verdict",
            redaction_verdicts.clone(),
        );
        let media_downloads = Family::<FetchLabel, Counter>::default();
        registry.register(
            "media_downloads",
            "Media downloads by outcome (every failure is also logged with its reason)",
            media_downloads.clone(),
        );
        let media_bytes = Counter::default();
        registry.register("media_downloaded_bytes", "Bytes of media downloaded and hashed", media_bytes.clone());
        let media_stalls = Counter::default();
        registry.register(
            "media_download_stalls",
            "Downloads stopped because nothing arrived for media.stall_timeout (retried later)",
            media_stalls.clone(),
        );
        let media_queue_oldest = Family::<PriorityLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "media_queue_oldest_seconds",
            "How long the oldest media due for download has waited, per priority (local uploads, remote, \
             history, mentions); 0 when none waits. One that keeps growing is a jammed queue",
            media_queue_oldest.clone(),
        );
        let media_queue_skipped = Family::<SkipLabel, Counter>::default();
        registry.register(
            "media_queue_skipped",
            "Media past a download queue cap, by cap: per_event (not queued), per_sender and per_origin \
             (deferred to the lowest priority); each logged",
            media_queue_skipped.clone(),
        );
        let blocklist = Family::<BlocklistLabel, Counter>::default();
        registry.register(
            "blocklist_enforced",
            "Media whose hash is on the blocklist, by what enforcing it did",
            blocklist.clone(),
        );
        let stats_reports = Family::<StatsLabel, Counter>::default();
        registry.register("stats_reports", "Phone-home reports received, by outcome", stats_reports.clone());
        let listener_closed = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "listener_closed",
            "Connections an HTTP listener closed early: slow_headers (no complete request head in time), \
             slow_reader (answers not read), too_many_from_one_address",
            listener_closed.clone(),
        );
        let dashboard_sign_ins = Family::<SignInLabel, Counter>::default();
        registry.register(
            "dashboard_sign_ins",
            "Dashboard sign-in codes, by what came of them (refusals and expiries are also logged)",
            dashboard_sign_ins.clone(),
        );
        let dashboard_sessions_ended = Family::<SessionEndLabel, Counter>::default();
        registry.register(
            "dashboard_sessions_ended",
            "Dashboard sessions ended before their time, by why",
            dashboard_sessions_ended.clone(),
        );
        let summaries_posted = Counter::default();
        registry.register("stats_summaries_posted", "Scheduled stats summaries posted", summaries_posted.clone());
        let backfill_rooms = Family::<WalkLabel, Counter>::default();
        registry.register("backfill_rooms", "Rooms whose backfill walk ended, by how it ended", backfill_rooms.clone());

        let backfill_events = Counter::default();
        registry.register("backfill_events", "Events read from room history by backfill", backfill_events.clone());
        let backfill_pages = Counter::default();
        registry.register("backfill_pages", "Pages of room history read by backfill", backfill_pages.clone());
        let event_reports = Family::<ReportLabel, Counter>::default();
        registry.register(
            "event_reports",
            "Synapse event reports new to housekeep (seen), told to the admin room (posted alone, or summarized), \
             or given up on after failed posts (unpostable)",
            event_reports.clone(),
        );
        let policy_rules = Family::<PolicyRuleLabel, Counter>::default();
        registry.register(
            "policy_rules",
            "Policy list rules by outcome: baseline, held, planned, matched_nothing, refused, malformed, removed, ignored",
            policy_rules.clone(),
        );
        let waiting = Family::<WaitLabel, Gauge>::default();
        registry.register(
            "waiting_for",
            "1 while housekeep waits for something it needs (homeserver, admin_room, database); /health says why",
            waiting.clone(),
        );
        Self {
            event_reports,
            policy_rules,
            waiting,
            waits: Mutex::default(),
            media_downloads,
            media_bytes,
            media_stalls,
            media_queue_oldest,
            media_queue_skipped,
            blocklist,
            backfill_rooms,
            stats_reports,
            listener_closed,
            dashboard_sign_ins,
            dashboard_sessions_ended,
            summaries_posted,
            backfill_events,
            backfill_pages,
            panics,
            redactions_to_check,
            redaction_verdicts,
            txn_gaps,
            nudges_sent,
            commands_handled,
            bot_items_failed,
            registry,
            transactions,
            transaction_seconds,
            events_indexed,
            events_received,
            media_refs_indexed,
            redactions_applied,
            ephemeral_received,
            rejected,
            index_lag_seconds,
            standby,
        }
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts an event's invalid mxc URIs and logs them in one line (the
    /// first of them and how many): an event with thousands of bad URIs
    /// must not write thousands of log lines.
    pub fn skip_bad_mxcs(&self, event_id: &str, rejected: &[crate::extract::RejectedMxc], during: &'static str) {
        let Some(first) = rejected.first() else { return };
        self.rejected.get_or_create(&ReasonLabel { reason: RejectReason::BadMxc }).inc_by(rejected.len() as u64);
        tracing::info!(
            event_id,
            during,
            count = rejected.len(),
            first_location = first.location,
            first_value = first.value,
            first_reason = %first.reason,
            "skipping invalid mxc URIs"
        );
    }

    /// Counts media the download queue's caps left out and logs each skip
    /// (one line per event, or per sender or origin and batch, however
    /// many media it left out).
    pub fn skip_media_queue(&self, skips: &[QueueSkip], during: &'static str) {
        for skip in skips {
            self.media_queue_skipped.get_or_create(&SkipLabel { reason: skip.reason.as_str() }).inc_by(skip.count);
            tracing::info!(
                during,
                reason = skip.reason.as_str(),
                count = skip.count,
                event_id = skip.event_id,
                sender = skip.sender,
                origin = skip.origin,
                first = skip.first,
                "{}",
                match skip.reason {
                    crate::store::SkipReason::PerEvent => {
                        "media indexed but not queued for download: over the per-event cap (see media.queue)"
                    }
                    _ => "media queued last (deferred): its sender or their server is over its cap (see media.queue)",
                }
            );
        }
    }

    /// Start-up cannot go on without `what` yet: named with the reason in
    /// `/health` and `!status`, and `housekeep_waiting_for{what}` is 1.
    pub fn waiting_for(&self, what: &'static str, why: impl Into<String>) {
        self.waits.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(what, why.into());
        self.waiting.get_or_create(&WaitLabel { what }).set(1);
    }

    /// `what` is there now.
    pub fn done_waiting(&self, what: &'static str) {
        if self.waits.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(what).is_some() {
            self.waiting.get_or_create(&WaitLabel { what }).set(0);
        }
    }

    /// What start-up waits for now, with the reasons.
    pub fn waits(&self) -> Vec<(&'static str, String)> {
        let waits = self.waits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        waits.iter().map(|(what, why)| (*what, why.clone())).collect()
    }

    pub fn transaction(&self, outcome: TxnOutcome) {
        self.transactions.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// What [`render`](Self::render) writes, as a `Content-Type`.
    pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// The Prometheus text exposition (OpenMetrics, by prometheus-client).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_full_of_bad_mxc_uris_is_one_log_line_and_counts_each() {
        let body: String = (0..2_000).map(|n| format!("<img src=\"mxc://bad host/{n}\">")).collect();
        let event = serde_json::json!({
            "event_id": "$e", "room_id": "!r:hs", "sender": "@s:hs", "origin_server_ts": 1, "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html", "formatted_body": body},
        });
        let extracted = crate::extract::extract_value(&event).unwrap();
        assert!(extracted.rejected.len() >= 1_000, "{} rejected", extracted.rejected.len());

        let metrics = Metrics::new();
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, || {
            metrics.skip_bad_mxcs("$e", &extracted.rejected, "transaction");
        });
        let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains(&format!("count={}", extracted.rejected.len())), "{log}");
        let counted = format!("housekeep_rejected_inputs_total{{reason=\"bad_mxc\"}} {}", extracted.rejected.len());
        assert!(metrics.render().contains(&counted), "{}", metrics.render());
    }
}
