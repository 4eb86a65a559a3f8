//! What the dashboard's live updates watch.

use super::Store;

/// What the dashboard's live updates watch: when any of it changes, pages refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Watermark {
    pub jobs_updated: i64,
    pub reports_received: i64,
    pub audit_id: i64,
}

impl Store {
    /// Cheap reads that move when a job progresses, a report arrives or
    /// something is audited.
    pub async fn watermark(&self) -> anyhow::Result<Watermark> {
        Ok(sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(updated_at), 0) FROM jobs) AS jobs_updated, \
                    (SELECT COALESCE(MAX(received_at), 0) FROM stats_reports) AS reports_received, \
                    (SELECT COALESCE(MAX(id), 0) FROM audit_log) AS audit_id",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
