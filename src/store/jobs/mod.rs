//! `jobs`: durable, confirmable, checkpointed work; its items
//! ([`items`], `job_items`) and the tokens it minted ([`tokens`], `job_tokens`).
//!
//! State machine: `planning` (items being written) → `planned` → (`!confirm`
//! / ✅ before `expires_at`) → `confirmed` → `running` → `done` | `failed` |
//! `cancelled`. A plan nobody confirms becomes `expired`; `--dry-run` stores
//! `dry_run` and never runs. Every transition is one conditional UPDATE, so
//! two moderators confirming at once, or a confirm racing a cancel, cannot
//! both win.
//!
//! Plans, cursors, tallies and items are the job kind's typed values as JSON;
//! this module stores them without looking inside.

mod items;
mod tokens;

use serde_json::Value;
use sqlx::AssertSqlSafe;

pub use items::{ItemResult, ItemState, JobItem};
pub use tokens::JobToken;

use super::Store;
use super::audit::{AuditEntry, insert_audit};
use super::sql::Counted;
use crate::clock::now_ms;

const JOB_COLUMNS: &str = "id, kind, command_event_id, room_id, requested_by, command_text, plan, plan_hash, state, \
     plan_event_id, progress_event_id, cursor, total_count, done_count, failed_count, batches, result, error, \
     confirmed_by, cancel_requested, created_at, updated_at, expires_at, tally, needs_second_moderator";
const INSERT_PLANNING: &str = "INSERT INTO jobs (id, kind, command_event_id, room_id, requested_by, command_text, \
     plan, plan_hash, state, created_at, updated_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 'null', '', 'planning', $7, $7, $7) ON CONFLICT (command_event_id) DO NOTHING";
const FINISH_PLANNING: &str = "UPDATE jobs SET plan = $2, plan_hash = $3, state = $4, total_count = $5, \
     confirmed_by = $6, expires_at = $7, needs_second_moderator = $8, updated_at = $9 \
     WHERE id = $1 AND state = 'planning'";
const DELETE_JOB: &str = "DELETE FROM jobs WHERE id = $1 AND state = 'planning'";
const CONFIRM: &str = "UPDATE jobs SET state = 'confirmed', confirmed_by = $2, updated_at = $3 \
     WHERE id = $1 AND state = 'planned' AND expires_at > $3 \
     AND (needs_second_moderator = 0 OR requested_by <> $2)";
/// The first of two moderators a job no moderator asked for (a policy
/// rule's, asked for by the bot) needs: they stand in as its requester, so
/// the confirmation must come from someone else.
const ENDORSE: &str = "UPDATE jobs SET requested_by = $2, updated_at = $4 \
     WHERE id = $1 AND requested_by = $3 AND state = 'planned' AND needs_second_moderator <> 0 AND expires_at > $4";
/// Plans nobody confirmed in time expire; so does a `--yes` job whose plan
/// could never be posted (it waits for that post to start).
const EXPIRE: &str = "UPDATE jobs SET state = 'expired', updated_at = $1 WHERE expires_at <= $1 AND (state = 'planned' \
     OR (state = 'confirmed' AND plan_event_id IS NULL AND command_event_id LIKE '$%'))";
/// Plans whose planning was given up (the command failed for good mid-plan).
const STALE_PLANNING: &str = "SELECT id FROM jobs WHERE state = 'planning' AND created_at < $1 LIMIT 100";
/// How old a plan still being made is when the sweep drops it: planning a
/// million events takes about a minute.
const STALE_PLANNING_AFTER: i64 = 6 * 3600 * 1000;
const CANCEL_IDLE: &str = "UPDATE jobs SET state = 'cancelled', updated_at = $2 \
     WHERE id = $1 AND state IN ('planned', 'confirmed')";
const CANCEL_RUNNING: &str =
    "UPDATE jobs SET cancel_requested = 1, updated_at = $2 WHERE id = $1 AND state = 'running'";
const START: &str =
    "UPDATE jobs SET state = 'running', updated_at = $2 WHERE id = $1 AND state IN ('confirmed', 'running')";
const CHECKPOINT: &str = "UPDATE jobs SET cursor = $2, tally = $3, done_count = done_count + $4, \
     failed_count = failed_count + $5, batches = batches + 1, updated_at = $6 WHERE id = $1 AND state = 'running'";
const FINISH: &str =
    "UPDATE jobs SET state = $2, result = $3, error = $4, updated_at = $5 WHERE id = $1 AND state = 'running'";
const SET_PLAN_EVENT: &str = "UPDATE jobs SET plan_event_id = $2 WHERE id = $1";
const SET_PROGRESS_EVENT: &str = "UPDATE jobs SET progress_event_id = $2 WHERE id = $1";
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Planning,
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
    pub const ALL: [Self; 9] = [
        Self::Planning,
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
            Self::Planning => "planning",
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
    /// The event that asked for the job (a command), or a key naming what
    /// made it (`housekeep:first-start-backfill`).
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
    pub tally: Option<Value>,
    pub total_count: i64,
    pub done_count: i64,
    pub failed_count: i64,
    pub batches: i64,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub confirmed_by: Option<String>,
    pub needs_second_moderator: bool,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
}

