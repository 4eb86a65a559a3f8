//! Event selections for `!purge`, and what a purge leaves in the index.

use sqlx::{AssertSqlSafe, Row};

use super::{Store, list_placeholders};
use crate::config::Backend;

/// Which events a purge selects. Empty lists and `None` mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub room_id: Option<String>,
    /// Exclusive bounds on `origin_server_ts`.
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub senders: Vec<String>,
    pub event_ids: Vec<String>,
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
/// through one of the `events` indexes: (room, ts), (room, sender, ts),
/// (sender, ts), or the primary key.
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
    conditions.push("type <> 'm.room.redaction'".to_owned());
    conditions.push("redacted_at IS NULL".to_owned());
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
    /// Unredacted, non-state, non-redaction events matching `filter`, oldest first.
    pub async fn select_events(&self, filter: &EventFilter) -> anyhow::Result<Vec<SelectedEvent>> {
        let (condition, binds) = where_clause(self.backend, filter, false);
        let sql = format!(
            "SELECT event_id, room_id, sender, origin_server_ts FROM events WHERE {condition} \
             ORDER BY origin_server_ts, event_id"
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

    /// How many state events the filter would match (a purge leaves them).
    pub async fn count_state_events(&self, filter: &EventFilter) -> anyhow::Result<i64> {
        let (condition, binds) = where_clause(self.backend, filter, true);
        let sql = format!("SELECT COUNT(*) FROM events WHERE {condition}");
        Ok(bind_all(sqlx::query(AssertSqlSafe(sql)), binds).fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// Distinct media (`mxc://…`) the given events reference.
    pub async fn media_of_events(&self, event_ids: &[String]) -> anyhow::Result<Vec<String>> {
        let mut media = std::collections::BTreeSet::new();
        for chunk in event_ids.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT server_name, media_id FROM media_refs WHERE event_id IN ({})",
                list_placeholders(self.backend, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                media.insert(format!("mxc://{}/{}", row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
            }
        }
        Ok(media.into_iter().collect())
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

    pub async fn is_event_redacted(&self, event_id: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT redacted_at FROM events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<i64>, _>(0)).transpose()?.flatten().is_some())
    }

    /// The timestamp of the room's first event at or after `ts`, if any.
    pub async fn first_event_at_or_after(&self, room_id: &str, ts: i64) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(origin_server_ts) FROM events WHERE room_id = $1 AND origin_server_ts >= $2")
            .bind(room_id)
            .bind(ts)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Removes from the index the non-state events the homeserver deleted
    /// (`purge_history` up to `before`), with their media references.
    pub async fn forget_events_before(&self, room_id: &str, before: i64) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM media_refs WHERE event_id IN (SELECT event_id FROM events \
             WHERE room_id = $1 AND origin_server_ts < $2 AND state_key IS NULL)",
        )
        .bind(room_id)
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let deleted =
            sqlx::query("DELETE FROM events WHERE room_id = $1 AND origin_server_ts < $2 AND state_key IS NULL")
                .bind(room_id)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(deleted)
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
