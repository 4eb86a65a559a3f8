//! Executors: a parsed command in, data and a rendered reply out. Sending is
//! the caller's job, so each executor can be tested on its own.

use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::BotContext;
use super::handle::{audit_for, not_yet_available};
use super::reply::Reply;
use crate::commands::{Command, help_text};
use crate::moderation::{purge, quarantine};
use crate::store::{AuditEntry, CancelOutcome, ConfirmError, InboxItem, ItemState, Job, JobState, NewJob, now_ms};

/// What an executor produced.
pub struct Executed {
    pub reply: Reply,
    /// One word or phrase for the audit log and the inbox row.
    pub outcome: String,
    /// A job whose plan this reply shows (its event ID is recorded for ✅).
    pub plan_job: Option<String>,
}

impl Executed {
    fn ok(reply: Reply) -> Self {
        Self { reply, outcome: "ok".to_owned(), plan_job: None }
    }

    fn with_outcome(reply: Reply, outcome: impl Into<String>) -> Self {
        Self { reply, outcome: outcome.into(), plan_job: None }
    }

    /// The command could not be carried out; nothing was changed.
    pub fn failed(command: &Command, error: &anyhow::Error) -> Self {
        let reply = Reply::new().line(&format!("Could not run {}: {error:#}. Nothing was changed.", command.name()));
        Self::with_outcome(reply, format!("error: {error:#}"))
    }
}

pub async fn execute(ctx: &BotContext, item: &InboxItem, command: &Command) -> anyhow::Result<Executed> {
    Ok(match command {
        Command::Help(args) => match help_text(&ctx.prefix, args.topic().as_deref()) {
            Ok(text) => Executed::ok(Reply::new().code(&text)),
            Err(error) => Executed::with_outcome(Reply::new().line(&error.message), "unknown help topic"),
        },
        Command::Status => Executed::ok(status(ctx).await?),
        Command::Jobs => Executed::ok(jobs(ctx).await?),
        Command::Job(arg) => job_details(ctx, &arg.id).await?,
        Command::Confirm(arg) => confirm(ctx, item, &arg.id).await?,
        Command::Cancel(arg) => cancel(ctx, item, &arg.id).await?,
        Command::Audit(args) => {
            Executed::ok(audit(ctx, i64::from(args.limit), args.actor.as_ref().map(|a| a.as_str())).await?)
        }
        #[cfg(debug_assertions)]
        Command::TestJob(args) => {
            let plan = crate::jobs::testjob::plan(args);
            let summary = crate::jobs::testjob::describe(&plan);
            let total = i64::from(args.items);
            plan_job(ctx, item, command, "testjob", plan, summary, total, Vec::new(), &args.flags).await?
        }
        Command::Quarantine(args) => {
            let admin = ctx.homeserver.is_server_admin(&ctx.bot_user_id).await?;
            let (target, plan) = quarantine::select(ctx, &args.target, admin).await?;
            let action = quarantine::Action::Quarantine;
            plan_media_job(ctx, item, command, action, &target, plan, admin, &args.flags).await?
        }
        Command::Unquarantine(args) => {
            let admin = ctx.homeserver.is_server_admin(&ctx.bot_user_id).await?;
            let (target, plan) = quarantine::select_unquarantine(ctx, &args.target, admin).await?;
            let action = quarantine::Action::Unquarantine;
            plan_media_job(ctx, item, command, action, &target, plan, admin, &args.flags).await?
        }
        Command::Purge(args) => {
            let plan = purge::plan(ctx, args).await?;
            let summary = purge::describe(&plan, args.with_media.is_some());
            if plan.events.is_empty() {
                let reply = summary.line("Nothing to do: the index holds no matching events.");
                return Ok(Executed::with_outcome(reply, "nothing selected"));
            }
            if !args.flags.dry_run && !ctx.homeserver.is_server_admin(&ctx.bot_user_id).await? {
                let reply = summary.line(&format!(
                    "Cannot run: {} Then send the command again.",
                    not_admin(ctx, "purge needs the admin API")
                ));
                return Ok(Executed::with_outcome(reply, "refused: bot is not a server admin"));
            }
            let json = purge::plan_json(&plan, args.flags.reason.as_deref());
            let items = plan.items();
            let total = items.len() as i64;
            plan_job(ctx, item, command, "purge", json, summary, total, items, &args.flags).await?
        }
        Command::Backfill(_) | Command::Stats(_) => Executed::with_outcome(not_yet_available(command), "not available"),
    })
}

