//! The append-only audit log (the tables refuse UPDATE and DELETE).

use sqlx::AnyConnection;

use super::Store;
use super::sql::Sql;
use crate::clock::now_ms;

const INSERT_AUDIT: &str = "INSERT INTO audit_log \
     (ts, actor, room_id, event_id, job_id, action, command, target, outcome) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const AUDIT_COLUMNS: &str = "id, ts, actor, room_id, event_id, job_id, action, command, target, outcome";
const SELECT_AUDIT: &str = "SELECT id, ts, actor, room_id, event_id, job_id, action, command, target, outcome \
     FROM audit_log ORDER BY id DESC LIMIT $1";
const SELECT_AUDIT_BY_ACTOR: &str = "SELECT id, ts, actor, room_id, event_id, job_id, action, command, target, outcome \
     FROM audit_log WHERE actor = $2 ORDER BY id DESC LIMIT $1";
const SELECT_AUDIT_BY_JOB: &str = "SELECT id, ts, actor, room_id, event_id, job_id, action, command, target, outcome \
     FROM audit_log WHERE job_id = $1 ORDER BY id DESC LIMIT $2";
const COUNT_AUDIT_BY_JOB: &str = "SELECT COUNT(*) FROM audit_log WHERE job_id = $1";
const COUNT_ACTIONS_BY_OTHERS: &str = "SELECT COUNT(*) FROM audit_log \
     WHERE action = $1 AND target = $2 AND ts >= $3 AND (job_id IS NULL OR job_id <> $4)";

/// One thing that happened, by whom, to what, and how it went.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    pub actor: String,
    pub room_id: Option<String>,
    pub event_id: Option<String>,
    pub job_id: Option<String>,
    /// What kind of thing: `command`, `refused`, `confirm`, `cancel`, `job.finish`, or a job's own action name.
    pub action: String,
    /// The command text as typed, where there was one.
    pub command: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub ts: i64,
    #[sqlx(flatten)]
    pub entry: AuditEntry,
}

pub(super) async fn insert_audit(conn: &mut AnyConnection, entries: &[AuditEntry], ts: i64) -> anyhow::Result<()> {
    for entry in entries {
        sqlx::query(INSERT_AUDIT)
            .bind(ts)
            .bind(&entry.actor)
            .bind(&entry.room_id)
            .bind(&entry.event_id)
            .bind(&entry.job_id)
            .bind(&entry.action)
            .bind(&entry.command)
            .bind(&entry.target)
            .bind(&entry.outcome)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    pub async fn audit(&self, entry: AuditEntry) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, &[entry], now_ms()).await
    }

    /// Newest first.
    pub async fn audit_entries(&self, limit: i64, actor: Option<&str>) -> anyhow::Result<Vec<AuditRecord>> {
        Ok(match actor {
            Some(actor) => sqlx::query_as(SELECT_AUDIT_BY_ACTOR).bind(limit).bind(actor).fetch_all(&self.pool).await?,
            None => sqlx::query_as(SELECT_AUDIT).bind(limit).fetch_all(&self.pool).await?,
        })
    }

    /// How many times `action` was done to `target` since `since_ms` by
    /// anything but job `job_id` (a moderator's decision a job must not undo).
    pub async fn actions_by_others_since(
        &self,
        action: &str,
        target: &str,
        since_ms: i64,
        job_id: &str,
    ) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(COUNT_ACTIONS_BY_OTHERS)
            .bind(action)
            .bind(target)
            .bind(since_ms)
            .bind(job_id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The newest `limit` entries about a job, newest first, and how many there are in all.
    pub async fn job_audit(&self, job_id: &str, limit: i64) -> anyhow::Result<(Vec<AuditRecord>, i64)> {
        let records = sqlx::query_as(SELECT_AUDIT_BY_JOB).bind(job_id).bind(limit).fetch_all(&self.pool).await?;
        let total = sqlx::query_scalar(COUNT_AUDIT_BY_JOB).bind(job_id).fetch_one(&self.pool).await?;
        Ok((records, total))
    }
}

/// What the audit page filters by; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub actor: Option<&'a str>,
    pub action: Option<&'a str>,
    /// Entries at or after this time (unix ms).
    pub since: Option<i64>,
    /// Entries older than this one (the next page).
    pub before_id: Option<i64>,
}

impl Store {
    /// One page of the audit log, newest first (the primary key, or the
    /// actor index when filtering by actor).
    pub async fn audit_page(&self, filter: &AuditFilter<'_>, limit: i64) -> anyhow::Result<Vec<AuditRecord>> {
        let mut sql = Sql::new(self.backend, &format!("SELECT {AUDIT_COLUMNS} FROM audit_log"));
        if let Some(actor) = filter.actor {
            sql.and("actor = ").bind(actor.to_owned());
        }
        if let Some(action) = filter.action {
            sql.and("action = ").bind(action.to_owned());
        }
        if let Some(since) = filter.since {
            sql.and("ts >= ").bind(since);
        }
        if let Some(before) = filter.before_id {
            sql.and("id < ").bind(before);
        }
        sql.push(" ORDER BY id DESC LIMIT ").bind(limit.clamp(1, 500));
        Ok(sql.query_as().fetch_all(&self.pool).await?)
    }
}
