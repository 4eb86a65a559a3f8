//! A moderator verifies the bot's device with emoji, as they verify a
//! person's: from their client, "Verify" on the bot's device (to-device
//! SAS). The bot cannot look at a screen, so it shows its seven emoji in
//! the admin room; the moderator compares them with their client's and,
//! when they match, presses "They match" there and reacts ✅ to the bot's
//! message, which is the bot's "they match".
//!
//! Only a moderator's request is taken (others are cancelled, logged and
//! counted), only by the same moderator's ✅, at most [`UNDER_WAY`] at a
//! time, all of it within [`PATIENCE`] (the protocol's timeout for a
//! request). The library may end an emoji comparison earlier (5 minutes
//! after it started, or a minute without a message from the other side),
//! when a transaction reaches the machine after that.
//!
//! What it proves: the two devices' key exchange had no one in between,
//! *if* the emoji the moderator compares with are the bot's. The copy in
//! the room comes through the homeserver, as do the ✅ and the key
//! exchange itself, so it guards against everyone but the homeservers
//! (the bot's and, over federation, the moderator's); against them,
//! compare with the emoji in housekeep's log (INFO), which they do not
//! carry (README, "Verifying the bot"). What the
//! bot's side of it changes: it marks the moderator's device verified and
//! signs their identity; who may command it is still decided by user ID.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Bot;
use crate::clock::now_ms;
use crate::crypto::{Crypto, Flow, Progress, VerificationRequested, emoji_line};
use crate::metrics::RejectReason;
use crate::notice::{Destination, Notice};

/// How many verifications may be under way at once.
pub const UNDER_WAY: usize = 4;

/// How long a verification may take from request to done (the spec's
/// timeout for a request: 10 minutes).
pub const PATIENCE: Duration = Duration::from_secs(600);

/// How long the bot waits for the client's "done" once both sides
/// confirmed, before it finishes without it.
const DONE_GRACE: Duration = Duration::from_secs(5);

/// The verifications whose emoji are shown in the admin room, by the
/// event ID of that message: a ✅ to it is the bot's "they match".
#[derive(Default)]
pub struct Verifications {
    shown: Mutex<HashMap<String, Shown>>,
}

struct Shown {
    /// The moderator whose device is being verified: only their ✅ counts.
    user: String,
    matched: Option<oneshot::Sender<()>>,
}

/// What a ✅ to a message did, when the message shows a verification's emoji.
pub enum Matched {
    /// The moderator said they match: the bot confirms.
    Confirmed,
    /// Someone else's ✅, or a second one: nothing.
    Ignored(&'static str),
}

impl Verifications {
    /// A ✅ by `sender` to `event_id`: `None` when that message shows no
    /// verification's emoji.
    pub fn reaction(&self, event_id: &str, sender: &str) -> Option<Matched> {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let verification = shown.get_mut(event_id)?;
        if verification.user != sender {
            return Some(Matched::Ignored("ignored: only the verifying moderator's ✅ counts"));
        }
        match verification.matched.take() {
            Some(matched) => {
                let _ = matched.send(());
                Some(Matched::Confirmed)
            }
            None => Some(Matched::Ignored("ignored: already confirmed")),
        }
    }

    /// Waits for `user`'s ✅ to `event_id`; `None` when that message is
    /// already waited on.
    fn show(&self, event_id: &str, user: &str) -> Option<oneshot::Receiver<()>> {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        if shown.contains_key(event_id) {
            return None;
        }
        let (matched, said) = oneshot::channel();
        shown.insert(event_id.to_owned(), Shown { user: user.to_owned(), matched: Some(matched) });
        Some(said)
    }

