//! The dashboard's sessions, stored only as hashes of their tokens: the
//! database alone signs no one in. Sign-in codes are not stored: browsers
//! wait in memory (`sign_ins`) until a moderator's `!dashboard <code>`
//! approves one, and only that command writes a session.

use super::AuditEntry;
use super::Store;
use super::audit::insert_audit;

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub user_id: String,
    pub expires_at: i64,
}

impl Store {
    /// Starts a session for a moderator (the hash of its token). Expired
    /// sessions are cleared on the way: nobody can use them.
    pub async fn start_session(
        &self,
        session_hash: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(session_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session a cookie names, while it lasts. A read only: every
    /// dashboard request asks, whoever sends it.
    pub async fn session(&self, session_hash: &str, now: i64) -> anyhow::Result<Option<Session>> {
        Ok(sqlx::query_as("SELECT user_id, expires_at FROM web_sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(session_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Ends one session (a sign-out); whether it existed.
    pub async fn end_session(&self, session_hash: &str) -> anyhow::Result<bool> {
        let ended = sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(session_hash)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(ended > 0)
    }

    /// Ends every session of a user (no longer a moderator), audited with
    /// `audit` in the same commit when there were any; how many.
    pub async fn end_user_sessions(&self, user_id: &str, audit: AuditEntry, now: i64) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if ended > 0 {
            insert_audit(&mut tx, &[audit], now).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    /// Ends every session; how many.
    pub async fn end_all_sessions(&self) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM web_sessions").execute(&self.pool).await?.rows_affected())
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
    async fn sessions_last_until_they_expire_or_are_ended() {
        let store = store().await;
        store.start_session("s1", "@mod:hs", 1_000, 10_000).await.unwrap();
        store.start_session("s2", "@mod:hs", 1_000, 10_000).await.unwrap();
        store.start_session("s3", "@other:hs", 1_000, 10_000).await.unwrap();
        let s1 = Session { user_id: "@mod:hs".to_owned(), expires_at: 10_000 };
        assert_eq!(store.session("s1", 9_999).await.unwrap(), Some(s1));
        assert_eq!(store.session("s1", 10_000).await.unwrap(), None, "expired");
        assert_eq!(store.session("nope", 2_000).await.unwrap(), None);

        assert!(store.end_session("s1").await.unwrap());
        assert!(!store.end_session("s1").await.unwrap(), "ended already");
        let audit = AuditEntry {
            actor: "@mod:hs".to_owned(),
            action: "dashboard.sign_out".to_owned(),
            outcome: "no longer a moderator".to_owned(),
            ..AuditEntry::default()
        };
        assert_eq!(store.end_user_sessions("@mod:hs", audit.clone(), 3_000).await.unwrap(), 1);
        assert_eq!(store.end_user_sessions("@mod:hs", audit, 3_000).await.unwrap(), 0);
        let audited = store.audit_entries(10, None).await.unwrap();
        assert_eq!(audited.len(), 1, "audited when sessions ended, not again");
        assert!(store.session("s3", 2_000).await.unwrap().is_some(), "another user's session stays");

        // Starting a session clears expired ones.
        store.start_session("s4", "@other:hs", 20_000, 30_000).await.unwrap();
        assert_eq!(store.end_all_sessions().await.unwrap(), 1, "s3 had expired and was cleared");
        assert_eq!(store.session("s4", 20_001).await.unwrap(), None);
    }
}