/// Why a plan cannot run without server-admin rights, and the fix.
fn not_admin(ctx: &BotContext, why: &str) -> String {
    format!(
        "{bot} is not a server admin ({why}). A server admin can fix this with \
         PUT /_synapse/admin/v2/users/{bot} {{\"admin\": true}} (see the README).",
        bot = ctx.bot_user_id
    )
}

/// Plans a quarantine or unquarantine. Without server-admin rights it
/// still shows the plan, but makes no runnable job: it says how to fix that
/// instead of failing half-way through.
#[allow(clippy::too_many_arguments)]
async fn plan_media_job(
    ctx: &BotContext,
    item: &InboxItem,
    command: &Command,
    action: quarantine::Action,
    target: &str,
    plan: quarantine::MediaPlan,
    bot_is_admin: bool,
    flags: &crate::commands::ActionFlags,
) -> anyhow::Result<Executed> {
    let mut summary = quarantine::describe(action, target, &plan);
    if plan.media.is_empty() {
        let reply = summary.line("Nothing to do: the index knows no media for this selection.");
        return Ok(Executed::with_outcome(reply, "nothing selected"));
    }
    if !bot_is_admin {
        let fix = not_admin(ctx, "Synapse's media admin API needs one, and it also lists a user's unsent uploads");
        if !flags.dry_run {
            let reply = summary.line(&format!("Cannot run: {fix} Then send the command again."));
            return Ok(Executed::with_outcome(reply, "refused: bot is not a server admin"));
        }
        summary = summary.line(&fix);
    }
    let json = quarantine::plan_json(action, target, flags.reason.as_deref(), &plan);
    let total = plan.media.len() as i64;
    plan_job(ctx, item, command, action.as_str(), json, summary, total, plan.media, flags).await
}

/// Stores a destructive command's plan as a job and renders it, with what
/// happens next: waits for confirmation, runs at once (`--yes`), or nothing
/// (`--dry-run`).
#[allow(clippy::too_many_arguments)]
pub async fn plan_job(
    ctx: &BotContext,
    item: &InboxItem,
    command: &Command,
    kind: &str,
    plan: Value,
    summary: Reply,
    total: i64,
    items: Vec<String>,
    flags: &crate::commands::ActionFlags,
) -> anyhow::Result<Executed> {
    let state = if flags.dry_run {
        JobState::DryRun
    } else if flags.yes {
        JobState::Confirmed
    } else {
        JobState::Planned
    };
    let plan_hash = hex::encode(Sha256::digest(plan.to_string().as_bytes()));
    let text = item.event.pointer("/content/body").and_then(Value::as_str).unwrap_or_default().to_owned();
    let new = NewJob {
        id: Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase(),
        kind: kind.to_owned(),
        command_event_id: item.event_id.clone(),
        room_id: item.room_id.clone(),
        requested_by: item.sender.clone(),
        command_text: text.clone(),
        plan,
        plan_hash: plan_hash.clone(),
        state,
        total_count: total,
        expires_at: now_ms() + ctx.confirm_expiry.as_millis() as i64,
        items,
    };
    let mut audit = audit_for(item, "plan", Some(&text), state.as_str());
    audit.target = Some(format!("plan {}", &plan_hash[..12]));
    let (job, _) = ctx.store.create_job(&new, &AuditEntry { job_id: Some(new.id.clone()), ..audit }).await?;
    let prefix = &ctx.prefix;
    let next = match job.state {
        JobState::DryRun => "Dry run: nothing will be done.".to_owned(),
        JobState::Planned => format!(
            "Nothing happens until a moderator sends {prefix}confirm {id} or reacts ✅ to this message, within {}. {prefix}cancel {id} drops it.",
            humantime::format_duration(Duration::from_secs(ctx.confirm_expiry.as_secs())),
            id = job.id
        ),
        _ => {
            // The caller wakes the runner once this plan is posted, so the
            // plan comes before the job's progress message.
            format!("Running now (--yes). {prefix}job {} shows progress; {prefix}cancel {} stops it.", job.id, job.id)
        }
    };
    let reply = Reply::new()
        .title(&format!("Plan for job {} ({}): {}", job.id, command.name(), job.state.as_str()))
        .append(summary)
        .field("plan hash", &job.plan_hash[..12])
        .line(&next);
    Ok(Executed { reply, outcome: format!("planned {}", job.state.as_str()), plan_job: Some(job.id) })
}

