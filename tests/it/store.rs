//! The store on both backends: migrations, batch indexing, redaction marks.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::Backend;
use housekeep::extract::extract_value;
use housekeep::store::{AuditEntry, InboxItem, InboxKind, Source, Store};
use housekeep::testbed::{TestDatabase, eventually};
use serde_json::{Value, json};

tests! {
    both: [
        redactions_mark_targets_in_either_order,
        backfill_rows_are_tagged,
        a_command_is_handled_once_even_if_delivered_again,
        the_audit_log_is_append_only,
        daily_activity_counts_each_message_once,
    ],
    plain: [
        both_dialects_migrate_to_the_same_schema,
        a_steady_stream_of_commits_keeps_the_sqlite_wal_bounded,
    ],
}

/// A homeserver that never stops sending (a busy server, a backfill) must
/// not grow SQLite's write-ahead log without end: every read looks through
/// it, and it is disk the operator did not plan for. Commits follow one
/// another with no gap, as in the index bench where the WAL reached 7 GB
/// in a minute. With passive checkpoints only, this test's WAL passed the
/// bound after 48 commits; with the restarting one it peaked at 112-123 MiB.
async fn a_steady_stream_of_commits_keeps_the_sqlite_wal_bounded() -> anyhow::Result<()> {
    /// `journal_size_limit`: the size the WAL file is cut back to.
    const BOUND: u64 = 256 << 20;
    const BATCHES: usize = 150;
    let (store, database, dir) = open(Backend::Sqlite).await?;
    let wal = dir.path().join("housekeep.db-wal");
    let mut largest = 0u64;
    for batch in 0..BATCHES {
        // Random IDs, as a homeserver's are: each row lands on its own
        // B-tree page, so a commit writes several pages per event.
        let events: Vec<_> = (0..1_000)
            .map(|n| {
                let id: u128 = rand::random();
                let content = json!({"content": {"url": format!("mxc://hs/{id:x}")}});
                extract_value(&event(&format!("${id:x}"), (batch * 1_000 + n) as i64, "m.room.message", content))
                    .unwrap()
            })
            .collect();
        store.index_events(&events, Source::Live).await?;
        largest = largest.max(std::fs::metadata(&wal)?.len());
        assert!(largest <= BOUND, "the WAL grew to {} MiB after {} commits", largest >> 20, batch + 1);
    }
    let written = store.summary().await?.events;
    assert_eq!(written, (BATCHES * 1_000) as i64);
    eprintln!("largest WAL over {written} events in {BATCHES} commits: {} MiB", largest >> 20);
    store.close().await;
    database.drop_database().await
}

async fn open(backend: Backend) -> anyhow::Result<(Store, TestDatabase, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let database = TestDatabase::create(backend, dir.path()).await?;
    let store = Store::connect(&database.url, None).await?;
    store.migrate().await?;
    Ok((store, database, dir))
}

fn event(id: &str, ts: i64, event_type: &str, extra: Value) -> Value {
    let mut event = json!({
        "event_id": id, "room_id": "!r", "sender": "@a:hs", "origin_server_ts": ts, "type": event_type, "content": {},
    });
    event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    event
}

/// A table as both dialects can describe it: columns (kind, NOT NULL), the
/// primary key, and each index's columns, uniqueness and whether it is
/// partial (the predicates' text differs between dialects; their names and
/// columns are what queries rely on).
#[derive(Debug, PartialEq, Default)]
struct Table {
    columns: BTreeMap<String, (&'static str, bool)>,
    primary_key: Vec<String>,
    indexes: BTreeMap<String, (Vec<String>, bool, bool)>,
}

/// Kinds that one query can serve on both backends (STYLE: TEXT, BIGINT,
/// BOOLEAN): SQLite's declared type and PostgreSQL's `data_type` map to one.
fn kind(declared: &str) -> &'static str {
    match declared.to_ascii_uppercase().as_str() {
        "TEXT" | "CHARACTER VARYING" | "VARCHAR" => "text",
        "BIGINT" | "INTEGER" | "INT" | "SMALLINT" => "integer",
        "BOOLEAN" => "boolean",
        "BLOB" | "BYTEA" => "bytes",
        "REAL" | "DOUBLE PRECISION" => "real",
        _ => "other",
    }
}

