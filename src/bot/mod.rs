//! The chat front-end: the admin room. Joins it, answers moderators'
//! commands, accepts moderators' invites, and posts what jobs report.
//!
//! Commands arrive through the appservice transaction stream: the
//! transaction handler writes each one into `bot_inbox` in the same database
//! transaction as the index, so a command the homeserver was told we
//! received is never lost. The inbox worker (`inbox.rs`) handles items
//! concurrently, marks each handled together with its audit entries, and
//! survives a panic in any one of them.
//!
//! - `commands/`: the registry, one line per command (the commands live
//!   with what they work on; see `crate::command`), and `!help`.
//! - `handle.rs`: one inbox item: authorize once, parse, execute, reply.
//! - `auth.rs`: who is a moderator.
//! - `sink.rs`: notices into rooms, as `m.notice` messages.
//! - `verify.rs`: a moderator verifies the bot's device with emoji.

mod auth;
pub mod commands;
mod handle;
mod inbox;
pub mod sink;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use ruma::OwnedRoomId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::appservice::route::ENCRYPTED_ADMIN_ROOM;
use crate::command::{Context, Rules};
use crate::jobs::{Jobs, Services};
use crate::moderators::ModeratorRule;
use crate::notice::{Destination, Notice, Sink};
use crate::store::InboxItem;

pub use sink::RoomSink;

/// What the chat front-end knows: the runner, the admin room and its rules.
pub struct Bot {
    pub jobs: Arc<Jobs>,
    pub sink: Arc<dyn Sink>,
    pub admin_room_id: OwnedRoomId,
    /// Who may command it.
    pub moderators: ModeratorRule,
    pub prefix: String,
    /// What commands that act must go through, and where the dashboard is.
    pub rules: Rules,
    /// Rung after a transaction queued inbox items.
    pub inbox_wake: Arc<Notify>,
    /// The bot's device, when end-to-end encryption is on: encrypted
    /// commands are decrypted with it.
    pub crypto: Option<Arc<crate::crypto::Crypto>>,
    /// Verifications of the bot's device waiting for a moderator's ✅.
    pub verifications: verify::Verifications,
    /// The Megolm sessions (sender and session ID) whose unreadable message
    /// was answered: a client that did not share its key sends every
    /// message of that session without it, and one answer says it all.
    pub unreadable_sessions: AnsweredSessions,
}

/// The Megolm sessions already answered for, by sender and session ID.
#[derive(Default)]
pub struct AnsweredSessions(std::sync::Mutex<std::collections::HashSet<(String, String)>>);

impl AnsweredSessions {
    /// At most this many are remembered (then all are forgotten at once:
    /// an answer again is harmless).
    const KEPT: usize = 10_000;

    /// Whether this is the first time for `sender`'s `session` (and remembers it).
    pub fn first(&self, sender: &str, session: &str) -> bool {
        let mut answered = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if answered.len() >= Self::KEPT {
            answered.clear();
        }
        answered.insert((sender.to_owned(), session.to_owned()))
    }
}

impl Bot {
    pub fn services(&self) -> &Services {
        self.jobs.services()
    }

    /// What a command in `item` runs with.
    pub fn context<'a>(&'a self, item: &'a InboxItem) -> Context<'a> {
        Context { jobs: &self.jobs, item, rules: &self.rules }
    }

    /// Whether `item` (an encrypted message that could not be read) is the
    /// first of its sender's Megolm session to be answered since the start.
    pub fn first_unreadable_of_its_session(&self, item: &InboxItem) -> bool {
        let session = item.event.pointer("/content/session_id").and_then(serde_json::Value::as_str);
        session.is_none_or(|session| self.unreadable_sessions.first(&item.sender, session))
    }

    /// Replies to an event; `key` makes it idempotent across crashes.
    pub async fn reply(&self, room_id: &str, event_id: &str, key: &str, notice: &Notice) -> anyhow::Result<String> {
        let to = Destination { room_id: room_id.to_owned(), in_reply_to: Some(event_id.to_owned()) };
        self.sink.post(&to, key, notice).await
    }
}

/// Starts the bot's background work: joining the admin room and the inbox
/// worker. The returned set holds what must run until shutdown; the caller
/// treats anything in it ending early as fatal.
pub fn spawn(bot: Arc<Bot>, shutdown: CancellationToken) -> tokio::task::JoinSet<&'static str> {
    tokio::spawn(join_admin_room(bot.clone(), shutdown.clone()));
    let mut workers = tokio::task::JoinSet::new();
    let verifications = bot.crypto.clone().and_then(|crypto| Some((crypto.take_verification_requests()?, crypto)));
    if let Some((requests, crypto)) = verifications {
        let (bot, shutdown) = (bot.clone(), shutdown.clone());
        workers.spawn(async move {
            verify::run(bot, crypto, requests, shutdown).await;
            "the verification worker"
        });
    }
    workers.spawn(async move {
        inbox::run(bot, shutdown).await;
        "the inbox worker"
    });
    workers
}

/// Joins the admin room, retrying until it can (it may be invite-only and
/// not yet invite the bot; an invite from a moderator is accepted too).
async fn join_admin_room(bot: Arc<Bot>, shutdown: CancellationToken) {
    use backon::{ExponentialBuilder, Retryable};
    let room = bot.admin_room_id.as_str();
    let join = || async { bot.services().homeserver.join(room).await };
    let patiently = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(2))
        .with_max_delay(Duration::from_secs(300))
        .without_max_times();
    let joined = join.retry(patiently).notify(|error, delay| {
        tracing::warn!(
            room, %error, ?delay,
            "cannot join the admin room yet (invite the bot, or make the room joinable); retrying"
        );
    });
    tokio::select! {
        joined = joined => match joined {
            Ok(room_id) => {
                tracing::info!(%room_id, "joined the admin room");
                check_readable(&bot, &room_id).await;
            }
            Err(error) => tracing::error!(room, %error, "gave up joining the admin room"),
        },
        _ = shutdown.cancelled() => {}
    }
}

/// Says so, loudly, when the admin room is encrypted: the bot would
/// otherwise sit in it deaf to every command without a word.
async fn check_readable(bot: &Bot, room_id: &ruma::RoomId) {
    let state = match bot.services().homeserver.room_state(room_id.as_str()).await {
        Ok(state) => state,
        Err(error) => {
            tracing::warn!(%room_id, %error, "cannot read the admin room's state to check its encryption");
            return;
        }
    };
    if crate::homeserver::power::state_event(&state, "m.room.encryption").is_some() && bot.crypto.is_none() {
        tracing::error!(%room_id, "{ENCRYPTED_ADMIN_ROOM}");
        bot.services().metrics.waiting_for("an unencrypted admin room", ENCRYPTED_ADMIN_ROOM);
    }
}

#[cfg(test)]
mod tests {
    use super::AnsweredSessions;

    #[test]
    fn one_answer_per_senders_session() {
        let answered = AnsweredSessions::default();
        assert!(answered.first("@mod:hs", "s1"));
        assert!(!answered.first("@mod:hs", "s1"), "the same session again");
        assert!(answered.first("@mod:hs", "s2"), "a new session");
        assert!(answered.first("@other:hs", "s1"), "someone else's session of the same ID");
    }
}
