//! Posting a summary: its text, then its chart (uploaded), through a sink;
//! on request (`!stats`) and on schedule.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::chart;
use super::schedule::{Due, Schedule, due};
use super::summary::{Scope, Summary};
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::notice::{Destination, Image, Notice, Sink};
use crate::store::Store;

/// A summary's text and chart. A chart that cannot be drawn leaves the text alone.
pub fn render(summary: &Summary, prefix: &str) -> (Notice, Option<Image>) {
    let notice = summary.notice(prefix);
    let image = match chart::render(&summary.chart()) {
        Ok(chart) => Some(Image {
            png: chart.png,
            width: chart.width,
            height: chart.height,
            name: format!("housekeep-stats-{}.png", super::summary::date(summary.last_day)),
        }),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "cannot draw the stats chart; posting the text alone");
            None
        }
    };
    (notice, image)
}

/// One scheduled summary, with its room resolved.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub room_id: String,
    pub schedule: Schedule,
    pub days: u32,
}

/// Posts scheduled summaries when they are due, until shutdown. `clock`
/// gives the time (tests set it).
pub struct Scheduler {
    pub store: Store,
    pub sink: Arc<dyn Sink>,
    pub metrics: Arc<Metrics>,
    pub summaries: Vec<Scheduled>,
    pub prefix: String,
    /// Reports received longer ago are dropped (once a day).
    pub retention: Duration,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
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
            if last_prune.is_none_or(|at| now - at > 86_400_000) {
                let before = now.saturating_sub(self.retention.as_millis() as i64);
                match self.store.prune_stats_reports(before).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "dropped phone-home reports older than stats.retention"),
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot drop old phone-home reports"),
                }
                last_prune = Some(now);
            }
            if let Err(error) = self.tick(now).await {
                tracing::warn!(error = format!("{error:#}"), "scheduled summaries: will try again");
            }
            let next = self.summaries.iter().filter_map(|s| s.schedule.next_after(now)).min();
            let sleep = next.map_or(MAX_SLEEP, |at| Duration::from_millis(at.saturating_sub(now).max(0) as u64));
            tokio::select! {
                _ = tokio::time::sleep(sleep.min(MAX_SLEEP)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Posts what is due at `now`; returns how many were posted.
    pub async fn tick(&self, now: i64) -> anyhow::Result<usize> {
        let mut posted = 0;
        for scheduled in &self.summaries {
            let text = &scheduled.schedule.text;
            let last = self.store.summary_last_sent(&scheduled.room_id, text).await?;
            match due(&scheduled.schedule, last, now) {
                Due::Nothing => {}
                Due::Start(period) => {
                    tracing::info!(room = scheduled.room_id, schedule = text, "scheduled summary set up");
                    self.store.record_summary_sent(&scheduled.room_id, text, period, now, None).await?;
                }
                Due::Post(period) => {
                    let summary = Summary::load(&self.store, Scope::Server, scheduled.days, period).await?;
                    let (notice, image) = render(&summary, &self.prefix);
                    let to = Destination { room_id: scheduled.room_id.clone(), in_reply_to: None };
                    // Keys from the period: a post retried after a crash is the same post.
                    let key = format!("stats-{}-{period}", short_hash(&format!("{}\n{text}", scheduled.room_id)));
                    let event_id = self.sink.post(&to, &key, &notice).await?;
                    if let Some(image) = &image
                        && let Err(error) = self.sink.post_image(&to, &format!("{key}-chart"), image).await
                    {
                        tracing::warn!(error = format!("{error:#}"), "cannot post the summary's chart");
                    }
                    self.store.record_summary_sent(&scheduled.room_id, text, period, now, Some(&event_id)).await?;
                    self.metrics.summaries_posted.inc();
                    tracing::info!(room = scheduled.room_id, schedule = text, period, "scheduled summary posted");
                    posted += 1;
                }
            }
        }
        Ok(posted)
    }
}

fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))[..12].to_owned()
}
