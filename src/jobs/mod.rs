//! Durable jobs: confirmed plans run in checkpointed batches.
//!
//! Each batch returns its next cursor, its counts and the audit entries of
//! what it did; the runner commits all of them in one database transaction.
//! After a crash the runner picks up `running` jobs again and redoes only the
//! batch that was in flight. Kinds whose batches act on the homeserver must
//! make those actions idempotent (deterministic transaction IDs, or checking
//! the index first), so a redone batch does nothing twice.
//!
//! One job runs at a time: moderation jobs hit the same homeserver admin API,
//! and running them one after another keeps its load and the order of
//! effects predictable.

#[cfg(debug_assertions)]
pub mod testjob;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bot::BotContext;
use crate::bot::reply::Reply;
use crate::moderation::{purge, quarantine};
use crate::store::{AuditEntry, ItemResult, ItemState, Job, JobItem, JobState};

/// Least time between two edits of a job's progress message.
pub const PROGRESS_EDIT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a job resumed after a restart waits before its first batch.
pub const RESUME_SETTLE: Duration = Duration::from_secs(10);
/// Failed batch attempts before a job is marked failed.
const MAX_BATCH_ATTEMPTS: u32 = 5;

/// What one batch did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Where the next batch starts (kind-specific).
    pub cursor: Value,
    pub done: i64,
    pub failed: i64,
    /// Outcomes of the job items this batch handled.
    pub items: Vec<ItemResult>,
    pub audit: Vec<AuditEntry>,
    /// Nothing is left after this batch.
    pub finished: bool,
}

impl Batch {
    /// A batch that worked through job items up to `last_seq`: counts, item
    /// results, and one audit entry per item (`action` names it).
    pub fn from_outcomes(
        job: &Job,
        last_seq: i64,
        outcomes: Vec<(JobItem, ItemState, String)>,
        action: impl Fn(&JobItem) -> String,
    ) -> Self {
        let mut batch = Batch { cursor: json!(last_seq), ..Batch::default() };
        for (item, state, detail) in outcomes {
            match state {
                ItemState::Done => batch.done += 1,
                ItemState::Failed => batch.failed += 1,
                ItemState::Skipped | ItemState::Pending => {}
            }
            batch.audit.push(AuditEntry {
                actor: job.confirmed_by.clone().unwrap_or_else(|| job.requested_by.clone()),
                room_id: Some(job.room_id.clone()),
                job_id: Some(job.id.clone()),
                action: action(&item),
                target: Some(item.item.clone()),
                outcome: format!("{}: {detail}", state.as_str()),
                ..AuditEntry::default()
            });
            batch.items.push(ItemResult { seq: item.seq, state, detail });
        }
        batch.items.sort_by_key(|r| r.seq);
        batch
    }
}

async fn run_batch(ctx: &BotContext, job: &Job) -> anyhow::Result<Batch> {
    match job.kind.as_str() {
        "quarantine" | "unquarantine" => quarantine::run_batch(ctx, job).await,
        "purge" => purge::run_batch(ctx, job).await,
        #[cfg(debug_assertions)]
        "testjob" => testjob::run_batch(job).await,
        other => anyhow::bail!("this version of housekeep cannot run jobs of kind {other:?}"),
    }
}

