//! One inbox item: authorize once, then parse, execute and answer.

use serde_json::Value;

use super::Bot;
use super::commands::Command;
use crate::appservice::route::message_kind;
use crate::clock::now_ms;
use crate::command::{Executed, audit_for, confirm};
use crate::grammar::parse_command;
use crate::homeserver::{HsError, RetryPolicy};
use crate::notice::{Destination, Notice};
use crate::store::{AuditEntry, InboxItem, InboxKind};

/// What handling produced: an outcome word for the inbox row and the audit
/// entries committed with it.
pub struct Handled {
    pub outcome: String,
    pub audit: Vec<AuditEntry>,
}

impl Handled {
    fn new(outcome: &str, audit: Vec<AuditEntry>) -> Self {
        Self { outcome: outcome.to_owned(), audit }
    }
}

pub fn failure_audit(item: &InboxItem, error: &str) -> AuditEntry {
    audit_for(item, item.kind.as_str(), body(&item.event), &format!("failed: {error}"))
}

fn body(event: &Value) -> Option<&str> {
    event.pointer("/content/body").and_then(Value::as_str)
}

/// The `m.relates_to.event_id` of a reaction.
fn reaction_target(event: &Value) -> Option<&str> {
    event.pointer("/content/m.relates_to/event_id").and_then(Value::as_str)
}

pub async fn handle(ctx: &Bot, item: &InboxItem) -> anyhow::Result<Handled> {
    // Commands and ✅ count in the admin room as resolved now, whatever the
    // routing knew when they arrived (the room the alias pointed at last
    // time, or every room while the alias was not resolved yet). Invites
    // and policy rules come from other rooms.
    if matches!(item.kind, InboxKind::Command | InboxKind::Reaction | InboxKind::Encrypted)
        && item.room_id != ctx.admin_room_id.as_str()
    {
        ctx.services().metrics.reject(crate::metrics::RejectReason::NotAdminRoom);
        tracing::info!(
            room_id = item.room_id,
            sender = item.sender,
            kind = item.kind.as_str(),
            "ignored: not from the admin room (routed before the admin room's alias was resolved)"
        );
        return Ok(Handled::new("ignored: not the admin room", vec![]));
    }
    match item.kind {
        InboxKind::Command => handle_command(ctx, item).await,
        InboxKind::Reaction => handle_reaction(ctx, item).await,
        InboxKind::Invite => handle_invite(ctx, item).await,
        InboxKind::PolicyRule => {
            let (outcome, audit) = crate::policy_lists::handle_rule_change(&ctx.context(item)).await?;
            Ok(Handled::new(&outcome, audit))
        }
        InboxKind::Encrypted => handle_encrypted(ctx, item).await,
    }
}

