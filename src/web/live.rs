//! Live updates: one poller reads the store's [`Watermark`] every second
//! while anyone listens, and each open page gets a server-sent `change`
//! event with it, first on connecting and then whenever it moves (a job
//! progressed, a report arrived, something was audited). A page carries the
//! watermark it was drawn at and the parts it shows (`data-seen`,
//! `data-live`); its script fetches the page again only when one of those
//! parts moved.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::watch;

use super::Shared;
use crate::store::{Store, Watermark};

const POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(super) struct Live {
    changes: watch::Receiver<Watermark>,
}

impl Live {
    /// Starts the poller; it stops when the dashboard's state is dropped.
    pub(super) fn new(store: Store) -> Self {
        let (sender, changes) = watch::channel(Watermark::default());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POLL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // `Live` keeps one receiver; each open page holds another.
                match sender.receiver_count() {
                    0 => break,
                    1 => continue,
                    _ => {}
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

    /// The last watermark read, as the pages' script reads it.
    pub(super) fn json(&self) -> String {
        json(&self.changes.borrow())
    }
}

fn json(seen: &Watermark) -> String {
    format!("{{\"jobs\":{},\"reports\":{},\"audit\":{}}}", seen.jobs_updated, seen.reports_received, seen.audit_id)
}

/// `GET /live`: a `change` event now and whenever the watermark moves.
pub(super) async fn events(State(state): Shared) -> impl IntoResponse {
    let mut changes = state.live.changes.clone();
    // The first event carries the watermark as it is now.
    changes.mark_changed();
    let stream = futures::stream::unfold(changes, |mut changes| async move {
        changes.changed().await.ok()?;
        let data = json(&changes.borrow_and_update());
        Some((Ok::<_, Infallible>(Event::default().event("change").data(data)), changes))
    });
    // A reverse proxy (nginx) would otherwise hold the events back.
    ([("x-accel-buffering", "no")], Sse::new(stream).keep_alive(KeepAlive::default()))
}