impl Job {
    /// Who the job acts for: the moderator who confirmed it, else who asked.
    pub fn actor(&self) -> &str {
        self.confirmed_by.as_deref().unwrap_or(&self.requested_by)
    }
}

/// What starts a job's planning.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: String,
    pub command_event_id: String,
    pub room_id: String,
    pub requested_by: String,
    pub command_text: String,
}

/// How a plan ends its `planning` state.
#[derive(Debug, Clone)]
pub struct FinishedPlan {
    pub plan: Value,
    pub plan_hash: String,
    /// `planned`, `confirmed` (`--yes`) or `dry_run`.
    pub state: JobState,
    pub total_count: i64,
    pub expires_at: i64,
    pub needs_second_moderator: bool,
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
    #[error("job {id} is large enough to need a second moderator: someone other than {requested_by} has to confirm it")]
    NeedsSecondModerator { id: String, requested_by: String },
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

/// A JSON column's value, if it has one.
fn parse_json(text: Option<String>) -> anyhow::Result<Option<Value>> {
    Ok(text.map(|text| serde_json::from_str(&text)).transpose()?)
}

/// A `jobs` row.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    kind: String,
    command_event_id: String,
    room_id: String,
    requested_by: String,
    command_text: String,
    plan: Option<String>,
    plan_hash: String,
    state: String,
    plan_event_id: Option<String>,
    progress_event_id: Option<String>,
    cursor: Option<String>,
    total_count: i64,
    done_count: i64,
    failed_count: i64,
    batches: i64,
    result: Option<String>,
    error: Option<String>,
    confirmed_by: Option<String>,
    cancel_requested: i64,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    tally: Option<String>,
    needs_second_moderator: i64,
}

impl TryFrom<JobRow> for Job {
    type Error = anyhow::Error;

    fn try_from(row: JobRow) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.id,
            kind: row.kind,
            command_event_id: row.command_event_id,
            room_id: row.room_id,
            requested_by: row.requested_by,
            command_text: row.command_text,
            plan: parse_json(row.plan)?.unwrap_or(Value::Null),
            plan_hash: row.plan_hash,
            state: JobState::parse(&row.state)?,
            plan_event_id: row.plan_event_id,
            progress_event_id: row.progress_event_id,
            cursor: parse_json(row.cursor)?,
            tally: parse_json(row.tally)?,
            total_count: row.total_count,
            done_count: row.done_count,
            failed_count: row.failed_count,
            batches: row.batches,
            result: parse_json(row.result)?,
            error: row.error,
            confirmed_by: row.confirmed_by,
            needs_second_moderator: row.needs_second_moderator != 0,
            cancel_requested: row.cancel_requested != 0,
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
        })
    }
}

/// Jobs of a `SELECT {JOB_COLUMNS}`.
fn jobs(rows: Vec<JobRow>) -> anyhow::Result<Vec<Job>> {
    rows.into_iter().map(Job::try_from).collect()
}

impl Store {
    async fn job_where(&self, condition: &'static str, value: &str) -> anyhow::Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition} = $1");
        let row: Option<JobRow> = sqlx::query_as(AssertSqlSafe(sql)).bind(value).fetch_optional(&self.pool).await?;
        row.map(Job::try_from).transpose()
    }

    pub async fn job(&self, id: &str) -> anyhow::Result<Option<Job>> {
        self.job_where("id", id).await
    }

