//! The media worker: downloads everything queued in the `media` table (media
//! of live events first, then backfill's and older backlog), so transactions
//! are acknowledged without waiting for any download and nothing queued is
//! lost on a restart; after each round it enforces the hash blocklist on
//! what is known. Memory stays bounded: it takes a page of due media at a time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{MediaFetcher, blocklist};
use crate::clock::now_ms;

/// Due media taken per round.
const PAGE: i64 = 128;
const IDLE_POLL: Duration = Duration::from_secs(60);
/// How often to look again while every due media is being downloaded already.
const IN_FLIGHT_POLL: Duration = Duration::from_secs(2);

pub async fn run(fetcher: Arc<MediaFetcher>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let store = &fetcher.services().store;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let mut all_in_flight = false;
        if let Err(error) = blocklist::enforce(fetcher.services()).await {
            tracing::warn!(error = format!("{error:#}"), "cannot enforce the hash blocklist now; will retry");
        }
        match store.due_media(PAGE).await {
            Ok(due) if !due.is_empty() => {
                let counts = fetcher.fetch_all(due, &shutdown).await;
                tracing::debug!(?counts, "media worker round");
                // Every due media may be in flight already (a slow download,
                // or backfill's own): then wait instead of asking again at once.
                if counts.fetched + counts.failed + counts.abandoned + counts.unavailable > 0 {
                    continue;
                }
                all_in_flight = true;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot read the media queue; retrying"),
        }
        let idle = match store.next_media_due().await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms()).clamp(100, 60_000) as u64),
            _ => IDLE_POLL,
        };
        let idle = if all_in_flight { idle.max(IN_FLIGHT_POLL) } else { idle };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
