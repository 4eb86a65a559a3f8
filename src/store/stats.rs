//! `stats_reports`, `activity_daily` and `stats_summaries_sent`.

use super::sql::{Counted, Sql, in_json, json_array};
use super::{Backend, Store};

/// Stores a report unless its homeserver's last one came less than `$7`
/// ago (ms), or it is stored already.
const INSERT_REPORT: &str = "INSERT INTO stats_reports (homeserver, report_ts, received_at, source, user_agent, raw) \
     SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS \
     (SELECT 1 FROM stats_reports WHERE homeserver = $1 AND received_at > $3 - $7) \
     ON CONFLICT (homeserver, report_ts) DO NOTHING";
const REPORT_EXISTS: &str = "SELECT COUNT(*) FROM stats_reports WHERE homeserver = $1 AND report_ts = $2";
/// Of the reports of the homeservers in `$3` (a JSON array) in the range,
/// the last of each UTC day. The `{homeservers}` condition is [`in_json`].
const SELECT_REPORTS: &str = "SELECT s.homeserver, s.report_ts, s.received_at, s.raw FROM stats_reports s \
     JOIN (SELECT homeserver, MAX(report_ts) AS ts FROM stats_reports WHERE report_ts >= $1 AND report_ts < $2 \
     AND {homeservers} GROUP BY homeserver, report_ts / 86400) last \
     ON s.homeserver = last.homeserver AND s.report_ts = last.ts ORDER BY s.homeserver, s.report_ts";
/// Reports per homeserver in the range, the most reporting first.
const COUNT_REPORTS: &str = "SELECT homeserver AS name, COUNT(*) AS n FROM stats_reports WHERE report_ts >= $1 AND report_ts < $2 \
     GROUP BY homeserver ORDER BY 2 DESC, 1 LIMIT $3";
const PRUNE_REPORTS: &str = "DELETE FROM stats_reports WHERE received_at < $1";
const LAST_SENT: &str = "SELECT period_at FROM stats_summaries_sent WHERE room_id = $1 AND schedule = $2";
const RECORD_SENT: &str = "INSERT INTO stats_summaries_sent (room_id, schedule, period_at, posted_at, event_id) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, schedule) DO UPDATE SET period_at = $3, posted_at = $4, \
     event_id = $5";

/// What became of a report handed to [`Store::insert_stats_report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStored {
    Stored,
    /// The same report (homeserver and timestamp) is stored already.
    Duplicate,
    /// Its homeserver's last report came less than the minimum gap ago.
    TooSoon,
}

/// A stored phone-home report.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredReport {
    pub homeserver: String,
    /// The report's own time, in seconds.
    pub report_ts: i64,
    pub received_at: i64,
    pub raw: String,
}

/// One UTC day of the index's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct DayActivity {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub messages: i64,
    pub redactions: i64,
    /// Senders with at least one message that day.
    pub active_senders: i64,
}

/// Index figures besides the daily activity: rooms created, quarantines and
/// purges over a time range, and the media hashed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModerationTotals {
    /// Rooms created (their `m.room.create` was sent) in the range.
    pub new_rooms: i64,
    /// Media housekeep downloaded and hashed so far (of the room, or all), and their bytes.
    pub media_hashed: i64,
    pub media_bytes: i64,
    /// Media quarantined in the range (by housekeep).
    pub quarantined: i64,
    /// Purge jobs finished in the range, and the events they purged.
    pub purges: i64,
    pub purged_events: i64,
}

