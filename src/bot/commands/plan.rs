//! Commands that act: the kind plans, the runner stores the plan, and the
//! reply says what would happen and what happens next.

use std::time::Duration;

use serde_json::Value;

use super::{Command, Executed};
use crate::bot::Bot;
use crate::grammar::ActionFlags;
use crate::jobs::{ConfirmPolicy, Kind, PlanMode, PlanOutcome, PlanRequest};
use crate::notice::Notice;
use crate::store::{InboxItem, JobState};

/// Why a plan cannot run without server-admin rights, and the fix.
pub fn not_admin(bot: &Bot, why: &str) -> String {
    format!(
        "{bot} is not a server admin ({why}). A server admin can fix this with \
         PUT /_synapse/admin/v2/users/{bot} {{\"admin\": true}} (see the README).",
        bot = bot.services().bot_user_id
    )
}

/// What `--dry-run` / `--yes` ask for.
pub fn mode_of(flags: &ActionFlags) -> PlanMode {
    if flags.dry_run {
        PlanMode::DryRun
    } else if flags.yes {
        PlanMode::Yes
    } else {
        PlanMode::Confirm
    }
}

/// A command that acts: confirmed as its flags and the confirmation rules say.
pub async fn plan_action<K: Kind>(
    bot: &Bot,
    item: &InboxItem,
    command: &Command,
    args: &K::Args,
) -> anyhow::Result<Executed> {
    let flags = command.action_flags().expect("a command with a job kind takes action flags");
    plan::<K>(bot, item, command.name(), args, mode_of(flags), bot.policy).await
}

pub async fn plan<K: Kind>(
    bot: &Bot,
    item: &InboxItem,
    name: &str,
    args: &K::Args,
    mode: PlanMode,
    policy: ConfirmPolicy,
) -> anyhow::Result<Executed> {
    let text = item.event.pointer("/content/body").and_then(Value::as_str).unwrap_or_default().to_owned();
    let request = PlanRequest {
        command_event_id: item.event_id.clone(),
        room_id: item.room_id.clone(),
        requested_by: item.sender.clone(),
        command_text: text,
        mode,
        expiry: bot.confirm_expiry,
        policy,
    };
    let (job, summary, yes_refused, blocked) = match bot.jobs.plan::<K>(request, args).await? {
        PlanOutcome::Nothing { summary } => {
            let reply = summary.line("Nothing to do: the index holds nothing this selects.");
            return Ok(Executed::with_outcome(reply, "nothing selected"));
        }
        PlanOutcome::Blocked { summary, why } => {
            let reply = summary.line(&format!("Cannot run: {} Then send the command again.", not_admin(bot, &why)));
            return Ok(Executed::with_outcome(reply, "refused: bot is not a server admin"));
        }
        PlanOutcome::Job { job, summary, yes_refused, blocked } => (*job, summary, yes_refused, blocked),
    };
    let prefix = &bot.prefix;
    let id = &job.id;
    let mut next = Vec::new();
    if let Some(why) = &blocked {
        next.push(not_admin(bot, why));
    }
    if yes_refused {
        next.push(if job.needs_second_moderator {
            "--yes is not enough: a selection this large (above admin.two_person_threshold) needs a second moderator."
                .to_owned()
        } else {
            "--yes is not enough for a selection this large (above admin.confirm_threshold): confirm it explicitly."
                .to_owned()
        });
    }
    next.push(match job.state {
        JobState::DryRun => "Dry run: nothing will be done.".to_owned(),
        JobState::Planned => {
            let who = if job.needs_second_moderator {
                format!("a moderator other than {} (it is above admin.two_person_threshold)", job.requested_by)
            } else {
                "a moderator".to_owned()
            };
            format!(
                "Nothing happens until {who} sends {prefix}confirm {id} or reacts ✅ to this message, within {}. \
                 {prefix}cancel {id} drops it.",
                humantime::format_duration(Duration::from_secs(bot.confirm_expiry.as_secs())),
            )
        }
        _ => format!("Running now (--yes). {prefix}job {id} shows progress; {prefix}cancel {id} stops it."),
    });
    let mut reply = Notice::new()
        .title(&format!("Plan for job {id} ({name}): {}", job.state.as_str()))
        .append(summary)
        .field("plan hash", &job.plan_hash[..12]);
    for line in &next {
        reply = reply.line(line);
    }
    let mut executed = Executed::with_outcome(reply, format!("planned {}", job.state.as_str()));
    executed.plan_job = Some(job.id);
    Ok(executed)
}
