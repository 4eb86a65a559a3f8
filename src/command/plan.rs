//! Commands that act: the kind plans, the runner stores the plan, and the
//! reply says what would happen and what happens next.

use std::time::Duration;

use super::{Context, Executed};
use crate::grammar::ActionFlags;
use crate::jobs::{ConfirmPolicy, Kind, PlanMode, PlanOutcome, PlanRequest, Services};
use crate::notice::Notice;
use crate::store::JobState;

/// Why a plan cannot run without server-admin rights, and the fix.
fn not_admin(services: &Services, why: &str) -> String {
    format!(
        "{bot} is not a server admin ({why}). A server admin can fix this with \
         PUT /_synapse/admin/v2/users/{bot} {{\"admin\": true}} (see the README).",
        bot = services.bot_user_id
    )
}

/// What `--dry-run` / `--yes` ask for.
fn mode_of(flags: &ActionFlags) -> PlanMode {
    if flags.dry_run {
        PlanMode::DryRun
    } else if flags.yes {
        PlanMode::Yes
    } else {
        PlanMode::Confirm
    }
}

impl Context<'_> {
    /// Runs a command that acts through its job kind `K`: plans it, stores
    /// the plan, and confirms as its flags and the admin room's rules say.
    pub async fn plan_action<K: Kind>(
        &self,
        name: &str,
        flags: &ActionFlags,
        args: &K::Args,
    ) -> anyhow::Result<Executed> {
        self.plan::<K>(name, args, mode_of(flags), self.rules.policy).await
    }

    /// Plans a job of kind `K` for this command, and answers with the plan
    /// and what happens next.
    pub async fn plan<K: Kind>(
        &self,
        name: &str,
        args: &K::Args,
        mode: PlanMode,
        policy: ConfirmPolicy,
    ) -> anyhow::Result<Executed> {
        let item = self.item;
        let request = PlanRequest {
            command_event_id: item.event_id.clone(),
            room_id: item.room_id.clone(),
            requested_by: item.sender.clone(),
            command_text: self.text().to_owned(),
            mode,
            expiry: self.rules.confirm_expiry,
            policy,
        };
        let (job, summary, yes_refused, irreversible, blocked) = match self.jobs.plan::<K>(request, args).await? {
            PlanOutcome::Nothing { summary } => {
                let reply = summary.line("Nothing to do.");
                return Ok(Executed::with_outcome(reply, "nothing selected"));
            }
            PlanOutcome::Blocked { summary, why } => {
                let reply = summary
                    .line(&format!("Cannot run: {} Then send the command again.", not_admin(self.services(), &why)));
                return Ok(Executed::with_outcome(reply, "refused: bot is not a server admin"));
            }
            PlanOutcome::Job { job, summary, yes_refused, irreversible, blocked } => {
                (*job, summary, yes_refused, irreversible, blocked)
            }
        };
        let prefix = self.prefix();
        let id = &job.id;
        let mut next = Vec::new();
        if let Some(why) = &blocked {
            next.push(not_admin(self.services(), why));
        }
        if yes_refused {
            next.push(if irreversible {
                "--yes is not enough: this cannot be undone, so a moderator confirms it explicitly.".to_owned()
            } else if job.needs_second_moderator {
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
                    humantime::format_duration(Duration::from_secs(self.rules.confirm_expiry.as_secs())),
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
}
