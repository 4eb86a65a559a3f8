//! `jobs`: durable, confirmable, checkpointed work.
//!
//! State machine: `planned` → (`!confirm` / ✅ before `expires_at`) →
//! `confirmed` → `running` → `done` | `failed` | `cancelled`. A plan nobody
//! confirms becomes `expired`; `--dry-run` stores `dry_run` and never runs.
//! Every transition is one conditional UPDATE, so two moderators confirming
//! at once, or a confirm racing a cancel, cannot both win.

use serde_json::Value;
use sqlx::Row;

use super::audit::{AuditEntry, insert_audit};
use super::{Store, now_ms};

const JOB_COLUMNS: &str = "id, kind, command_event_id, room_id, requested_by, command_text, plan, plan_hash, state, \
     plan_event_id, progress_event_id, cursor, total_count, done_count, failed_count, batches, result, error, \
     confirmed_by, cancel_requested, created_at, updated_at, expires_at";
const INSERT_JOB: &str = "INSERT INTO jobs (id, kind, command_event_id, room_id, requested_by, command_text, plan, \
     plan_hash, state, total_count, confirmed_by, created_at, updated_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13) ON CONFLICT (command_event_id) DO NOTHING";
const CONFIRM: &str = "UPDATE jobs SET state = 'confirmed', confirmed_by = $2, updated_at = $3 \
     WHERE id = $1 AND state = 'planned' AND expires_at > $3";
const EXPIRE: &str = "UPDATE jobs SET state = 'expired', updated_at = $1 WHERE state = 'planned' AND expires_at <= $1";
const CANCEL_IDLE: &str = "UPDATE jobs SET state = 'cancelled', updated_at = $2 \
     WHERE id = $1 AND state IN ('planned', 'confirmed')";
const CANCEL_RUNNING: &str =
    "UPDATE jobs SET cancel_requested = 1, updated_at = $2 WHERE id = $1 AND state = 'running'";
const START: &str =
    "UPDATE jobs SET state = 'running', updated_at = $2 WHERE id = $1 AND state IN ('confirmed', 'running')";
const CHECKPOINT: &str = "UPDATE jobs SET cursor = $2, done_count = done_count + $3, failed_count = failed_count + $4, \
     batches = batches + 1, updated_at = $5 WHERE id = $1 AND state = 'running'";
const FINISH: &str =
    "UPDATE jobs SET state = $2, result = $3, error = $4, updated_at = $5 WHERE id = $1 AND state = 'running'";
const INSERT_ITEM: &str = "INSERT INTO job_items (job_id, seq, item, state) VALUES ($1, $2, $3, 'pending')";
const SET_ITEM_STATE: &str = "UPDATE job_items SET state = $3, detail = $4 WHERE job_id = $1 AND seq = $2";
const NEXT_ITEMS: &str =
    "SELECT seq, item, state, detail FROM job_items WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const ITEMS_IN_STATE: &str =
    "SELECT seq, item, state, detail FROM job_items WHERE job_id = $1 AND state = $2 ORDER BY seq LIMIT $3";
const COUNT_ITEMS: &str = "SELECT state, COUNT(*) FROM job_items WHERE job_id = $1 GROUP BY state ORDER BY state";
const SET_PLAN_EVENT: &str = "UPDATE jobs SET plan_event_id = $2 WHERE id = $1";
const SET_PROGRESS_EVENT: &str = "UPDATE jobs SET progress_event_id = $2 WHERE id = $1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Planned,
    Confirmed,
    Running,
    Done,
    Failed,
    Cancelled,
    Expired,
    DryRun,
}

impl JobState {
    pub const ALL: [Self; 8] = [
        Self::Planned,
        Self::Confirmed,
        Self::Running,
        Self::Done,
        Self::Failed,
        Self::Cancelled,
        Self::Expired,
        Self::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Confirmed => "confirmed",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::DryRun => "dry_run",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| anyhow::anyhow!("unknown job state {text:?}"))
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled | Self::Expired | Self::DryRun)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub command_event_id: String,
    pub room_id: String,
    pub requested_by: String,
    pub command_text: String,
    pub plan: Value,
    pub plan_hash: String,
    pub state: JobState,
    pub plan_event_id: Option<String>,
    pub progress_event_id: Option<String>,
    pub cursor: Option<Value>,
    pub total_count: i64,
    pub done_count: i64,
    pub failed_count: i64,
    pub batches: i64,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub confirmed_by: Option<String>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
}