pub async fn confirm(ctx: &BotContext, item: &InboxItem, job_id: &str) -> anyhow::Result<Executed> {
    let mut audit = audit_for(item, "confirm", None, "confirmed");
    audit.job_id = Some(job_id.to_owned());
    Ok(match ctx.store.confirm_job(job_id, &item.sender, &audit).await? {
        Ok(job) => {
            ctx.jobs_wake.notify_one();
            Executed::with_outcome(
                Reply::new().line(&format!("Job {} confirmed by {}; running.", job.id, item.sender)),
                "confirmed",
            )
        }
        Err(error @ (ConfirmError::NotFound(_) | ConfirmError::Expired { .. } | ConfirmError::NotPlanned { .. })) => {
            Executed::with_outcome(Reply::new().line(&format!("Not confirmed: {error}.")), "not confirmed")
        }
    })
}

async fn cancel(ctx: &BotContext, item: &InboxItem, job_id: &str) -> anyhow::Result<Executed> {
    let (text, outcome) = match ctx.store.cancel_job(job_id).await? {
        CancelOutcome::Cancelled => (format!("Job {job_id} cancelled; it never ran."), "cancelled"),
        CancelOutcome::Stopping => (format!("Job {job_id} stops after its current batch."), "stopping"),
        CancelOutcome::AlreadyFinal(state) => (format!("Job {job_id} is already {}.", state.as_str()), "already final"),
        CancelOutcome::NotFound => (format!("No job {job_id}."), "not found"),
    };
    let mut audit = audit_for(item, "cancel", None, outcome);
    audit.job_id = Some(job_id.to_owned());
    ctx.store.audit(audit).await?;
    Ok(Executed::with_outcome(Reply::new().line(&text), outcome))
}

async fn status(ctx: &BotContext) -> anyhow::Result<Reply> {
    let summary = ctx.store.summary().await?;
    let newest = summary
        .newest_event_ts
        .map(|ts| format!("{} ago", age(now_ms().saturating_sub(ts))))
        .unwrap_or_else(|| "none yet".to_owned());
    let counts = ctx.store.job_counts().await?;
    let jobs = if counts.is_empty() {
        "none".to_owned()
    } else {
        counts.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect::<Vec<_>>().join(", ")
    };
    let (homeserver, admin) = match ctx.homeserver.whoami().await {
        Ok(user) => {
            let admin = match ctx.homeserver.is_server_admin(&user).await {
                Ok(true) => "yes".to_owned(),
                Ok(false) => "no: purge and quarantine need it (README: \"Bot as server admin\")".to_owned(),
                Err(error) => format!("unknown ({error})"),
            };
            (format!("reachable, bot is {user}"), admin)
        }
        Err(error) => (format!("unreachable: {error}"), "unknown".to_owned()),
    };
    Ok(Reply::new()
        .title("housekeep status")
        .field(
            "index",
            &format!(
                "{} events in {} rooms, {} media references to {} media; newest event {newest}",
                summary.events, summary.rooms, summary.media_refs, summary.distinct_media
            ),
        )
        .field("index lag", &format!("{:.1} s at the last transaction", ctx.metrics.index_lag_seconds.get()))
        .field("quarantined media", &ctx.store.quarantined_media_count().await?.to_string())
        .field("backfill", "not available in this version")
        .field("jobs", &jobs)
        .field("homeserver", &homeserver)
        .field("bot is server admin", &admin)
        .field("database", ctx.store.backend().as_str())
        .field("version", env!("CARGO_PKG_VERSION")))
}

