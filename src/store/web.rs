//! The dashboard's sign-ins (one-time links and sessions, by token hash)
//! and the bounded reads its pages make that no other front-end needs.

use sqlx::Row;

use super::AuditEntry;
use super::Store;
use super::audit::{AuditRecord, insert_audit, record};

/// How a sign-in link was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUse {
    /// Spent now: a session for this user was made.
    SignedIn {
        user_id: String,
    },
    /// Used before (by whoever opened it first).
    Spent {
        user_id: String,
    },
    Expired {
        user_id: String,
    },
    /// No such link.
    Unknown,
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

/// Media of one room by reference kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCount {
    pub kind: String,
    pub refs: i64,
    pub media: i64,
    /// Of the media housekeep downloaded (pre-download or backfill).
    pub bytes: i64,
}

/// A quarantine housekeep recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub mxc: String,
    pub at: i64,
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// What the dashboard's live updates watch: when any of it changes, pages refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermark {
    pub jobs_updated: i64,
    pub reports_received: i64,
    pub audit_id: i64,
}

const AUDIT_COLUMNS: &str = "id, ts, actor, room_id, event_id, job_id, action, command, target, outcome";

impl Store {
    /// Records a one-time sign-in link (its hash) for a moderator.
    pub async fn create_sign_in_link(
        &self,
        token_hash: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        // Expired links are no use to anyone; kept a day for the refusal's wording.
        sqlx::query("DELETE FROM web_links WHERE expires_at < $1").bind(now - 86_400_000).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO web_links (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends a link and makes a session in one commit, audited; a link
    /// works once, before it expires.
    pub async fn use_sign_in_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        now: i64,
        session_expires_at: i64,
    ) -> anyhow::Result<LinkUse> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT user_id, expires_at, spent_at FROM web_links WHERE token_hash = $1")
            .bind(link_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(LinkUse::Unknown) };
        let (user_id, expires_at, spent_at): (String, i64, Option<i64>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let outcome = if spent_at.is_some() {
            LinkUse::Spent { user_id: user_id.clone() }
        } else if expires_at <= now {
            LinkUse::Expired { user_id: user_id.clone() }
        } else {
            // Guarded by `spent_at IS NULL`: of two uses at once, one wins.
            let spent = sqlx::query("UPDATE web_links SET spent_at = $1 WHERE token_hash = $2 AND spent_at IS NULL")
                .bind(now)
                .bind(link_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if spent == 1 {
                sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(session_hash)
                .bind(&user_id)
                .bind(now)
                .bind(session_expires_at)
                .execute(&mut *tx)
                .await?;
                LinkUse::SignedIn { user_id: user_id.clone() }
            } else {
                LinkUse::Spent { user_id: user_id.clone() }
            }
        };
        let said = match &outcome {
            LinkUse::SignedIn { .. } => "signed in",
            LinkUse::Spent { .. } => "refused: the link was used before",
            LinkUse::Expired { .. } => "refused: the link expired",
            LinkUse::Unknown => unreachable!("returned above"),
        };
        let entry = AuditEntry {
            actor: user_id,
            action: "dashboard.sign_in".to_owned(),
            outcome: said.to_owned(),
            ..AuditEntry::default()
        };
        insert_audit(&mut tx, &[entry], now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Who a session cookie belongs to, while it lasts.
    pub async fn session_user(&self, session_hash: &str, now: i64) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM web_sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(session_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    pub async fn end_session(&self, session_hash: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1").bind(session_hash).execute(&self.pool).await?;
        Ok(())
    }

    /// Ends every session and voids unused links; how many sessions ended.
    pub async fn end_all_sessions(&self) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query("DELETE FROM web_sessions").execute(&mut *tx).await?.rows_affected();
        sqlx::query("DELETE FROM web_links").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ended)
    }

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

    /// A room's media by reference kind (the room index of `media_refs`).
    pub async fn room_media_by_kind(&self, room_id: &str) -> anyhow::Result<Vec<KindCount>> {
        let rows = sqlx::query(
            "SELECT kind, CAST(SUM(refs) AS BIGINT), COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM (\
               SELECT r.kind AS kind, COUNT(*) AS refs, MAX(m.size) AS size FROM media_refs r \
               LEFT JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id \
               WHERE r.room_id = $1 GROUP BY r.kind, r.server_name, r.media_id) per_media \
             GROUP BY kind ORDER BY kind",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KindCount {
                    kind: row.try_get(0)?,
                    refs: row.try_get(1)?,
                    media: row.try_get(2)?,
                    bytes: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// The newest quarantines housekeep recorded (the partial index on `quarantined_at`).
    pub async fn recent_quarantines(&self, limit: i64) -> anyhow::Result<Vec<QuarantineRecord>> {
        let rows = sqlx::query(
            "SELECT server_name, media_id, quarantined_at, quarantined_by, quarantine_reason FROM media \
             WHERE quarantined_at IS NOT NULL ORDER BY quarantined_at DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 500))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(QuarantineRecord {
                    mxc: format!("mxc://{}/{}", row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?),
                    at: row.try_get(2)?,
                    by: row.try_get(3)?,
                    reason: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Cheap reads that move when a job progresses, a report arrives or
    /// something is audited.
    pub async fn watermark(&self) -> anyhow::Result<Watermark> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(updated_at), 0) FROM jobs), \
                    (SELECT COALESCE(MAX(received_at), 0) FROM stats_reports), \
                    (SELECT COALESCE(MAX(id), 0) FROM audit_log)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Watermark { jobs_updated: row.try_get(0)?, reports_received: row.try_get(1)?, audit_id: row.try_get(2)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Store {
        let store = Store::connect("sqlite::memory:", Some(1)).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_link_signs_in_once_and_not_after_it_expires() {
        let store = store().await;
        store.create_sign_in_link("link", "@mod:hs", 1_000, 301_000).await.unwrap();
        let first = store.use_sign_in_link("link", "s1", 2_000, 10_000_000).await.unwrap();
        assert_eq!(first, LinkUse::SignedIn { user_id: "@mod:hs".to_owned() });
        let again = store.use_sign_in_link("link", "s2", 3_000, 10_000_000).await.unwrap();
        assert_eq!(again, LinkUse::Spent { user_id: "@mod:hs".to_owned() });
        assert_eq!(store.session_user("s1", 4_000).await.unwrap().as_deref(), Some("@mod:hs"));
        assert_eq!(store.session_user("s2", 4_000).await.unwrap(), None);
        assert_eq!(store.session_user("s1", 10_000_000).await.unwrap(), None, "the session ended");

        store.create_sign_in_link("late", "@mod:hs", 1_000, 301_000).await.unwrap();
        let late = store.use_sign_in_link("late", "s3", 301_000, 10_000_000).await.unwrap();
        assert_eq!(late, LinkUse::Expired { user_id: "@mod:hs".to_owned() });
        assert_eq!(store.use_sign_in_link("nope", "s4", 2_000, 10_000_000).await.unwrap(), LinkUse::Unknown);

        let audited: Vec<String> =
            store.audit_entries(10, None).await.unwrap().into_iter().map(|r| r.entry.outcome).collect();
        assert_eq!(
            audited,
            ["refused: the link expired", "refused: the link was used before", "signed in"],
            "every use of a known link, newest first"
        );
        assert_eq!(store.end_all_sessions().await.unwrap(), 1);
        assert_eq!(store.session_user("s1", 4_000).await.unwrap(), None);
    }
}
