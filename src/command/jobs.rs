//! `!jobs`, `!job <id>`, `!confirm <id>`, `!cancel <id>`.

use clap::Args;

use super::status::age;
use super::{AdminCommand, Context, Executed, audit_for};
use crate::clock::now_ms;
use crate::jobs::Jobs;
use crate::notice::Notice;
use crate::store::{AuditEntry, CancelOutcome, ConfirmError, InboxItem, Job, JobState};

/// Items of each state shown by `!job`, and audited actions.
const ITEMS_SHOWN: i64 = 100;
const ACTIONS_SHOWN: i64 = 20;

/// Longest job ID.
pub const MAX_JOB_ID_LEN: usize = 32;

/// The job a command refers to.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JobIdArg {
    /// The job's ID, as shown in its plan and in !jobs (e.g. k3f9x2)
    #[arg(value_name = "JOB", value_parser = parse_job_id)]
    pub id: String,
}

/// Whether `id` has the shape of a job ID: 1 to 32 of `[A-Za-z0-9_-]`.
pub fn is_valid_job_id(id: &str) -> bool {
    (1..=MAX_JOB_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Job IDs are made lowercase; phones capitalise what people type.
fn parse_job_id(s: &str) -> Result<String, String> {
    if is_valid_job_id(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "a job ID is 1 to {MAX_JOB_ID_LEN} letters, digits, '_' or '-' (like k3f9x2); \
             see !jobs for the IDs"
        ))
    }
}

/// List recent and running jobs
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub struct JobsArgs {}

/// Show one job: its plan, progress and result
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub job: JobIdArg,
}

/// Run a planned job (same as a ✅ reaction on its plan)
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub job: JobIdArg,
}

/// Cancel a planned or running job (a running one stops after its current batch)
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub job: JobIdArg,
}

impl AdminCommand for JobsArgs {
    const NAME: &'static str = "jobs";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        jobs(ctx).await
    }
}

impl AdminCommand for JobArgs {
    const NAME: &'static str = "job";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        job(ctx, &self.job.id).await
    }
}

impl AdminCommand for ConfirmArgs {
    const NAME: &'static str = "confirm";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        confirm(ctx.jobs, ctx.item, &self.job.id).await
    }
}

impl AdminCommand for CancelArgs {
    const NAME: &'static str = "cancel";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        cancel(ctx, &self.job.id).await
    }
}

fn job_line(job: &Job) -> String {
    format!(
        "{} {} [{}] {}/{} done{} by {} {} ago: {}",
        job.id,
        job.kind,
        job.state.as_str(),
        job.done_count,
        job.total_count,
        if job.failed_count > 0 { format!(", {} failed", job.failed_count) } else { String::new() },
        crate::text::line(&job.requested_by),
        age(now_ms().saturating_sub(job.created_at)),
        crate::text::line(&job.command_text)
    )
}

async fn jobs(ctx: &Context<'_>) -> anyhow::Result<Executed> {
    let jobs = ctx.services().store.recent_jobs(20).await?;
    if jobs.is_empty() {
        return Ok(Executed::ok(Notice::new().line("No jobs yet.")));
    }
    Ok(Executed::ok(Notice::new().title(&format!("{} most recent jobs", jobs.len())).list(jobs.iter().map(job_line))))
}

async fn job(ctx: &Context<'_>, id: &str) -> anyhow::Result<Executed> {
    let store = &ctx.services().store;
    let Some(job) = store.job(id).await? else {
        return Ok(Executed::with_outcome(Notice::new().line(&format!("No job {id}.")), "not found"));
    };
    let mut reply = Notice::new()
        .title(&format!("Job {}", job_line(&job)))
        .field("plan hash", job.plan_hash.get(..12).unwrap_or(&job.plan_hash))
        .field("plan", &job.plan.to_string());
    if let Some(by) = &job.confirmed_by {
        reply = reply.field("confirmed by", &crate::text::line(by));
    }
    if job.state == JobState::Planned {
        reply = reply.field("expires in", &age(job.expires_at.saturating_sub(now_ms())));
    }
    if let Some(tally) = &job.tally {
        reply = reply.field("totals", &tally.to_string());
    }
    if let Some(error) = &job.error {
        reply = reply.field("error", &crate::text::line(error));
    }
    for (state, count) in store.job_item_counts(id).await? {
        let items = store.job_items_in_state(id, state, ITEMS_SHOWN).await?;
        let more = if count > items.len() as i64 { format!(" (first {} shown)", items.len()) } else { String::new() };
        reply = reply.line(&format!("{count} {}{more}:", state.as_str())).list(items.iter().map(|i| {
            format!("{} {}", crate::text::line(&i.key), crate::text::line(i.detail.as_deref().unwrap_or("")))
        }));
    }
    let (actions, total) = store.job_audit(id, ACTIONS_SHOWN).await?;
    let shown: Vec<String> = actions
        .iter()
        .map(|a| {
            let e = &a.entry;
            let target = crate::text::line(e.target.as_deref().unwrap_or(""));
            format!("{} {target} {} → {}", e.action, crate::text::line(&e.actor), crate::text::line(&e.outcome))
        })
        .collect();
    reply = reply.line(&format!("{total} audited actions (newest {} shown):", shown.len())).list(shown);
    Ok(Executed::ok(reply))
}

