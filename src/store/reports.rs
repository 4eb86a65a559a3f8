//! `event_reports`: Synapse's event reports as housekeep has seen them,
//! whether the admin room was told, and the state housekeep keeps of them.

use super::Store;

const NEWEST: &str = "SELECT MAX(report_id) FROM event_reports";
const INSERT: &str = "INSERT INTO event_reports (report_id, received_ts, room_id, event_id, reporter, sender, reason, \
     score, room_name, room_alias, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (report_id) DO NOTHING";
const UNPOSTED: &str = "SELECT report_id, received_ts, room_id, event_id, reporter, sender, reason, score, room_name, \
     room_alias, state FROM event_reports WHERE posted_at IS NULL ORDER BY report_id LIMIT $1";
const COUNT_UNPOSTED: &str = "SELECT COUNT(*) FROM event_reports WHERE posted_at IS NULL";
const MARK_POSTED: &str = "UPDATE event_reports SET posted_at = $2 WHERE report_id <= $1 AND posted_at IS NULL";
const SELECT_ONE: &str = "SELECT report_id, received_ts, room_id, event_id, reporter, sender, reason, score, \
     room_name, room_alias, state, state_by, state_at, state_reason, job_id FROM event_reports WHERE report_id = $1";
const DISMISS: &str = "UPDATE event_reports SET state = 'dismissed', state_by = $2, state_at = $3, state_reason = $4 \
     WHERE report_id = $1 AND state = 'open'";
const HANDLED_BY_JOB: &str = "UPDATE event_reports SET state = 'handled', state_by = $2, state_at = $3, job_id = $1 \
     WHERE state = 'open' AND event_id IN (SELECT item_key FROM job_items WHERE job_id = $1 AND state = 'done')";
/// A sender's footprint. Their events are read in one pass, grouped by
/// room (a hash table of their rooms, not a sort of their events), through
/// the sender index alone (migration 0016): the heaviest sender of a big
/// server has sent 170,000 events.
const FOOTPRINT: &str = "SELECT \
     CAST(COALESCE(SUM(g.day), 0) AS BIGINT) AS events_day, \
     CAST(COALESCE(SUM(g.week), 0) AS BIGINT) AS events_week, \
     CAST(COALESCE(SUM(g.n), 0) AS BIGINT) AS events_all, \
     COUNT(*) AS rooms, \
     MIN(g.first_seen) AS first_seen, \
     (SELECT COUNT(*) FROM (SELECT DISTINCT server_name, media_id FROM media_refs WHERE sender = $1) AS m) AS media, \
     (SELECT COUNT(*) FROM (SELECT DISTINCT m.server_name, m.media_id FROM media_refs r JOIN media m \
        ON m.server_name = r.server_name AND m.media_id = r.media_id \
        WHERE r.sender = $1 AND m.quarantined_at IS NOT NULL) AS q) AS media_quarantined, \
     (SELECT COUNT(*) FROM event_reports WHERE sender = $1 AND state = 'open') AS open_reports \
     FROM (SELECT room_id, SUM(CASE WHEN origin_server_ts >= $2 THEN 1 ELSE 0 END) AS day, \
        SUM(CASE WHEN origin_server_ts >= $3 THEN 1 ELSE 0 END) AS week, COUNT(*) AS n, \
        MIN(indexed_at) AS first_seen FROM events WHERE sender = $1 GROUP BY room_id) AS g";

/// A report as Synapse listed it, for [`Store::insert_reports`].
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventReportRow {
    pub report_id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub event_id: String,
    pub reporter: String,
    pub sender: Option<String>,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub room_name: Option<String>,
    pub room_alias: Option<String>,
}

/// A report with the state housekeep keeps of it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeptReport {
    #[sqlx(flatten)]
    pub report: EventReportRow,
    /// `open`, `handled` or `dismissed`.
    pub state: String,
    /// Who handled or dismissed it, when, why, and with which job.
    pub state_by: Option<String>,
    pub state_at: Option<i64>,
    pub state_reason: Option<String>,
    pub job_id: Option<String>,
}

/// Which reports `!reports` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFilter {
    /// Every state, not only `open`.
    pub all: bool,
    /// Reports of events this user sent.
    pub sender: Option<String>,
    pub room_id: Option<String>,
}

