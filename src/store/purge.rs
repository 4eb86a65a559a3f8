//! Event selections for `!purge`, and what a purge leaves in the index.
//!
//! Selections are counted in SQL and streamed, never loaded whole: a purge
//! of a spammer across a large server can select millions of events.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use sqlx::{AssertSqlSafe, Row};

use super::Backend;
use super::{Store, list_placeholders};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedEvent {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub origin_server_ts: i64,
}

enum Bind {
    Text(String),
    Int(i64),
}

/// `WHERE …` for a filter, with its values in bind order. Each shape goes
/// through one of the `events` indexes: (room, ts), (sender, ts), or the
/// primary key; a room and senders through (room, sender, ts) on SQLite,
/// whose planner would otherwise read the whole room for several senders,
/// and on PostgreSQL through (sender, ts) with the room as a filter or ANDed
/// with (room, ts) (it has no (room, sender, ts): every event written would
/// pay for it, and a sender's events are few next to a room's).
fn where_clause(backend: Backend, filter: &EventFilter, state: bool) -> (String, Vec<Bind>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let next = |binds: &mut Vec<Bind>, bind: Bind| {
        binds.push(bind);
        match backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${}", binds.len()),
        }
    };
    if let Some(room) = &filter.room_id {
        conditions.push(format!("room_id = {}", next(&mut binds, Bind::Text(room.clone()))));
    }
    if let Some(before) = filter.before {
        conditions.push(format!("origin_server_ts < {}", next(&mut binds, Bind::Int(before))));
    }
    if let Some(after) = filter.after {
        conditions.push(format!("origin_server_ts > {}", next(&mut binds, Bind::Int(after))));
    }
    for (column, values) in [("sender", &filter.senders), ("event_id", &filter.event_ids)] {
        if !values.is_empty() {
            let list: Vec<String> = values.iter().map(|v| next(&mut binds, Bind::Text(v.clone()))).collect();
            conditions.push(format!("{column} IN ({})", list.join(", ")));
        }
    }
    conditions.push(if state { "state_key IS NOT NULL" } else { "state_key IS NULL" }.to_owned());
    if !filter.include_redacted {
        conditions.push("type <> 'm.room.redaction'".to_owned());
        conditions.push("redacted_at IS NULL".to_owned());
    }
    (conditions.join(" AND "), binds)
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(int) => query.bind(int),
        };
    }
    query
}

