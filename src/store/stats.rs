//! `stats_reports`, `activity_daily` and `stats_summaries_sent`.

use sqlx::Row;

use super::Store;

const INSERT_REPORT: &str = "INSERT INTO stats_reports (homeserver, report_ts, received_at, source, user_agent, raw) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (homeserver, report_ts) DO NOTHING";
/// Of each homeserver's reports in the range, the last of each UTC day.
const SELECT_REPORTS: &str = "SELECT s.homeserver, s.report_ts, s.received_at, s.raw FROM stats_reports s \
     JOIN (SELECT homeserver, MAX(report_ts) AS ts FROM stats_reports WHERE report_ts >= $1 AND report_ts < $2 \
     GROUP BY homeserver, report_ts / 86400) last ON s.homeserver = last.homeserver AND s.report_ts = last.ts \
     ORDER BY s.homeserver, s.report_ts";
/// Reports per homeserver in the range, the most reporting first.
const COUNT_REPORTS: &str = "SELECT homeserver, COUNT(*) FROM stats_reports WHERE report_ts >= $1 AND report_ts < $2 \
     GROUP BY homeserver ORDER BY 2 DESC, 1 LIMIT $3";
const PRUNE_REPORTS: &str = "DELETE FROM stats_reports WHERE received_at < $1";
const LAST_SENT: &str = "SELECT period_at FROM stats_summaries_sent WHERE room_id = $1 AND schedule = $2";
const RECORD_SENT: &str = "INSERT INTO stats_summaries_sent (room_id, schedule, period_at, posted_at, event_id) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, schedule) DO UPDATE SET period_at = $3, posted_at = $4, \
     event_id = $5";

/// A stored phone-home report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub homeserver: String,
    /// The report's own time, in seconds.
    pub report_ts: i64,
    pub received_at: i64,
    pub raw: String,
}

