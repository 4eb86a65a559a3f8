//! The nudge: one event of the bot's own, sent once the stream is quiet
//! after Synapse may have recovered from an outage of ours, whose
//! transaction is refused once so that Synapse sends first any transaction
//! it stranded.
//!
//! Synapse's recoverer marks the appservice up once it finds nothing left
//! to resend; a transaction created in the moment between is never sent
//! until the next failed send (see `transactions::refuse_once_behind_a_gap`).
//! A hole in the transaction numbers shows it only where housekeep is the
//! server's one appservice (Synapse numbers all appservices' transactions
//! from one sequence), and only once a later transaction arrives. So
//! whenever a recovery may have run (housekeep started, or answered a
//! transaction with an error) and no transaction has arrived for [`QUIET`],
//! the bot sends an `org.housekeep.nudge` event into the admin room
//! (clients do not show unknown event types). The transaction that carries
//! it is answered 503 once: that failed send starts Synapse's recoverer,
//! which resends from its oldest unsent transaction, a stranded one first,
//! whatever the numbers, and then the nudge's. That deliberate refusal
//! opens no new round (it would refuse the next nudge, and so on). When the
//! round's nudge comes back, the round is over; one that does not is sent
//! again. Nudges follow each other by 1, 2, 4 … up to 15 minutes (back to 1
//! after a quiet half hour), so an outage or a database that fails again
//! and again costs a handful of nudges an hour, not one per error.
//!
//! Why only once the stream is quiet: the end of every recovery, the one
//! the refusal starts too, strands what Synapse creates in those
//! milliseconds. On a quiet stream that is nothing; on a busy one the
//! refusal would trade one such chance for another, and there the next
//! transaction shows a hole anyway (where the numbering allows).
//!
//! What it costs: until Synapse's recoverer retries, Synapse holds the
//! appservice down: what it creates then is delayed, and what it never
//! stores is dropped, as during any outage (ephemeral events, to-device
//! messages, device list changes and key counts). Its recoverer would retry
//! after 2 s; a quarter of a second after the refusal the bot asks for the
//! retry at once (the appservice ping: Synapse's answer to a ping it could
//! deliver is to retry now), so the window is about that quarter second.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::homeserver::{HomeserverClient, RetryPolicy};
use crate::metrics::Metrics;

/// The nudge's event type: unknown to clients, which do not show it.
pub const EVENT_TYPE: &str = "org.housekeep.nudge";
/// No transaction for this long after a possible recovery: nudge.
pub const QUIET: Duration = Duration::from_secs(10);
/// After refusing the nudge's transaction, how long before asking the
/// homeserver to retry at once: Synapse handles the refusal (housekeep
/// marked down, its recoverer started) after the answer, in the background,
/// and a ping before its recoverer exists does nothing.
const HURRY_AFTER: Duration = Duration::from_millis(250);
/// The least time between two nudges, doubled for each nudge that follows
/// another within [`SPACING_RESET`], up to [`SPACING_MOST`].
const SPACING_FIRST: Duration = Duration::from_secs(60);
const SPACING_MOST: Duration = Duration::from_secs(15 * 60);
/// Above [`SPACING_MOST`]: nudges at the widest spacing stay there.
const SPACING_RESET: Duration = Duration::from_secs(30 * 60);

/// Shared by the transaction handler (which reports what arrives and how it
/// was answered) and the worker that sends the nudges.
pub struct Nudge {
    state: Mutex<State>,
    wake: Notify,
}

struct State {
    /// The open round; `None`: no round open.
    round: Option<Round>,
    /// When the last transaction arrived (or the round opened).
    last_arrival: Instant,
    /// When the last nudge was sent, and the least time before the next.
    last_sent: Option<(Instant, Duration)>,
}

/// A round: a recovery may have run, and no nudge has come back since.
struct Round {
    /// What the round's nudge carries.
    token: String,
    /// The transaction refused once because it carried the round's nudge.
    refused: Option<Refusal>,
}