/// What a command hands the store to create a job.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: String,
    pub command_event_id: String,
    pub room_id: String,
    pub requested_by: String,
    pub command_text: String,
    pub plan: Value,
    pub plan_hash: String,
    /// `planned`, `confirmed` (`--yes`) or `dry_run`.
    pub state: JobState,
    pub total_count: i64,
    pub expires_at: i64,
    /// What the job works through, in order (stored in `job_items`).
    pub items: Vec<String>,
}

/// How one job item went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    Pending,
    Done,
    Skipped,
    Failed,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// A job item's outcome, committed with the batch's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    pub seq: i64,
    pub state: ItemState,
    pub detail: String,
}

/// A job item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobItem {
    pub seq: i64,
    pub item: String,
    pub state: String,
    pub detail: Option<String>,
}

/// Why a confirm did not take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfirmError {
    #[error("no job {0}")]
    NotFound(String),
    #[error("job {id} expired before it was confirmed; run the command again for a fresh plan")]
    Expired { id: String },
    #[error("job {id} is {state}, not waiting for confirmation")]
    NotPlanned { id: String, state: &'static str },
}

/// The outcome of `!cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It had not started: it never will.
    Cancelled,
    /// It is running: it stops after the current batch.
    Stopping,
    /// It had already ended.
    AlreadyFinal(JobState),
    NotFound,
}

fn job(row: &sqlx::any::AnyRow) -> anyhow::Result<Job> {
    let json = |i: usize| -> anyhow::Result<Option<Value>> {
        Ok(row.try_get::<Option<String>, _>(i)?.map(|text| serde_json::from_str(&text)).transpose()?)
    };
    Ok(Job {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        command_event_id: row.try_get(2)?,
        room_id: row.try_get(3)?,
        requested_by: row.try_get(4)?,
        command_text: row.try_get(5)?,
        plan: json(6)?.unwrap_or(Value::Null),
        plan_hash: row.try_get(7)?,
        state: JobState::parse(&row.try_get::<String, _>(8)?)?,
        plan_event_id: row.try_get(9)?,
        progress_event_id: row.try_get(10)?,
        cursor: json(11)?,
        total_count: row.try_get(12)?,
        done_count: row.try_get(13)?,
        failed_count: row.try_get(14)?,
        batches: row.try_get(15)?,
        result: json(16)?,
        error: row.try_get(17)?,
        confirmed_by: row.try_get(18)?,
        cancel_requested: row.try_get::<i64, _>(19)? != 0,
        created_at: row.try_get(20)?,
        updated_at: row.try_get(21)?,
        expires_at: row.try_get(22)?,
    })
}

fn job_item(row: &sqlx::any::AnyRow) -> anyhow::Result<JobItem> {
    Ok(JobItem { seq: row.try_get(0)?, item: row.try_get(1)?, state: row.try_get(2)?, detail: row.try_get(3)? })
}

impl Store {
    async fn job_where(&self, condition: &'static str, value: &str) -> anyhow::Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition} = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(&self.pool).await?;
        row.as_ref().map(job).transpose()
    }

    pub async fn job(&self, id: &str) -> anyhow::Result<Option<Job>> {
        self.job_where("id", id).await
    }

    pub async fn job_by_plan_event(&self, plan_event_id: &str) -> anyhow::Result<Option<Job>> {
        self.job_where("plan_event_id", plan_event_id).await
    }