/// How long a message waits for its room key (sent in a transaction of its
/// own, which may come after the message's) before the attempt fails; the
/// inbox tries again later.
const ROOM_KEY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// An encrypted event in the admin room: decrypted, then handled as the
/// command or ✅ it is (replies go out encrypted: see `sink`).
async fn handle_encrypted(ctx: &Bot, item: &InboxItem) -> anyhow::Result<Handled> {
    let Some(crypto) = &ctx.crypto else {
        return Ok(Handled::new("ignored: encrypted, and end-to-end encryption is off", vec![]));
    };
    // Only a moderator's message is waited for, retried and answered when it
    // cannot be read: anyone in the room could otherwise keep the inbox busy
    // and the room full of answers with messages the bot cannot decrypt.
    let moderator = ctx.is_moderator(&item.sender).await?;
    let patience = if moderator { ROOM_KEY_PATIENCE } else { std::time::Duration::ZERO };
    let plain = match crypto.decrypt(&item.room_id, &item.event, patience).await {
        Ok(plain) => plain,
        Err(error) if !moderator => {
            tracing::info!(
                event_id = item.event_id,
                sender = item.sender,
                %error,
                "ignored an encrypted message of a non-moderator that cannot be read"
            );
            ctx.services().metrics.reject(crate::metrics::RejectReason::UnreadableFromNonModerator);
            return Ok(Handled::new(
                &format!("ignored: a non-moderator's message that cannot be read ({error})"),
                vec![],
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let event_type = plain.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
    tracing::info!(event_id = item.event_id, sender = item.sender, event_type, "decrypted an admin-room event");
    let content = plain.get("content").cloned().unwrap_or_default();
    // Who sent it, where and when come from the envelope (the decryption
    // keeps them): only its type and content were encrypted.
    let inner = |kind| InboxItem { kind, event: plain.clone(), ..item.clone() };
    match message_kind(&event_type, &content, &ctx.prefix) {
        Some(InboxKind::Command) => handle_command(ctx, &inner(InboxKind::Command)).await,
        Some(InboxKind::Reaction) => handle_reaction(ctx, &inner(InboxKind::Reaction)).await,
        _ => Ok(Handled::new(&format!("decrypted: {event_type}, nothing for the bot"), vec![])),
    }
}

async fn handle_command(ctx: &Bot, item: &InboxItem) -> anyhow::Result<Handled> {
    let text = body(&item.event).unwrap_or_default();
    let Some(parsed) = parse_command::<Command>(text, &ctx.prefix) else {
        return Ok(Handled::new("not a command", vec![]));
    };
    let reply_key = format!("reply-{}", item.event_id);
    if !ctx.is_moderator(&item.sender).await? {
        // The command's name only: in an encrypted room the rest was meant for its members.
        let command = text.split_whitespace().next().unwrap_or_default();
        tracing::info!(sender = item.sender, command, "refused a command from a non-moderator");
        let reply = Notice::new().line(&format!(
            "{} is not a housekeep moderator, so this command was not run. Moderators are listed in the bot's config{}.",
            item.sender,
            ctx.moderators.power_level.map(|pl| format!(" or have power level {pl}+ here")).unwrap_or_default()
        ));
        ctx.reply(&item.room_id, &item.event_id, &reply_key, &reply).await?;
        return Ok(Handled::new("refused", vec![audit_for(item, "refused", Some(text), "not a moderator")]));
    }

    let command = match parsed {
        Ok(command) => command,
        Err(error) => {
            // The message already names the nearest command for unknown ones.
            let mut reply = Notice::new().line(&error.message);
            if let Some(usage) = &error.usage {
                reply = reply.code(usage);
            }
            ctx.reply(&item.room_id, &item.event_id, &reply_key, &reply).await?;
            let outcome = if error.is_help { "help" } else { "invalid command" };
            return Ok(Handled::new(outcome, vec![audit_for(item, "command", Some(text), outcome)]));
        }
    };

    // A command the homeserver delivers long after it was sent (housekeep was
    // down) is not run blindly: the moderator may have moved on.
    let age_ms = now_ms().saturating_sub(item.origin_server_ts);
    if age_ms > ctx.rules.confirm_expiry.as_millis() as i64 && command.action_flags().is_some() {
        let reply = Notice::new().line(&format!(
            "Not run: this command reached housekeep {} after it was sent. Send it again if it is still wanted.",
            humantime::format_duration(std::time::Duration::from_secs((age_ms / 1000) as u64))
        ));
        ctx.reply(&item.room_id, &item.event_id, &reply_key, &reply).await?;
        return Ok(Handled::new("stale", vec![audit_for(item, "command", Some(text), "stale: not run")]));
    }

    let executed = match command.run(&ctx.context(item)).await {
        Ok(executed) => executed,
        // A refusal by the homeserver (unknown alias, no rights, …) will not
        // change on retry: tell the moderator now.
        Err(error) if is_permanent(&error) => Executed::failed(command.name(), &error),
        Err(error) => return Err(error),
    };
    let reply_event = ctx.reply(&item.room_id, &item.event_id, &reply_key, &executed.reply).await?;
    if let Some(image) = &executed.image {
        let to = Destination { room_id: item.room_id.clone(), in_reply_to: None };
        // The text is the answer; a chart that cannot be posted is logged.
        if let Err(error) = ctx.sink.post_image(&to, &format!("image-{}", item.event_id), image).await {
            tracing::warn!(error = format!("{error:#}"), "cannot post the reply's image");
        }
    }
    if let Some(job_id) = &executed.plan_job {
        ctx.services().store.set_plan_event(job_id, &reply_event).await?;
        // A --yes job waits for its plan to be posted: then its progress comes after it.
        ctx.jobs.wake();
    }
    ctx.services().metrics.commands_handled.inc();
    let mut audit = vec![audit_for(item, "command", Some(text), &executed.outcome)];
    audit.extend(executed.audit);
    Ok(Handled::new(&executed.outcome, audit))
}

async fn handle_reaction(ctx: &Bot, item: &InboxItem) -> anyhow::Result<Handled> {
    let Some(target) = reaction_target(&item.event) else { return Ok(Handled::new("no target", vec![])) };
    if let Some(matched) = ctx.verifications.reaction(target, &item.sender) {
        let outcome = match matched {
            super::verify::Matched::Confirmed => "confirmed: the emoji match",
            super::verify::Matched::Ignored(why) => why,
        };
        tracing::info!(sender = item.sender, outcome, "a ✅ to a verification's emoji");
        return Ok(Handled::new(outcome, vec![audit_for(item, "verify", None, outcome)]));
    }
    // One plan message may show several jobs (a policy rule's): ✅ confirms each.
    let jobs = ctx.services().store.jobs_by_plan_event(target).await?;
    if jobs.is_empty() {
        return Ok(Handled::new("not a plan", vec![]));
    }
    if !ctx.is_moderator(&item.sender).await? {
        tracing::info!(sender = item.sender, jobs = jobs.len(), "ignored a ✅ from a non-moderator");
        let audit = jobs
            .into_iter()
            .map(|job| AuditEntry {
                job_id: Some(job.id),
                ..audit_for(item, "confirm", None, "refused: not a moderator")
            })
            .collect();
        return Ok(Handled::new("refused", audit));
    }
    let mut reply = Notice::new();
    let mut audit = Vec::new();
    let mut outcomes = Vec::new();
    for job in jobs {
        let executed = confirm(&ctx.jobs, item, &job.id).await?;
        reply = reply.append(executed.reply);
        // A successful confirm is audited with the state change; a failed one here.
        if executed.outcome != "confirmed" {
            audit.push(AuditEntry { job_id: Some(job.id), ..audit_for(item, "confirm", None, &executed.outcome) });
        }
        outcomes.push(executed.outcome);
    }
    ctx.reply(&item.room_id, target, &format!("reply-{}", item.event_id), &reply).await?;
    outcomes.dedup();
    Ok(Handled::new(&outcomes.join(", "), audit))
}

async fn handle_invite(ctx: &Bot, item: &InboxItem) -> anyhow::Result<Handled> {
    let homeserver = &ctx.services().homeserver;
    // Only members can invite into the admin room, and the bot belongs there
    // (a power-level moderator could not be recognised before it joins).
    if item.room_id == ctx.admin_room_id.as_str() || ctx.is_moderator(&item.sender).await? {
        homeserver.join(&item.room_id).await?;
        tracing::info!(room_id = item.room_id, inviter = item.sender, "accepted an invite from a moderator");
        let audit = AuditEntry { target: Some(item.room_id.clone()), ..audit_for(item, "invite", None, "accepted") };
        Ok(Handled::new("joined", vec![audit]))
    } else {
        // Anyone anywhere may invite the bot: one try, no retries, so a slow
        // remote server cannot keep an inbox slot from moderators. An invite
        // left undeclined does nothing.
        let once = homeserver.clone().with_retry(RetryPolicy::ONCE);
        let outcome = match once.leave(&item.room_id, "housekeep only joins rooms when a moderator invites it").await {
            Ok(()) => "declined: not a moderator".to_owned(),
            Err(error) => format!("ignored: not a moderator (declining failed: {error})"),
        };
        tracing::info!(room_id = item.room_id, inviter = item.sender, outcome, "an invite from a non-moderator");
        let audit = AuditEntry { target: Some(item.room_id.clone()), ..audit_for(item, "invite", None, &outcome) };
        Ok(Handled::new("declined", vec![audit]))
    }
}

/// Whether an error is the homeserver refusing (4xx other than 429), which a
/// retry will not change.
fn is_permanent(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(cause.downcast_ref::<HsError>(), Some(HsError::Matrix { status, .. })
            if status.is_client_error() && status.as_u16() != 429)
    })
}
