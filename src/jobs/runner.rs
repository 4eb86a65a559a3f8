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
use crate::homeserver::HsError;
use crate::metrics::PanicLabel;
use crate::notice::Notice;
use crate::store::{AuditEntry, Job, JobState};

/// Retries of a failed batch before the job is paused (an outage) or
/// marked failed (anything else). The homeserver client has already retried
/// each call it made (with backoff, bounded).
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
    /// Jobs whose last run stopped on an error: not started again before
    /// this time, and how many runs in a row failed.
    retry_after: Mutex<HashMap<String, (Instant, i64)>>,
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
            retry_after: Mutex::new(HashMap::new()),
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

    /// A run of the job stopped on an error: it waits before the next one,
    /// longer each time (30 s, 2 min, 8 min, then every 10 min).
    fn run_failed(&self, id: &str) -> Duration {
        let mut retry = self.retry_after.lock().expect("not poisoned");
        let failures = retry.get(id).map_or(0, |(_, n)| *n);
        let delay = crate::clock::retry_delay(Duration::from_secs(30), Duration::from_secs(600), failures);
        retry.insert(id.to_owned(), (Instant::now() + delay, failures + 1));
        delay
    }

    fn waiting_to_retry(&self, id: &str) -> bool {
        self.retry_after.lock().expect("not poisoned").get(id).is_some_and(|(at, _)| *at > Instant::now())
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
        if jobs.runner.active.lock().expect("not poisoned").contains_key(&job.id)
            || jobs.runner.waiting_to_retry(&job.id)
        {
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
        if let Err(failure) = fail(jobs, &job.id, &error).await {
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

/// Marks a job failed whose task died (or that cannot run here), then, in
/// the background so scheduling goes on, cleans up after it and tells its
/// room. Recorded first: it must not be started again meanwhile.
async fn fail(jobs: &Arc<Jobs>, id: &str, error: &str) -> anyhow::Result<()> {
    let mut job = current(jobs, id).await?;
    if job.state.is_final() {
        return Ok(());
    }
    job.error = Some(error.to_owned());
    let audit = job_audit(&job, "job.finish", "failed");
    let result = json!({ "done": job.done_count, "failed": job.failed_count, "batches": job.batches });
    jobs.services.store.finish_job(&job.id, JobState::Failed, &result, Some(error), &audit).await?;
    let jobs = jobs.clone();
    tokio::spawn(async move {
        let kind = jobs.kinds.get(job.kind.as_str()).cloned();
        let cancel = CancellationToken::new();
        let ctx = RunContext::new(&jobs.services, &job, &jobs.runner.locks, cancel);
        let mut notice = Notice::new().title(&format!("Job {} ({}) failed", job.id, job.kind));
        if let Some(kind) = &kind {
            if let Err(error) = kind.ended(&ctx, &job).await {
                tracing::warn!(job = job.id, error = format!("{error:#}"), "job clean-up failed");
            }
            if let Ok(described) = kind.result(&ctx, &job, JobState::Failed).await {
                notice = described;
            }
        }
        report(&jobs, &job, job.progress_event_id.as_deref(), notice.field("status", "failed")).await;
    });
    Ok(())
}

/// Posts a job's result, and puts it in its progress message.
async fn report(jobs: &Jobs, job: &Job, progress_event: Option<&str>, mut notice: Notice) {
    if let Some(error) = &job.error {
        notice = notice.field("error", error);
    }
    let edited = match progress_event {
        Some(event) => jobs.sink.edit(&job.room_id, event, &format!("job-{}-final-edit", job.id), &notice).await,
        None => Ok(String::new()),
    };
    let sent = jobs.sink.post(&Jobs::destination(job), &format!("job-{}-result", job.id), &notice).await;
    if let Err(error) = edited.and(sent) {
        tracing::warn!(job = job.id, error = format!("{error:#}"), "could not post the job's result; !job shows it");
    }
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
        Ok(paused) => {
            jobs.runner.retry_after.lock().expect("not poisoned").remove(&id);
            match paused {
                None => {}
                Some(Paused::Yielded) => {
                    tracing::info!(job = id, "job gave its slot to a moderation job; resumes later")
                }
                Some(Paused::Shutdown) => {
                    tracing::info!(job = id, "job paused for shutdown; resumes at the next start")
                }
            }
        }
        // The job stays `running` and is taken up again after a while:
        // whatever stopped it (an outage, a database error) may pass.
        Err(error) => {
            let delay = jobs.runner.run_failed(&id);
            tracing::warn!(job = id, error = format!("{error:#}"), ?delay, "job interrupted; will resume");
        }
    }
}

/// Whether an error is the homeserver being unreachable or overloaded
/// (after the client's retries): a reason to pause a job, not to fail it.
fn is_outage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<HsError>().is_some_and(HsError::is_retryable))
}