impl Store {
    /// Counts a selection: events, rooms, senders, time span, the top rooms
    /// and senders, and the state events left alone.
    pub async fn event_selection_stats(&self, filter: &EventFilter) -> anyhow::Result<EventSelectionStats> {
        let (condition, binds) = where_clause(self.backend, filter, false);
        let sql = format!(
            "SELECT COUNT(*), COUNT(DISTINCT room_id), COUNT(DISTINCT sender), MIN(origin_server_ts), \
             MAX(origin_server_ts) FROM events WHERE {condition}"
        );
        let row = bind_all(sqlx::query(AssertSqlSafe(sql)), binds).fetch_one(&self.pool).await?;
        let mut stats = EventSelectionStats {
            events: row.try_get(0)?,
            rooms: row.try_get(1)?,
            senders: row.try_get(2)?,
            first_ts: row.try_get(3)?,
            last_ts: row.try_get(4)?,
            ..EventSelectionStats::default()
        };
        for column in ["room_id", "sender"] {
            let (condition, binds) = where_clause(self.backend, filter, false);
            let sql = format!(
                "SELECT {column}, COUNT(*) FROM events WHERE {condition} GROUP BY {column} ORDER BY 2 DESC, 1 LIMIT 5"
            );
            let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), binds).fetch_all(&self.pool).await?;
            let top = rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect::<anyhow::Result<_>>()?;
            match column {
                "room_id" => stats.top_rooms = top,
                _ => stats.top_senders = top,
            }
        }
        let (condition, binds) = where_clause(self.backend, filter, true);
        let sql = format!("SELECT COUNT(*) FROM events WHERE {condition}");
        stats.state_excluded =
            bind_all(sqlx::query(AssertSqlSafe(sql)), binds).fetch_one(&self.pool).await?.try_get(0)?;
        Ok(stats)
    }

    /// Up to `limit` selected events after `after` (time, event ID), oldest
    /// first: a selection read a page at a time, each page its own query.
    pub async fn selected_events_page(
        &self,
        filter: &EventFilter,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> anyhow::Result<Vec<SelectedEvent>> {
        let (mut condition, mut binds) = where_clause(self.backend, filter, false);
        let mut next = |bind: Bind| {
            binds.push(bind);
            match self.backend {
                Backend::Sqlite => "?".to_owned(),
                Backend::Postgres => format!("${}", binds.len()),
            }
        };
        if let Some((ts, event_id)) = after {
            let (a, b, c) = (next(Bind::Int(*ts)), next(Bind::Int(*ts)), next(Bind::Text(event_id.clone())));
            condition
                .push_str(&format!(" AND (origin_server_ts > {a} OR (origin_server_ts = {b} AND event_id > {c}))"));
        }
        let limit = next(Bind::Int(limit));
        let sql = format!(
            "SELECT event_id, room_id, sender, origin_server_ts FROM events WHERE {condition} \
             ORDER BY origin_server_ts, event_id LIMIT {limit}"
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), binds).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(SelectedEvent {
                    event_id: row.try_get(0)?,
                    room_id: row.try_get(1)?,
                    sender: row.try_get(2)?,
                    origin_server_ts: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Unredacted, non-state, non-redaction events matching `filter`, oldest
    /// first, streamed.
    pub fn selected_events<'a>(
        &'a self,
        filter: &EventFilter,
    ) -> impl Stream<Item = anyhow::Result<SelectedEvent>> + Send + 'a {
        let (condition, binds) = where_clause(self.backend, filter, false);
        let sql = format!(
            "SELECT event_id, room_id, sender, origin_server_ts FROM events WHERE {condition} \
             ORDER BY origin_server_ts, event_id"
        );
        bind_all(sqlx::query(AssertSqlSafe(sql)), binds).fetch(&self.pool).map(|row| {
            let row = row?;
            Ok(SelectedEvent {
                event_id: row.try_get(0)?,
                room_id: row.try_get(1)?,
                sender: row.try_get(2)?,
                origin_server_ts: row.try_get(3)?,
            })
        })
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
        let (condition, binds) = where_clause(self.backend, filter, false);
        let sql = format!(
            "SELECT r.server_name, r.media_id, MAX(CASE WHEN r.kind IN ({SHARED}) OR (r.kind = 'member_avatar' \
             AND e.state_key = r.sender) THEN 1 ELSE 0 END), MIN(r.sender), MAX(r.sender) FROM media_refs r \
             LEFT JOIN events e ON e.event_id = r.event_id \
             WHERE r.event_id IN (SELECT event_id FROM events WHERE {condition}) \
             GROUP BY r.server_name, r.media_id ORDER BY r.server_name, r.media_id",
            SHARED = super::media::SHARED_KINDS
        );
        bind_all(sqlx::query(AssertSqlSafe(sql)), binds).fetch(&self.pool).map(|row| {
            let row = row?;
            let (first, last): (String, String) = (row.try_get(3)?, row.try_get(4)?);
            let mut senders = vec![first];
            if last != senders[0] {
                senders.push(last);
            }
            Ok(SelectionMedia {
                media: super::MediaId { server_name: row.try_get(0)?, media_id: row.try_get(1)? },
                shared: row.try_get::<i64, _>(2)? == 1,
                senders,
            })
        })
    }

    /// Of these events, those the index knows may be redacted already: marked
    /// redacted, or the target of an indexed redaction (by anyone, allowed or
    /// not). By the primary key and the partial `redacts` index.
    pub async fn maybe_redacted(&self, event_ids: &[String]) -> anyhow::Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in event_ids.chunks(500) {
            let ids = list_placeholders(self.backend, chunk.len());
            for sql in [
                format!("SELECT event_id FROM events WHERE event_id IN ({ids}) AND redacted_at IS NOT NULL"),
                format!("SELECT redacts FROM events WHERE redacts IN ({ids}) AND redacts IS NOT NULL"),
            ] {
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(id);
                }
                for row in query.fetch_all(&self.pool).await? {
                    found.insert(row.try_get(0)?);
                }
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
        let row = sqlx::query(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND origin_server_ts >= $2 \
             ORDER BY origin_server_ts, event_id LIMIT 1",
        )
        .bind(room_id)
        .bind(ts)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
    }

    /// The room's newest indexed event before `ts` (its ID and time), if any.
    pub async fn last_event_before(&self, room_id: &str, ts: i64) -> anyhow::Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND origin_server_ts < $2 \
             ORDER BY origin_server_ts DESC, event_id DESC LIMIT 1",
        )
        .bind(room_id)
        .bind(ts)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
    }

    /// Removes from the index events the homeserver deleted (and their
    /// media references), in chunks: never one long write lock.
    pub async fn forget_events(&self, event_ids: &[String]) -> anyhow::Result<u64> {
        let mut forgotten = 0;
        for chunk in event_ids.chunks(500) {
            let ids = list_placeholders(self.backend, chunk.len());
            let mut tx = self.pool.begin().await?;
            for table in ["media_refs", "events"] {
                let sql = format!("DELETE FROM {table} WHERE event_id IN ({ids})");
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(id);
                }
                let deleted = query.execute(&mut *tx).await?.rows_affected();
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
        let (sql, binds) = where_clause(Backend::Postgres, &filter, false);
        assert_eq!(
            sql,
            "room_id = $1 AND origin_server_ts < $2 AND sender IN ($3, $4) AND state_key IS NULL \
             AND type <> 'm.room.redaction' AND redacted_at IS NULL"
        );
        assert_eq!(binds.len(), 4);
        let (sql, _) = where_clause(Backend::Sqlite, &filter, true);
        assert!(sql.starts_with("room_id = ? AND origin_server_ts < ? AND sender IN (?, ?) AND state_key IS NOT NULL"));
    }
}