async fn schema_of(backend: Backend) -> anyhow::Result<BTreeMap<String, Table>> {
    use sqlx::{Connection, Row};
    let (store, database, _dir) = open(backend).await?;
    store.close().await;
    let mut conn = sqlx::AnyConnection::connect(&database.url).await?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let (columns, indexes) = match backend {
        Backend::Sqlite => (
            "SELECT m.name, c.name, c.type, c.\"notnull\", c.pk FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
            "SELECT m.name, i.name, i.\"unique\", i.partial, \
                    (SELECT group_concat(name, ',') FROM (SELECT x.name FROM pragma_index_info(i.name) x ORDER BY x.seqno)), \
                    i.origin = 'u' \
             FROM sqlite_master m, pragma_index_list(m.name) i \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' AND i.origin <> 'pk'",
        ),
        Backend::Postgres => (
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text, (c.is_nullable = 'NO')::int::bigint, \
                    COALESCE((SELECT k.ordinal_position FROM information_schema.key_column_usage k \
                      JOIN information_schema.table_constraints t ON t.constraint_name = k.constraint_name \
                       AND t.table_name = k.table_name AND t.constraint_type = 'PRIMARY KEY' \
                      WHERE k.table_name = c.table_name AND k.column_name = c.column_name), 0)::bigint \
             FROM information_schema.columns c \
             WHERE c.table_schema = 'public' AND c.table_name NOT LIKE '_sqlx%'",
            "SELECT t.relname::text, i.relname::text, x.indisunique::int::bigint, (x.indpred IS NOT NULL)::int::bigint, \
                    (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(x.indkey) WITH ORDINALITY k(attnum, ord) \
                     JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum), \
                    EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.contype = 'u')::int::bigint \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = 'public' AND NOT x.indisprimary AND t.relname NOT LIKE '_sqlx%'",
        ),
    };
    let mut primary_keys: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for row in sqlx::query(columns).fetch_all(&mut conn).await? {
        let (table, column): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let position: i64 = row.try_get(4)?;
        if position > 0 {
            primary_keys.entry(table.clone()).or_default().push((position, column.clone()));
        }
        // A primary key column is NOT NULL on PostgreSQL whatever it says.
        let not_null = row.try_get::<i64, _>(3)? != 0 || position > 0;
        tables.entry(table).or_default().columns.insert(column, (kind(&row.try_get::<String, _>(2)?), not_null));
    }
    for (table, mut key) in primary_keys {
        key.sort();
        tables.get_mut(&table).expect("listed").primary_key = key.into_iter().map(|(_, column)| column).collect();
    }
    for row in sqlx::query(indexes).fetch_all(&mut conn).await? {
        let (table, mut name): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let columns: String = row.try_get(4)?;
        // A UNIQUE constraint's index is named by each dialect its own way.
        if row.try_get::<i64, _>(5)? != 0 {
            name = format!("unique ({columns})");
        }
        let flag = |n: usize| anyhow::Ok(row.try_get::<i64, _>(n)? != 0);
        let index = (columns.split(',').map(str::to_owned).collect(), flag(2)?, flag(3)?);
        tables.get_mut(&table).expect("indexed table listed").indexes.insert(name, index);
    }
    conn.close().await?;
    database.drop_database().await?;
    Ok(tables)
}

/// The two dialects' migrations are written side by side by hand; one that
/// forgot a column, a NOT NULL or an index in one of them would pass every
/// test on the other backend. The only difference is the one made on
/// purpose (SQLite's migration 0010 says why).
async fn both_dialects_migrate_to_the_same_schema() -> anyhow::Result<()> {
    let sqlite = schema_of(Backend::Sqlite).await?;
    let mut postgres = schema_of(Backend::Postgres).await?;
    assert!(sqlite.len() >= 10 && sqlite["events"].indexes.len() >= 4, "the schema was read: {sqlite:#?}");
    let kept = sqlite["events"].indexes.get("events_room_sender").cloned();
    assert!(kept.is_some(), "SQLite keeps events_room_sender");
    postgres.get_mut("events").expect("events").indexes.insert("events_room_sender".to_owned(), kept.unwrap());
    for name in sqlite.keys().chain(postgres.keys()) {
        assert_eq!(sqlite.get(name), postgres.get(name), "table {name}: SQLite (left) and PostgreSQL (right) differ");
    }
    Ok(())
}

