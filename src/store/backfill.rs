//! What backfill needs to know about the index: where a room's history is
//! already held, and which rooms were asked to be read again.

use super::Store;
use crate::clock::now_ms;

const HAS_CREATE: &str = "SELECT COUNT(*) FROM events WHERE room_id = $1 AND type = 'm.room.create'";
const BACKFILLED: &str = "SELECT to_creation FROM backfilled_rooms WHERE room_id = $1 AND to_creation = 1";
const MARK_BACKFILLED: &str = "INSERT INTO backfilled_rooms (room_id, completed_at, to_creation) VALUES ($1, $2, 1) \
     ON CONFLICT (room_id) DO UPDATE SET completed_at = $2, to_creation = 1";
const REQUEST: &str = "INSERT INTO backfill_requests (room_id, reason, requested_at) VALUES ($1, $2, $3) \
     ON CONFLICT (room_id) DO NOTHING";
const REQUESTS: &str =
    "SELECT room_id, reason, requested_at FROM backfill_requests ORDER BY requested_at, room_id LIMIT $1";
const DROP_REQUEST: &str = "DELETE FROM backfill_requests WHERE room_id = $1";
const ANY_EVENT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM events LIMIT 1) e";

/// A `backfill_requests` row.
#[derive(sqlx::FromRow)]
struct Request {
    room_id: String,
    reason: String,
    requested_at: i64,
}

impl Store {
    /// Whether the index holds events that show where this room's history
    /// already is: its creation event (everything after it arrived too), or
    /// a completed backfill of it. Only then may a backfill stop at events
    /// it already holds; live events alone say nothing about older history.
    pub async fn room_history_is_indexed(&self, room_id: &str) -> anyhow::Result<bool> {
        let create: i64 = sqlx::query_scalar(HAS_CREATE).bind(room_id).fetch_one(&self.pool).await?;
        if create > 0 {
            return Ok(true);
        }
        Ok(sqlx::query(BACKFILLED).bind(room_id).fetch_optional(&self.pool).await?.is_some())
    }

    /// Records that a backfill read the room down to its creation (or down
    /// to events the index held below, which go down to its creation).
    pub async fn mark_room_backfilled(&self, room_id: &str) -> anyhow::Result<()> {
        sqlx::query(MARK_BACKFILLED).bind(room_id).bind(now_ms()).execute(&self.pool).await?;
        Ok(())
    }

    /// Asks for a room's recent history to be read again (a transaction gap).
    pub async fn request_backfill(&self, room_ids: &[String], reason: &str) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        request_in(&mut conn, room_ids, reason, now_ms()).await
    }

    /// Rooms asked to be read again, oldest request first: `(room, reason, requested_at)`.
    pub async fn backfill_requests(&self, limit: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
        let rows: Vec<Request> = sqlx::query_as(REQUESTS).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|row| (row.room_id, row.reason, row.requested_at)).collect())
    }

    pub async fn drop_backfill_request(&self, room_id: &str) -> anyhow::Result<()> {
        sqlx::query(DROP_REQUEST).bind(room_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Whether the index holds no event at all (a first start).
    pub async fn index_is_empty(&self) -> anyhow::Result<bool> {
        let any: i64 = sqlx::query_scalar(ANY_EVENT).fetch_one(&self.pool).await?;
        Ok(any == 0)
    }
}

/// Asks for rooms to be read back, on the caller's connection (or transaction).
pub(super) async fn request_in(
    conn: &mut sqlx::AnyConnection,
    room_ids: &[String],
    reason: &str,
    at: i64,
) -> anyhow::Result<()> {
    for room_id in room_ids {
        sqlx::query(REQUEST).bind(room_id).bind(reason).bind(at).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The reason a gap repair is asked for with; [`is_gap_reason`] tells it apart.
pub fn gap_reason(missing_txn: u64) -> String {
    format!("{GAP_REASON_PREFIX}{missing_txn} never arrived")
}

pub fn is_gap_reason(reason: &str) -> bool {
    reason.starts_with(GAP_REASON_PREFIX)
}

const GAP_REASON_PREFIX: &str = "transaction ";
