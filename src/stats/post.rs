//! Posting a summary: its text, then its chart (uploaded), through a sink;
//! on request (`!stats`) and on schedule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::chart;
use super::schedule::{Due, due};
use super::summary::{Scope, Summary};
use crate::clock::{DAY_MS, now_ms, utc_day};
use crate::config::Schedule;
use crate::homeserver::HomeserverClient;
use crate::metrics::Metrics;
use crate::notice::{Destination, Image, Notice, Sink};
use crate::store::Store;

/// A summary's text and chart. The chart is drawn off the async threads; one
/// that cannot be drawn leaves the text alone.
pub async fn render(summary: &Summary, prefix: &str) -> (Notice, Option<Image>) {
    let notice = summary.notice(prefix);
    let spec = summary.chart();
    let drawn = tokio::task::spawn_blocking(move || chart::render(&spec)).await;
    let image = match drawn {
        Ok(Ok(chart)) => Some(Image {
            png: chart.png,
            width: chart.width,
            height: chart.height,
            name: format!("housekeep-stats-{}.png", crate::clock::date(summary.last_day)),
        }),
        Ok(Err(error)) => {
            tracing::warn!(error = format!("{error:#}"), "cannot draw the stats chart; posting the text alone");
            None
        }
        Err(error) => {
            tracing::error!(%error, "drawing the stats chart failed (a bug); posting the text alone");
            None
        }
    };
    (notice, image)
}

/// One scheduled summary.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// The room as configured: an ID, or an alias resolved when first needed.
    pub room: String,
    pub schedule: Schedule,
    pub days: u32,
    /// Whether the busiest rooms and senders are named (server-wide data:
    /// for a room whose members may see it).
    pub include_top: bool,
}

/// Posts scheduled summaries when they are due, until shutdown. `clock`
/// gives the time (tests set it).
pub struct Scheduler {
    pub store: Store,
    pub sink: Arc<dyn Sink>,
    pub metrics: Arc<Metrics>,
    pub summaries: Vec<Scheduled>,
    pub prefix: String,
    /// Resolves room aliases; `None`: rooms are IDs.
    pub homeserver: Option<HomeserverClient>,
    /// Reports received longer ago are dropped (once a day).
    pub retention: Duration,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Per summary (its index): after a failure, not tried again before this
    /// time, and how many failed in a row.
    pub backoff: Mutex<HashMap<usize, (i64, i64)>>,
}

/// The longest the scheduler sleeps: a changed clock is noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Scheduler {
    pub fn system_clock() -> Arc<dyn Fn() -> i64 + Send + Sync> {
        Arc::new(now_ms)
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_prune = None;
        loop {
            let now = (self.clock)();
            if last_prune.is_none_or(|at| now - at > DAY_MS) {
                self.prune(now).await;
                last_prune = Some(now);
            }
            self.tick(now).await;
            let next = self.summaries.iter().filter_map(|s| s.schedule.next_after(now)).min();
            let sleep = next.map_or(MAX_SLEEP, |at| Duration::from_millis(at.saturating_sub(now).max(0) as u64));
            tokio::select! {
                _ = tokio::time::sleep(sleep.min(MAX_SLEEP)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Drops reports received longer than `stats.retention` ago.
    pub async fn prune(&self, now: i64) -> u64 {
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        match self.store.prune_stats_reports(now.saturating_sub(retention)).await {
            Ok(pruned) => {
                if pruned > 0 {
                    tracing::info!(pruned, "dropped phone-home reports older than stats.retention");
                }
                pruned
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot drop old phone-home reports");
                0
            }
        }
    }

    /// Posts what is due at `now`; returns how many were posted. A summary
    /// that fails (its room gone, the homeserver down) is tried again with
    /// backoff; the others go on.
    pub async fn tick(&self, now: i64) -> usize {
        let mut posted = 0;
        for (index, scheduled) in self.summaries.iter().enumerate() {
            if self.backoff.lock().expect("not poisoned").get(&index).is_some_and(|(at, _)| *at > now) {
                continue;
            }
            match self.post_if_due(scheduled, now).await {
                Ok(done) => {
                    self.backoff.lock().expect("not poisoned").remove(&index);
                    posted += usize::from(done);
                }
                Err(error) => {
                    let mut backoff = self.backoff.lock().expect("not poisoned");
                    let failures = backoff.get(&index).map_or(0, |(_, n)| *n);
                    let wait = crate::clock::retry_delay(Duration::from_secs(60), Duration::from_secs(3600), failures);
                    backoff.insert(index, (now + wait.as_millis() as i64, failures + 1));
                    tracing::warn!(
                        room = scheduled.room,
                        schedule = scheduled.schedule.text,
                        error = format!("{error:#}"),
                        retry_in = ?wait,
                        "cannot post a scheduled summary; will retry"
                    );
                }
            }
        }
        posted
    }

    async fn room_id(&self, room: &str) -> anyhow::Result<String> {
        match &self.homeserver {
            Some(homeserver) if !room.starts_with('!') => Ok(homeserver.resolve_room(room).await?.to_string()),
            _ => Ok(room.to_owned()),
        }
    }

    /// Posts one summary if its period has come; whether it did.
    async fn post_if_due(&self, scheduled: &Scheduled, now: i64) -> anyhow::Result<bool> {
        let room_id = self.room_id(&scheduled.room).await?;
        let key = scheduled.schedule.key();
        let last = self.store.summary_last_sent(&room_id, &key).await?;
        let period = match due(&scheduled.schedule, last, now) {
            Due::Nothing => return Ok(false),
            Due::Start(period) => {
                tracing::info!(room = scheduled.room, schedule = key, "scheduled summary set up");
                self.store.record_summary_sent(&room_id, &key, period, now, None).await?;
                return Ok(false);
            }
            Due::Post(period) => period,
        };
        // The whole days before the period: the same summary whenever it is
        // posted (late, after downtime), and no day cut short.
        let as_of = utc_day(period) * DAY_MS - 1;
        let mut summary = Summary::load(&self.store, Scope::Server, scheduled.days, as_of).await?;
        if !scheduled.include_top {
            summary.top_rooms.clear();
            summary.top_senders.clear();
        }
        let (notice, image) = render(&summary, &self.prefix).await;
        let to = Destination { room_id: room_id.clone(), in_reply_to: None };
        // Keys from the period: a post retried soon after a crash is the same post.
        let key_base = format!("stats-{}-{period}", crate::notice::hashed_key(&format!("{room_id}\n{key}"), 12));
        let event_id = self.sink.post(&to, &key_base, &notice).await?;
        if let Some(image) = &image
            && let Err(error) = self.sink.post_image(&to, &format!("{key_base}-chart"), image).await
        {
            tracing::warn!(error = format!("{error:#}"), "cannot post the summary's chart; the text is posted");
        }
        self.store.record_summary_sent(&room_id, &key, period, now, Some(&event_id)).await?;
        self.metrics.summaries_posted.inc();
        tracing::info!(room = scheduled.room, schedule = key, period, "scheduled summary posted");
        Ok(true)
    }
}
