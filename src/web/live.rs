//! Live updates: one poller reads the store's [`Watermark`] every second
//! while anyone listens, and each open page gets a server-sent `change`
//! event with it, first on connecting and then whenever it moves (a job
//! progressed, a report arrived, something was audited). A page carries the
//! watermark it was drawn at and the parts it shows (`data-seen`,
//! `data-live`); its script fetches the page again only when one of those
//! parts moved. A stream lasts as long as its session (see [`events`]).

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::watch;

use super::layout::SignedIn;
use super::{Shared, WebState};
use crate::clock::now_ms;
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

/// How often an open stream checks that its user is still a moderator
/// (answered from memory until `web.recheck_moderator_every` has passed).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// `GET /live`: a `change` event now and whenever the watermark moves,
/// until the session ends: at its expiry, at a sign-out or `!dashboard
/// logout-all`, or when its user is no longer a moderator. Then a last
/// `signed-out` event says why and the stream closes (the page reloads to
/// the signed-out page).
pub(super) async fn events(State(state): Shared, Extension(who): Extension<SignedIn>) -> impl IntoResponse {
    let mut changes = state.live.changes.clone();
    // The first event carries the watermark as it is now.
    changes.mark_changed();
    let left_ms = u64::try_from(who.expires_at.saturating_sub(now_ms())).unwrap_or(0);
    let mut recheck = tokio::time::interval(CHECK_EVERY.min(state.moderators.every()));
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = Watch {
        expires: tokio::time::Instant::now() + Duration::from_millis(left_ms),
        ended: state.sign_ins.ended_sessions(),
        state,
        who,
        changes,
        recheck,
    };
    let stream = futures::stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        let (event, more) = match watch.next().await? {
            Next::Change(data) => (Event::default().event("change").data(data), Some(watch)),
            // The last one.
            Next::SignedOut(why) => (Event::default().event("signed-out").data(why), None),
        };
        Some((Ok::<_, Infallible>(event), more))
    });
    // A reverse proxy (nginx) would otherwise hold the events back.
    ([("x-accel-buffering", "no")], Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One open stream: what it sends, and what ends it.
struct Watch {
    state: std::sync::Arc<WebState>,
    who: SignedIn,
    changes: watch::Receiver<Watermark>,
    expires: tokio::time::Instant,
    ended: watch::Receiver<u64>,
    recheck: tokio::time::Interval,
}

enum Next {
    Change(String),
    SignedOut(&'static str),
}

impl Watch {
    /// The next event; `None` when the dashboard shuts down.
    async fn next(&mut self) -> Option<Next> {
        loop {
            tokio::select! {
                changed = self.changes.changed() => {
                    changed.ok()?;
                    return Some(Next::Change(json(&self.changes.borrow_and_update())));
                }
                () = tokio::time::sleep_until(self.expires) => return Some(Next::SignedOut("the session expired")),
                ended = self.ended.changed() => {
                    ended.ok()?;
                    // Some sessions ended: this one?
                    match self.state.store.session(&self.who.session_hash, now_ms()).await {
                        Ok(None) => return Some(Next::SignedOut("signed out")),
                        Ok(Some(_)) => {}
                        // Looked at again at the next end, or ended by the recheck.
                        Err(error) => tracing::info!(
                            error = format!("{error:#}"), "dashboard live updates: cannot read a session"
                        ),
                    }
                }
                _ = self.recheck.tick() => {
                    if !self.state.moderators.still_moderator(&self.who.user_id).await {
                        super::sign_in::end_demoted(&self.state, &self.who.user_id).await;
                        return Some(Next::SignedOut("no longer a moderator"));
                    }
                }
            }
        }
    }
}