async fn redactions_mark_targets_in_either_order(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let extract = |v: Value| extract_value(&v).unwrap();
    // Live order: the target, then its redaction (room v11+: `redacts` in content).
    store.index_events(&[extract(event("$a", 10, "m.room.message", json!({})))], Source::Live).await?;
    let counts = store
        .index_events(
            &[extract(event("$ra", 20, "m.room.redaction", json!({"content": {"redacts": "$a"}})))],
            Source::Live,
        )
        .await?;
    assert_eq!(counts.redactions_applied, 1);
    // Backfill order: the redaction (older room versions: top-level `redacts`) before its target.
    store
        .index_events(&[extract(event("$rb", 40, "m.room.redaction", json!({"redacts": "$b"})))], Source::Backfill)
        .await?;
    let counts = store.index_events(&[extract(event("$b", 30, "m.room.message", json!({})))], Source::Backfill).await?;
    assert_eq!(counts.redactions_applied, 1);
    // A redaction in another room does not touch this room's event.
    store.index_events(&[extract(event("$c", 60, "m.room.message", json!({})))], Source::Live).await?;
    let elsewhere = event("$rc", 70, "m.room.redaction", json!({"redacts": "$c", "room_id": "!elsewhere"}));
    assert_eq!(store.index_events(&[extract(elsewhere)], Source::Live).await?.redactions_applied, 0);
    // A second redaction of the same event keeps the first time.
    store
        .index_events(&[extract(event("$ra2", 50, "m.room.redaction", json!({"redacts": "$a"})))], Source::Live)
        .await?;

    let events = store.room_events("!r").await?;
    let redacted_at = |id: &str| events.iter().find(|e| e.event_id == id).unwrap().redacted_at;
    assert_eq!(redacted_at("$a"), Some(20));
    assert_eq!(redacted_at("$b"), Some(40));
    assert_eq!(redacted_at("$ra"), None);
    assert_eq!(redacted_at("$c"), None);
    store.close().await;
    database.drop_database().await
}

async fn backfill_rows_are_tagged(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let batch: Vec<_> = (0..1200)
        .map(|n| {
            let content = json!({"content": {"url": format!("mxc://hs/m{n}"), "info": {"thumbnail_url": format!("mxc://hs/t{n}")}}});
            extract_value(&event(&format!("$e{n}"), n, "m.room.message", content)).unwrap()
        })
        .collect();
    let counts = store.index_events(&batch, Source::Backfill).await?;
    assert_eq!((counts.events, counts.media_refs), (1200, 2400), "batches larger than one statement are split");
    let again = store.index_events(&batch, Source::Live).await?;
    assert_eq!((again.events, again.media_refs), (0, 0), "re-indexing is a no-op");
    let summary = store.summary().await?;
    assert_eq!((summary.events, summary.rooms, summary.media_refs, summary.distinct_media), (1200, 1, 2400, 2400));
    assert_eq!(summary.newest_event_ts, Some(1199));
    // `!status` reads the database's own bookkeeping instead of counting.
    // PostgreSQL publishes its row statistics a moment after the commit.
    let estimate = eventually(Duration::from_secs(10), "the estimate to count 1,200 events", || async {
        Ok(Some(store.summary_estimate().await?).filter(|estimate| estimate.events == 1200))
    })
    .await?;
    assert_eq!((estimate.events, estimate.media_refs, estimate.media), (1200, 2400, 2400), "{estimate:?}");
    assert!(store.room_events("!r").await?.iter().all(|e| e.source == "backfill"));
    store.close().await;
    database.drop_database().await
}

