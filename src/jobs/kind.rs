//! What a job kind provides, and the type erasure that lets the runner hold
//! kinds of every type in one registry.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::context::{PlanContext, RunContext};
use crate::notice::Notice;
use crate::store::{AuditEntry, ItemResult, ItemState, Job, JobState};

/// Which jobs wait for which: moderation jobs (a takedown during a spam
/// wave) never wait behind background work (hours of backfill) for longer
/// than one of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Acts on the homeserver for a moderator now.
    Moderation,
    /// Long, resumable, can wait.
    Background,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Moderation => "moderation",
            Self::Background => "background",
        }
    }
}

/// For kinds that work through their job items in order: the last item
/// done (`-1` before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ItemCursor(pub i64);

impl Default for ItemCursor {
    fn default() -> Self {
        Self(-1)
    }
}

/// How big a selection is, for the confirmation thresholds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub events: i64,
    pub media: i64,
}

impl From<crate::config::Threshold> for Size {
    fn from(t: crate::config::Threshold) -> Self {
        Self { events: t.events, media: t.media }
    }
}

/// What planning found.
#[derive(Debug, Clone)]
pub struct Planned<P> {
    /// The typed plan the job runs by (stored as JSON, hashed).
    pub plan: P,
    /// What a moderator reads before confirming.
    pub summary: Notice,
    pub size: Size,
    /// Why the job cannot run as things are (the plan is still shown).
    pub blocked: Option<String>,
    /// It cannot be undone (a deactivation): never run by `--yes`, and
    /// confirmed by a second moderator wherever the two-person rule is on.
    pub irreversible: bool,
}

/// A kind's running totals: what each batch adds, summed across batches
/// (and restarts) and stored with the checkpoint.
pub trait Tally: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static {
    fn add(&mut self, other: Self);
}

/// For kinds whose counts of done and failed items say everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoTally;

impl Tally for NoTally {
    fn add(&mut self, _: Self) {}
}

/// A job as its kind sees it: the stored record with its plan, cursor and
/// tally decoded into the kind's types.
pub struct TypedJob<K: Kind + ?Sized> {
    pub record: Job,
    pub plan: K::Plan,
    pub cursor: K::Cursor,
    pub tally: K::Tally,
}

impl<K: Kind + ?Sized> TypedJob<K> {
    pub fn decode(record: Job) -> anyhow::Result<Self> {
        let plan = serde_json::from_value(record.plan.clone())
            .map_err(|e| anyhow::anyhow!("job {} has a plan this version cannot read: {e}", record.id))?;
        let cursor = match &record.cursor {
            Some(cursor) => serde_json::from_value(cursor.clone())
                .map_err(|e| anyhow::anyhow!("job {} has a cursor this version cannot read: {e}", record.id))?,
            None => K::Cursor::default(),
        };
        let tally = match &record.tally {
            Some(tally) => serde_json::from_value(tally.clone())
                .map_err(|e| anyhow::anyhow!("job {} has totals this version cannot read: {e}", record.id))?,
            None => K::Tally::default(),
        };
        Ok(Self { record, plan, cursor, tally })
    }
}

/// What one batch did. The runner commits all of it in one database
/// transaction with the new cursor.
pub struct Batch<K: Kind + ?Sized> {
    /// Where the next batch starts.
    pub cursor: K::Cursor,
    /// Outcomes of the items this batch handled.
    pub items: Vec<ItemResult>,
    /// What this batch adds to the running totals.
    pub tally: K::Tally,
    pub audit: Vec<AuditEntry>,
    /// Work done and failed that items do not count (kinds without items).
    pub extra_done: i64,
    pub extra_failed: i64,
    /// Nothing is left after this batch.
    pub finished: bool,
    /// The next batch should not start before this (the kind waits for the
    /// homeserver to finish something, e.g. a history purge).
    pub wait: Option<std::time::Duration>,
}

impl<K: Kind + ?Sized> Batch<K> {
    pub fn new(cursor: K::Cursor) -> Self {
        Self {
            cursor,
            items: Vec::new(),
            tally: K::Tally::default(),
            audit: Vec::new(),
            extra_done: 0,
            extra_failed: 0,
            finished: false,
            wait: None,
        }
    }

    /// Records one item's outcome and its audit entry (`action` on the item's key).
    pub fn item(&mut self, job: &Job, item: ItemResult, action: &str) {
        self.audit.push(AuditEntry {
            actor: job.actor().to_owned(),
            room_id: Some(job.room_id.clone()),
            job_id: Some(job.id.clone()),
            action: action.to_owned(),
            target: Some(item.key.clone()),
            outcome: format!("{}: {}", item.state.as_str(), item.detail),
            ..AuditEntry::default()
        });
        self.items.push(item);
    }

