//! The generic job runner: confirmed plans run as jobs, concurrently and
//! bounded, in checkpointed batches that survive restarts.
//!
//! Shape (Synapse's task scheduler, with types instead of string keys): a
//! [`Kind`] says how to plan, run one batch and report; kinds are registered
//! once where the service is wired ([`JobsBuilder::register`]) and looked up
//! by their stored name only to resume what the database holds. The runner
//! knows no kind by name and no front-end: what it has to say goes to the
//! [`Sink`] it was given.
//!
//! - **Batches**: each returns its next cursor, tally, item outcomes and audit
//!   entries; the runner commits them in one database transaction. After a
//!   crash the batch in flight runs again; kinds make their homeserver writes
//!   idempotent (see [`Kind`]).
//! - **Concurrency**: at most `jobs.max_concurrent` jobs at once. Moderation
//!   jobs go first; a background job gives up its slot after its current
//!   batch when a moderation job is waiting for one.
//! - **Item locks**: two jobs never act on the same item key at once.
//! - **Failures**: a batch that errs is tried again (2 s, 4 s, 8 s). If the
//!   homeserver is still unreachable the job pauses and resumes later
//!   (30 s, 2 min, 8 min, then every 10 min); any other error fails it.
//! - **Panics** in a job end that job as failed (recorded first, then its
//!   clean-up runs, e.g. sender tokens revoked, and its room is told); the
//!   runner and the other jobs go on.

mod context;
mod kind;
mod locks;
mod plan;
mod runner;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use context::{Item, PlanContext, RunContext, Services};
pub use kind::{Batch, ItemCursor, Kind, Lane, NoTally, Planned, Size, Tally, TypedJob};
pub use plan::{ConfirmPolicy, PlanMode, PlanOutcome, PlanRequest};
pub(crate) use runner::panic_message;

use crate::notice::{Destination, Sink};
use crate::store::{CancelOutcome, Job};
use kind::ErasedKind;

/// Least time between two edits of a job's progress message.
pub const PROGRESS_EDIT_INTERVAL: Duration = Duration::from_secs(5);

/// The job runner, shared by everything that plans, confirms or cancels jobs.
pub struct Jobs {
    services: Services,
    sink: Arc<dyn Sink>,
    kinds: HashMap<&'static str, Arc<dyn ErasedKind>>,
    runner: runner::Runner,
    /// Plans made at once. A plan streams its selection on one database
    /// connection while writing items on another: more at once would take
    /// the connections transactions from the homeserver need.
    planning: tokio::sync::Semaphore,
}

/// See [`Jobs::planning`].
const CONCURRENT_PLANS: usize = 2;

/// Wires the runner: its services, its sink, and every kind it runs.
pub struct JobsBuilder {
    services: Services,
    sink: Arc<dyn Sink>,
    kinds: HashMap<&'static str, Arc<dyn ErasedKind>>,
    max_concurrent: usize,
    progress_interval: Duration,
}

impl JobsBuilder {
    pub fn new(services: Services, sink: Arc<dyn Sink>, max_concurrent: usize) -> Self {
        Self {
            services,
            sink,
            kinds: HashMap::new(),
            max_concurrent: max_concurrent.max(1),
            progress_interval: PROGRESS_EDIT_INTERVAL,
        }
    }

    /// Registers a kind. Registering one name twice is a wiring mistake.
    pub fn register<K: Kind>(mut self, kind: K) -> Self {
        let previous = self.kinds.insert(K::NAME, Arc::new(kind));
        assert!(previous.is_none(), "job kind {} registered twice", K::NAME);
        self
    }

    pub fn build(self) -> Arc<Jobs> {
        Arc::new(Jobs {
            services: self.services,
            sink: self.sink,
            kinds: self.kinds,
            runner: runner::Runner::new(self.max_concurrent, self.progress_interval),
            planning: tokio::sync::Semaphore::new(CONCURRENT_PLANS),
        })
    }
}

/// The key of a job no message asked for but whose plan is posted (a
/// policy rule's): it starts with `$` as an event ID does, so the runner
/// waits for the plan's message before running it, as for a command's job;
/// its progress and result reply to the plan.
pub const PLANNED_KEY_PREFIX: &str = "$planned-";

impl Jobs {
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The registered kind of type `K`.
    pub fn kind<K: Kind>(&self) -> anyhow::Result<Arc<K>> {
        let kind = self.kinds.get(K::NAME).ok_or_else(|| anyhow::anyhow!("job kind {} is not registered", K::NAME))?;
        kind.clone().as_any().downcast::<K>().map_err(|_| anyhow::anyhow!("job kind {} has another type", K::NAME))
    }

    /// Lets the runner look for work now (a job was confirmed).
    pub fn wake(&self) {
        self.runner.wake();
    }

    /// Cancels a job: one that has not started never will; a running one
    /// stops after its current batch, and waits inside it end at once.
    pub async fn cancel(&self, id: &str) -> anyhow::Result<CancelOutcome> {
        let outcome = self.services.store.cancel_job(id).await?;
        if outcome == CancelOutcome::Stopping {
            self.runner.cancel_running(id);
        }
        Ok(outcome)
    }

    /// Jobs running right now, with their lane.
    pub fn running(&self) -> Vec<(String, Lane)> {
        self.runner.active()
    }

    /// Runs jobs until `shutdown` fires; then lets running batches commit and returns.
    pub async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        runner::run(self, shutdown).await
    }

    /// Where a job's messages go: its room, as replies to the command that
    /// asked for it, or to its plan when no message asked (a job started by
    /// housekeep itself has neither).
    fn destination(job: &Job) -> Destination {
        let in_reply_to = if job.command_event_id.starts_with(PLANNED_KEY_PREFIX) {
            job.plan_event_id.clone()
        } else {
            job.command_event_id.starts_with('$').then(|| job.command_event_id.clone())
        };
        Destination { room_id: job.room_id.clone(), in_reply_to }
    }
}
