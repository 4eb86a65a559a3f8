//! `job_tokens`: access tokens a job minted for local users, kept so a
//! resumed job reuses them and a finished one can revoke them.

use super::JobState;
use crate::store::Store;

const UPSERT_TOKEN: &str = "INSERT INTO job_tokens (job_id, user_id, token, expires_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (job_id, user_id) DO UPDATE SET token = $3, expires_at = $4";
const SELECT_TOKENS: &str = "SELECT user_id, token, expires_at FROM job_tokens WHERE job_id = $1 ORDER BY user_id";
const DELETE_TOKEN: &str = "DELETE FROM job_tokens WHERE job_id = $1 AND user_id = $2";

/// A token a job minted for a local user. Never logged or shown.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobToken {
    pub user_id: String,
    pub token: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for JobToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobToken")
            .field("user_id", &self.user_id)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token and the job it belongs to.
#[derive(sqlx::FromRow)]
struct TokenOfJob {
    job_id: String,
    #[sqlx(flatten)]
    token: JobToken,
}

impl Store {
    /// Keeps a token a job minted, for reuse after a restart.
    pub async fn save_job_token(&self, id: &str, token: &JobToken) -> anyhow::Result<()> {
        sqlx::query(UPSERT_TOKEN)
            .bind(id)
            .bind(&token.user_id)
            .bind(&token.token)
            .bind(token.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn job_tokens(&self, id: &str) -> anyhow::Result<Vec<JobToken>> {
        Ok(sqlx::query_as(SELECT_TOKENS).bind(id).fetch_all(&self.pool).await?)
    }

    /// Tokens still kept for jobs that ended (a revocation that failed, or
    /// a job that ended without its clean-up): `(job ID, token)`.
    pub async fn tokens_of_ended_jobs(&self) -> anyhow::Result<Vec<(String, JobToken)>> {
        let ended: Vec<String> =
            JobState::ALL.iter().filter(|s| s.is_final()).map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "SELECT t.job_id, t.user_id, t.token, t.expires_at FROM job_tokens t JOIN jobs j ON j.id = t.job_id \
             WHERE j.state IN ({}) ORDER BY t.job_id, t.user_id",
            ended.join(", ")
        );
        let rows: Vec<TokenOfJob> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|row| (row.job_id, row.token)).collect())
    }

    pub async fn delete_job_token(&self, id: &str, user_id: &str) -> anyhow::Result<()> {
        sqlx::query(DELETE_TOKEN).bind(id).bind(user_id).execute(&self.pool).await?;
        Ok(())
    }
}
