//! The `events` and `media_refs` tables.

use std::collections::HashMap;

use sqlx::{AnyConnection, AssertSqlSafe};

use super::queue::{Candidate, QueuePolicy, QueueSkip, admit_batch, queue_json, write_queue};
use super::sql::{in_json, json_array, values_placeholders};
use super::uri_hash::UriHash;
use super::{Backend, Source, Store};
use crate::clock::utc_day;
use crate::extract::Extracted;

const INSERT_EVENTS_HEAD: &str = "INSERT INTO events \
     (event_id, room_id, sender, origin_server_ts, type, state_key, redacts, indexed_at, source) VALUES ";
const EVENT_COLUMNS: usize = 9;
const INSERT_MEDIA_REFS_HEAD: &str = "INSERT INTO media_refs \
     (server_name, media_id, room_id, event_id, sender, origin_server_ts, kind, uri_sha256) VALUES ";
const MEDIA_REF_COLUMNS: usize = 8;
/// Rows per INSERT statement: well under SQLite's and PostgreSQL's bind limits.
///
/// SQLite's ingest keeps multi-row `VALUES` (a statement text per chunk
/// length, up to this many) rather than one JSON parameter per table as
/// elsewhere: the JSON form (`SELECT value ->> 'i', … FROM json_each($1)`)
/// was measured 10–15% slower through the store alone (benches/
/// index_throughput, 2026-12-06: 7.1k–7.4k against 8.3k–8.9k events/s).
const ROWS_PER_STATEMENT: usize = 500;

/// A redaction the index can judge itself: by the target's own sender, in
/// the target's room (a redaction never crosses rooms). The homeserver always
/// applies those.
const MARK_SELF_REDACTED: &str = "UPDATE events SET redacted_at = $1 \
     WHERE event_id = $2 AND room_id = $3 AND sender = $4 AND redacted_at IS NULL";
/// Any other redaction may or may not have been applied: the homeserver
/// applies it only if the redacter had the power (or, for remote events,
/// shares the target's server), yet stores and forwards it either way.
/// Trusting it would let anyone hide anyone's events from `!purge`, so it is
/// checked with the homeserver first (`redaction_checks`).
const QUEUE_CHECK: &str = "INSERT INTO redaction_checks (redaction_id, room_id, target_id, redacted_at, next_attempt_at) \
     SELECT $1, $2, $3, $4, $5 FROM events WHERE event_id = $3 AND room_id = $2 AND sender <> $6 \
     AND redacted_at IS NULL ON CONFLICT (redaction_id) DO NOTHING";

/// A redaction whose target is not indexed: kept until the target comes.
const WAIT_FOR_TARGET: &str = "INSERT INTO redactions_waiting (target_id, redaction_id, room_id, sender, redacted_at) \
     SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM events WHERE event_id = $1) \
     ON CONFLICT (target_id, redaction_id) DO NOTHING";

const SELECT_ROOM_EVENTS: &str = "SELECT event_id, room_id, sender, origin_server_ts, type AS event_type, state_key, \
     redacted_at, source FROM events WHERE room_id = $1 ORDER BY origin_server_ts, event_id";
const SELECT_ROOM_MEDIA_REFS: &str = "SELECT server_name, media_id, room_id, event_id, sender, origin_server_ts, kind \
     FROM media_refs WHERE room_id = $1 ORDER BY origin_server_ts, event_id, kind, server_name, media_id";
const SELECT_SUMMARY: &str = "SELECT \
     (SELECT COUNT(*) FROM events) AS events, \
     (SELECT COUNT(DISTINCT room_id) FROM events) AS rooms, \
     (SELECT COUNT(*) FROM media_refs) AS media_refs, \
     (SELECT COUNT(*) FROM (SELECT DISTINCT server_name, media_id FROM media_refs) AS m) AS distinct_media, \
     (SELECT MAX(origin_server_ts) FROM events) AS newest_event_ts";
/// The redactions waiting for events of a batch (`$1`, a JSON array of
/// event IDs), oldest first.
const SELECT_WAITING: &str = "SELECT target_id, redaction_id, room_id, sender, redacted_at FROM redactions_waiting \
     WHERE ";