    fn forget(&self, event_id: &str) {
        self.shown.lock().unwrap_or_else(|p| p.into_inner()).remove(event_id);
    }
}

/// Answers the verification requests the bot's device receives, until shutdown.
pub async fn run(
    bot: Arc<Bot>,
    crypto: Arc<Crypto>,
    mut requests: mpsc::Receiver<VerificationRequested>,
    shutdown: CancellationToken,
) {
    let mut under_way = tokio::task::JoinSet::new();
    // The flows under way, by requester and flow ID: a request sent twice
    // is one verification.
    let flows: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    loop {
        let request = tokio::select! {
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
            Some(_) = under_way.join_next() => continue,
            _ = shutdown.cancelled() => break,
        };
        let metrics = &bot.services().metrics;
        for _ in 0..crypto.take_dropped_requests() {
            metrics.reject(RejectReason::VerificationNotTaken);
        }
        while under_way.try_join_next().is_some() {}
        let flow_key = (request.user.clone(), request.flow_id.clone());
        let refusal = if request.user == bot.services().bot_user_id.as_str() {
            Some((RejectReason::VerificationFromNonModerator, "the bot's own user"))
        } else if flows.lock().unwrap_or_else(|p| p.into_inner()).contains(&flow_key) {
            tracing::info!(user = request.user, "a verification request sent again: already under way");
            continue;
        } else {
            match bot.is_moderator(&request.user).await {
                Ok(true) if under_way.len() < UNDER_WAY => None,
                Ok(true) => Some((RejectReason::VerificationNotTaken, "as many verifications are under way")),
                Ok(false) => Some((RejectReason::VerificationFromNonModerator, "not a moderator")),
                Err(_) => Some((RejectReason::VerificationNotTaken, "cannot tell whether the sender is a moderator")),
            }
        };
        if let Some((reason, why)) = refusal {
            tracing::info!(user = request.user, device = request.device, why, "refused a verification request");
            metrics.reject(reason);
            crypto.refuse_verification(&request).await;
            continue;
        }
        let guard = UnderWay::new(flows.clone(), flow_key);
        let (bot, crypto) = (bot.clone(), crypto.clone());
        under_way.spawn(async move {
            let _under_way = guard;
            verify(&bot, &crypto, &request).await;
        });
    }
}

/// A flow in the set of those under way, taken out when it ends (a panic
/// included).
struct UnderWay {
    flows: Arc<Mutex<HashSet<(String, String)>>>,
    key: (String, String),
}

impl UnderWay {
    fn new(flows: Arc<Mutex<HashSet<(String, String)>>>, key: (String, String)) -> Self {
        flows.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone());
        Self { flows, key }
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.flows.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// One verification, from accepting the request to done; an unfinished
/// one is cancelled and said so in the admin room.
async fn verify(bot: &Bot, crypto: &Crypto, request: &VerificationRequested) {
    let deadline = Instant::now() + PATIENCE;
    let flow = match crypto.incoming_verification(request).await {
        Ok(flow) => flow,
        Err(error) => {
            let error = format!("{error:#}");
            tracing::info!(user = request.user, device = request.device, error, "cannot take a verification request");
            return;
        }
    };
    // What its messages are sent as: a flow ID is the requesting client's
    // choice, and the homeserver answers a transaction ID it saw before
    // with the event it made then.
    let key = crate::notice::hashed_key(&format!("{} {} {}", request.user, request.flow_id, now_ms()), 32);
    let mut shown = None;
    let outcome = compare(bot, crypto, request, &flow, deadline, &key, &mut shown).await;
    if let Some(shown) = &shown {
        bot.verifications.forget(shown);
    }
    let VerificationRequested { user, device, .. } = request;
    let notice = match outcome {
        Ok(()) => {
            // Whether the bot signed their identity (they have one to sign).
            let signed = crypto.is_identity_verified(user).await.unwrap_or(false);
            tracing::info!(user, device, signed, "a moderator verified the bot's device");
            let signed = if signed { format!(" and signed {user}'s identity") } else { String::new() };
            Notice::new().line(&format!(
                "✅ Verified: {user}'s client now trusts housekeep's device {} (and housekeep's identity, if \
                 {user} has cross-signing); housekeep marked {device} verified{signed}.",
                crypto.device_id()
            ))
        }
        Err(error) => {
            tracing::info!(
                user,
                device,
                error = format!("{error:#}"),
                "a verification of the bot's device ended unfinished"
            );
            crypto.cancel_verification(&flow).await;
            Notice::new().line(&format!("The verification with {user}'s device {device} ended unfinished: {error:#}"))
        }
    };
    post(bot, &format!("verify-{key}-end"), &notice).await;
}

/// Accepts, shows the emoji, and confirms on the moderator's ✅.
async fn compare(
    bot: &Bot,
    crypto: &Crypto,
    request: &VerificationRequested,
    flow: &Flow,
    deadline: Instant,
    key: &str,
    shown: &mut Option<String>,
) -> anyhow::Result<()> {
    let VerificationRequested { user, device, .. } = request;
    crypto.accept_verification(flow).await?;
    tracing::info!(user, device, "accepted a moderator's request to verify the bot's device");
    // The moderator's client starts the emoji comparison ("Verify by emoji").
    let started = |p: &Progress| matches!(p, Progress::Started | Progress::Emoji(_));
    if crypto.wait_for_progress(flow, deadline, started).await? == Progress::Started {
        crypto.accept_sas(flow).await?;
    }
    let Progress::Emoji(emoji) = crypto.wait_for_progress(flow, deadline, |p| matches!(p, Progress::Emoji(_))).await?
    else {
        unreachable!("waited for the emoji")
    };
    let line = emoji_line(&emoji);
    tracing::info!(user, device, emoji = line, "the emoji of a verification of the bot's device");
    let notice = Notice::new()
        .line(&format!(
            "🔐 {user} is verifying housekeep's device {} from their device {device}. housekeep shows:",
            crypto.device_id()
        ))
        .line(&line)
        .line(
            "If your client shows the same seven emoji in the same order, press “They match” there and, within a \
             minute, react ✅ to this message. If they differ, press “They don't match”.",
        );
    let event_id = post(bot, &format!("verify-{key}-emoji"), &notice)
        .await
        .ok_or_else(|| anyhow::anyhow!("cannot show the emoji in the admin room"))?;
    let matched = bot
        .verifications
        .show(&event_id, user)
        .ok_or_else(|| anyhow::anyhow!("its emoji message is already another verification's"))?;
    *shown = Some(event_id);
    let done = |p: &Progress| *p == Progress::Done;
    tokio::select! {
        said = matched => {
            said.map_err(|_| anyhow::anyhow!("the bot stopped"))?;
            // The bot says they match after the moderator's client did.
            crypto.wait_for_progress(flow, deadline, |_| crypto.they_confirmed(flow)).await?;
            crypto.confirm_sas(flow).await?;
            // Both sides confirmed; the client's "done" may be lost on its
            // way (see `finish_without_their_done`): after a moment without
            // it, the bot finishes without it.
            let grace = deadline.min(Instant::now() + DONE_GRACE);
            if crypto.wait_for_progress(flow, grace, done).await.is_err() && flow.progress() != Progress::Done {
                tracing::info!(
                    user = request.user,
                    "finishing a verification without the client's final \"done\" (lost on its way, or late)"
                );
                crypto.finish_without_their_done(flow).await?;
                crypto.wait_for_progress(flow, deadline, done).await?;
            }
            Ok(())
        }
        // The moderator pressed "They don't match", or their client gave up
        // (done cannot come before the bot's own "they match").
        ended = crypto.wait_for_progress(flow, deadline, done) => ended.map(|_| ()),
    }
}

/// Posts into the admin room; its event ID, or `None` (logged) when it cannot.
async fn post(bot: &Bot, key: &str, notice: &Notice) -> Option<String> {
    let to = Destination { room_id: bot.admin_room_id.to_string(), in_reply_to: None };
    match bot.sink.post(&to, key, notice).await {
        Ok(event_id) => Some(event_id),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "cannot post a verification's message in the admin room");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_verifying_moderators_first_check_mark_confirms() {
        let verifications = Verifications::default();
        assert!(verifications.reaction("$emoji", "@mod:hs").is_none(), "no verification shown there");
        let mut said = verifications.show("$emoji", "@mod:hs").expect("shown");
        assert!(verifications.show("$emoji", "@mod:hs").is_none(), "one verification a message");
        assert!(matches!(verifications.reaction("$emoji", "@other:hs"), Some(Matched::Ignored(_))));
        assert!(said.try_recv().is_err(), "someone else's ✅ says nothing");
        assert!(matches!(verifications.reaction("$emoji", "@mod:hs"), Some(Matched::Confirmed)));
        assert!(said.try_recv().is_ok(), "the moderator's ✅ says they match");
        assert!(matches!(verifications.reaction("$emoji", "@mod:hs"), Some(Matched::Ignored(_))), "once");
        verifications.forget("$emoji");
        assert!(verifications.reaction("$emoji", "@mod:hs").is_none());
    }
}
