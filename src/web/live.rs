//! Live updates: one poller reads the store's [`Watermark`] every second
//! while anyone listens, and each open page gets a server-sent `change`
//! event when it moves (a job progressed, a report arrived, something was
//! audited). The page's script then fetches itself and swaps its content.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::watch;

use super::Shared;
use crate::store::{Store, Watermark};

const POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(super) struct Live {
    changes: watch::Receiver<Watermark>,
}

impl Live {
    /// Starts the poller (it stops with the runtime).
    pub(super) fn new(store: Store) -> Self {
        let (sender, changes) = watch::channel(Watermark::default());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POLL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // The receiver kept here counts as one.
                if sender.receiver_count() <= 1 {
                    continue;
                }
                match store.watermark().await {
                    Ok(now) => {
                        sender.send_if_modified(|seen| std::mem::replace(seen, now) != now);
                    }
                    Err(error) => tracing::info!(error = format!("{error:#}"), "dashboard live updates: cannot read"),
                }
            }
        });
        Self { changes }
    }
}

/// `GET /live`: a `change` event whenever the watermark moves.
pub(super) async fn events(State(state): Shared) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = state.live.changes.clone();
    changes.mark_unchanged();
    let stream = futures::stream::unfold(changes, |mut changes| async move {
        changes.changed().await.ok()?;
        let seen = *changes.borrow_and_update();
        let data = format!(
            "{{\"jobs\":{},\"reports\":{},\"audit\":{}}}",
            seen.jobs_updated, seen.reports_received, seen.audit_id
        );
        Some((Ok(Event::default().event("change").data(data)), changes))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