    /// Creates the job for a command, or returns the one that command already
    /// made (a command handled again after a crash). The bool is true when new.
    pub async fn create_job(&self, new: &NewJob, audit: &AuditEntry) -> anyhow::Result<(Job, bool)> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let created = sqlx::query(INSERT_JOB)
            .bind(&new.id)
            .bind(&new.kind)
            .bind(&new.command_event_id)
            .bind(&new.room_id)
            .bind(&new.requested_by)
            .bind(&new.command_text)
            .bind(new.plan.to_string())
            .bind(&new.plan_hash)
            .bind(new.state.as_str())
            .bind(new.total_count)
            .bind((new.state == JobState::Confirmed).then_some(new.requested_by.as_str()))
            .bind(now)
            .bind(new.expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if created {
            insert_audit(&mut tx, std::slice::from_ref(audit), now).await?;
            for (seq, item) in new.items.iter().enumerate() {
                sqlx::query(INSERT_ITEM).bind(&new.id).bind(seq as i64).bind(item).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        let job = self.job_where("command_event_id", &new.command_event_id).await?.expect("just inserted");
        Ok((job, created))
    }

    pub async fn set_plan_event(&self, id: &str, event_id: &str) -> anyhow::Result<()> {
        sqlx::query(SET_PLAN_EVENT).bind(id).bind(event_id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn set_progress_event(&self, id: &str, event_id: &str) -> anyhow::Result<()> {
        sqlx::query(SET_PROGRESS_EVENT).bind(id).bind(event_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Confirms a planned, unexpired job, and audits it in the same transaction.
    pub async fn confirm_job(
        &self,
        id: &str,
        by: &str,
        audit: &AuditEntry,
    ) -> anyhow::Result<Result<Job, ConfirmError>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let confirmed = sqlx::query(CONFIRM).bind(id).bind(by).bind(now).execute(&mut *tx).await?.rows_affected() == 1;
        if confirmed {
            insert_audit(&mut tx, std::slice::from_ref(audit), now).await?;
        }
        tx.commit().await?;
        let Some(job) = self.job(id).await? else { return Ok(Err(ConfirmError::NotFound(id.to_owned()))) };
        Ok(match job.state {
            _ if confirmed => Ok(job),
            JobState::Planned | JobState::Expired => Err(ConfirmError::Expired { id: job.id }),
            state => Err(ConfirmError::NotPlanned { id: job.id, state: state.as_str() }),
        })
    }

    pub async fn cancel_job(&self, id: &str) -> anyhow::Result<CancelOutcome> {
        let now = now_ms();
        if sqlx::query(CANCEL_IDLE).bind(id).bind(now).execute(&self.pool).await?.rows_affected() == 1 {
            return Ok(CancelOutcome::Cancelled);
        }
        if sqlx::query(CANCEL_RUNNING).bind(id).bind(now).execute(&self.pool).await?.rows_affected() == 1 {
            return Ok(CancelOutcome::Stopping);
        }
        Ok(match self.job(id).await? {
            Some(job) => CancelOutcome::AlreadyFinal(job.state),
            None => CancelOutcome::NotFound,
        })
    }

    /// Plans nobody confirmed in time become `expired`.
    pub async fn expire_jobs(&self) -> anyhow::Result<u64> {
        Ok(sqlx::query(EXPIRE).bind(now_ms()).execute(&self.pool).await?.rows_affected())
    }

    /// Confirmed jobs and jobs that were running when housekeep stopped, oldest first.
    pub async fn runnable_jobs(&self) -> anyhow::Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('confirmed', 'running') ORDER BY created_at");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(job).collect()
    }

    pub async fn recent_jobs(&self, limit: i64) -> anyhow::Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, id LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(job).collect()
    }

    /// How many jobs are in each state (for `!status`).
    pub async fn job_counts(&self) -> anyhow::Result<Vec<(JobState, i64)>> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((JobState::parse(&row.try_get::<String, _>(0)?)?, row.try_get(1)?))).collect()
    }

    pub async fn start_job(&self, id: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query(START).bind(id).bind(now_ms()).execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Commits one batch: the new cursor, the counts and the audit entries of
    /// what the batch did, together, so a restart resumes exactly after it.
    pub async fn checkpoint_job(
        &self,
        id: &str,
        cursor: &Value,
        done: i64,
        failed: i64,
        items: &[ItemResult],
        audit: &[AuditEntry],
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(CHECKPOINT)
            .bind(id)
            .bind(cursor.to_string())
            .bind(done)
            .bind(failed)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        anyhow::ensure!(updated == 1, "job {id} is no longer running");
        for result in items {
            sqlx::query(SET_ITEM_STATE)
                .bind(id)
                .bind(result.seq)
                .bind(result.state.as_str())
                .bind(&result.detail)
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` items after `after_seq`, in order.
    pub async fn next_job_items(&self, id: &str, after_seq: i64, limit: i64) -> anyhow::Result<Vec<JobItem>> {
        let rows = sqlx::query(NEXT_ITEMS).bind(id).bind(after_seq).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(job_item).collect()
    }

    /// Items in one state, in order, at most `limit`.
    pub async fn job_items_in_state(&self, id: &str, state: ItemState, limit: i64) -> anyhow::Result<Vec<JobItem>> {
        let rows = sqlx::query(ITEMS_IN_STATE).bind(id).bind(state.as_str()).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(job_item).collect()
    }

    /// How many items are in each state.
    pub async fn job_item_counts(&self, id: &str) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(COUNT_ITEMS).bind(id).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Ends a running job in `state` with its result, and audits it.
    pub async fn finish_job(
        &self,
        id: &str,
        state: JobState,
        result: &Value,
        error: Option<&str>,
        audit: &AuditEntry,
    ) -> anyhow::Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let finished = sqlx::query(FINISH)
            .bind(id)
            .bind(state.as_str())
            .bind(result.to_string())
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if finished {
            insert_audit(&mut tx, std::slice::from_ref(audit), now).await?;
        }
        tx.commit().await?;
        Ok(finished)
    }
}