fn age(ms: i64) -> String {
    humantime::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64)).to_string()
}

fn item_state(name: &str) -> ItemState {
    [ItemState::Done, ItemState::Skipped, ItemState::Failed]
        .into_iter()
        .find(|s| s.as_str() == name)
        .unwrap_or(ItemState::Pending)
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
        job.requested_by,
        age(now_ms().saturating_sub(job.created_at)),
        job.command_text
    )
}

async fn jobs(ctx: &BotContext) -> anyhow::Result<Reply> {
    let jobs = ctx.store.recent_jobs(20).await?;
    if jobs.is_empty() {
        return Ok(Reply::new().line("No jobs yet."));
    }
    Ok(Reply::new().title(&format!("{} most recent jobs", jobs.len())).list(jobs.iter().map(job_line)))
}

async fn job_details(ctx: &BotContext, id: &str) -> anyhow::Result<Executed> {
    let Some(job) = ctx.store.job(id).await? else {
        return Ok(Executed::with_outcome(Reply::new().line(&format!("No job {id}.")), "not found"));
    };
    let actions = ctx.store.job_audit(id).await?;
    let mut reply = Reply::new()
        .title(&format!("Job {}", job_line(&job)))
        .field("plan hash", &job.plan_hash[..12])
        .field("plan", &job.plan.to_string());
    if let Some(by) = &job.confirmed_by {
        reply = reply.field("confirmed by", by);
    }
    if job.state == JobState::Planned {
        reply = reply.field("expires in", &age(job.expires_at.saturating_sub(now_ms())));
    }
    if let Some(result) = &job.result {
        reply = reply.field("result", &result.to_string());
    }
    if let Some(error) = &job.error {
        reply = reply.field("error", error);
    }
    for (state, count) in ctx.store.job_item_counts(id).await? {
        let items = ctx.store.job_items_in_state(id, item_state(&state), 100).await?;
        let more = if count > items.len() as i64 { format!(" (first {} shown)", items.len()) } else { String::new() };
        reply = reply
            .line(&format!("{count} {state}{more}:"))
            .list(items.iter().map(|i| format!("{} {}", i.item, i.detail.as_deref().unwrap_or(""))));
    }
    let shown: Vec<String> = actions
        .iter()
        .rev()
        .take(20)
        .map(|a| {
            format!(
                "{} {} {} → {}",
                a.entry.action,
                a.entry.target.as_deref().unwrap_or(""),
                a.entry.actor,
                a.entry.outcome
            )
        })
        .collect();
    reply = reply.line(&format!("{} audited actions (newest {} shown):", actions.len(), shown.len())).list(shown);
    Ok(Executed::ok(reply))
}

async fn audit(ctx: &BotContext, limit: i64, actor: Option<&str>) -> anyhow::Result<Reply> {
    let entries = ctx.store.audit_entries(limit, actor).await?;
    if entries.is_empty() {
        return Ok(Reply::new().line("The audit log has no matching entries."));
    }
    Ok(Reply::new().title(&format!("Audit log, newest first ({})", entries.len())).list(entries.iter().map(|r| {
        let e = &r.entry;
        let what = e.command.as_deref().or(e.target.as_deref()).unwrap_or("");
        let job = e.job_id.as_deref().map(|j| format!(" job {j}")).unwrap_or_default();
        format!(
            "#{} {} ago {} {}{job} {what} → {}",
            r.id,
            age(now_ms().saturating_sub(r.ts)),
            e.actor,
            e.action,
            e.outcome
        )
    })))
}
