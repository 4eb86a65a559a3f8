//! Event selections for `!purge`, and what a purge leaves in the index.
//!
//! Selections are counted in SQL and streamed, never loaded whole: a purge
//! of a spammer across a large server can select millions of events.

use std::collections::HashSet;

use futures::{Stream, StreamExt, TryStreamExt};

use super::sql::{Sql, in_json, json_array};
use super::{Backend, MediaId, Store};

/// What a purge selection holds, counted in SQL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSelectionStats {
    pub events: i64,
    pub rooms: i64,
    pub senders: i64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// The rooms and senders with the most selected events, most first.
    pub top_rooms: Vec<(String, i64)>,
    pub top_senders: Vec<(String, i64)>,
    /// State events the filter matches (a purge leaves them).
    pub state_excluded: i64,
}

/// Which events a purge selects. Empty lists and `None` mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub room_id: Option<String>,
    /// Exclusive bounds on `origin_server_ts`.
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub senders: Vec<String>,
    pub event_ids: Vec<String>,
    /// Also redactions and redacted events (what a history delete removes).
    pub include_redacted: bool,
}

/// A media a selection's events reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionMedia {
    pub media: super::MediaId,
    /// Shared by at least one of the events (not only mentioned).
    pub shared: bool,
    /// Who referenced it (the first and last sender by name).
    pub senders: Vec<String>,
}

/// A selected event.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SelectedEvent {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub origin_server_ts: i64,
}

/// A selection's media as [`Store::media_of_selection`] reads it.
#[derive(sqlx::FromRow)]
struct SelectionMediaRow {
    #[sqlx(flatten)]
    media: MediaId,
    shared: i64,
    first_sender: String,
    last_sender: String,
}

impl From<SelectionMediaRow> for SelectionMedia {
    fn from(row: SelectionMediaRow) -> Self {
        let mut senders = vec![row.first_sender];
        if row.last_sender != senders[0] {
            senders.push(row.last_sender);
        }
        Self { media: row.media, shared: row.shared == 1, senders }
    }
}

/// A group of a selection (a room or a sender) and the selection's totals
/// beside it, as [`Store::selection_grouped_by`] reads them.
#[derive(sqlx::FromRow)]
struct SelectionGroup {
    name: String,
    n: i64,
    events: i64,
    /// Groups holding a selected event.
    groups: i64,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    state_excluded: i64,
}

/// A selection grouped by room or by sender: its totals (no rooms or
/// senders), how many groups hold a selected event, and the five biggest.
#[derive(Default)]
struct Grouped {
    totals: EventSelectionStats,
    groups: i64,
    top: Vec<(String, i64)>,
}

/// An event's ID and time.
#[derive(sqlx::FromRow)]
struct EventAt {
    event_id: String,
    origin_server_ts: i64,
}

const SELECTED_EVENT_COLUMNS: &str = "SELECT event_id, room_id, sender, origin_server_ts FROM events";

/// Appends the conditions of a filter to `sql`'s `WHERE`, with their
/// values. Each shape goes through one of the `events` indexes: (room, ts),
/// (sender, ts), or the primary key; a room and senders through (room,
/// sender, ts) on SQLite, whose planner would otherwise read the whole room
/// for several senders, and on PostgreSQL through (sender, ts) with the room
/// as a filter or ANDed with (room, ts) (it has no (room, sender, ts): every
/// event written would pay for it, and a sender's events are few next to a
/// room's).
fn where_clause(sql: &mut Sql, filter: &EventFilter, state: Option<bool>) {
    if let Some(room) = &filter.room_id {
        sql.and("room_id = ").bind(room.clone());
    }
    if let Some(before) = filter.before {
        sql.and("origin_server_ts < ").bind(before);
    }
    if let Some(after) = filter.after {
        sql.and("origin_server_ts > ").bind(after);
    }
    for (column, values) in [("sender", &filter.senders), ("event_id", &filter.event_ids)] {
        if !values.is_empty() {
            sql.and_in(column, values);
        }
    }
    match state {
        Some(true) => sql.and("state_key IS NOT NULL"),
        Some(false) => sql.and("state_key IS NULL"),
        None => sql,
    };
    if !filter.include_redacted {
        sql.and("type <> 'm.room.redaction'").and("redacted_at IS NULL");
    }
}

/// `head` followed by the filter's conditions.
fn select_events(backend: Backend, head: &str, filter: &EventFilter, state: bool) -> Sql {
    let mut sql = Sql::new(backend, head);
    where_clause(&mut sql, filter, Some(state));
    sql
}