impl Store {
    /// Stores a report unless the same one (homeserver and timestamp) is
    /// stored already, or its homeserver's last one was received less than
    /// `min_gap_ms` before `received_at` (two reports sent at once cannot
    /// both pass).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_stats_report(
        &self,
        homeserver: &str,
        report_ts: i64,
        received_at: i64,
        source: &str,
        user_agent: Option<&str>,
        raw: &str,
        min_gap_ms: i64,
    ) -> anyhow::Result<ReportStored> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Under READ COMMITTED two reports at once would both pass the
            // NOT EXISTS (neither sees the other's row): one homeserver's
            // reports are stored one after another. (SQLite's writer is one.)
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
                .bind(homeserver)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(INSERT_REPORT)
            .bind(homeserver)
            .bind(report_ts)
            .bind(received_at)
            .bind(source)
            .bind(user_agent)
            .bind(raw)
            .bind(min_gap_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if inserted > 0 {
            return Ok(ReportStored::Stored);
        }
        let stored: i64 =
            sqlx::query_scalar(REPORT_EXISTS).bind(homeserver).bind(report_ts).fetch_one(&self.pool).await?;
        Ok(if stored > 0 { ReportStored::Duplicate } else { ReportStored::TooSoon })
    }

    /// How many reports each homeserver sent with its own time in
    /// `[from_s, to_s)`, at most `limit` homeservers (those that sent most).
    pub async fn stats_report_counts(&self, from_s: i64, to_s: i64, limit: i64) -> anyhow::Result<Vec<(String, i64)>> {
        let rows: Vec<Counted> =
            sqlx::query_as(COUNT_REPORTS).bind(from_s).bind(to_s).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Of the reports of `homeservers` whose own time is in `[from_s, to_s)`
    /// (seconds), each homeserver's last of each UTC day, by homeserver and
    /// time. Only those homeservers' rows are read.
    pub async fn stats_reports<S: AsRef<str>>(
        &self,
        from_s: i64,
        to_s: i64,
        homeservers: &[S],
    ) -> anyhow::Result<Vec<StoredReport>> {
        let sql = SELECT_REPORTS.replace("{homeservers}", &in_json(self.backend, "homeserver", 3));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from_s)
            .bind(to_s)
            .bind(json_array(homeservers))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Drops reports received before `before` (ms): the retention setting.
    pub async fn prune_stats_reports(&self, before: i64) -> anyhow::Result<u64> {
        Ok(sqlx::query(PRUNE_REPORTS).bind(before).execute(&self.pool).await?.rows_affected())
    }

    /// The index's activity per day in `[from_day, to_day]`, of one room or
    /// all; days without activity are left out.
    pub async fn activity_per_day(
        &self,
        room_id: Option<&str>,
        from_day: i64,
        to_day: i64,
    ) -> anyhow::Result<Vec<DayActivity>> {
        let mut sql = days(
            self.backend,
            "SELECT day, CAST(SUM(messages) AS BIGINT) AS messages, CAST(SUM(redactions) AS BIGINT) AS redactions, \
             COUNT(DISTINCT CASE WHEN messages > 0 THEN sender END) AS active_senders FROM activity_daily",
            from_day,
            to_day,
            room_id,
        );
        sql.push(" GROUP BY day ORDER BY day");
        Ok(sql.query_as().fetch_all(&self.pool).await?)
    }

    /// Senders with at least one message in `[from_day, to_day]` (a sender
    /// active on several days counts once).
    pub async fn active_senders(&self, room_id: Option<&str>, from_day: i64, to_day: i64) -> anyhow::Result<i64> {
        let head = "SELECT COUNT(DISTINCT sender) FROM activity_daily";
        let mut sql = days(self.backend, head, from_day, to_day, room_id);
        sql.and("messages > 0");
        Ok(sql.query_scalar().fetch_one(&self.pool).await?)
    }

    /// The busiest rooms or senders by messages in `[from_day, to_day]`, of
    /// one room or all.
    pub async fn top_by_messages(
        &self,
        by: TopBy,
        room_id: Option<&str>,
        from_day: i64,
        to_day: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        let column = match by {
            TopBy::Room => "room_id",
            TopBy::Sender => "sender",
        };
        let head = format!("SELECT {column} AS name, CAST(SUM(messages) AS BIGINT) AS n FROM activity_daily");
        let mut sql = days(self.backend, &head, from_day, to_day, room_id);
        sql.and("messages > 0").push(&format!(" GROUP BY {column} ORDER BY n DESC, {column} LIMIT "));
        sql.bind(limit.clamp(1, 100));
        let rows = sql.query_as::<Counted>().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// New rooms, quarantines and purges in `[from_ms, to_ms)`, and the media
    /// hashed so far, of one room or all.
    pub async fn moderation_totals(
        &self,
        room_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<ModerationTotals> {
        let totals = |sql: Sql| async move { anyhow::Ok(sql.query_as::<Totals>().fetch_one(&self.pool).await?) };
        let mut sql = Sql::new(self.backend, "SELECT COUNT(*) AS n, 0 AS total FROM events");
        sql.and("type = 'm.room.create'").and("origin_server_ts >= ").bind(from_ms);
        sql.and("origin_server_ts < ").bind(to_ms);
        if let Some(room) = room_id {
            sql.and("room_id = ").bind(room.to_owned());
        }
        let new_rooms = totals(sql).await?.n.unwrap_or_default();
        // Not in the time range: all media housekeep hashed so far (for a
        // room: what its events reference, from its references).
        // A room's media is what its events reference (from its references);
        // the server's is all of it (through `media_quarantined`).
        let media_of = |head: &str| {
            let mut sql = Sql::new(self.backend, head);
            if let Some(room) = room_id {
                sql.push(" FROM (SELECT DISTINCT server_name, media_id FROM media_refs WHERE room_id = ");
                sql.bind(room.to_owned());
                sql.push(") r JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id");
            } else {
                sql.push(" FROM media m");
            }
            sql
        };
        let mut sql = media_of("SELECT COUNT(*) AS n, CAST(SUM(m.size) AS BIGINT) AS total");
        sql.and("m.sha256 IS NOT NULL");
        let media = totals(sql).await?;
        let (media_hashed, media_bytes) = (media.n.unwrap_or_default(), media.total.unwrap_or_default());
        let mut sql = media_of("SELECT COUNT(*) AS n, 0 AS total");
        sql.and("m.quarantined_at >= ").bind(from_ms).and("m.quarantined_at < ").bind(to_ms);
        let quarantined = totals(sql).await?.n.unwrap_or_default();
        // Purges are counted server-wide: one job may span rooms.
        let mut sql = Sql::new(
            self.backend,
            "SELECT COUNT(*) AS n, CAST(SUM(done_count) AS BIGINT) AS total FROM jobs \
             WHERE kind = 'purge' AND state = 'done' AND updated_at >= ",
        );
        sql.bind(from_ms).push(" AND updated_at < ").bind(to_ms);
        let purges = totals(sql).await?;
        let (purges, purged_events) = (purges.n.unwrap_or_default(), purges.total.unwrap_or_default());
        Ok(ModerationTotals { new_rooms, media_hashed, media_bytes, quarantined, purges, purged_events })
    }

    /// The scheduled time of the last summary posted for this room and schedule.
    pub async fn summary_last_sent(&self, room_id: &str, schedule: &str) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(LAST_SENT).bind(room_id).bind(schedule).fetch_optional(&self.pool).await?)
    }

    pub async fn record_summary_sent(
        &self,
        room_id: &str,
        schedule: &str,
        period_at: i64,
        posted_at: i64,
        event_id: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(RECORD_SENT)
            .bind(room_id)
            .bind(schedule)
            .bind(period_at)
            .bind(posted_at)
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What [`Store::top_by_messages`] ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBy {
    Room,
    Sender,
}

/// A count and a sum (either may be NULL: a SUM of no rows).
#[derive(sqlx::FromRow)]
struct Totals {
    n: Option<i64>,
    total: Option<i64>,
}

/// `head` over the days `[from, to]`, of one room or all.
fn days(backend: Backend, head: &str, from: i64, to: i64, room_id: Option<&str>) -> Sql {
    let mut sql = Sql::new(backend, head);
    sql.and("day >= ").bind(from).and("day <= ").bind(to);
    if let Some(room) = room_id {
        sql.and("room_id = ").bind(room.to_owned());
    }
    sql
}
