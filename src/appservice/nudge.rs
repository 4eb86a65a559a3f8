//! The nudge: one event of the bot's own, sent when the stream has gone
//! quiet after Synapse may have recovered from an outage of ours, so that a
//! transaction Synapse stranded at the end of that recovery shows.
//!
//! Synapse's recoverer marks the appservice up once it finds nothing left
//! to resend; a transaction created in the moment between is never sent
//! until the next failure (see `transactions::refuse_once_behind_a_gap`).
//! Its hole shows when the next transaction arrives: on a busy server that
//! is the next event anywhere, on a quiet one it may be hours. So whenever a
//! recovery may have run (housekeep started, or answered a transaction with
//! an error) and no transaction has arrived for [`QUIET`], the bot sends a
//! `org.housekeep.nudge` event into the admin room (clients do not show
//! unknown event types). Its own transaction then arrives behind the hole,
//! which is asked for like any other (that answer is itself an error, so a
//! hole found costs a second round). When the round's nudge comes back, the
//! round is over; one that does not is sent again. Nudges follow each other
//! by 1, 2, 4 … up to 15 minutes (back to 1 after a quiet quarter of an
//! hour), so an outage or a database that fails again and again costs a
//! handful of nudges an hour, not one per error.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::homeserver::HomeserverClient;
use crate::metrics::Metrics;

/// The nudge's event type: unknown to clients, which do not show it.
pub const EVENT_TYPE: &str = "org.housekeep.nudge";
/// No transaction for this long after a possible recovery: nudge.
pub const QUIET: Duration = Duration::from_secs(10);
/// The least time between two nudges, doubled for each nudge that follows
/// another within [`SPACING_RESET`], up to [`SPACING_MOST`].
const SPACING_FIRST: Duration = Duration::from_secs(60);
const SPACING_MOST: Duration = Duration::from_secs(15 * 60);
const SPACING_RESET: Duration = Duration::from_secs(15 * 60);

/// Shared by the transaction handler (which reports what arrives and how it
/// was answered) and the worker that sends the nudges.
pub struct Nudge {
    state: Mutex<State>,
    wake: Notify,
}

struct State {
    /// What the nudge of the open round carries; `None`: no round open.
    round: Option<String>,
    /// When the last transaction arrived (or the round opened).
    last_arrival: Instant,
    /// When the last nudge was sent, and the least time before the next.
    last_sent: Option<(Instant, Duration)>,
}

impl Default for Nudge {
    /// Opens a round at once: a process that just started may have been
    /// down while events happened, and Synapse is recovering them.
    fn default() -> Self {
        Self {
            state: Mutex::new(State { round: Some(new_token()), last_arrival: Instant::now(), last_sent: None }),
            wake: Notify::new(),
        }
    }
}

impl Nudge {
    /// A transaction was answered with an error: Synapse starts its
    /// recoverer, whose end may strand one. A new round begins (a nudge
    /// already on its way may be delivered by that very recovery, so it
    /// does not close the new round).
    pub fn recovery_may_run(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.round = Some(new_token());
        state.last_arrival = Instant::now();
        drop(state);
        self.wake.notify_one();
    }