const DELETE_WAITING: &str = "DELETE FROM redactions_waiting WHERE ";

/// What one batch wrote (duplicates of rows already present are not counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexCounts {
    pub events: u64,
    pub media_refs: u64,
    /// Events marked redacted (redacted by their own sender).
    pub redactions_applied: u64,
    /// Redactions by someone else, queued to be checked with the homeserver.
    pub redactions_to_check: u64,
    /// Media queued for download (seen for the first time), or raised to a
    /// stronger priority (see `store::queue`).
    pub media_queued: u64,
    /// Media indexed but left out of the download queue by a cap; for the
    /// caller to log and count.
    pub media_skipped: Vec<QueueSkip>,
}

/// An `events` row as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub origin_server_ts: i64,
    pub event_type: String,
    pub state_key: Option<String>,
    pub redacted_at: Option<i64>,
    pub source: String,
}

/// A `media_refs` row as stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
pub struct StoredMediaRef {
    pub server_name: String,
    pub media_id: String,
    pub room_id: String,
    pub event_id: String,
    pub sender: String,
    pub origin_server_ts: i64,
    pub kind: String,
}

/// The index's size as the database estimates it (see [`Store::summary_estimate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct IndexEstimate {
    pub events: i64,
    pub media_refs: i64,
    /// Media known (each referenced media has a row).
    pub media: i64,
    /// The newest UTC day with a message.
    pub newest_activity_day: Option<i64>,
}

/// Totals for `!status`, the demo and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct IndexSummary {
    pub events: i64,
    pub rooms: i64,
    pub media_refs: i64,
    pub distinct_media: i64,
    pub newest_event_ts: Option<i64>,
}

/// Messages and redactions per day, room and sender, of the events a batch
/// newly indexed (see `activity_daily` in the migrations).
#[derive(Default)]
struct Activity<'a> {
    counts: HashMap<(i64, &'a str, &'a str), (i64, i64)>,
}

/// Event types counted as messages.
const MESSAGE_TYPES: [&str; 3] = ["m.room.message", "m.room.encrypted", "m.sticker"];
const UPSERT_ACTIVITY_HEAD: &str = "INSERT INTO activity_daily (day, room_id, sender, messages, redactions) VALUES ";
const UPSERT_ACTIVITY_TAIL: &str = " ON CONFLICT (day, room_id, sender) DO UPDATE SET \
     messages = activity_daily.messages + excluded.messages, \
     redactions = activity_daily.redactions + excluded.redactions";

impl<'a> Activity<'a> {
    fn add(&mut self, event: &'a crate::extract::EventRow, indexed_at: i64) {
        let (messages, redactions) = match event.event_type.as_str() {
            t if MESSAGE_TYPES.contains(&t) && event.state_key.is_none() => (1, 0),
            "m.room.redaction" => (0, 1),
            _ => return,
        };
        // The sender's clock, but never later than when housekeep saw the
        // event: a server cannot file messages under days still to come.
        let day = utc_day(event.origin_server_ts.min(indexed_at));
        let entry = self.counts.entry((day, event.room_id.as_str(), event.sender.as_str())).or_default();
        entry.0 += messages;
        entry.1 += redactions;
    }