    /// The jobs whose plan a message shows: one for a command, several for
    /// a policy rule (one ✅ confirms them all), oldest first.
    pub async fn jobs_by_plan_event(&self, plan_event_id: &str) -> anyhow::Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE plan_event_id = $1 ORDER BY created_at, id LIMIT 100");
        jobs(sqlx::query_as(AssertSqlSafe(sql)).bind(plan_event_id).fetch_all(&self.pool).await?)
    }

    pub async fn job_by_command(&self, command_event_id: &str) -> anyhow::Result<Option<Job>> {
        self.job_where("command_event_id", command_event_id).await
    }

    /// Starts planning a job: the row exists (`planning`) while the kind
    /// writes its items. Returns the job that command already made instead,
    /// if there is one (a command handled again after a crash); a plan cut
    /// short by a crash is started over, its items dropped.
    pub async fn begin_planning(&self, new: &NewJob) -> anyhow::Result<Job> {
        if let Some(existing) = self.job_by_command(&new.command_event_id).await? {
            if existing.state == JobState::Planning {
                self.delete_job_items(&existing.id).await?;
            }
            return Ok(existing);
        }
        sqlx::query(INSERT_PLANNING)
            .bind(&new.id)
            .bind(&new.kind)
            .bind(&new.command_event_id)
            .bind(&new.room_id)
            .bind(&new.requested_by)
            .bind(&new.command_text)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        self.job_by_command(&new.command_event_id).await?.ok_or_else(|| anyhow::anyhow!("job {} vanished", new.id))
    }

    /// Ends `planning`: the plan, its state and size, with the plan's audit entry.
    pub async fn finish_planning(
        &self,
        id: &str,
        plan: &FinishedPlan,
        by: &str,
        audit: &AuditEntry,
    ) -> anyhow::Result<Job> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(FINISH_PLANNING)
            .bind(id)
            .bind(plan.plan.to_string())
            .bind(&plan.plan_hash)
            .bind(plan.state.as_str())
            .bind(plan.total_count)
            .bind((plan.state == JobState::Confirmed).then_some(by))
            .bind(plan.expires_at)
            .bind(i64::from(plan.needs_second_moderator))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        anyhow::ensure!(updated == 1, "job {id} is no longer being planned");
        insert_audit(&mut tx, std::slice::from_ref(audit), now).await?;
        tx.commit().await?;
        self.job(id).await?.ok_or_else(|| anyhow::anyhow!("job {id} vanished"))
    }

    /// Drops a plan that made no job (nothing selected, or refused), with
    /// its items. Interrupted, it leaves a `planning` job that the sweep of
    /// stale plans drops later.
    pub async fn abandon_planning(&self, id: &str) -> anyhow::Result<()> {
        self.delete_job_items(id).await?;
        sqlx::query(DELETE_JOB).bind(id).execute(&self.pool).await?;
        Ok(())
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
            JobState::Planned if job.expires_at > now && job.needs_second_moderator => {
                Err(ConfirmError::NeedsSecondModerator { id: job.id, requested_by: job.requested_by })
            }
            JobState::Planned | JobState::Expired => Err(ConfirmError::Expired { id: job.id }),
            state => Err(ConfirmError::NotPlanned { id: job.id, state: state.as_str() }),
        })
    }

    /// `by` is the first of the two moderators a job requested by `bot`
    /// needs (see [`ENDORSE`]); `false` if the job is not such a job.
    pub async fn endorse_job(&self, id: &str, by: &str, bot: &str) -> anyhow::Result<bool> {
        let query = sqlx::query(ENDORSE).bind(id).bind(by).bind(bot).bind(now_ms());
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
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
    /// Expires what waited too long, and drops plans left half-made.
    pub async fn expire_jobs(&self) -> anyhow::Result<u64> {
        let now = now_ms();
        let expired = sqlx::query(EXPIRE).bind(now).execute(&self.pool).await?.rows_affected();
        let stale: Vec<String> =
            sqlx::query_scalar(STALE_PLANNING).bind(now - STALE_PLANNING_AFTER).fetch_all(&self.pool).await?;
        for id in &stale {
            tracing::info!(job = id, "dropping a plan that was never finished");
            self.abandon_planning(id).await?;
        }
        Ok(expired)
    }

    /// Confirmed jobs and jobs that were running when housekeep stopped,
    /// oldest first. A job asked for by a chat command waits until its plan
    /// is posted, so that its progress comes after the plan.
    pub async fn runnable_jobs(&self) -> anyhow::Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('confirmed', 'running') \
             AND (plan_event_id IS NOT NULL OR command_event_id NOT LIKE '$%') ORDER BY created_at LIMIT 1000"
        );
        jobs(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&self.pool).await?)
    }

    pub async fn recent_jobs_of_kind(&self, kind: &str, limit: i64) -> anyhow::Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE kind = $1 ORDER BY created_at DESC, id LIMIT $2");
        jobs(sqlx::query_as(AssertSqlSafe(sql)).bind(kind).bind(limit).fetch_all(&self.pool).await?)
    }

    pub async fn recent_jobs(&self, limit: i64) -> anyhow::Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, id LIMIT $1");
        jobs(sqlx::query_as(AssertSqlSafe(sql)).bind(limit).fetch_all(&self.pool).await?)
    }

    /// How many jobs are in each state (for `!status`).
    pub async fn job_counts(&self) -> anyhow::Result<Vec<(JobState, i64)>> {
        let rows: Vec<Counted> =
            sqlx::query_as("SELECT state AS name, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(|row| Ok((JobState::parse(&row.name)?, row.n))).collect()
    }

    pub async fn start_job(&self, id: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query(START).bind(id).bind(now_ms()).execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Commits one batch: the new cursor and tally, the counts, the items'
    /// outcomes and the audit entries of what the batch did, together, so a
    /// restart resumes exactly after it.
    #[allow(clippy::too_many_arguments)]
    pub async fn checkpoint_job(
        &self,
        id: &str,
        cursor: &Value,
        tally: &Value,
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
            .bind(tally.to_string())
            .bind(done)
            .bind(failed)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        anyhow::ensure!(updated == 1, "job {id} is no longer running");
        items::write_item_results(&mut tx, id, items).await?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
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
