//! The admin-room bot: joins the admin room, answers moderators' commands,
//! accepts moderators' invites, and runs confirmed jobs.
//!
//! Commands arrive through the appservice transaction stream: the transaction
//! handler writes each one into `bot_inbox` in the same database transaction
//! as the index (see [`route`]), so a command the homeserver was told we
//! received is never lost. The inbox worker here handles items in order and
//! marks each handled together with its audit entries.

pub mod auth;
mod exec;
mod handle;
pub mod reply;
pub mod route;

use std::sync::Arc;
use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::Value;
use tokio::sync::Notify;

use crate::homeserver::HomeserverClient;
use crate::metrics::Metrics;
use crate::store::{InboxKind, PendingItem, Store};
use reply::Reply;

/// Text in one message (plain + HTML): events are at most 64 KiB with headers.
const MAX_REPLY_BYTES: usize = 48 * 1024;
/// Attempts at one inbox item before it is given up (logged, audited, counted).
const MAX_ATTEMPTS: i64 = 5;

/// Everything command handlers and jobs may use.
pub struct BotContext {
    pub store: Store,
    pub homeserver: HomeserverClient,
    pub metrics: Arc<Metrics>,
    pub bot_user_id: OwnedUserId,
    pub admin_room_id: OwnedRoomId,
    pub moderators: Vec<OwnedUserId>,
    pub moderator_power_level: Option<i64>,
    pub prefix: String,
    pub confirm_expiry: Duration,
    /// Rung after a transaction queued inbox items.
    pub inbox_wake: Arc<Notify>,
    /// Rung when a job was confirmed.
    pub jobs_wake: Arc<Notify>,
}

impl BotContext {
    /// Sends `reply` into `room_id`, as a reply to `in_reply_to`. `txn_key`
    /// makes the send idempotent: handling the same thing twice after a crash
    /// posts one message.
    pub async fn send(
        &self,
        room_id: &str,
        in_reply_to: Option<&str>,
        txn_key: &str,
        reply: &Reply,
    ) -> anyhow::Result<String> {
        let txn_id = format!("housekeep-{txn_key}");
        let content = reply.limited(MAX_REPLY_BYTES).content(in_reply_to);
        Ok(self.homeserver.send_event(room_id, "m.room.message", &txn_id, &content).await?)
    }

    /// Edits an earlier message of the bot (`m.replace`).
    pub async fn edit(&self, room_id: &str, original: &str, txn_key: &str, reply: &Reply) -> anyhow::Result<String> {
        let txn_id = format!("housekeep-{txn_key}");
        // An edit carries the text twice (fallback and m.new_content).
        let content = reply.limited(MAX_REPLY_BYTES / 2).edit_content(original);
        Ok(self.homeserver.send_event(room_id, "m.room.message", &txn_id, &content).await?)
    }
}

/// Starts the bot's background work: joining the admin room, the inbox
/// worker and the job runner. The returned set holds the two that must run
/// forever; the caller treats either ending (a panic) as fatal.
pub fn spawn(ctx: Arc<BotContext>) -> tokio::task::JoinSet<&'static str> {
    tokio::spawn(join_admin_room(ctx.clone()));
    let mut workers = tokio::task::JoinSet::new();
    let inbox = ctx.clone();
    workers.spawn(async move {
        run_inbox(inbox).await;
        "the inbox worker"
    });
    workers.spawn(async move {
        crate::jobs::run_jobs(ctx).await;
        "the job runner"
    });
    workers
}

/// Joins the admin room, retrying until it can (it may be invite-only and
/// not yet invite the bot; an invite from a moderator is accepted too).
async fn join_admin_room(ctx: Arc<BotContext>) {
    let mut delay = Duration::from_secs(2);
    loop {
        match ctx.homeserver.join(ctx.admin_room_id.as_str()).await {
            Ok(room_id) => {
                tracing::info!(%room_id, "joined the admin room");
                return;
            }
            Err(error) => {
                tracing::warn!(
                    room = %ctx.admin_room_id, %error, ?delay,
                    "cannot join the admin room yet (invite the bot, or make the room joinable); retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// Handles queued inbox items forever, oldest first.
async fn run_inbox(ctx: Arc<BotContext>) {
    loop {
        let pending = match ctx.store.pending_inbox(50).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot read the bot inbox; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if pending.is_empty() {
            tokio::select! {
                _ = ctx.inbox_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            continue;
        }
        for PendingItem { item, attempts } in pending {
            let result = handle::handle(&ctx, &item).await;
            let finished = match result {
                Ok(handled) => ctx.store.mark_handled(&item.event_id, &handled.outcome, &handled.audit).await,
                Err(error) if attempts + 1 >= MAX_ATTEMPTS => {
                    let error = format!("{error:#}");
                    tracing::error!(event_id = item.event_id, error, "giving up on an admin-room event");
                    ctx.metrics.bot_items_failed.inc();
                    if item.kind == InboxKind::Command {
                        let reply = Reply::new().line(&format!("Could not handle this command: {error}"));
                        let key = format!("reply-failed-{}", item.event_id);
                        if let Err(error) = ctx.send(&item.room_id, Some(&item.event_id), &key, &reply).await {
                            tracing::warn!(error = format!("{error:#}"), "could not tell the moderator either");
                        }
                    }
                    let audit = handle::failure_audit(&item, &error);
                    ctx.store.mark_handled(&item.event_id, &format!("failed: {error}"), &[audit]).await
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    tracing::warn!(
                        event_id = item.event_id,
                        attempt = attempts + 1,
                        error,
                        "handling failed; will retry"
                    );
                    let recorded = ctx.store.record_attempt(&item.event_id, &error).await;
                    // Back off before the next round so a down homeserver is not hammered.
                    tokio::time::sleep(Duration::from_secs(2u64.pow(attempts.clamp(0, 5) as u32))).await;
                    recorded
                }
            };
            if let Err(error) = finished {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot record an inbox item's outcome; it will be handled again"
                );
            }
        }
    }
}

/// The `m.relates_to.event_id` of a reaction.
fn reaction_target(event: &Value) -> Option<&str> {
    event.pointer("/content/m.relates_to/event_id").and_then(Value::as_str)
}
