//! Watching Synapse's event reports: every `reports.poll_interval`, the
//! reports newer than the newest one stored are read (newest first, down to
//! it), stored, and then told to the admin room: each in a notice of its
//! own, or, when more than [`MAX_SINGLE`] wait, in one summary. A report is
//! marked told only after its notice was posted (the notice's transaction
//! ID is the report's, so a retry is not posted twice). The first poll of a
//! new install takes every report Synapse has, and (being many) summarizes them.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::notice::{ReportedEvent, report_notice, summary_notice};
use crate::clock::now_ms;
use crate::extract::extract_value;
use crate::homeserver::EventReport;
use crate::jobs::Services;
use crate::metrics::ReportLabel;
use crate::store::EventReportRow;

/// New reports told one by one; more at once make one summary.
pub const MAX_SINGLE: i64 = 5;
/// Reports read per page, and pages read per poll (older reports beyond
/// them, on a first start with a long history, are left out and logged).
const PAGE: u32 = 100;
const MAX_PAGES: u32 = 100;
/// How much of a stranger's text (a reason, a room name) is stored.
const STORED_CHARS: usize = 2_000;
/// A failing poll is logged at most this often (it is retried every interval).
const WARN_EVERY: Duration = Duration::from_secs(3600);

pub async fn run(services: Services, interval: Duration, shutdown: CancellationToken) {
    let mut last_warned: Option<tokio::time::Instant> = None;
    let mut told = Told::default();
    loop {
        match poll(&services, &mut told).await {
            Ok(()) => last_warned = None,
            Err(error) => {
                if last_warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    let hint = if error.to_string().contains("M_FORBIDDEN") {
                        " (the bot must be a server admin to read them; or set reports.enabled: false)"
                    } else {
                        ""
                    };
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot read or post event reports{hint}; retrying every {interval:?}, logged once an hour"
                    );
                    last_warned = Some(tokio::time::Instant::now());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Notices of their own at most this many an hour: anyone can file reports
/// (of their own messages, say), and the admin room must stay readable.
/// Past it, new reports are summarized.
const SINGLE_PER_HOUR: usize = 30;
/// Summaries at most this often; reports wait for the next one meanwhile.
const SUMMARY_GAP: Duration = Duration::from_secs(60);
/// A report whose notice failed to post this many times is given up on
/// (logged, counted): it must not hold up every report after it.
const MAX_POST_FAILURES: u32 = 3;

/// What the watcher remembers between polls: what it posted lately, and
/// which notices failed.
#[derive(Default)]
struct Told {
    singles: std::collections::VecDeque<tokio::time::Instant>,
    last_summary: Option<tokio::time::Instant>,
    failures: std::collections::HashMap<i64, u32>,
}

impl Told {
    /// Whether a notice of its own may be posted at `now` (at most
    /// [`SINGLE_PER_HOUR`] in any hour).
    fn single_allowed(&mut self, now: tokio::time::Instant) -> bool {
        while self.singles.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(3600)) {
            self.singles.pop_front();
        }
        self.singles.len() < SINGLE_PER_HOUR
    }

    /// Whether a summary may be posted at `now` (one per [`SUMMARY_GAP`]).
    fn summary_allowed(&self, now: tokio::time::Instant) -> bool {
        self.last_summary.is_none_or(|at| now.duration_since(at) >= SUMMARY_GAP)
    }

    /// A notice failed to post: whether to give up on it now (after
    /// [`MAX_POST_FAILURES`]); the count is forgotten once given up.
    fn give_up_after_failure(&mut self, report_id: i64) -> bool {
        let failures = self.failures.entry(report_id).or_default();
        *failures += 1;
        if *failures < MAX_POST_FAILURES {
            return false;
        }
        self.failures.remove(&report_id);
        true
    }
}

/// One round: fetch what is new, store it, tell the admin room.
async fn poll(services: &Services, told: &mut Told) -> anyhow::Result<()> {
    let newest = services.store.newest_report_id().await?;
    let candidates = fetch_newer_than(services, newest).await?;
    let ids: Vec<i64> = candidates.iter().map(|r| r.id).collect();
    let known = services.store.known_report_ids(&ids).await?;
    let fresh: Vec<EventReportRow> = candidates.into_iter().filter(|r| !known.contains(&r.id)).map(row).collect();
    if !fresh.is_empty() {
        let stored = services.store.insert_reports(&fresh, now_ms()).await?;
        services.metrics.event_reports.get_or_create(&ReportLabel { outcome: "seen" }).inc_by(stored);
        tracing::info!(new = stored, "event reports arrived");
    }
    tell(services, told).await
}

/// The newest page of reports whole (a report can become visible after a
/// newer one: Synapse numbers it before storing it), then older pages while
/// they hold IDs above `newest`; oldest first. The caller keeps the ones it
/// does not know.
async fn fetch_newer_than(services: &Services, newest: Option<i64>) -> anyhow::Result<Vec<EventReport>> {
    let mut fresh = Vec::new();
    let mut from = 0;
    for _ in 0..MAX_PAGES {
        let page = services.homeserver.event_reports_newest_first(from, PAGE).await?;
        let reached_known = page.event_reports.iter().any(|r| newest.is_some_and(|newest| r.id <= newest));
        let first_page = from == 0;
        fresh
            .extend(page.event_reports.into_iter().filter(|r| first_page || newest.is_none_or(|newest| r.id > newest)));
        match page.next_token {
            Some(next) if !reached_known => from = next,
            _ => {
                fresh.reverse();
                return Ok(fresh);
            }
        }
    }
    tracing::warn!(
        kept = fresh.len(),
        "more event reports than one poll reads ({MAX_PAGES} pages of {PAGE}); the oldest are left out"
    );
    fresh.reverse();
    Ok(fresh)
}

fn row(report: EventReport) -> EventReportRow {
    let cut = |s: String| s.chars().take(STORED_CHARS).collect::<String>();
    EventReportRow {
        report_id: report.id,
        received_ts: report.received_ts,
        room_id: cut(report.room_id),
        event_id: cut(report.event_id),
        reporter: cut(report.user_id),
        sender: report.sender.map(cut),
        reason: report.reason.map(cut),
        score: report.score,
        room_name: report.name.map(cut),
        room_alias: report.canonical_alias.map(cut),
    }
}

/// Posts what the admin room was not told yet.
async fn tell(services: &Services, told: &mut Told) -> anyhow::Result<()> {
    let Some((sink, admin_room)) = &services.operators else { return Ok(()) };
    let waiting = services.store.count_unposted_reports().await?;
    if waiting == 0 {
        return Ok(());
    }
    if waiting <= MAX_SINGLE && told.single_allowed(tokio::time::Instant::now()) {
        for report in services.store.unposted_reports(MAX_SINGLE).await? {
            if !told.single_allowed(tokio::time::Instant::now()) {
                break;
            }
            let notice = full_notice(services, &report).await?;
            match sink.post(admin_room, &format!("report-{}", report.report_id), &notice).await {
                Ok(_) => {
                    told.singles.push_back(tokio::time::Instant::now());
                    told.failures.remove(&report.report_id);
                    services.metrics.event_reports.get_or_create(&ReportLabel { outcome: "posted" }).inc();
                }
                Err(error) => {
                    if !told.give_up_after_failure(report.report_id) {
                        return Err(error.context(format!("posting report {}", report.report_id)));
                    }
                    tracing::warn!(
                        report = report.report_id,
                        error = format!("{error:#}"),
                        "cannot post a report's notice ({MAX_POST_FAILURES} tries); going on without it \
                         (!reports lists it)"
                    );
                    services.metrics.event_reports.get_or_create(&ReportLabel { outcome: "unpostable" }).inc();
                }
            }
            services.store.mark_reports_posted(report.report_id, now_ms()).await?;
        }
        return Ok(());
    }
    if !told.summary_allowed(tokio::time::Instant::now()) {
        return Ok(());
    }
    let first = services.store.unposted_reports(super::notice::SUMMARY_LINES as i64).await?;
    let Some(newest) = services.store.newest_report_id().await? else { return Ok(()) };
    let notice = summary_notice(waiting, &first)
        .line(&format!("{}reports lists the open ones; {}report <id> shows one.", services.prefix, services.prefix));
    sink.post(admin_room, &format!("reports-up-to-{newest}"), &notice).await?;
    told.last_summary = Some(tokio::time::Instant::now());
    services.store.mark_reports_posted(newest, now_ms()).await?;
    services.metrics.event_reports.get_or_create(&ReportLabel { outcome: "summarized" }).inc_by(waiting as u64);
    Ok(())
}

/// A report's notice: the event as the homeserver serves it now and the
/// sender's footprint as the index has it now.
pub(super) async fn full_notice(services: &Services, report: &EventReportRow) -> anyhow::Result<crate::notice::Notice> {
    let event = reported_event(services, report).await;
    let footprint = match &report.sender {
        Some(sender) => Some(services.store.footprint(sender, now_ms()).await?),
        None => None,
    };
    Ok(report_notice(report, event.as_ref(), footprint.as_ref(), &services.prefix))
}

/// The reported event as the homeserver serves it now; `None` if it does
/// not (or cannot be asked: the notice then says what Synapse's report says).
async fn reported_event(services: &Services, report: &EventReportRow) -> Option<ReportedEvent> {
    match services.homeserver.admin_event(&report.room_id, &report.event_id).await {
        Ok(Some(event)) => Some(describe(&event)),
        Ok(None) => None,
        Err(error) => {
            tracing::info!(report = report.report_id, %error, "cannot fetch a reported event; its notice goes without it");
            None
        }
    }
}

fn describe(event: &Value) -> ReportedEvent {
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut media_kinds: Vec<&'static str> = match extract_value(event) {
        Ok(extracted) => extracted.media.iter().map(|m| m.kind.as_str()).collect(),
        Err(_) => Vec::new(),
    };
    media_kinds.sort_unstable();
    media_kinds.dedup();
    ReportedEvent {
        event_type: text("type"),
        origin_server_ts: event.get("origin_server_ts").and_then(Value::as_i64).unwrap_or_default(),
        body: event.pointer("/content/body").and_then(Value::as_str).map(str::to_owned),
        media_kinds,
        redacted: event.pointer("/unsigned/redacted_because").is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn at_most_thirty_notices_an_hour_then_again_as_the_hour_moves_on() {
        let mut told = Told::default();
        let start = Instant::now();
        for n in 0..SINGLE_PER_HOUR as u64 {
            let at = start + Duration::from_secs(n);
            assert!(told.single_allowed(at), "notice {n}");
            told.singles.push_back(at);
        }
        assert!(!told.single_allowed(start + Duration::from_secs(1800)), "the 31st within the hour");
        assert!(told.single_allowed(start + Duration::from_secs(3600)), "the first one is an hour old");
    }

    #[test]
    fn a_summary_a_minute() {
        let mut told = Told::default();
        let start = Instant::now();
        assert!(told.summary_allowed(start));
        told.last_summary = Some(start);
        assert!(!told.summary_allowed(start + Duration::from_secs(59)));
        assert!(told.summary_allowed(start + SUMMARY_GAP));
    }

    #[test]
    fn a_notice_that_keeps_failing_is_given_up_on_the_third_time() {
        let mut told = Told::default();
        assert!(!told.give_up_after_failure(7));
        assert!(!told.give_up_after_failure(7));
        assert!(!told.give_up_after_failure(8), "counted per report");
        assert!(told.give_up_after_failure(7));
        assert!(!told.failures.contains_key(&7), "forgotten once given up");
    }
}
