//! The inbox worker: handles queued commands, reactions and invites, a few
//! at a time, so `!cancel` is answered while another command waits on a
//! slow or failing homeserver.
//!
//! An item that fails is tried again later (it waits, the worker does not),
//! up to [`MAX_ATTEMPTS`], each attempt after the homeserver client's own
//! retries. Then it is given up: logged at ERROR, audited, counted, and the
//! moderator told. A panic while handling an item is the same, at once: the
//! worker goes on. Invites are handled with a short retry policy, so a slow
//! remote server cannot hold a slot that a moderator's command needs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Bot;
use super::handle;
use crate::clock::now_ms;
use crate::metrics::PanicLabel;
use crate::notice::Notice;
use crate::store::{InboxItem, InboxKind, PendingItem};

/// Attempts at one inbox item before it is given up.
const MAX_ATTEMPTS: i64 = 3;
/// Items handled at once.
const CONCURRENCY: usize = 4;
/// How often the inbox is looked at when nothing rings.
const IDLE_POLL: Duration = Duration::from_secs(30);

pub(super) async fn run(bot: Arc<Bot>, shutdown: CancellationToken) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, InboxItem> = HashMap::new();
    loop {
        let busy: HashSet<&str> = in_flight.values().map(|item| item.event_id.as_str()).collect();
        let free = CONCURRENCY.saturating_sub(busy.len());
        let pending = match bot.services().store.pending_inbox((CONCURRENCY * 4) as i64).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot read the bot inbox; retrying");
                Vec::new()
            }
        };
        // One policy rule at a time (they are handled one by one anyway):
        // a list's burst must not hold every slot from moderators' commands.
        let mut policy_busy = in_flight.values().any(|item| item.kind == InboxKind::PolicyRule);
        let fresh: Vec<PendingItem> = pending
            .into_iter()
            .filter(|p| !busy.contains(p.item.event_id.as_str()))
            .filter(|p| {
                if p.item.kind != InboxKind::PolicyRule {
                    return true;
                }
                !std::mem::replace(&mut policy_busy, true)
            })
            .take(free)
            .collect();
        for pending in fresh {
            let item = pending.item.clone();
            let handle = tasks.spawn(handle_one(bot.clone(), pending));
            in_flight.insert(handle.id(), item);
        }
        // An item waiting after a failure is due at its own time.
        let idle = match bot.services().store.inbox_next_due().await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms()).clamp(50, 30_000) as u64),
            _ => IDLE_POLL,
        };
        tokio::select! {
            _ = bot.inbox_wake.notified() => {}
            Some(ended) = tasks.join_next_with_id() => reap(&bot, &mut in_flight, ended).await,
            _ = tokio::time::sleep(idle.min(IDLE_POLL)) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Let handlers in flight finish; what they do not finish stays queued.
    while let Some(ended) = tasks.join_next_with_id().await {
        reap(&bot, &mut in_flight, ended).await;
    }
}

/// A handler ended; a panic gives its item up with the panic's message.
async fn reap(
    bot: &Bot,
    in_flight: &mut HashMap<tokio::task::Id, InboxItem>,
    ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let id = match &ended {
        Ok((id, ())) => *id,
        Err(error) => error.id(),
    };
    let Some(item) = in_flight.remove(&id) else { return };
    if let Err(error) = ended
        && error.is_panic()
    {
        let message = crate::jobs::panic_message(error.into_panic());
        tracing::error!(event_id = item.event_id, panic = message, "handling an admin-room event panicked");
        bot.services().metrics.panics.get_or_create(&PanicLabel { worker: "inbox" }).inc();
        let error = format!("housekeep hit an internal error (a bug; please report it): {message}");
        give_up(bot, &item, &error).await;
    }
    bot.inbox_wake.notify_one();
}

async fn handle_one(bot: Arc<Bot>, PendingItem { item, attempts }: PendingItem) {
    let store = &bot.services().store;
    let recorded = match handle::handle(&bot, &item).await {
        Ok(handled) => store.mark_handled(&item.event_id, &handled.outcome, &handled.audit).await,
        Err(error) if attempts + 1 >= MAX_ATTEMPTS => {
            give_up(&bot, &item, &format!("{error:#}")).await;
            Ok(())
        }
        Err(error) => {
            let error = format!("{error:#}");
            let delay = crate::clock::retry_delay(Duration::from_secs(5), Duration::from_secs(600), attempts);
            tracing::warn!(
                event_id = item.event_id,
                attempt = attempts + 1,
                error,
                ?delay,
                "handling failed; will retry"
            );
            store.record_attempt(&item.event_id, &error, now_ms() + delay.as_millis() as i64).await
        }
    };
    if let Err(error) = recorded {
        tracing::warn!(error = format!("{error:#}"), "cannot record an inbox item's outcome; it will be handled again");
    }
}

/// Gives an item up: logged, counted, audited, and the moderator told.
async fn give_up(bot: &Bot, item: &InboxItem, error: &str) {
    tracing::error!(event_id = item.event_id, error, "giving up on an admin-room event");
    bot.services().metrics.bot_items_failed.inc();
    if item.kind == InboxKind::Encrypted && !bot.first_unreadable_of_its_session(item) {
        tracing::info!(
            event_id = item.event_id,
            sender = item.sender,
            "not answered: an earlier message of the same Megolm session was answered already"
        );
    } else if item.kind == InboxKind::Encrypted {
        // Plain words, as every reply: encrypted when the room is.
        // The reason in plain words when it is the usual one (see
        // `crypto::DecryptError::MissingKey`); any other stays in the log.
        let text = if error.contains("has no key for this message") {
            format!(
                "Could not read this encrypted message: {error}. Send it again; if that fails too, let your client \
                 share room keys with unverified devices, or verify housekeep's device."
            )
        } else {
            "Could not read this encrypted message (the reason is in housekeep's log).".to_owned()
        };
        let notice = Notice::new().line(&text);
        let key = format!("reply-failed-{}", item.event_id);
        if let Err(error) = bot.reply(&item.room_id, &item.event_id, &key, &notice).await {
            tracing::warn!(error = format!("{error:#}"), "could not tell the sender either");
        }
    }
    if item.kind == InboxKind::Command {
        let notice = Notice::new().line(&format!("Could not handle this command: {error}"));
        let key = format!("reply-failed-{}", item.event_id);
        if let Err(error) = bot.reply(&item.room_id, &item.event_id, &key, &notice).await {
            tracing::warn!(error = format!("{error:#}"), "could not tell the moderator either");
        }
    }
    if item.kind == InboxKind::PolicyRule {
        // The rule's slot stays unfinished: the next start reads the list
        // again and handles it then.
        let notice = Notice::new().line(&format!(
            "Could not handle a change of policy list {} ({}): {error}. It is tried again at the next start.",
            crate::text::line(&item.room_id),
            crate::text::line(item.event.get("type").and_then(serde_json::Value::as_str).unwrap_or("?")),
        ));
        bot.services()
            .tell_operators(&format!("policy-failed-{}", crate::notice::hashed_key(&item.event_id, 32)), &notice)
            .await;
    }
    let audit = handle::failure_audit(item, error);
    let outcome = format!("failed: {error}");
    if let Err(error) = bot.services().store.mark_handled(&item.event_id, &outcome, &[audit]).await {
        tracing::warn!(error = format!("{error:#}"), "cannot record that an inbox item was given up");
    }
}