/// Runs confirmed jobs, and resumes interrupted ones, forever.
pub async fn run_jobs(ctx: Arc<BotContext>) {
    loop {
        if let Err(error) = ctx.store.expire_jobs().await {
            tracing::warn!(error = format!("{error:#}"), "cannot expire old plans");
        }
        let runnable = match ctx.store.runnable_jobs().await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot list runnable jobs; retrying");
                Vec::new()
            }
        };
        if runnable.is_empty() {
            tokio::select! {
                _ = ctx.jobs_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            continue;
        }
        for job in runnable {
            if let Err(error) = run_job(&ctx, job.clone()).await {
                // The job stays `running` and is resumed on the next round.
                tracing::warn!(job = job.id, error = format!("{error:#}"), "job interrupted; will resume");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

fn progress(job: &Job) -> Reply {
    Reply::new().line(&format!(
        "Job {} ({}) running: {}/{} done, {} failed, {} batches.",
        job.id, job.kind, job.done_count, job.total_count, job.failed_count, job.batches
    ))
}

fn job_audit(job: &Job, action: &str, outcome: &str) -> AuditEntry {
    AuditEntry {
        actor: job.confirmed_by.clone().unwrap_or_else(|| job.requested_by.clone()),
        room_id: Some(job.room_id.clone()),
        event_id: Some(job.command_event_id.clone()),
        job_id: Some(job.id.clone()),
        action: action.to_owned(),
        command: Some(job.command_text.clone()),
        outcome: outcome.to_owned(),
        ..AuditEntry::default()
    }
}

async fn run_job(ctx: &BotContext, job: Job) -> anyhow::Result<()> {
    let resumed = job.state == JobState::Running;
    if !ctx.store.start_job(&job.id).await? {
        return Ok(());
    }
    tracing::info!(job = job.id, kind = job.kind, resumed, "job running");
    if resumed {
        // Requests the previous process sent just before it died may still be
        // landing at the homeserver; kinds check the homeserver's state before
        // acting (purge: "is it redacted yet?"), so let those land first.
        tokio::time::sleep(RESUME_SETTLE).await;
    } else {
        ctx.store.audit(job_audit(&job, "job.start", "running")).await?;
    }
    let mut job = ctx.store.job(&job.id).await?.expect("started job exists");
    let progress_event = match &job.progress_event_id {
        Some(event_id) => event_id.clone(),
        None => {
            let key = format!("job-{}-progress", job.id);
            let event_id = ctx.send(&job.room_id, Some(&job.command_event_id), &key, &progress(&job)).await?;
            ctx.store.set_progress_event(&job.id, &event_id).await?;
            event_id
        }
    };
    let mut last_edit = Instant::now();
    let mut attempts = 0;
    let final_state = loop {
        if job.cancel_requested {
            break JobState::Cancelled;
        }
        match run_batch(ctx, &job).await {
            Ok(batch) => {
                attempts = 0;
                ctx.store
                    .checkpoint_job(&job.id, &batch.cursor, batch.done, batch.failed, &batch.items, &batch.audit)
                    .await?;
                job = ctx.store.job(&job.id).await?.expect("running job exists");
                if batch.finished {
                    break JobState::Done;
                }
            }
            Err(error) if attempts + 1 < MAX_BATCH_ATTEMPTS => {
                attempts += 1;
                let delay = Duration::from_secs(2u64.pow(attempts));
                tracing::warn!(job = job.id, attempts, ?delay, error = format!("{error:#}"), "batch failed; retrying");
                tokio::time::sleep(delay).await;
                job = ctx.store.job(&job.id).await?.expect("running job exists");
                continue;
            }
            Err(error) => {
                job.error = Some(format!("{error:#}"));
                break JobState::Failed;
            }
        }
        if last_edit.elapsed() >= PROGRESS_EDIT_INTERVAL {
            let key = format!("job-{}-edit-{}", job.id, job.batches);
            // Progress is cosmetic: a failed edit must not stop the job.
            if let Err(error) = ctx.edit(&job.room_id, &progress_event, &key, &progress(&job)).await {
                tracing::info!(job = job.id, error = format!("{error:#}"), "progress edit failed");
            }
            last_edit = Instant::now();
        }
    };
    finish(ctx, &job, &progress_event, final_state).await
}

/// Reports the end, then records it. In that order: if housekeep dies in
/// between, the job is resumed, finds nothing left to do, and reports again
/// with the same transaction IDs, which the homeserver deduplicates.
async fn finish(ctx: &BotContext, job: &Job, progress_event: &str, state: JobState) -> anyhow::Result<()> {
    let result = json!({ "done": job.done_count, "failed": job.failed_count, "batches": job.batches });
    let mut reply = match job.kind.as_str() {
        "quarantine" | "unquarantine" => quarantine::describe_result(ctx, job, state.as_str()).await?,
        "purge" => purge::describe_result(ctx, job, state.as_str()).await?,
        _ => {
            let mut reply = Reply::new()
                .title(&format!("Job {} ({}) {}", job.id, job.kind, state.as_str()))
                .field("status", state.as_str())
                .field("done", &job.done_count.to_string())
                .field("failed", &job.failed_count.to_string());
            if job.failed_count > 0 {
                reply = reply.line(&format!("{}job {} lists what failed and why.", ctx.prefix, job.id));
            }
            reply
        }
    };
    if let Some(error) = &job.error {
        reply = reply.field("error", error);
    }
    let audit = job_audit(job, "job.finish", state.as_str());
    ctx.store.finish_job(&job.id, state, &result, job.error.as_deref(), &audit).await?;
    tracing::info!(
        job = job.id,
        state = state.as_str(),
        done = job.done_count,
        failed = job.failed_count,
        "job finished"
    );
    let edited = ctx.edit(&job.room_id, progress_event, &format!("job-{}-final-edit", job.id), &reply).await;
    let sent = ctx.send(&job.room_id, Some(&job.command_event_id), &format!("job-{}-result", job.id), &reply).await;
    if let Err(error) = edited.and(sent) {
        tracing::warn!(job = job.id, error = format!("{error:#}"), "could not post the job's result; !job shows it");
    }
    Ok(())
}