/// One UTC day of the index's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// stored already. Returns whether it was new.
    pub async fn insert_stats_report(
        &self,
        homeserver: &str,
        report_ts: i64,
        received_at: i64,
        source: &str,
        user_agent: Option<&str>,
        raw: &str,
    ) -> anyhow::Result<bool> {
        let inserted = sqlx::query(INSERT_REPORT)
            .bind(homeserver)
            .bind(report_ts)
            .bind(received_at)
            .bind(source)
            .bind(user_agent)
            .bind(raw)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(inserted > 0)
    }

    /// How many reports each homeserver sent with its own time in
    /// `[from_s, to_s)`, at most `limit` homeservers (those that sent most).
    pub async fn stats_report_counts(&self, from_s: i64, to_s: i64, limit: i64) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(COUNT_REPORTS).bind(from_s).bind(to_s).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Of the reports whose own time is in `[from_s, to_s)` (seconds), each
    /// homeserver's last of each UTC day, by homeserver and time.
    pub async fn stats_reports(&self, from_s: i64, to_s: i64) -> anyhow::Result<Vec<StoredReport>> {
        let rows = sqlx::query(SELECT_REPORTS).bind(from_s).bind(to_s).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredReport {
                    homeserver: row.try_get(0)?,
                    report_ts: row.try_get(1)?,
                    received_at: row.try_get(2)?,
                    raw: row.try_get(3)?,
                })
            })
            .collect()
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
        let sql = format!(
            "SELECT day, CAST(SUM(messages) AS BIGINT), CAST(SUM(redactions) AS BIGINT), COUNT(DISTINCT CASE WHEN messages > 0 THEN sender END) \
             FROM activity_daily WHERE day >= $1 AND day <= $2{} GROUP BY day ORDER BY day",
            room_filter(room_id, "room_id")
        );
        let rows = scoped(sql, from_day, to_day, room_id).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(DayActivity {
                    day: row.try_get(0)?,
                    messages: row.try_get(1)?,
                    redactions: row.try_get(2)?,
                    active_senders: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Senders with at least one message in `[from_day, to_day]` (a sender
    /// active on several days counts once).
    pub async fn active_senders(&self, room_id: Option<&str>, from_day: i64, to_day: i64) -> anyhow::Result<i64> {
        let sql = format!(
            "SELECT COUNT(DISTINCT sender) FROM activity_daily WHERE day >= $1 AND day <= $2 AND messages > 0{}",
            room_filter(room_id, "room_id")
        );
        Ok(scoped(sql, from_day, to_day, room_id).fetch_one(&self.pool).await?.try_get(0)?)
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
        let sql = format!(
            "SELECT {column}, CAST(SUM(messages) AS BIGINT) AS n FROM activity_daily WHERE day >= $1 AND day <= $2 \
             AND messages > 0{} GROUP BY {column} ORDER BY n DESC, {column} LIMIT {limit}",
            room_filter(room_id, "room_id"),
            limit = limit.clamp(1, 100)
        );
        let rows = scoped(sql, from_day, to_day, room_id).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// New rooms, quarantines and purges in `[from_ms, to_ms)`, and the media
    /// hashed so far, of one room or all.
    pub async fn moderation_totals(
        &self,
        room_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<ModerationTotals> {
        let pair = |sql: String, room: Option<&'_ str>| {
            let pool = &self.pool;
            let query = match room {
                Some(room) => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from_ms).bind(to_ms).bind(room.to_owned()),
                None => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from_ms).bind(to_ms),
            };
            async move {
                let row = query.fetch_one(pool).await?;
                let get = |i| row.try_get::<Option<i64>, _>(i).map(Option::unwrap_or_default);
                anyhow::Ok((get(0)?, get(1)?))
            }
        };
        let (new_rooms, _) = pair(
            format!(
                "SELECT COUNT(*), 0 FROM events WHERE type = 'm.room.create' AND origin_server_ts >= $1 \
                 AND origin_server_ts < $2{}",
                room_filter(room_id, "room_id")
            ),
            room_id,
        )
        .await?;
        // Not in the time range: all media housekeep hashed so far (for a
        // room: what its events reference, from its references).
        let media = match room_id {
            Some(room) => sqlx::query(
                "SELECT COUNT(*), CAST(SUM(m.size) AS BIGINT) FROM (SELECT DISTINCT server_name, media_id \
                 FROM media_refs WHERE room_id = $1) r JOIN media m ON m.server_name = r.server_name \
                 AND m.media_id = r.media_id WHERE m.sha256 IS NOT NULL",
            )
            .bind(room.to_owned()),
            None => sqlx::query("SELECT COUNT(*), CAST(SUM(size) AS BIGINT) FROM media WHERE sha256 IS NOT NULL"),
        };
        let row = media.fetch_one(&self.pool).await?;
        let (media_hashed, media_bytes) = (
            row.try_get::<Option<i64>, _>(0)?.unwrap_or_default(),
            row.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
        );
        // A room's media is what its events reference (from its references);
        // the server's is all of it (through `media_quarantined`).
        let quarantined_sql = match room_id {
            Some(_) => {
                "SELECT COUNT(*), 0 FROM (SELECT DISTINCT server_name, media_id FROM media_refs \
                        WHERE room_id = $3) r JOIN media m ON m.server_name = r.server_name \
                        AND m.media_id = r.media_id WHERE m.quarantined_at >= $1 AND m.quarantined_at < $2"
            }
            None => "SELECT COUNT(*), 0 FROM media WHERE quarantined_at >= $1 AND quarantined_at < $2",
        };
        let (quarantined, _) = pair(quarantined_sql.to_owned(), room_id).await?;
        // Purges are counted server-wide: one job may span rooms.
        let (purges, purged_events) = pair(
            "SELECT COUNT(*), CAST(SUM(done_count) AS BIGINT) FROM jobs WHERE kind = 'purge' AND state = 'done' \
             AND updated_at >= $1 AND updated_at < $2"
                .to_owned(),
            None,
        )
        .await?;
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

/// ` AND {column} = $3` when the figures are of one room.
fn room_filter(room_id: Option<&str>, column: &str) -> String {
    room_id.map(|_| format!(" AND {column} = $3")).unwrap_or_default()
}

/// A query over `[$1, $2]`, with `$3` the room when there is one.
fn scoped(
    sql: String,
    from: i64,
    to: i64,
    room_id: Option<&str>,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from).bind(to);
    match room_id {
        Some(room) => query.bind(room.to_owned()),
        None => query,
    }
}
