//! The narrow contexts a kind is handed: to plan, and to run one batch.

use std::sync::Arc;

use ruma::OwnedUserId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::locks::{ItemLocks, LockGuard};
use crate::homeserver::HomeserverClient;
use crate::metrics::Metrics;
use crate::notice::{Destination, Notice, Sink};
use crate::store::{AuditEntry, Job, JobItem, Store};

/// What every kind may use: the index, the homeserver, the metrics.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub homeserver: HomeserverClient,
    pub metrics: Arc<Metrics>,
    pub bot_user_id: OwnedUserId,
    /// The chat command prefix, for hints in texts (`!job abc lists …`).
    pub prefix: String,
    /// Where notices for the operators go (the admin room), if anywhere.
    pub operators: Option<(Arc<dyn Sink>, Destination)>,
    /// Rung when media was queued for download outside a transaction.
    pub media_wake: Arc<tokio::sync::Notify>,
    /// Homeserver calls in flight per job (`jobs.homeserver_concurrency`).
    pub homeserver_concurrency: usize,
    /// The policy lists watched (the transaction handler routes by it).
    pub watched_lists: crate::policy::WatchedRooms,
}

impl Services {
    /// The homeserver's own server name (the bot's).
    pub fn server_name(&self) -> &str {
        self.bot_user_id.server_name().as_str()
    }

    /// Tells the operators something that happened by itself (not in reply
    /// to a command). `key` makes it idempotent. A failure is logged: what
    /// happened is in the audit log either way.
    pub async fn tell_operators(&self, key: &str, notice: &Notice) {
        let Some((sink, to)) = &self.operators else { return };
        if let Err(error) = sink.post(to, key, notice).await {
            tracing::warn!(error = format!("{error:#}"), "could not tell the operators");
        }
    }
}

/// Items are written in chunks of this many while a plan is made, so a
/// selection of millions never sits in memory or holds a write lock long.
const ITEM_CHUNK: usize = 2_000;

/// Planning: the services, the job being planned, and where its items go.
pub struct PlanContext<'a> {
    pub services: &'a Services,
    pub job_id: &'a str,
    /// The moderator asking.
    pub requested_by: &'a str,
    /// "Now" for the whole plan (relative times resolve against it).
    pub now_ms: i64,
    /// A dry run: its items are counted (written, to count each key once),
    /// then dropped; nothing will run them.
    pub dry_run: bool,
    /// Only describe: write nothing (the summary of a job planned before).
    describe_only: bool,
    pending: Vec<(String, Value)>,
    next_seq: i64,
    written: i64,
}

impl<'a> PlanContext<'a> {
    pub(super) fn new(
        services: &'a Services,
        job_id: &'a str,
        requested_by: &'a str,
        now_ms: i64,
        dry_run: bool,
    ) -> Self {
        Self {
            services,
            job_id,
            requested_by,
            now_ms,
            dry_run,
            describe_only: false,
            pending: Vec::new(),
            next_seq: 0,
            written: 0,
        }
    }

    /// A context that writes nothing: for the summary of an existing plan.
    pub(super) fn describe_only(services: &'a Services, job_id: &'a str, requested_by: &'a str, now_ms: i64) -> Self {
        Self { describe_only: true, ..Self::new(services, job_id, requested_by, now_ms, true) }
    }

    /// Adds an item the job will work through, in order. `key` is its
    /// identity: an item whose key the job lists already is not added again.
    pub async fn push_item<I: Serialize>(&mut self, key: String, item: &I) -> anyhow::Result<()> {
        if self.describe_only {
            self.written += 1;
            return Ok(());
        }
        self.pending.push((key, serde_json::to_value(item)?));
        if self.pending.len() >= ITEM_CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the items pushed so far.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.pending);
        let inserted = self.services.store.insert_job_items(self.job_id, self.next_seq, &chunk).await?;
        self.next_seq += chunk.len() as i64;
        self.written += inserted as i64;
        Ok(())
    }

    /// How many distinct items the plan holds (a dry run: would hold), as of
    /// the last [`flush`](Self::flush): keys repeated across chunks count once.
    pub fn items_written(&self) -> i64 {
        self.written
    }
}

/// One batch: the services, the job, item locks and the job's cancellation.
pub struct RunContext<'a> {
    pub services: &'a Services,
    pub job: &'a Job,
    locks: &'a std::sync::Arc<ItemLocks>,
    held: std::sync::Mutex<Vec<LockGuard>>,
    /// Fires on `!cancel` and on shutdown: long waits inside a batch stop.
    pub cancel: CancellationToken,
}

/// A job item decoded into the kind's type.
pub struct Item<I> {
    pub seq: i64,
    pub key: String,
    pub item: I,
}

impl<'a> RunContext<'a> {
    pub(super) fn new(
        services: &'a Services,
        job: &'a Job,
        locks: &'a std::sync::Arc<ItemLocks>,
        cancel: CancellationToken,
    ) -> Self {
        Self { services, job, locks, held: std::sync::Mutex::new(Vec::new()), cancel }
    }

    /// The next `limit` items after `after_seq`, locked for this batch: no
    /// other job's batch acts on the same key until this one is committed.
    pub async fn next_items<I: DeserializeOwned>(&self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<Item<I>>> {
        let rows = self.services.store.next_job_items(&self.job.id, after_seq, limit).await?;
        self.lock(rows.iter().map(|r| r.key.clone()).collect()).await;
        rows.into_iter().map(|row| decode_item(&self.job.id, row)).collect()
    }

    /// Locks keys for the rest of this batch (for kinds that find their items as they go).
    pub async fn lock(&self, keys: Vec<String>) {
        let guard = self.locks.acquire(keys).await;
        self.held.lock().expect("not poisoned").push(guard);
    }

    /// Whether items remain after `seq`.
    pub async fn has_items_after(&self, seq: i64) -> anyhow::Result<bool> {
        Ok(!self.services.store.next_job_items(&self.job.id, seq, 1).await?.is_empty())
    }

    /// An audit entry about this job, acting for its moderator.
    pub fn audit(&self, action: &str, target: Option<String>, outcome: String) -> AuditEntry {
        AuditEntry {
            actor: self.job.actor().to_owned(),
            room_id: Some(self.job.room_id.clone()),
            job_id: Some(self.job.id.clone()),
            action: action.to_owned(),
            target,
            outcome,
            ..AuditEntry::default()
        }
    }
}

fn decode_item<I: DeserializeOwned>(job_id: &str, row: JobItem) -> anyhow::Result<Item<I>> {
    let item = serde_json::from_value(row.item)
        .map_err(|e| anyhow::anyhow!("job {job_id} item {} cannot be read by this version: {e}", row.seq))?;
    Ok(Item { seq: row.seq, key: row.key, item })
}