impl Store {
    /// Counts a selection: events, rooms, senders, time span, the top rooms
    /// and senders, and the state events left alone. Each pass over the
    /// selection costs as many index entries as it holds (170,000 for the
    /// heaviest sender of a ten-million-event server), so one pass groups
    /// it by room and yields the totals beside the top rooms, and a second
    /// groups it by sender only when the filter names neither one room nor
    /// one sender (then every selected event is in that room, or by them).
    pub async fn event_selection_stats(&self, filter: &EventFilter) -> anyhow::Result<EventSelectionStats> {
        let all = |one: &String, events: i64| if events > 0 { vec![(one.clone(), events)] } else { Vec::new() };
        if let Some(room) = &filter.room_id {
            let by_sender = self.selection_grouped_by("sender", filter).await?;
            return Ok(EventSelectionStats {
                rooms: i64::from(by_sender.totals.events > 0),
                top_rooms: all(room, by_sender.totals.events),
                senders: by_sender.groups,
                top_senders: by_sender.top,
                ..by_sender.totals
            });
        }
        let by_room = self.selection_grouped_by("room_id", filter).await?;
        let events = by_room.totals.events;
        let (senders, top_senders) = match filter.senders.as_slice() {
            [sender] => (i64::from(events > 0), all(sender, events)),
            _ => {
                let by_sender = self.selection_grouped_by("sender", filter).await?;
                (by_sender.groups, by_sender.top)
            }
        };
        Ok(EventSelectionStats {
            rooms: by_room.groups,
            top_rooms: by_room.top,
            senders,
            top_senders,
            ..by_room.totals
        })
    }

    /// One pass over a selection grouped by `column` (`room_id` or
    /// `sender`): the totals beside the five biggest groups.
    async fn selection_grouped_by(&self, column: &str, filter: &EventFilter) -> anyhow::Result<Grouped> {
        let head = format!(
            "SELECT name, n, CAST(SUM(n) OVER () AS BIGINT) AS events, \
             CAST(SUM(CASE WHEN n > 0 THEN 1 ELSE 0 END) OVER () AS BIGINT) AS groups, \
             MIN(f) OVER () AS first_ts, MAX(l) OVER () AS last_ts, \
             CAST(SUM(s) OVER () AS BIGINT) AS state_excluded \
             FROM (SELECT {column} AS name, \
             CAST(SUM(CASE WHEN state_key IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS n, \
             CAST(SUM(CASE WHEN state_key IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS s, \
             MIN(CASE WHEN state_key IS NULL THEN origin_server_ts END) AS f, \
             MAX(CASE WHEN state_key IS NULL THEN origin_server_ts END) AS l FROM events"
        );
        let mut sql = Sql::new(self.backend, &head);
        where_clause(&mut sql, filter, None);
        sql.push(&format!(" GROUP BY {column}) AS g ORDER BY n DESC, name LIMIT 5"));
        let rows: Vec<SelectionGroup> = sql.query_as().fetch_all(&self.pool).await?;
        let Some(first) = rows.first() else { return Ok(Grouped::default()) };
        let totals = EventSelectionStats {
            events: first.events,
            first_ts: first.first_ts,
            last_ts: first.last_ts,
            state_excluded: first.state_excluded,
            ..Default::default()
        };
        let groups = first.groups;
        // A group of state events only holds nothing selected.
        let top = rows.into_iter().filter(|row| row.n > 0).map(|row| (row.name, row.n)).collect();
        Ok(Grouped { totals, groups, top })
    }

