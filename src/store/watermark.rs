//! What the dashboard's live updates watch.

use sqlx::Row;

use super::Store;

/// What the dashboard's live updates watch: when any of it changes, pages refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermark {
    pub jobs_updated: i64,
    pub reports_received: i64,
    pub audit_id: i64,
}

impl Store {
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