/// What the index knows of a user, as a report shows it beside the
/// reported event. Times are the index's (when events arrived), not the
/// senders' own `origin_server_ts`, except for the 24 h / 7 d windows,
/// which count events by the time their server gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Footprint {
    pub events_day: i64,
    pub events_week: i64,
    pub events_all: i64,
    pub rooms: i64,
    /// When the index first saw an event of theirs (ms).
    pub first_seen: Option<i64>,
    /// Distinct media their events reference.
    pub media: i64,
    pub media_quarantined: i64,
    pub open_reports: i64,
}

impl Store {
    /// The highest report ID seen, if any.
    pub async fn newest_report_id(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(NEWEST).fetch_one(&self.pool).await?)
    }

    /// Which of `ids` are stored already.
    pub async fn known_report_ids(&self, ids: &[i64]) -> anyhow::Result<std::collections::HashSet<i64>> {
        let mut known = std::collections::HashSet::new();
        for chunk in ids.chunks(500) {
            let texts: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let mut sql = super::sql::Sql::new(self.backend, "SELECT report_id FROM event_reports");
            sql.and_in("CAST(report_id AS TEXT)", &texts);
            known.extend(sql.query_scalar::<i64>().fetch_all(&self.pool).await?);
        }
        Ok(known)
    }

    /// Stores reports not seen before, in one transaction; returns how many were new.
    pub async fn insert_reports(&self, reports: &[EventReportRow], seen_at: i64) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for report in reports {
            inserted += sqlx::query(INSERT)
                .bind(report.report_id)
                .bind(report.received_ts)
                .bind(&report.room_id)
                .bind(&report.event_id)
                .bind(&report.reporter)
                .bind(&report.sender)
                .bind(&report.reason)
                .bind(report.score)
                .bind(&report.room_name)
                .bind(&report.room_alias)
                .bind(seen_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Reports the admin room was not told of yet, oldest first, at most `limit`.
    pub async fn unposted_reports(&self, limit: i64) -> anyhow::Result<Vec<EventReportRow>> {
        Ok(sqlx::query_as(UNPOSTED).bind(limit).fetch_all(&self.pool).await?)
    }

    pub async fn count_unposted_reports(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(COUNT_UNPOSTED).fetch_one(&self.pool).await?)
    }

    /// The admin room was told of every report up to `up_to`.
    pub async fn mark_reports_posted(&self, up_to: i64, at: i64) -> anyhow::Result<()> {
        sqlx::query(MARK_POSTED).bind(up_to).bind(at).execute(&self.pool).await?;
        Ok(())
    }

    /// One report, with its state.
    pub async fn kept_report(&self, report_id: i64) -> anyhow::Result<Option<KeptReport>> {
        Ok(sqlx::query_as(SELECT_ONE).bind(report_id).fetch_optional(&self.pool).await?)
    }

    /// Reports matching `filter`, newest first, at most `limit`.
    pub async fn kept_reports(&self, filter: &ReportFilter, limit: i64) -> anyhow::Result<Vec<KeptReport>> {
        let mut sql = super::sql::Sql::new(self.backend, &SELECT_ONE[..SELECT_ONE.find(" WHERE").expect("a WHERE")]);
        if !filter.all {
            sql.and("state = 'open'");
        }
        if let Some(sender) = &filter.sender {
            sql.and("sender = ").bind(sender.clone());
        }
        if let Some(room_id) = &filter.room_id {
            sql.and("room_id = ").bind(room_id.clone());
        }
        sql.push(" ORDER BY report_id DESC LIMIT ").bind(limit);
        Ok(sql.query_as().fetch_all(&self.pool).await?)
    }

    /// Marks an open report dismissed; false if it is not open (or not there).
    pub async fn dismiss_report(
        &self,
        report_id: i64,
        by: &str,
        reason: Option<&str>,
        at: i64,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(DISMISS).bind(report_id).bind(by).bind(at).bind(reason).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks handled the open reports of events job `job_id` dealt with
    /// (its items are keyed by event ID, as a purge's are), by `actor`;
    /// how many.
    pub async fn mark_reports_handled_by_job(&self, job_id: &str, actor: &str, at: i64) -> anyhow::Result<u64> {
        let done = sqlx::query(HANDLED_BY_JOB).bind(job_id).bind(actor).bind(at).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// What the index knows of `sender` at `now` (ms).
    pub async fn footprint(&self, sender: &str, now: i64) -> anyhow::Result<Footprint> {
        const DAY: i64 = 24 * 60 * 60 * 1000;
        Ok(sqlx::query_as(FOOTPRINT).bind(sender).bind(now - DAY).bind(now - 7 * DAY).fetch_one(&self.pool).await?)
    }
}