struct Refusal {
    txn_id: String,
    at: Instant,
    /// Whether the homeserver was asked to retry at once.
    hurried: bool,
}

impl Round {
    fn new() -> Self {
        Self { token: new_token(), refused: None }
    }

    fn refused_txn_id(&self) -> Option<&str> {
        self.refused.as_ref().map(|refused| refused.txn_id.as_str())
    }
}

impl Default for Nudge {
    /// Opens a round at once: a process that just started may have been
    /// down while events happened, and Synapse is recovering them.
    fn default() -> Self {
        Self {
            state: Mutex::new(State { round: Some(Round::new()), last_arrival: Instant::now(), last_sent: None }),
            wake: Notify::new(),
        }
    }
}

impl Nudge {
    /// Transaction `txn_id` was answered with an error: Synapse starts its
    /// recoverer, whose end may strand one. A new round begins (a nudge
    /// already on its way may be delivered by that very recovery, so it
    /// does not close the new round), unless the error was the round's own
    /// refusal of its nudge ([`Nudge::refuse_once`]).
    pub fn error_answered(&self, txn_id: &str) {
        let mut state = self.state.lock().expect("not poisoned");
        if state.round.as_ref().and_then(Round::refused_txn_id) == Some(txn_id) {
            return;
        }
        state.round = Some(Round::new());
        state.last_arrival = Instant::now();
        drop(state);
        self.wake.notify_one();
    }

    /// Whether transaction `txn_id`, carrying the bot's nudges `tokens`, is
    /// to be refused: the first time the open round's nudge arrives, so
    /// that Synapse sends whatever it stranded before it (see the module).
    pub fn refuse_once<'a>(&self, txn_id: &str, tokens: impl IntoIterator<Item = &'a str>) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        let Some(round) = state.round.as_mut() else { return false };
        if round.refused.is_some() || !tokens.into_iter().any(|token| token == round.token) {
            return false;
        }
        round.refused = Some(Refusal { txn_id: txn_id.to_owned(), at: Instant::now(), hurried: false });
        drop(state);
        self.wake.notify_one();
        true
    }

    /// When to ask the homeserver to retry the refused transaction at once.
    fn hurry_due(&self) -> Option<Instant> {
        let state = self.state.lock().expect("not poisoned");
        let refused = state.round.as_ref()?.refused.as_ref()?;
        (!refused.hurried).then_some(refused.at + HURRY_AFTER)
    }

    /// Whether the homeserver is to be asked now; only once per refusal.
    fn take_hurry(&self) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        let Some(refused) = state.round.as_mut().and_then(|round| round.refused.as_mut()) else { return false };
        !std::mem::replace(&mut refused.hurried, true)
    }

    /// A transaction was committed; `tokens` are the tokens of the nudges
    /// in it (the bot's own events of [`EVENT_TYPE`]).
    pub fn transaction_arrived<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state.lock().expect("not poisoned");
        state.last_arrival = Instant::now();
        let mut tokens = tokens.into_iter();
        if state.round.as_ref().is_some_and(|open| tokens.any(|token| token == open.token)) {
            state.round = None;
            tracing::debug!("the round's nudge came back: the round is over");
        }
    }

    /// The transaction refused because it carried the open round's nudge,
    /// while that round is open: Synapse resends it.
    pub fn refused_transaction(&self) -> Option<String> {
        let state = self.state.lock().expect("not poisoned");
        state.round.as_ref().and_then(Round::refused_txn_id).map(str::to_owned)
    }

    /// The token of the round open now, if any.
    pub fn open_round(&self) -> Option<String> {
        self.state.lock().expect("not poisoned").round.as_ref().map(|round| round.token.clone())
    }

    /// When the open round's nudge is due, and what it carries.
    fn due(&self) -> Option<(Instant, String)> {
        let state = self.state.lock().expect("not poisoned");
        let token = state.round.as_ref()?.token.clone();
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

    /// Sends each round's nudge into `room` when it is due, and asks the
    /// homeserver (appservice `appservice_id`) to retry at once after its
    /// refusal, until shutdown.
    pub async fn run(
        &self,
        homeserver: HomeserverClient,
        appservice_id: &str,
        room: String,
        metrics: &Metrics,
        stop: CancellationToken,
    ) {
        let until = async |at: Option<Instant>| match at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        };
        loop {
            let due = self.due();
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => continue,
                () = until(self.hurry_due()) => {
                    if self.take_hurry() {
                        hurry(&homeserver, appservice_id).await;
                    }
                    continue;
                }
                () = until(due.as_ref().map(|(at, _)| *at)) => {}
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
                         sent a nudge, whose transaction is refused once so that the homeserver sends first any \
                         transaction it stranded",
                        QUIET.as_secs()
                    );
                }
                Err(error) => tracing::warn!(room, %error, "cannot send the nudge; trying again later"),
            }
        }
    }
}

