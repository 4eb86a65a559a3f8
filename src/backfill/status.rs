//! `!backfill status` and `!backfill retry-failed`.

use crate::jobs::Services;
use crate::notice::Notice;
use crate::store::{FetchState, ItemState, JobState};

/// Rooms listed one by one.
const ROOMS_SHOWN: i64 = 20;
/// Abandoned downloads listed with their reason.
const ABANDONED_SHOWN: i64 = 5;

/// Backfills running and finished, the latest one's rooms, and the media queue.
pub async fn status(services: &Services) -> anyhow::Result<Notice> {
    let store = &services.store;
    let jobs = store.recent_jobs_of_kind("backfill", 5).await?;
    let mut notice = Notice::new().title("Backfill");
    if jobs.is_empty() {
        notice =
            notice.line(&format!("No backfill yet: {}backfill --all reads every room's history.", services.prefix));
    }
    for job in &jobs {
        let tally = job.tally.clone().unwrap_or_default();
        notice = notice.field(
            &format!("job {} [{}]", job.id, job.state.as_str()),
            &format!(
                "{}/{} rooms, {} events ({} new), {} pages; asked by {}",
                tally["rooms_done"].as_i64().unwrap_or(0) + tally["rooms_failed"].as_i64().unwrap_or(0),
                job.total_count,
                tally["events"].as_i64().unwrap_or(0),
                tally["events_new"].as_i64().unwrap_or(0),
                tally["pages"].as_i64().unwrap_or(0),
                job.plan["why"].as_str().unwrap_or(&job.requested_by)
            ),
        );
    }
    if let Some(job) = jobs.first() {
        let mut rooms = Vec::new();
        for state in [ItemState::Pending, ItemState::Failed, ItemState::Done] {
            for item in store.job_items_in_state(&job.id, state, ROOMS_SHOWN - rooms.len() as i64).await? {
                let media = store.fetch_state_counts(Some(&item.key)).await?;
                let count = |s: FetchState| media.iter().find(|(state, _)| *state == s).map_or(0, |(_, n)| *n);
                let label = match state {
                    ItemState::Pending if job.state == JobState::Running => "reading",
                    ItemState::Pending => "not read yet",
                    ItemState::Done => "done",
                    ItemState::Failed | ItemState::Skipped => "failed",
                };
                rooms.push(format!(
                    "{} [{label}] {}; media fetched {}, to retry {}, abandoned {}, unavailable {}",
                    item.key,
                    item.detail.as_deref().unwrap_or(""),
                    count(FetchState::Fetched),
                    count(FetchState::Queued) + count(FetchState::Failed),
                    count(FetchState::Abandoned),
                    count(FetchState::Unavailable),
                ));
            }
        }
        let counts = store.job_item_counts(&job.id).await?;
        let shown = rooms.len();
        notice = notice.line(&format!("Rooms of job {} ({shown} shown, {counts:?}):", job.id)).list(rooms);
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
    if let Some(job) = store.recent_jobs_of_kind("backfill", 1).await?.first() {
        rooms =
            store.job_items_in_state(&job.id, ItemState::Failed, 10_000).await?.into_iter().map(|i| i.key).collect();
        store.request_backfill(&rooms, &format!("{}backfill retry-failed", services.prefix)).await?;
    }
    Ok(Notice::new().line(&format!(
        "Queued {media} failed media downloads again, and {} rooms the latest backfill could not read.",
        rooms.len()
    )))
}
