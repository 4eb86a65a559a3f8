//! The append-only audit log (the tables refuse UPDATE and DELETE).

use sqlx::{AnyConnection, Row};

use super::Store;
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

/// One thing that happened, by whom, to what, and how it went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub ts: i64,
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

pub(super) fn record(row: &sqlx::any::AnyRow) -> anyhow::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.try_get(0)?,
        ts: row.try_get(1)?,
        entry: AuditEntry {
            actor: row.try_get(2)?,
            room_id: row.try_get(3)?,
            event_id: row.try_get(4)?,
            job_id: row.try_get(5)?,
            action: row.try_get(6)?,
            command: row.try_get(7)?,
            target: row.try_get(8)?,
            outcome: row.try_get(9)?,
        },
    })
}

impl Store {
    pub async fn audit(&self, entry: AuditEntry) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, &[entry], now_ms()).await
    }

    /// Newest first.
    pub async fn audit_entries(&self, limit: i64, actor: Option<&str>) -> anyhow::Result<Vec<AuditRecord>> {
        let rows = match actor {
            Some(actor) => sqlx::query(SELECT_AUDIT_BY_ACTOR).bind(limit).bind(actor).fetch_all(&self.pool).await?,
            None => sqlx::query(SELECT_AUDIT).bind(limit).fetch_all(&self.pool).await?,
        };
        rows.iter().map(record).collect()
    }

    /// The newest `limit` entries about a job, newest first, and how many there are in all.
    pub async fn job_audit(&self, job_id: &str, limit: i64) -> anyhow::Result<(Vec<AuditRecord>, i64)> {
        let rows = sqlx::query(SELECT_AUDIT_BY_JOB).bind(job_id).bind(limit).fetch_all(&self.pool).await?;
        let total = sqlx::query(COUNT_AUDIT_BY_JOB).bind(job_id).fetch_one(&self.pool).await?.try_get(0)?;
        Ok((rows.iter().map(record).collect::<anyhow::Result<_>>()?, total))
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
        let mut conditions = Vec::new();
        let mut n = 1;
        let mut next = |condition: &str| {
            conditions.push(condition.replace('?', &format!("${n}")));
            n += 1;
        };
        if filter.actor.is_some() {
            next("actor = ?");
        }
        if filter.action.is_some() {
            next("action = ?");
        }
        if filter.since.is_some() {
            next("ts >= ?");
        }
        if filter.before_id.is_some() {
            next("id < ?");
        }
        let filters = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log {filters} ORDER BY id DESC LIMIT {}", limit.clamp(1, 500));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(actor) = filter.actor {
            query = query.bind(actor);
        }
        if let Some(action) = filter.action {
            query = query.bind(action);
        }
        if let Some(since) = filter.since {
            query = query.bind(since);
        }
        if let Some(before) = filter.before_id {
            query = query.bind(before);
        }
        query.fetch_all(&self.pool).await?.iter().map(record).collect()
    }
}