/// Asks the homeserver to retry the refused transaction now rather than in
/// 2 s: Synapse answers an appservice ping it could deliver by retrying
/// (`force_retry`).
async fn hurry(homeserver: &HomeserverClient, appservice_id: &str) {
    match homeserver.clone().with_retry(RetryPolicy::ONCE).ping_appservice(appservice_id).await {
        Ok(_) => tracing::info!("asked the homeserver to resend the nudge's transaction at once (appservice ping)"),
        Err(error) => tracing::info!(
            %error,
            "cannot ask the homeserver to resend at once (appservice ping); it retries on its own within seconds"
        ),
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
        nudge.error_answered("error");
        let second = nudge.open_round().unwrap();
        assert_ne!(first, second);
        nudge.transaction_arrived([first.as_str()]);
        assert_eq!(nudge.open_round(), Some(second.clone()), "a nudge sent before the error proves nothing after it");
        nudge.transaction_arrived(["forged", second.as_str()]);
        assert!(nudge.due().is_none(), "closed");
        nudge.error_answered("error");
        assert!(nudge.due().is_some(), "an error opens another");
    }

    #[test]
    fn the_transaction_with_the_rounds_nudge_is_refused_once_and_opens_no_round() {
        let nudge = Nudge::default();
        let token = nudge.open_round().unwrap();
        assert!(!nudge.refuse_once("7", ["forged", "other"]), "only the round's own token");
        assert!(nudge.refuse_once("8", ["forged", token.as_str()]));
        assert_eq!(nudge.refused_transaction().as_deref(), Some("8"));
        assert!(nudge.hurry_due().is_some_and(|at| at > Instant::now()), "the homeserver asked soon after");
        assert!(nudge.take_hurry());
        assert!(!nudge.take_hurry() && nudge.hurry_due().is_none(), "once");
        nudge.error_answered("8");
        assert_eq!(nudge.open_round(), Some(token.clone()), "its own refusal is no outage");
        assert!(!nudge.refuse_once("8", [token.as_str()]), "the resend is taken");
        nudge.transaction_arrived([token.as_str()]);
        assert!(nudge.open_round().is_none(), "and closes the round");
        assert_eq!(nudge.refused_transaction(), None);

        nudge.error_answered("9");
        let next = nudge.open_round().unwrap();
        assert!(!nudge.refuse_once("10", [token.as_str()]), "an old round's nudge is taken as it comes");
        assert!(nudge.refuse_once("11", [next.as_str()]), "each round refuses its own once");
        nudge.error_answered("12");
        assert_ne!(nudge.open_round(), Some(next), "another transaction's error is an outage");
    }

    #[test]
    fn nothing_to_hurry_without_a_refusal() {
        let nudge = Nudge::default();
        assert!(nudge.hurry_due().is_none());
        assert!(!nudge.take_hurry());
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
            nudge.error_answered("error");
            let (sent, spacing) = last_sent(&nudge).unwrap();
            assert_eq!(nudge.due().unwrap().0, (last_arrival(&nudge) + QUIET).max(sent + spacing));
            spacings.push(spacing.as_secs());
        }
        assert_eq!(spacings, [60, 120, 240, 480, 900, 900]);
    }
}