/// Confirms a planned job for the sender of `item` (a `!confirm` or a ✅).
pub async fn confirm(jobs: &Jobs, item: &InboxItem, job_id: &str) -> anyhow::Result<Executed> {
    let mut audit = audit_for(item, "confirm", None, "confirmed");
    audit.job_id = Some(job_id.to_owned());
    // A job housekeep asked for itself (a policy rule's) that needs two
    // moderators: the first to confirm stands in as its requester.
    let bot = jobs.services().bot_user_id.as_str();
    if jobs.services().store.endorse_job(job_id, &item.sender, bot).await? {
        let reply = Notice::new().line(&format!(
            "Job {job_id}: {} is the first of the two moderators it needs; another moderator confirms it.",
            item.sender
        ));
        return Ok(Executed::with_outcome(reply, "first of two moderators"));
    }
    Ok(match jobs.services().store.confirm_job(job_id, &item.sender, &audit).await? {
        Ok(job) => {
            jobs.wake();
            Executed::with_outcome(
                Notice::new().line(&format!("Job {} confirmed by {}; running.", job.id, item.sender)),
                "confirmed",
            )
        }
        Err(error @ ConfirmError::NeedsSecondModerator { .. }) => Executed::with_outcome(
            Notice::new().line(&format!("Not confirmed: {error}.")),
            "not confirmed: needs a second moderator",
        ),
        Err(error @ (ConfirmError::NotFound(_) | ConfirmError::Expired { .. } | ConfirmError::NotPlanned { .. })) => {
            Executed::with_outcome(Notice::new().line(&format!("Not confirmed: {error}.")), "not confirmed")
        }
    })
}

async fn cancel(ctx: &Context<'_>, job_id: &str) -> anyhow::Result<Executed> {
    let (text, outcome) = match ctx.jobs.cancel(job_id).await? {
        CancelOutcome::Cancelled => (format!("Job {job_id} cancelled; it never ran."), "cancelled"),
        CancelOutcome::Stopping => (format!("Job {job_id} stops after its current batch."), "stopping"),
        CancelOutcome::AlreadyFinal(JobState::Planning) => (
            format!("Job {job_id} is still being planned: cancel it once its plan is posted (nothing runs before)."),
            "still planning",
        ),
        CancelOutcome::AlreadyFinal(state) => (format!("Job {job_id} is already {}.", state.as_str()), "already final"),
        CancelOutcome::NotFound => (format!("No job {job_id}."), "not found"),
    };
    // Audited with the command, in the same transaction: once, even if the
    // command is handled again after a crash.
    let audit = AuditEntry { job_id: Some(job_id.to_owned()), ..ctx.audit("cancel", outcome) };
    Ok(Executed::with_outcome(Notice::new().line(&text), outcome).audited(audit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::test_support::{assert_errors, ok};

    /// The job commands, as the chat front-end would have them.
    #[derive(clap::Subcommand, Debug, PartialEq)]
    enum Tree {
        Jobs(JobsArgs),
        Job(JobArgs),
        Confirm(ConfirmArgs),
        Cancel(CancelArgs),
    }

    #[test]
    fn jobs_job_confirm_cancel() {
        let id = |s: &str| JobIdArg { id: s.to_owned() };
        let job = |s: &str| Tree::Job(JobArgs { job: id(s) });
        assert_eq!(ok::<Tree>("!jobs"), Tree::Jobs(JobsArgs {}));
        assert_eq!(ok::<Tree>("!job k3f9x2"), job("k3f9x2"));
        assert_eq!(ok::<Tree>("!confirm k3f9x2"), Tree::Confirm(ConfirmArgs { job: id("k3f9x2") }));
        assert_eq!(
            ok::<Tree>("!cancel K3F9X2"),
            Tree::Cancel(CancelArgs { job: id("k3f9x2") }),
            "job IDs are lowercased"
        );
        let longest = "a".repeat(MAX_JOB_ID_LEN);
        assert_eq!(ok::<Tree>(&format!("!job {longest}")), job(&longest));
        assert_eq!(ok::<Tree>("!job a_b-9"), job("a_b-9"));
    }

    #[test]
    fn job_id_errors() {
        let too_long = format!("!confirm {}", "a".repeat(MAX_JOB_ID_LEN + 1));
        let table: &[(&str, &str, &str)] = &[
            ("!job", "<JOB>", "Usage: !job "),
            ("!confirm", "<JOB>", "Usage: !confirm "),
            ("!cancel", "<JOB>", "Usage: !cancel "),
            ("!job k3/f9", "invalid value 'k3/f9' for '<JOB>': a job ID is 1 to 32", "Usage: !job "),
            ("!confirm ''", "invalid value '' for '<JOB>'", "Usage: !confirm "),
            (&too_long, "a job ID is 1 to 32", "Usage: !confirm "),
            ("!cancel k3f9x2 k4", "unexpected argument 'k4'", "Usage: !cancel "),
            ("!cancel 'k3f9 x2'", "invalid value 'k3f9 x2'", "Usage: !cancel "),
            ("!jobs --all", "unexpected argument '--all'", "Usage: !jobs"),
            ("!jobs k3f9x2", "unexpected argument 'k3f9x2'", "Usage: !jobs"),
        ];
        assert_errors::<Tree>(table);
    }

    #[test]
    fn job_id_shape() {
        assert!(is_valid_job_id("k3f9x2"));
        assert!(!is_valid_job_id(""));
        assert!(!is_valid_job_id("k3f9x2é"));
        assert!(!is_valid_job_id("a.b"));
    }
}