    async fn write(self, conn: &mut AnyConnection, backend: Backend) -> anyhow::Result<()> {
        let mut rows: Vec<_> = self.counts.into_iter().collect();
        // One order for every writer of these rows (the SQLite path; the
        // PostgreSQL statement sorts them itself).
        rows.sort_unstable();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql =
                format!("{UPSERT_ACTIVITY_HEAD}{}{UPSERT_ACTIVITY_TAIL}", values_placeholders(backend, chunk.len(), 5));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for ((day, room_id, sender), (messages, redactions)) in chunk {
                query = query.bind(*day).bind(*room_id).bind(*sender).bind(*messages).bind(*redactions);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Writes events, their media references, the media download queue and
/// redaction marks inside the caller's database transaction: acknowledged
/// means queued.
pub(super) async fn insert_batch(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: &[Extracted],
    source: Source,
    indexed_at: i64,
    queue: &QueuePolicy,
) -> anyhow::Result<IndexCounts> {
    let (mut counts, waiting) = match backend {
        Backend::Postgres => {
            // Admission first (it reads only for capped media), then one statement.
            let admitted = admit_batch(conn, backend, batch, source, queue).await?;
            let (mut counts, waiting) = insert_rows_postgres(conn, batch, source, indexed_at, &admitted.queue).await?;
            counts.media_skipped = admitted.skipped;
            (counts, waiting)
        }
        Backend::Sqlite => {
            // Rows first: the transaction's first statement takes SQLite's write lock.
            let (mut counts, waiting) = insert_rows_sqlite(conn, batch, source, indexed_at).await?;
            let admitted = admit_batch(conn, backend, batch, source, queue).await?;
            counts.media_queued = write_queue(conn, backend, &admitted.queue, indexed_at).await?;
            counts.media_skipped = admitted.skipped;
            (counts, waiting)
        }
    };

    for Extracted { event, .. } in batch {
        if let Some(target) = &event.redacts {
            let marked = sqlx::query(MARK_SELF_REDACTED)
                .bind(event.origin_server_ts)
                .bind(target)
                .bind(&event.room_id)
                .bind(&event.sender)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            counts.redactions_applied += marked;
            if marked == 0 {
                let queued =
                    queue_check(conn, &event.event_id, &event.room_id, target, event.origin_server_ts, &event.sender)
                        .await?;
                counts.redactions_to_check += queued;
                if queued == 0 {
                    // Its target is not indexed (yet): judged when it comes.
                    sqlx::query(WAIT_FOR_TARGET)
                        .bind(target)
                        .bind(&event.event_id)
                        .bind(&event.room_id)
                        .bind(&event.sender)
                        .bind(event.origin_server_ts)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
    }
    let (marked, queued) = judge_late_targets(conn, backend, batch, waiting).await?;
    counts.redactions_applied += marked;
    counts.redactions_to_check += queued;
    Ok(counts)
}

/// Events, daily activity, media references and the download queue (what
/// `store::queue` admitted, `$5`) in one statement: PostgreSQL runs every data-modifying `WITH` part once, in one
/// round trip, and counts only rows new to the index towards the activity (a
/// transaction sent again, or backfill meeting live events, adds nothing).
/// Rows travel as JSON, since the `Any` driver has no array parameters. The
/// last column is the redactions waiting for events of this batch
/// ([`judge_late_targets`]), oldest first.
pub(super) const INSERT_BATCH_POSTGRES: &str = "WITH ev AS (\
       SELECT * FROM json_to_recordset($1::json) AS e(i text, r text, s text, t bigint, y text, k text, d text)), \
     ins AS (\
       INSERT INTO events (event_id, room_id, sender, origin_server_ts, type, state_key, redacts, indexed_at, source) \
       SELECT i, r, s, t, y, k, d, $2, $3 FROM ev ON CONFLICT (event_id) DO NOTHING \
       RETURNING room_id, sender, origin_server_ts, type, state_key), \
     act AS (\
       INSERT INTO activity_daily (day, room_id, sender, messages, redactions) \
       SELECT GREATEST(LEAST(origin_server_ts, $2), 0) / 86400000, room_id, sender, \
         COUNT(*) FILTER (WHERE type <> 'm.room.redaction'), COUNT(*) FILTER (WHERE type = 'm.room.redaction') \
       FROM ins WHERE (type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND state_key IS NULL) \
         OR type = 'm.room.redaction' \
       GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 \
       ON CONFLICT (day, room_id, sender) DO UPDATE SET \
         messages = activity_daily.messages + excluded.messages, \
         redactions = activity_daily.redactions + excluded.redactions), \
     mr AS (\
       SELECT * FROM json_to_recordset($4::json) \
         AS x(n text, m text, r text, e text, s text, t bigint, k text, h text)), \
     refs AS (\
       INSERT INTO media_refs (server_name, media_id, room_id, event_id, sender, origin_server_ts, kind, uri_sha256) \
       SELECT n, m, r, e, s, t, k, h FROM mr \
       ON CONFLICT (server_name, media_id, event_id, kind) DO NOTHING RETURNING 1), \
     queued AS (\
       INSERT INTO media (server_name, media_id, next_attempt_at, priority, queued_sender, queued_origin) \
       SELECT n, m, $2, p, s, o FROM json_to_recordset($5::json) AS q(n text, m text, p bigint, s text, o text) \
       ORDER BY n, m ON CONFLICT (server_name, media_id) DO UPDATE SET priority = excluded.priority \
       WHERE media.priority > excluded.priority AND media.fetch_state IN ('queued', 'failed') RETURNING 1) \
     SELECT (SELECT COUNT(*) FROM ins) AS events, (SELECT COUNT(*) FROM refs) AS media_refs, \
       (SELECT COUNT(*) FROM queued) AS media_queued, \
       (SELECT json_agg(json_build_array(target_id, redaction_id, room_id, sender, redacted_at) \
          ORDER BY redacted_at)::text FROM redactions_waiting WHERE target_id IN (SELECT i FROM ev)) AS waiting";

/// What [`INSERT_BATCH_POSTGRES`] answers.
#[derive(sqlx::FromRow)]
struct BatchWritten {
    events: i64,
    media_refs: i64,
    media_queued: i64,
    /// [`Waiting`] rows, a JSON array of arrays.
    waiting: Option<String>,
}

/// A redaction that arrived before the event it redacts: a row of
/// `redactions_waiting`, or (PostgreSQL) an array of its columns in order.
#[derive(sqlx::FromRow, serde::Deserialize)]
struct Waiting {
    target_id: String,
    redaction_id: String,
    room_id: String,
    /// Who redacted.
    sender: String,
    redacted_at: i64,
}

/// An `events` row as [`INSERT_BATCH_POSTGRES`] reads it (`$1`).
#[derive(serde::Serialize)]
struct EventJson<'a> {
    i: &'a str,
    r: &'a str,
    s: &'a str,
    t: i64,
    y: &'a str,
    k: Option<&'a str>,
    d: Option<&'a str>,
}

/// A `media_refs` row as [`INSERT_BATCH_POSTGRES`] reads it (`$4`).
#[derive(serde::Serialize)]
struct MediaRefJson<'a> {
    n: &'a str,
    m: &'a str,
    r: &'a str,
    e: &'a str,
    s: &'a str,
    t: i64,
    k: &'a str,
    /// The URI's hash (`store::uri_hash`): inline, and serialized straight
    /// into `$4`, so no allocation per reference.
    h: UriHash,
}

async fn insert_rows_postgres(
    conn: &mut AnyConnection,
    batch: &[Extracted],
    source: Source,
    indexed_at: i64,
    queue: &[Candidate<'_>],
) -> anyhow::Result<(IndexCounts, Vec<Waiting>)> {
    let events: Vec<EventJson> = batch
        .iter()
        .map(|Extracted { event: e, .. }| EventJson {
            i: &e.event_id,
            r: &e.room_id,
            s: &e.sender,
            t: e.origin_server_ts,
            y: &e.event_type,
            k: e.state_key.as_deref(),
            d: e.redacts.as_deref(),
        })
        .collect();
    let refs: Vec<MediaRefJson> = batch
        .iter()
        .flat_map(|Extracted { event: e, media, .. }| {
            media.iter().map(move |m| MediaRefJson {
                n: &m.server_name,
                m: &m.media_id,
                r: &e.room_id,
                e: &e.event_id,
                s: &e.sender,
                t: e.origin_server_ts,
                k: m.kind.as_str(),
                h: UriHash::of(&m.server_name, &m.media_id),
            })
        })
        .collect();
    let written: BatchWritten = sqlx::query_as(INSERT_BATCH_POSTGRES)
        .bind(serde_json::to_string(&events)?)
        .bind(indexed_at)
        .bind(source.as_str())
        .bind(serde_json::to_string(&refs)?)
        .bind(queue_json(queue)?)
        .fetch_one(&mut *conn)
        .await?;
    let counts = IndexCounts {
        events: written.events as u64,
        media_refs: written.media_refs as u64,
        media_queued: written.media_queued as u64,
        ..Default::default()
    };
    let waiting = match written.waiting {
        None => Vec::new(),
        Some(json) => serde_json::from_str(&json)?,
    };
    Ok((counts, waiting))
}

/// The same as [`INSERT_BATCH_POSTGRES`], a statement per table: SQLite runs
/// in this process, so statements cost no round trips.
async fn insert_rows_sqlite(
    conn: &mut AnyConnection,
    batch: &[Extracted],
    source: Source,
    indexed_at: i64,
) -> anyhow::Result<(IndexCounts, Vec<Waiting>)> {
    let backend = Backend::Sqlite;
    let mut counts = IndexCounts::default();
    let mut activity = Activity::default();
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "{INSERT_EVENTS_HEAD}{} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            values_placeholders(backend, chunk.len(), EVENT_COLUMNS)
        );
        let mut query = sqlx::query_scalar(AssertSqlSafe(sql));
        for Extracted { event, .. } in chunk {
            query = query
                .bind(&event.event_id)
                .bind(&event.room_id)
                .bind(&event.sender)
                .bind(event.origin_server_ts)
                .bind(&event.event_type)
                .bind(&event.state_key)
                .bind(&event.redacts)
                .bind(indexed_at)
                .bind(source.as_str());
        }
        // Only rows new to the index count towards the daily activity: a
        // transaction sent again, or backfill meeting live events, adds nothing.
        let inserted: Vec<String> = query.fetch_all(&mut *conn).await?;
        counts.events += inserted.len() as u64;
        // Once per row written, even if the batch carried the event twice.
        let by_id: HashMap<&str, &crate::extract::EventRow> =
            chunk.iter().map(|e| (e.event.event_id.as_str(), &e.event)).collect();
        for id in &inserted {
            if let Some(event) = by_id.get(id.as_str()) {
                activity.add(event, indexed_at);
            }
        }
    }
    activity.write(conn, backend).await?;

    // Each reference with its URI's hash, computed here so that the binds
    // below can borrow it (the `Any` driver copies bound text, as it does
    // every column's; the hash allocates nothing of its own).
    let refs: Vec<_> = batch
        .iter()
        .flat_map(|extracted| {
            extracted
                .media
                .iter()
                .map(move |media| (&extracted.event, media, UriHash::of(&media.server_name, &media.media_id)))
        })
        .collect();
    for chunk in refs.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "{INSERT_MEDIA_REFS_HEAD}{} ON CONFLICT (server_name, media_id, event_id, kind) DO NOTHING",
            values_placeholders(backend, chunk.len(), MEDIA_REF_COLUMNS)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (event, media, hash) in chunk {
            query = query
                .bind(&media.server_name)
                .bind(&media.media_id)
                .bind(&event.room_id)
                .bind(&event.event_id)
                .bind(&event.sender)
                .bind(event.origin_server_ts)
                .bind(media.kind.as_str())
                .bind(hash.as_str());
        }
        counts.media_refs += query.execute(&mut *conn).await?.rows_affected();
    }
    let ids: Vec<&str> = batch.iter().map(|extracted| extracted.event.event_id.as_str()).collect();
    let sql = format!("{SELECT_WAITING}{} ORDER BY redacted_at", in_json(backend, "target_id", 1));
    let waiting = sqlx::query_as(AssertSqlSafe(sql)).bind(json_array(&ids)).fetch_all(&mut *conn).await?;
    Ok((counts, waiting))
}

async fn queue_check(
    conn: &mut AnyConnection,
    redaction_id: &str,
    room_id: &str,
    target: &str,
    redacted_at: i64,
    redacter: &str,
) -> anyhow::Result<u64> {
    Ok(sqlx::query(QUEUE_CHECK)
        .bind(redaction_id)
        .bind(room_id)
        .bind(target)
        .bind(redacted_at)
        .bind(crate::clock::now_ms())
        .bind(redacter)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

/// Judges redactions indexed *earlier* than the events of this batch they
/// point at: backfill walks history newest first, so it meets a redaction
/// before its target. They wait in `redactions_waiting`, a table as small as
/// the redactions whose target never came: one probe of its key per batch,
/// fast whatever the planner knows of the big `events` table (a join on it
/// took seconds per transaction on a freshly filled PostgreSQL).
async fn judge_late_targets(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: &[Extracted],
    waiting: Vec<Waiting>,
) -> anyhow::Result<(u64, u64)> {
    let (mut marked, mut queued) = (0, 0);
    if waiting.is_empty() {
        return Ok((marked, queued));
    }
    let events: HashMap<&str, &crate::extract::EventRow> =
        batch.iter().map(|e| (e.event.event_id.as_str(), &e.event)).collect();
    for Waiting { target_id: target, redaction_id: redaction, room_id: room, sender: redacter, redacted_at: at } in
        &waiting
    {
        // A redaction never crosses rooms.
        let Some(event) = events.get(target.as_str()).filter(|e| &e.room_id == room) else { continue };
        if redacter == &event.sender {
            marked += sqlx::query(MARK_SELF_REDACTED)
                .bind(at)
                .bind(target)
                .bind(room)
                .bind(redacter)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        } else {
            queued += queue_check(conn, redaction, room, target, *at, redacter).await?;
        }
    }
    let mut targets: Vec<&str> = waiting.iter().map(|w| w.target_id.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    let sql = format!("{DELETE_WAITING}{}", in_json(backend, "target_id", 1));
    sqlx::query(AssertSqlSafe(sql)).bind(json_array(&targets)).execute(&mut *conn).await?;
    Ok((marked, queued))
}

impl Store {
    /// Every indexed event of a room, oldest first. For tests and offline
    /// inspection; command paths use narrower indexed queries.
    pub async fn room_events(&self, room_id: &str) -> anyhow::Result<Vec<StoredEvent>> {
        Ok(sqlx::query_as(SELECT_ROOM_EVENTS).bind(room_id).fetch_all(&self.pool).await?)
    }

    /// Every media reference made in a room.
    pub async fn room_media_refs(&self, room_id: &str) -> anyhow::Result<Vec<StoredMediaRef>> {
        Ok(sqlx::query_as(SELECT_ROOM_MEDIA_REFS).bind(room_id).fetch_all(&self.pool).await?)
    }

    /// The index's size from the database's own bookkeeping, in
    /// milliseconds at any size: PostgreSQL's live-row statistics, SQLite's
    /// largest rowid (rows are never renumbered; deletes make it an upper
    /// bound). Distinct rooms need a count, so they are left to `--exact`.
    pub async fn summary_estimate(&self) -> anyhow::Result<IndexEstimate> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT \
                 (SELECT COALESCE(MAX(n_live_tup), 0) FROM pg_stat_user_tables WHERE relname = 'events') AS events, \
                 (SELECT COALESCE(MAX(n_live_tup), 0) FROM pg_stat_user_tables WHERE relname = 'media_refs') \
                   AS media_refs, \
                 (SELECT COALESCE(MAX(n_live_tup), 0) FROM pg_stat_user_tables WHERE relname = 'media') AS media, \
                 (SELECT MAX(day) FROM activity_daily) AS newest_activity_day"
            }
            Backend::Sqlite => {
                "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM events) AS events, \
                 (SELECT COALESCE(MAX(rowid), 0) FROM media_refs) AS media_refs, \
                 (SELECT COALESCE(MAX(rowid), 0) FROM media) AS media, \
                 (SELECT MAX(day) FROM activity_daily) AS newest_activity_day"
            }
        };
        Ok(sqlx::query_as(sql).fetch_one(&self.pool).await?)
    }

    pub async fn summary(&self) -> anyhow::Result<IndexSummary> {
        Ok(sqlx::query_as(SELECT_SUMMARY).fetch_one(&self.pool).await?)
    }
}
