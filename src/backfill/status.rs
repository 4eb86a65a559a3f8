//! `!backfill status` and `!backfill retry-failed`.

use super::kind::{BackfillKind, BackfillTally};
use super::plan::BackfillPlan;
use crate::jobs::{Kind, Services};
use crate::notice::Notice;
use crate::store::{FetchState, ItemState, Job, Store};

/// Rooms listed one by one.
const ROOMS_SHOWN: i64 = 20;
/// Abandoned downloads listed with their reason.
const ABANDONED_SHOWN: i64 = 5;

/// A backfill job's plan and tally, decoded.
fn read(job: &Job) -> (BackfillPlan, BackfillTally) {
    let plan = serde_json::from_value(job.plan.clone()).unwrap_or_else(|error| {
        tracing::info!(job = job.id, %error, "a backfill plan this version cannot read");
        BackfillPlan::default()
    });
    let tally = job.tally.clone().and_then(|t| serde_json::from_value(t).ok()).unwrap_or_default();
    (plan, tally)
}

/// Backfills running and finished, the rooms of the latest one a moderator
/// or the first start asked for (gap repairs are housekeep's own, and
/// small), and the media queue.
pub async fn status(services: &Services) -> anyhow::Result<Notice> {
    let store = &services.store;
    let jobs = store.recent_jobs_of_kind(BackfillKind::NAME, 5).await?;
    let mut notice = Notice::new().title("Backfill");
    if jobs.is_empty() {
        notice =
            notice.line(&format!("No backfill yet: {}backfill --all reads every room's history.", services.prefix));
    }
    for job in &jobs {
        let (plan, tally) = read(job);
        notice = notice.field(
            &format!("job {} [{}]", job.id, job.state.as_str()),
            &format!(
                "{}/{} rooms, {} events ({} new), {} pages; asked by {}",
                tally.rooms_done + tally.rooms_failed,
                job.total_count,
                tally.events,
                tally.events_new,
                tally.pages,
                if plan.why.is_empty() { job.requested_by.as_str() } else { plan.why.as_str() }
            ),
        );
    }
    if let Some(job) = latest_asked_for(store).await? {
        let mut rooms = Vec::new();
        for state in [ItemState::Pending, ItemState::Failed, ItemState::Done] {
            for item in store.job_items_in_state(&job.id, state, ROOMS_SHOWN - rooms.len() as i64).await? {
                let media = store.fetch_state_counts(Some(&item.key)).await?;
                let count = |s: FetchState| media.iter().find(|(state, _)| *state == s).map_or(0, |(_, n)| *n);
                let label = match state {
                    ItemState::Pending if item.detail.as_deref().is_some_and(|d| d.starts_with("reading")) => "reading",
                    ItemState::Pending => "not read yet",
                    ItemState::Done => "done",
                    ItemState::Failed | ItemState::Skipped => "failed",
                };
                rooms.push(format!(
                    "{} [{label}] {}; media fetched {}, queued {}, to retry {}, abandoned {}, unavailable {}",
                    item.key,
                    item.detail.as_deref().unwrap_or(""),
                    count(FetchState::Fetched),
                    count(FetchState::Queued),
                    count(FetchState::Failed),
                    count(FetchState::Abandoned),
                    count(FetchState::Unavailable),
                ));
            }
        }
        let counts = store.job_item_counts(&job.id).await?;
        let counts: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect();
        let shown = rooms.len();
        notice = notice.line(&format!("Rooms of job {} ({shown} shown; {}):", job.id, counts.join(", "))).list(rooms);
    }
    let totals = store.fetch_state_counts(None).await?;
    let totals: Vec<String> = totals.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect();
    notice = notice.field("media, all rooms", &if totals.is_empty() { "none".to_owned() } else { totals.join(", ") });
    let abandoned = store.abandoned_media(ABANDONED_SHOWN).await?;
    if !abandoned.is_empty() {
        notice = notice
            .line(&format!("Abandoned downloads ({}backfill retry-failed tries them again):", services.prefix))
            .list(abandoned.iter().map(|(m, e)| format!("{}: {}", m.mxc(), e.as_deref().unwrap_or("?"))));
    }
    Ok(notice)
}

/// Queues every failed and abandoned download again, and asks for the rooms
/// the latest backfill could not read to be read again.
pub async fn retry_failed(services: &Services) -> anyhow::Result<Notice> {
    let store = &services.store;
    let media = store.retry_failed_media().await?;
    services.media_wake.notify_one();
    let mut rooms = Vec::new();
    if let Some(job) = latest_asked_for(store).await? {
        rooms =
            store.job_items_in_state(&job.id, ItemState::Failed, 10_000).await?.into_iter().map(|i| i.key).collect();
        store.request_backfill(&rooms, &format!("{}backfill retry-failed", services.prefix)).await?;
    }
    Ok(Notice::new().line(&format!(
        "Queued {media} failed media downloads again, and {} rooms the latest backfill could not read.",
        rooms.len()
    )))
}

/// The newest backfill that is not a gap repair.
async fn latest_asked_for(store: &Store) -> anyhow::Result<Option<Job>> {
    let jobs = store.recent_jobs_of_kind(BackfillKind::NAME, 20).await?;
    Ok(jobs.into_iter().find(|job| !read(job).0.gap_repair))
}