    pub fn done(&self) -> i64 {
        self.extra_done + self.items.iter().filter(|i| i.state == ItemState::Done).count() as i64
    }

    pub fn failed(&self) -> i64 {
        self.extra_failed + self.items.iter().filter(|i| i.state == ItemState::Failed).count() as i64
    }
}

/// A job kind: how it plans, runs one checkpointed batch, and reports.
///
/// Batches must be safe to redo: after a crash the batch that was in flight
/// runs again, so whatever it does on the homeserver must be idempotent
/// (deterministic transaction IDs with a stable token, or a check first).
#[async_trait]
pub trait Kind: Send + Sync + 'static {
    /// The name stored in `jobs.kind` and shown to people.
    const NAME: &'static str;
    const LANE: Lane;
    /// The command's parsed arguments.
    type Args: Send + Sync;
    type Plan: Serialize + DeserializeOwned + Send + Sync;
    type Cursor: Serialize + DeserializeOwned + Default + Send + Sync;
    type Tally: Tally;

    /// Selects what the job will act on, writes its items through `ctx`, and
    /// describes it. Makes no change anywhere but the job's own rows.
    async fn plan(&self, ctx: &mut PlanContext<'_>, args: &Self::Args) -> anyhow::Result<Planned<Self::Plan>>;

    /// Does the next piece of work after the job's cursor.
    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>>;

    /// A one-line progress report, edited into the progress message.
    fn progress(&self, job: &TypedJob<Self>) -> Notice {
        let record = &job.record;
        Notice::new().line(&format!(
            "Job {} ({}) running: {}/{} done, {} failed, {} batches.",
            record.id, record.kind, record.done_count, record.total_count, record.failed_count, record.batches
        ))
    }

    /// The final report, from the job's tally and items (never all of them at once).
    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice>;

    /// Clean-up when the job ends however it ends (e.g. revoking tokens it minted).
    async fn ended(&self, _ctx: &RunContext<'_>, _job: &TypedJob<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What the runner needs of any kind, with JSON in place of the kind's types.
#[async_trait]
pub(super) trait ErasedKind: Send + Sync {
    fn lane(&self) -> Lane;
    async fn run_batch(&self, ctx: &RunContext<'_>, job: &Job) -> anyhow::Result<ErasedBatch>;
    fn progress(&self, job: &Job) -> anyhow::Result<Notice>;
    async fn result(&self, ctx: &RunContext<'_>, job: &Job, state: JobState) -> anyhow::Result<Notice>;
    async fn ended(&self, ctx: &RunContext<'_>, job: &Job) -> anyhow::Result<()>;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A batch with its cursor and the new running totals as JSON.
pub(super) struct ErasedBatch {
    pub cursor: Value,
    pub tally: Value,
    pub items: Vec<ItemResult>,
    pub audit: Vec<AuditEntry>,
    pub done: i64,
    pub failed: i64,
    pub finished: bool,
    pub wait: Option<std::time::Duration>,
}

#[async_trait]
impl<K: Kind> ErasedKind for K {
    fn lane(&self) -> Lane {
        K::LANE
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &Job) -> anyhow::Result<ErasedBatch> {
        let typed = TypedJob::<K>::decode(job.clone())?;
        let batch = Kind::run_batch(self, ctx, &typed).await?;
        let (done, failed) = (batch.done(), batch.failed());
        let mut tally = typed.tally;
        tally.add(batch.tally);
        Ok(ErasedBatch {
            cursor: serde_json::to_value(&batch.cursor)?,
            tally: serde_json::to_value(&tally)?,
            items: batch.items,
            audit: batch.audit,
            done,
            failed,
            finished: batch.finished,
            wait: batch.wait,
        })
    }

    fn progress(&self, job: &Job) -> anyhow::Result<Notice> {
        Ok(Kind::progress(self, &TypedJob::<K>::decode(job.clone())?))
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &Job, state: JobState) -> anyhow::Result<Notice> {
        Kind::result(self, ctx, &TypedJob::<K>::decode(job.clone())?, state).await
    }

    async fn ended(&self, ctx: &RunContext<'_>, job: &Job) -> anyhow::Result<()> {
        Kind::ended(self, ctx, &TypedJob::<K>::decode(job.clone())?).await
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