    /// Up to `limit` selected events after `after` (time, event ID), oldest
    /// first: a selection read a page at a time, each page its own query.
    pub async fn selected_events_page(
        &self,
        filter: &EventFilter,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> anyhow::Result<Vec<SelectedEvent>> {
        let mut sql = select_events(self.backend, SELECTED_EVENT_COLUMNS, filter, false);
        if let Some((ts, event_id)) = after {
            sql.and("(origin_server_ts > ").bind(*ts).push(" OR (origin_server_ts = ").bind(*ts);
            sql.push(" AND event_id > ").bind(event_id.clone()).push("))");
        }
        sql.push(" ORDER BY origin_server_ts, event_id LIMIT ").bind(limit);
        Ok(sql.query_as().fetch_all(&self.pool).await?)
    }

    /// Unredacted, non-state, non-redaction events matching `filter`, oldest
    /// first, streamed.
    pub fn selected_events<'a>(
        &'a self,
        filter: &EventFilter,
    ) -> impl Stream<Item = anyhow::Result<SelectedEvent>> + Send + 'a {
        let mut sql = select_events(self.backend, SELECTED_EVENT_COLUMNS, filter, false);
        sql.push(" ORDER BY origin_server_ts, event_id");
        sql.query_as().fetch(&self.pool).map_err(Into::into)
    }

    /// The distinct media the events of a selection reference, streamed in
    /// a stable order: whether any of them *shared* it (an attachment,
    /// image, sticker, or an avatar its owner set; see `media.rs`) or only
    /// mentioned it, and who shared or mentioned it (the first and last
    /// sender by name: usually one).
    pub fn media_of_selection<'a>(
        &'a self,
        filter: &EventFilter,
    ) -> impl Stream<Item = anyhow::Result<SelectionMedia>> + Send + 'a {
        let head = format!(
            "SELECT r.server_name, r.media_id, MAX(CASE WHEN r.kind IN ({SHARED}) OR (r.kind = 'member_avatar' \
             AND e.state_key = r.sender) THEN 1 ELSE 0 END) AS shared, MIN(r.sender) AS first_sender, \
             MAX(r.sender) AS last_sender FROM media_refs r \
             LEFT JOIN events e ON e.event_id = r.event_id \
             WHERE r.event_id IN (SELECT event_id FROM events",
            SHARED = super::media::SHARED_KINDS
        );
        let mut sql = select_events(self.backend, &head, filter, false);
        sql.push(") GROUP BY r.server_name, r.media_id ORDER BY r.server_name, r.media_id");
        sql.query_as::<SelectionMediaRow>().fetch(&self.pool).map(|row| Ok(row?.into()))
    }

    /// Of these events, those the index knows may be redacted already: marked
    /// redacted, or the target of an indexed redaction (by anyone, allowed or
    /// not). By the primary key and the partial `redacts` index.
    pub async fn maybe_redacted(&self, event_ids: &[String]) -> anyhow::Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in event_ids.chunks(500) {
            for sql in [
                format!(
                    "SELECT event_id FROM events WHERE {} AND redacted_at IS NOT NULL",
                    in_json(self.backend, "event_id", 1)
                ),
                format!(
                    "SELECT redacts FROM events WHERE {} AND redacts IS NOT NULL",
                    in_json(self.backend, "redacts", 1)
                ),
            ] {
                let query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(json_array(chunk));
                found.extend(query.fetch_all(&self.pool).await?);
            }
        }
        Ok(found)
    }

    /// Marks events housekeep redacted, so a resumed job skips them.
    pub async fn mark_event_redacted(&self, event_id: &str, at: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE events SET redacted_at = $1 WHERE event_id = $2 AND redacted_at IS NULL")
            .bind(at)
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The room's first indexed event at or after `ts` (its ID and time), if any.
    pub async fn first_event_at_or_after(&self, room_id: &str, ts: i64) -> anyhow::Result<Option<(String, i64)>> {
        self.event_at(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND origin_server_ts >= $2 \
             ORDER BY origin_server_ts, event_id LIMIT 1",
            room_id,
            ts,
        )
        .await
    }

    /// The room's newest indexed event before `ts` (its ID and time), if any.
    pub async fn last_event_before(&self, room_id: &str, ts: i64) -> anyhow::Result<Option<(String, i64)>> {
        self.event_at(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND origin_server_ts < $2 \
             ORDER BY origin_server_ts DESC, event_id DESC LIMIT 1",
            room_id,
            ts,
        )
        .await
    }

    async fn event_at(&self, sql: &'static str, room_id: &str, ts: i64) -> anyhow::Result<Option<(String, i64)>> {
        let row: Option<EventAt> = sqlx::query_as(sql).bind(room_id).bind(ts).fetch_optional(&self.pool).await?;
        Ok(row.map(|row| (row.event_id, row.origin_server_ts)))
    }

    /// Removes from the index events the homeserver deleted (and their
    /// media references), in chunks: never one long write lock.
    pub async fn forget_events(&self, event_ids: &[String]) -> anyhow::Result<u64> {
        let mut forgotten = 0;
        for chunk in event_ids.chunks(500) {
            let ids = json_array(chunk);
            let mut tx = self.pool.begin().await?;
            for table in ["media_refs", "events"] {
                let sql = format!("DELETE FROM {table} WHERE {}", in_json(self.backend, "event_id", 1));
                let deleted = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&ids).execute(&mut *tx).await?.rows_affected();
                if table == "events" {
                    forgotten += deleted;
                }
            }
            tx.commit().await?;
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_indexed_conditions_in_bind_order() {
        let filter = EventFilter {
            room_id: Some("!r".into()),
            before: Some(10),
            after: None,
            senders: vec!["@a:hs".into(), "@b:hs".into()],
            event_ids: vec![],
            include_redacted: false,
        };
        let sql = select_events(Backend::Postgres, "SELECT 1 FROM events", &filter, false);
        assert_eq!(
            sql.text(),
            "SELECT 1 FROM events WHERE room_id = $1 AND origin_server_ts < $2 \
             AND sender = ANY(ARRAY(SELECT json_array_elements_text($3::json))) AND state_key IS NULL \
             AND type <> 'm.room.redaction' AND redacted_at IS NULL"
        );
        let sql = select_events(Backend::Sqlite, "SELECT 1 FROM events", &filter, true);
        assert_eq!(
            sql.text(),
            "SELECT 1 FROM events WHERE room_id = ? AND origin_server_ts < ? \
             AND sender IN (SELECT value FROM json_each(?)) AND state_key IS NOT NULL \
             AND type <> 'm.room.redaction' AND redacted_at IS NULL"
        );
    }
}