/// Runs a job to its end, or until it pauses. `Ok(None)`: it ended.
async fn drive(jobs: &Arc<Jobs>, job: Job, cancel: &CancellationToken) -> anyhow::Result<Option<Paused>> {
    let store = &jobs.services.store;
    let Some(kind) = jobs.kinds.get(job.kind.as_str()).cloned() else {
        // Persisted by another version of housekeep: say so, do not guess.
        if store.start_job(&job.id).await? {
            let error = format!("this version of housekeep has no job kind {:?}", job.kind);
            fail(jobs, &job.id, &error).await?;
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
    // Progress is cosmetic: a job whose progress message cannot be posted
    // (the bot lost its voice in the room) runs without one.
    let progress_event = match &job.progress_event_id {
        Some(event_id) => Some(event_id.clone()),
        None => {
            let key = format!("job-{}-progress", job.id);
            let posted = match kind.progress(&job) {
                Ok(notice) => jobs.sink.post(&Jobs::destination(&job), &key, &notice).await,
                Err(error) => Err(error),
            };
            match posted {
                Ok(event_id) => {
                    store.set_progress_event(&job.id, &event_id).await?;
                    Some(event_id)
                }
                Err(error) => {
                    tracing::info!(job = job.id, error = format!("{error:#}"), "cannot post the progress message");
                    None
                }
            }
        }
    };
    let mut last_edit = Instant::now();
    let mut backoff = batch_backoff();
    let state = loop {
        if job.cancel_requested {
            break JobState::Cancelled;
        }
        if cancel.is_cancelled() {
            // `!cancel` sets cancel_requested, then cancels the token: read
            // the job again before calling it a shutdown.
            job = current(jobs, &job.id).await?;
            if job.cancel_requested {
                break JobState::Cancelled;
            }
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
                if is_outage(&error) {
                    // Nothing is wrong with the job: it waits for the homeserver.
                    return Err(error.context("the homeserver is unreachable; the job is paused"));
                }
                job.error = Some(format!("{error:#}"));
                break JobState::Failed;
            }
        }
        if last_edit.elapsed() >= jobs.runner.progress_interval {
            let key = format!("job-{}-edit-{}", job.id, job.batches);
            // Progress is cosmetic: a failed edit must not stop the job.
            let edited = match (kind.progress(&job), &progress_event) {
                (Ok(notice), Some(event)) => jobs.sink.edit(&job.room_id, event, &key, &notice).await,
                (Ok(_), None) => Ok(String::new()),
                (Err(error), _) => Err(error),
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
    finish(jobs, kind.as_ref(), &job, progress_event.as_deref(), state, cancel).await?;
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
/// under the same keys (deduplicated by Synapse when soon after; a report
/// twice beats none).
async fn finish(
    jobs: &Jobs,
    kind: &dyn ErasedKind,
    job: &Job,
    progress_event: Option<&str>,
    state: JobState,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let ctx = RunContext::new(&jobs.services, job, &jobs.runner.locks, cancel.clone());
    if let Err(error) = kind.ended(&ctx, job).await {
        tracing::warn!(job = job.id, error = format!("{error:#}"), "job clean-up failed");
    }
    let notice = match kind.result(&ctx, job, state).await {
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
    report(jobs, job, progress_event, notice).await;
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