    /// A transaction was committed; `tokens` are the tokens of the nudges
    /// in it (the bot's own events of [`EVENT_TYPE`]).
    pub fn transaction_arrived<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state.lock().expect("not poisoned");
        state.last_arrival = Instant::now();
        let mut tokens = tokens.into_iter();
        if state.round.as_deref().is_some_and(|open| tokens.any(|token| token == open)) {
            state.round = None;
            tracing::debug!("the nudge came back: no transaction is stranded behind it");
        }
    }

    /// The token of the round open now, if any.
    pub fn open_round(&self) -> Option<String> {
        self.state.lock().expect("not poisoned").round.clone()
    }

    /// When the open round's nudge is due, and what it carries.
    fn due(&self) -> Option<(Instant, String)> {
        let state = self.state.lock().expect("not poisoned");
        let token = state.round.clone()?;
        let quiet_until = state.last_arrival + QUIET;
        let at = match state.last_sent {
            None => quiet_until,
            Some((sent, spacing)) => quiet_until.max(sent + spacing),
        };
        Some((at, token))
    }

    /// Notes a nudge as sent, before it is: its transaction may arrive
    /// before the homeserver answers the send.
    fn mark_sent(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        let spacing = match state.last_sent {
            Some((sent, spacing)) if sent.elapsed() < SPACING_RESET => (spacing * 2).min(SPACING_MOST),
            _ => SPACING_FIRST,
        };
        state.last_sent = Some((Instant::now(), spacing));
    }

    /// Sends each round's nudge into `room` when it is due, until shutdown.
    pub async fn run(&self, homeserver: HomeserverClient, room: String, metrics: &Metrics, stop: CancellationToken) {
        loop {
            let due = self.due();
            let wait = async {
                match &due {
                    Some((at, _)) => tokio::time::sleep_until(*at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => continue,
                () = wait => {}
            }
            let Some((at, token)) = due else { continue };
            // A transaction may have arrived while this slept: look again.
            if self.due().is_none_or(|(now_due, _)| now_due > at) {
                continue;
            }
            self.mark_sent();
            let (txn_id, content) = (format!("nudge-{token}-{}", crate::clock::now_ms()), content(&token));
            let sent = tokio::select! {
                () = stop.cancelled() => return,
                sent = homeserver.send_event(&room, EVENT_TYPE, &txn_id, &content) => sent,
            };
            match sent {
                Ok(event_id) => {
                    metrics.nudges_sent.inc();
                    tracing::info!(
                        room,
                        event_id,
                        "no transaction for {}s after the homeserver may have recovered from an outage of ours: \
                         sent a nudge, so that a transaction it stranded shows",
                        QUIET.as_secs()
                    );
                }
                Err(error) => tracing::warn!(room, %error, "cannot send the nudge; trying again later"),
            }
        }
    }
}

/// What a nudge says: its round's token, and in words what it is.
pub fn content(token: &str) -> Value {
    json!({
        "token": token,
        "body": "housekeep checks that the homeserver has sent it every event (nothing to do)",
    })
}

/// The token of a nudge event's content, if it is one.
pub fn token_of(content: &Value) -> Option<&str> {
    content.get("token").and_then(Value::as_str)
}

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_arrival(nudge: &Nudge) -> Instant {
        nudge.state.lock().unwrap().last_arrival
    }

    fn last_sent(nudge: &Nudge) -> Option<(Instant, Duration)> {
        nudge.state.lock().unwrap().last_sent
    }

    #[test]
    fn a_round_is_open_from_the_start_and_due_after_quiet() {
        let nudge = Nudge::default();
        let (at, token) = nudge.due().expect("open at start");
        assert_eq!(at, last_arrival(&nudge) + QUIET);
        std::thread::sleep(Duration::from_millis(5));
        nudge.transaction_arrived([]);
        let (later, same) = nudge.due().unwrap();
        assert!(later > at, "each arrival restarts the quiet");
        assert_eq!((later, same), (last_arrival(&nudge) + QUIET, token));
    }

    #[test]
    fn the_rounds_own_nudge_closes_it_and_an_old_one_does_not() {
        let nudge = Nudge::default();
        let first = nudge.open_round().unwrap();
        nudge.mark_sent();
        nudge.recovery_may_run();
        let second = nudge.open_round().unwrap();
        assert_ne!(first, second);
        nudge.transaction_arrived([first.as_str()]);
        assert_eq!(nudge.open_round(), Some(second.clone()), "a nudge sent before the error proves nothing after it");
        nudge.transaction_arrived(["forged", second.as_str()]);
        assert!(nudge.due().is_none(), "closed");
        nudge.recovery_may_run();
        assert!(nudge.due().is_some(), "an error opens another");
    }

    #[test]
    fn a_nudge_that_comes_back_before_its_send_returns_closes_the_round() {
        let nudge = Nudge::default();
        let token = nudge.open_round().unwrap();
        nudge.mark_sent();
        nudge.transaction_arrived([token.as_str()]);
        assert!(nudge.due().is_none());
    }

    #[test]
    fn nudges_in_a_row_are_spaced_further_and_further_apart() {
        let nudge = Nudge::default();
        let mut spacings = Vec::new();
        for _ in 0..6 {
            nudge.mark_sent();
            // An outage: every retry of the homeserver's is refused again.
            nudge.recovery_may_run();
            let (sent, spacing) = last_sent(&nudge).unwrap();
            assert_eq!(nudge.due().unwrap().0, (last_arrival(&nudge) + QUIET).max(sent + spacing));
            spacings.push(spacing.as_secs());
        }
        assert_eq!(spacings, [60, 120, 240, 480, 900, 900]);
    }
}
