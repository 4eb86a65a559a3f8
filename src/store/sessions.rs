//! The dashboard's sign-ins: one-time links and sessions, stored only as
//! hashes of their tokens.

use super::AuditEntry;
use super::Store;
use super::audit::insert_audit;

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

/// A link that did not sign in: whose, and when it was spent and first refused.
#[derive(sqlx::FromRow)]
struct Refused {
    user_id: String,
    spent_at: Option<i64>,
    refused_at: i64,
}

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
    /// works once, before it expires. A refusal is audited the first time
    /// only, so whoever holds a spent link cannot flood the append-only log.
    pub async fn use_sign_in_link(
        &self,
        link_hash: &str,
        session_hash: &str,
        now: i64,
        session_expires_at: i64,
    ) -> anyhow::Result<LinkUse> {
        // Anyone can post a token: one that was never given is answered by a
        // read, so junk never takes the writer's lock (on SQLite, shared with
        // the indexer) nor opens a transaction.
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM web_links WHERE token_hash = $1")
            .bind(link_hash)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Ok(LinkUse::Unknown);
        }
        let mut tx = self.pool.begin().await?;
        // A write first: on SQLite a read that later upgrades to a write can
        // fail with SQLITE_BUSY under indexing load. Guarded by
        // `spent_at IS NULL`: of two uses at once, one wins.
        let spent: Option<String> = sqlx::query_scalar(
            "UPDATE web_links SET spent_at = $1 WHERE token_hash = $2 AND spent_at IS NULL AND expires_at > $1 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(link_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let (outcome, first_refusal) = if let Some(user_id) = spent {
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
            (LinkUse::SignedIn { user_id }, false)
        } else {
            let refused: Option<Refused> = sqlx::query_as(
                "UPDATE web_links SET refused_at = COALESCE(refused_at, $1) WHERE token_hash = $2 \
                 RETURNING user_id, spent_at, refused_at",
            )
            .bind(now)
            .bind(link_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(Refused { user_id, spent_at, refused_at }) = refused else { return Ok(LinkUse::Unknown) };
            let outcome = if spent_at.is_some() { LinkUse::Spent { user_id } } else { LinkUse::Expired { user_id } };
            (outcome, refused_at == now)
        };
        let (actor, said) = match &outcome {
            LinkUse::SignedIn { user_id } => (user_id, "signed in"),
            LinkUse::Spent { user_id } => (user_id, "refused: the link was used before"),
            LinkUse::Expired { user_id } => (user_id, "refused: the link expired"),
            LinkUse::Unknown => unreachable!("returned above"),
        };
        if matches!(outcome, LinkUse::SignedIn { .. }) || first_refusal {
            let entry = AuditEntry {
                actor: actor.clone(),
                action: "dashboard.sign_in".to_owned(),
                outcome: said.to_owned(),
                ..AuditEntry::default()
            };
            insert_audit(&mut tx, &[entry], now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Who a session cookie belongs to, while it lasts.
    pub async fn session_user(&self, session_hash: &str, now: i64) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM web_sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(session_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
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
        for at in 3_001..3_050 {
            store.use_sign_in_link("link", "s2", at, 10_000_000).await.unwrap();
        }
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
            "the sign-in and the first refusal of each known link, newest first"
        );
        assert_eq!(store.end_all_sessions().await.unwrap(), 1);
        assert_eq!(store.session_user("s1", 4_000).await.unwrap(), None);
    }
}
