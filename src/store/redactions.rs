//! `redaction_checks`: redactions by someone other than their target's
//! sender, waiting for the homeserver to say whether it applied them.

use super::Store;

const DUE: &str = "SELECT redaction_id, room_id, target_id, redacted_at, attempts FROM redaction_checks \
     WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2";
const MARK: &str = "UPDATE events SET redacted_at = $1 WHERE event_id = $2 AND room_id = $3 AND redacted_at IS NULL";
const DELETE: &str = "DELETE FROM redaction_checks WHERE redaction_id = $1";
const RESCHEDULE: &str = "UPDATE redaction_checks SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE redaction_id = $1";
const PENDING: &str = "SELECT COUNT(*) FROM redaction_checks";

/// A redaction to check.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RedactionCheck {
    pub redaction_id: String,
    pub room_id: String,
    pub target_id: String,
    pub redacted_at: i64,
    pub attempts: i64,
}

impl Store {
    /// Checks due by `now`, oldest first.
    pub async fn due_redaction_checks(&self, now: i64, limit: i64) -> anyhow::Result<Vec<RedactionCheck>> {
        Ok(sqlx::query_as(DUE).bind(now).bind(limit).fetch_all(&self.pool).await?)
    }

    /// The homeserver answered: marks the target redacted if it applied the
    /// redaction, and drops the check either way. Returns whether it marked.
    pub async fn resolve_redaction_check(&self, check: &RedactionCheck, applied: bool) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let marked = if applied {
            sqlx::query(MARK)
                .bind(check.redacted_at)
                .bind(&check.target_id)
                .bind(&check.room_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1
        } else {
            false
        };
        sqlx::query(DELETE).bind(&check.redaction_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(marked)
    }

    /// The homeserver could not answer: try again at `next_attempt_at`.
    pub async fn reschedule_redaction_check(&self, id: &str, next_attempt_at: i64, error: &str) -> anyhow::Result<()> {
        sqlx::query(RESCHEDULE).bind(id).bind(next_attempt_at).bind(error).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn pending_redaction_checks(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(PENDING).fetch_one(&self.pool).await?)
    }
}
