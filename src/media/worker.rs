//! The live media worker: downloads what live events referenced, from the
//! durable queue (the `media` table), so transactions are acknowledged
//! without waiting for any download and nothing queued is lost on a restart.
//! Memory stays bounded: it takes a page of due media at a time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::MediaFetcher;
use crate::clock::now_ms;

/// Due media taken per round.
const PAGE: i64 = 128;
const IDLE_POLL: Duration = Duration::from_secs(60);

pub async fn run(fetcher: Arc<MediaFetcher>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let store = &fetcher.services().store;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match store.due_media(PAGE).await {
            Ok(due) if !due.is_empty() => {
                let counts = fetcher.fetch_all(due, &shutdown).await;
                tracing::debug!(?counts, "media worker round");
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot read the media queue; retrying"),
        }
        let idle = match store.next_media_due().await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms()).clamp(100, 60_000) as u64),
            _ => IDLE_POLL,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