async fn a_command_is_handled_once_even_if_delivered_again(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let item = InboxItem {
        event_id: "$cmd".into(),
        room_id: "!admin".into(),
        sender: "@mod:hs".into(),
        kind: InboxKind::Command,
        event: json!({"content": {"body": "!status"}}),
        origin_server_ts: 5,
    };
    store.enqueue_inbox(&[item.clone(), item.clone()]).await?;
    assert_eq!(store.pending_inbox(10).await?.len(), 1);
    let audit =
        AuditEntry { actor: "@mod:hs".into(), action: "command".into(), outcome: "ok".into(), ..Default::default() };
    store.mark_handled("$cmd", "ok", &[audit]).await?;
    // The homeserver re-sends the transaction after a crash: nothing new to handle.
    store.enqueue_inbox(&[item]).await?;
    assert!(store.pending_inbox(10).await?.is_empty());
    assert_eq!(store.audit_entries(10, None).await?.len(), 1);
    store.close().await;
    database.drop_database().await
}

async fn the_audit_log_is_append_only(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    store
        .audit(AuditEntry {
            actor: "@mod:hs".into(),
            action: "command".into(),
            outcome: "ok".into(),
            ..Default::default()
        })
        .await?;
    for sql in ["UPDATE audit_log SET outcome = 'forged'", "DELETE FROM audit_log"] {
        let error = sqlx::query(sql).execute(store.pool()).await.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(store.audit_entries(10, None).await?[0].entry.outcome, "ok");
    store.close().await;
    database.drop_database().await
}

async fn daily_activity_counts_each_message_once(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let extract = |v: Value| extract_value(&v).unwrap();
    let day = 20_424i64; // a day long past
    let at = |hour: i64| day * 86_400_000 + hour * 3_600_000;
    let message = |id: &str, hour: i64| extract(event(id, at(hour), "m.room.message", json!({})));
    // The same event twice in one batch, and an encrypted message and a sticker.
    let first = vec![
        message("$m1", 1),
        message("$m1", 1),
        extract(event("$e1", at(2), "m.room.encrypted", json!({}))),
        extract(event("$s1", at(3), "m.sticker", json!({}))),
        // State and other events are not messages.
        extract(event("$n1", at(4), "m.room.member", json!({"state_key": "@a:hs"}))),
        extract(event("$odd", at(4), "m.room.message", json!({"state_key": ""}))),
        extract(event("$r1", at(5), "m.room.redaction", json!({"redacts": "$m1"}))),
    ];
    store.index_events(&first, Source::Live).await?;
    // Sent again (a resend, or backfill meeting live events): nothing more.
    store.index_events(&first, Source::Backfill).await?;
    // Another sender the next day; and one claiming a day still to come.
    let other = extract(event("$m2", at(30), "m.room.message", json!({"sender": "@b:hs"})));
    let future = extract(event("$m3", i64::MAX / 2, "m.room.message", json!({"sender": "@c:hs"})));
    store.index_events(&[other, future], Source::Live).await?;

    let today = housekeep::clock::utc_day(housekeep::clock::now_ms());
    let activity = store.activity_per_day(Some("!r"), day - 1, today + 400).await?;
    let on = |d: i64| activity.iter().find(|a| a.day == d).copied().unwrap_or_default();
    assert_eq!((on(day).messages, on(day).redactions, on(day).active_senders), (3, 1, 1), "{activity:?}");
    assert_eq!((on(day + 1).messages, on(day + 1).active_senders), (1, 1));
    assert_eq!(on(today).messages, 1, "a message from the future counts on the day it was seen");
    assert_eq!(activity.iter().map(|a| a.messages).sum::<i64>(), 5);
    assert_eq!(store.active_senders(None, day, day + 1).await?, 2);
    let top = store.top_by_messages(housekeep::store::TopBy::Sender, None, day, day + 1, 5).await?;
    assert_eq!(top, vec![("@a:hs".to_owned(), 3), ("@b:hs".to_owned(), 1)]);
    store.close().await;
    database.drop_database().await
}
