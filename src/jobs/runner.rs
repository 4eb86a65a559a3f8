//! The scheduler and the life of one job: start, batches, progress, end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::context::RunContext;
use super::kind::{ErasedKind, Lane};
use super::locks::ItemLocks;
use crate::metrics::PanicLabel;
use crate::notice::Notice;
use crate::store::{AuditEntry, Job, JobState};

/// Retries of a failed batch before the job is marked failed. The
/// homeserver client has already retried each call it made (with backoff,
/// bounded), so this bounds the whole at a few minutes.
const BATCH_RETRIES: usize = 3;
/// How often the runner looks for work when nobody wakes it.
const IDLE_POLL: Duration = Duration::from_secs(10);

/// Scheduling state shared by the loop and the job tasks.
pub(super) struct Runner {
    max_concurrent: usize,
    progress_interval: Duration,
    wake: Notify,
    locks: Arc<ItemLocks>,
    /// Running jobs: lane and the token that stops waits inside their batch.
    active: Mutex<HashMap<String, (Lane, CancellationToken)>>,
    /// Moderation jobs waiting for a slot that no free slot will take:
    /// that many background jobs give theirs up after their current batch.
    slots_wanted: AtomicUsize,
}

impl Runner {
    pub fn new(max_concurrent: usize, progress_interval: Duration) -> Self {
        Self {
            max_concurrent,
            progress_interval,
            wake: Notify::new(),
            locks: ItemLocks::new(),
            active: Mutex::new(HashMap::new()),
            slots_wanted: AtomicUsize::new(0),
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn cancel_running(&self, id: &str) {
        if let Some((_, token)) = self.active.lock().expect("not poisoned").get(id) {
            token.cancel();
        }
    }

    pub fn active(&self) -> Vec<(String, Lane)> {
        let active = self.active.lock().expect("not poisoned");
        let mut jobs: Vec<_> = active.iter().map(|(id, (lane, _))| (id.clone(), *lane)).collect();
        jobs.sort();
        jobs
    }

    /// A background job asks whether to give its slot to a waiting moderation job.
    fn should_yield(&self) -> bool {
        self.slots_wanted.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// How a job's task ended, short of finishing.
enum Paused {
    /// It gave its slot to a moderation job; it resumes when a slot is free.
    Yielded,
    /// Shutdown: its last batch is committed; it resumes at the next start.
    Shutdown,
}

pub(super) async fn run(jobs: Arc<Jobs>, shutdown: CancellationToken) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut task_jobs: HashMap<tokio::task::Id, Job> = HashMap::new();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if let Err(error) = schedule(&jobs, &shutdown, &mut tasks, &mut task_jobs).await {
            tracing::warn!(error = format!("{error:#}"), "cannot look for runnable jobs; will retry");
        }
        tokio::select! {
            _ = jobs.runner.wake.notified() => {}
            Some(ended) = tasks.join_next_with_id() => reap(&jobs, &mut task_jobs, ended).await,
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    // Running batches see the shutdown, commit what they did and stop.
    for (_, token) in jobs.runner.active.lock().expect("not poisoned").values() {
        token.cancel();
    }
    while let Some(ended) = tasks.join_next_with_id().await {
        reap(&jobs, &mut task_jobs, ended).await;
    }
}

/// Starts what fits: moderation jobs first, then the oldest.
async fn schedule(
    jobs: &Arc<Jobs>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
    task_jobs: &mut HashMap<tokio::task::Id, Job>,
) -> anyhow::Result<()> {
    let store = &jobs.services.store;
    store.expire_jobs().await?;
    let mut waiting: Vec<(Lane, Job)> = Vec::new();
    for job in store.runnable_jobs().await? {
        if jobs.runner.active.lock().expect("not poisoned").contains_key(&job.id) {
            continue;
        }
        let lane = jobs.kinds.get(job.kind.as_str()).map_or(Lane::Moderation, |kind| kind.lane());
        waiting.push((lane, job));
    }
    waiting.sort_by_key(|(lane, job)| (*lane, job.created_at));
    let mut moderation_left = 0;
    for (lane, job) in waiting {
        let mut active = jobs.runner.active.lock().expect("not poisoned");
        if active.len() >= jobs.runner.max_concurrent {
            moderation_left += usize::from(lane == Lane::Moderation);
            continue;
        }
        let token = shutdown.child_token();
        active.insert(job.id.clone(), (lane, token.clone()));
        drop(active);
        let handle = tasks.spawn(run_job(jobs.clone(), job.clone(), token));
        task_jobs.insert(handle.id(), job);
    }
    jobs.runner.slots_wanted.store(moderation_left, Ordering::SeqCst);
    Ok(())
}

/// A job's task ended: a panic fails the job (audited, counted, reported).
async fn reap(
    jobs: &Arc<Jobs>,
    task_jobs: &mut HashMap<tokio::task::Id, Job>,
    ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let id = match &ended {
        Ok((id, ())) => *id,
        Err(error) => error.id(),
    };
    let Some(job) = task_jobs.remove(&id) else { return };
    jobs.runner.active.lock().expect("not poisoned").remove(&job.id);
    if let Err(error) = ended
        && error.is_panic()
    {
        let message = panic_message(error.into_panic());
        tracing::error!(job = job.id, kind = job.kind, panic = message, "a job panicked; it is marked failed");
        jobs.services.metrics.panics.get_or_create(&PanicLabel { worker: "job" }).inc();
        let error = format!("housekeep hit an internal error running this job (a bug; please report it): {message}");
        if let Err(failure) = fail(jobs, &job, &error).await {
            tracing::error!(job = job.id, error = format!("{failure:#}"), "cannot record the job's failure");
        }
    }
    jobs.runner.wake();
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Marks a job failed after its task died, and tells its room.
async fn fail(jobs: &Jobs, job: &Job, error: &str) -> anyhow::Result<()> {
    let audit = job_audit(job, "job.finish", "failed");
    let result = json!({ "done": job.done_count, "failed": job.failed_count, "batches": job.batches });
    jobs.services.store.finish_job(&job.id, JobState::Failed, &result, Some(error), &audit).await?;
    let notice = Notice::new()
        .title(&format!("Job {} ({}) failed", job.id, job.kind))
        .field("status", "failed")
        .field("error", error);
    jobs.sink.post(&Jobs::destination(job), &format!("job-{}-result", job.id), &notice).await?;
    Ok(())
}

fn job_audit(job: &Job, action: &str, outcome: &str) -> AuditEntry {
    AuditEntry {
        actor: job.actor().to_owned(),
        room_id: Some(job.room_id.clone()),
        event_id: Some(job.command_event_id.clone()),
        job_id: Some(job.id.clone()),
        action: action.to_owned(),
        command: Some(job.command_text.clone()),
        outcome: outcome.to_owned(),
        ..AuditEntry::default()
    }
}

async fn run_job(jobs: Arc<Jobs>, job: Job, cancel: CancellationToken) {
    let id = job.id.clone();
    match drive(&jobs, job, &cancel).await {
        Ok(None) => {}
        Ok(Some(Paused::Yielded)) => tracing::info!(job = id, "job gave its slot to a moderation job; resumes later"),
        Ok(Some(Paused::Shutdown)) => tracing::info!(job = id, "job paused for shutdown; resumes at the next start"),
        // The job stays `running` and is taken up again by the next round.
        Err(error) => tracing::warn!(job = id, error = format!("{error:#}"), "job interrupted; will resume"),
    }
}

/// Runs a job to its end, or until it pauses. `Ok(None)`: it ended.
async fn drive(jobs: &Arc<Jobs>, job: Job, cancel: &CancellationToken) -> anyhow::Result<Option<Paused>> {
    let store = &jobs.services.store;
    let Some(kind) = jobs.kinds.get(job.kind.as_str()).cloned() else {
        // Persisted by another version of housekeep: say so, do not guess.
        if store.start_job(&job.id).await? {
            let error = format!("this version of housekeep has no job kind {:?}", job.kind);
            fail(jobs, &job, &error).await?;
        }
        return Ok(None);
    };
    let resumed = job.state == JobState::Running;
    if !store.start_job(&job.id).await? {
        return Ok(None);
    }
    tracing::info!(job = job.id, kind = job.kind, resumed, "job running");
    if !resumed {
        store.audit(job_audit(&job, "job.start", "running")).await?;
    }
    let mut job = current(jobs, &job.id).await?;
    let progress_event = match &job.progress_event_id {
        Some(event_id) => event_id.clone(),
        None => {
            let key = format!("job-{}-progress", job.id);
            let event_id = jobs.sink.post(&Jobs::destination(&job), &key, &kind.progress(&job)?).await?;
            store.set_progress_event(&job.id, &event_id).await?;
            event_id
        }
    };
    let mut last_edit = Instant::now();
    let mut backoff = batch_backoff();
    let state = loop {
        if job.cancel_requested {
            break JobState::Cancelled;
        }
        if cancel.is_cancelled() {
            // Not a cancel of this job (that sets cancel_requested): shutdown.
            return Ok(Some(Paused::Shutdown));
        }
        let ctx = RunContext::new(&jobs.services, &job, &jobs.runner.locks, cancel.clone());
        // A panic here unwinds this task only: the runner reaps it and fails the job.
        match kind.run_batch(&ctx, &job).await {
            Ok(batch) => {
                backoff = batch_backoff();
                store
                    .checkpoint_job(
                        &job.id,
                        &batch.cursor,
                        &batch.tally,
                        batch.done,
                        batch.failed,
                        &batch.items,
                        &batch.audit,
                    )
                    .await?;
                drop(ctx);
                job = current(jobs, &job.id).await?;
                if batch.finished {
                    break JobState::Done;
                }
                if let Some(wait) = batch.wait {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => {}
                    }
                    job = current(jobs, &job.id).await?;
                }
            }
            Err(error)
                if !cancel.is_cancelled()
                    && let Some(delay) = backoff.next() =>
            {
                drop(ctx);
                tracing::warn!(job = job.id, ?delay, error = format!("{error:#}"), "batch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => {}
                }
                job = current(jobs, &job.id).await?;
                continue;
            }
            Err(error) => {
                drop(ctx);
                if cancel.is_cancelled() {
                    job = current(jobs, &job.id).await?;
                    continue;
                }
                job.error = Some(format!("{error:#}"));
                break JobState::Failed;
            }
        }
        if last_edit.elapsed() >= jobs.runner.progress_interval {
            let key = format!("job-{}-edit-{}", job.id, job.batches);
            // Progress is cosmetic: a failed edit must not stop the job.
            let edited = match kind.progress(&job) {
                Ok(notice) => jobs.sink.edit(&job.room_id, &progress_event, &key, &notice).await,
                Err(error) => Err(error),
            };
            if let Err(error) = edited {
                tracing::info!(job = job.id, error = format!("{error:#}"), "progress edit failed");
            }
            last_edit = Instant::now();
        }
        if kind.lane() == Lane::Background && jobs.runner.should_yield() {
            return Ok(Some(Paused::Yielded));
        }
    };
    finish(jobs, kind.as_ref(), &job, &progress_event, state, cancel).await?;
    Ok(None)
}

/// Waits between attempts at a failing batch: 2 s, 4 s, 8 s, then give up.
fn batch_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default().with_min_delay(Duration::from_secs(2)).with_max_times(BATCH_RETRIES).build()
}

/// The job as stored now; one that vanished (deleted by hand) is an error, not a panic.
async fn current(jobs: &Jobs, id: &str) -> anyhow::Result<Job> {
    jobs.services.store.job(id).await?.ok_or_else(|| anyhow::anyhow!("job {id} is no longer in the database"))
}

/// Reports the end, then records it. In that order: if housekeep dies in
/// between, the job is resumed, finds nothing left to do, and reports again
/// under the same keys, which the sink posts once.
async fn finish(
    jobs: &Jobs,
    kind: &dyn ErasedKind,
    job: &Job,
    progress_event: &str,
    state: JobState,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let ctx = RunContext::new(&jobs.services, job, &jobs.runner.locks, cancel.clone());
    if let Err(error) = kind.ended(&ctx, job).await {
        tracing::warn!(job = job.id, error = format!("{error:#}"), "job clean-up failed");
    }
    let mut notice = match kind.result(&ctx, job, state).await {
        Ok(notice) => notice,
        Err(error) => {
            tracing::warn!(job = job.id, error = format!("{error:#}"), "cannot describe the job's result");
            Notice::new()
                .title(&format!("Job {} ({}) {}", job.id, job.kind, state.as_str()))
                .field("status", state.as_str())
                .field("done", &job.done_count.to_string())
                .field("failed", &job.failed_count.to_string())
        }
    };
    if let Some(error) = &job.error {
        notice = notice.field("error", error);
    }
    let edited = jobs.sink.edit(&job.room_id, progress_event, &format!("job-{}-final-edit", job.id), &notice).await;
    let sent = jobs.sink.post(&Jobs::destination(job), &format!("job-{}-result", job.id), &notice).await;
    if let Err(error) = edited.and(sent) {
        tracing::warn!(job = job.id, error = format!("{error:#}"), "could not post the job's result; !job shows it");
    }
    let result = json!({ "done": job.done_count, "failed": job.failed_count, "batches": job.batches });
    let audit = job_audit(job, "job.finish", state.as_str());
    jobs.services.store.finish_job(&job.id, state, &result, job.error.as_deref(), &audit).await?;
    tracing::info!(
        job = job.id,
        state = state.as_str(),
        done = job.done_count,
        failed = job.failed_count,
        "job finished"
    );
    Ok(())
}
