//! The store on both backends: migrations, batch indexing, redaction marks.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::Backend;
use futures::TryStreamExt;
use housekeep::extract::extract_value;
use housekeep::store::{
    AuditEntry, AuditFilter, BlockedHash, CancelOutcome, DueMedia, EventFilter, FetchState, Fetched, FinishedPlan,
    InboxItem, InboxKind, ItemResult, ItemState, JobState, JobToken, KindCount, MediaId, NewJob, QuarantineRecord,
    QueuePolicy, QueuePriority, RedactionCheck, RefsOf, ReportStored, Scope, SkipReason, Source, Store, StoredReport,
};
use housekeep::store::{Claim, PolicyList, StoredRule};
use housekeep::testbed::{TestDatabase, eventually};
use serde_json::{Value, json};

tests! {
    both: [
        redactions_mark_targets_in_either_order,
        backfill_rows_are_tagged,
        a_command_is_handled_once_even_if_delivered_again,
        the_audit_log_is_append_only,
        daily_activity_counts_each_message_once,
        every_query_reads_its_rows_by_name,
        junk_references_are_capped_and_wait_behind_uploads,
        policy_rule_slots_are_claimed_once_and_globs_narrow_in_sql,
        indexed_media_is_found_by_the_hash_of_its_uri,
        references_indexed_before_uri_hashes_are_hashed_later,
    ],
    plain: [
        both_dialects_migrate_to_the_same_schema,
        a_steady_stream_of_commits_keeps_the_sqlite_wal_bounded,
        the_sqlite_files_are_private_to_their_owner,
    ],
}

/// A homeserver that never stops sending (a busy server, a backfill) must
/// not grow SQLite's write-ahead log without end: every read looks through
/// it, and it is disk the operator did not plan for. Commits follow one
/// another with no gap, as in the index bench where the WAL reached 7 GB
/// in a minute. With passive checkpoints only, this test's WAL passed the
/// bound after 48 commits; with the restarting one it peaked at 112-123 MiB.
/// The SQLite file holds sender tokens and dashboard sessions: it and its
/// `-wal` and `-shm` are created readable by their owner only, whatever the
/// process's umask; one made readable by others is warned of at start.
async fn the_sqlite_files_are_private_to_their_owner() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (store, database, dir) = open(Backend::Sqlite).await?;
    let content = json!({"content": {"url": "mxc://hs/abc"}});
    store
        .index_events(&[extract_value(&event("$private", 1, "m.room.message", content)).unwrap()], Source::Live)
        .await?;
    for file in ["housekeep.db", "housekeep.db-wal", "housekeep.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
    assert_eq!(housekeep::store::sqlite_exposure(&database.url), None);
    std::fs::set_permissions(dir.path().join("housekeep.db"), std::fs::Permissions::from_mode(0o644))?;
    let warning = housekeep::store::sqlite_exposure(&database.url).expect("a warning");
    assert!(warning.contains("mode 644") && warning.contains("chmod 600"), "{warning}");
    store.close().await;
    database.drop_database().await
}

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

/// A column as [`schema_of`] reads it.
#[derive(sqlx::FromRow)]
struct ColumnRow {
    table_name: String,
    column_name: String,
    data_type: String,
    not_null: i64,
    /// Its place in the primary key, from 1; 0 if it is not in it.
    key_position: i64,
}

/// An index as [`schema_of`] reads it.
#[derive(sqlx::FromRow)]
struct IndexRow {
    table_name: String,
    index_name: String,
    is_unique: i64,
    partial: i64,
    /// Comma-separated, in the index's order.
    columns: String,
    /// It serves a UNIQUE constraint.
    is_constraint: i64,
}

async fn schema_of(backend: Backend) -> anyhow::Result<BTreeMap<String, Table>> {
    use sqlx::Connection;
    let (store, database, _dir) = open(backend).await?;
    store.close().await;
    let mut conn = sqlx::AnyConnection::connect(&database.url).await?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let (columns, indexes) = match backend {
        Backend::Sqlite => (
            "SELECT m.name AS table_name, c.name AS column_name, c.type AS data_type, c.\"notnull\" AS not_null, \
                    c.pk AS key_position FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
            "SELECT m.name AS table_name, i.name AS index_name, i.\"unique\" AS is_unique, i.partial AS partial, \
                    (SELECT group_concat(name, ',') FROM (SELECT x.name FROM pragma_index_info(i.name) x ORDER BY x.seqno)) \
                      AS columns, \
                    i.origin = 'u' AS is_constraint \
             FROM sqlite_master m, pragma_index_list(m.name) i \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' AND i.origin <> 'pk'",
        ),
        Backend::Postgres => (
            "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, \
                    c.data_type::text AS data_type, (c.is_nullable = 'NO')::int::bigint AS not_null, \
                    COALESCE((SELECT k.ordinal_position FROM information_schema.key_column_usage k \
                      JOIN information_schema.table_constraints t ON t.constraint_name = k.constraint_name \
                       AND t.table_name = k.table_name AND t.constraint_type = 'PRIMARY KEY' \
                      WHERE k.table_name = c.table_name AND k.column_name = c.column_name), 0)::bigint AS key_position \
             FROM information_schema.columns c \
             WHERE c.table_schema = 'public' AND c.table_name NOT LIKE '_sqlx%'",
            "SELECT t.relname::text AS table_name, i.relname::text AS index_name, x.indisunique::int::bigint AS is_unique, \
                    (x.indpred IS NOT NULL)::int::bigint AS partial, \
                    (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(x.indkey) WITH ORDINALITY k(attnum, ord) \
                     JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum) AS columns, \
                    EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.contype = 'u')::int::bigint \
                      AS is_constraint \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = 'public' AND NOT x.indisprimary AND t.relname NOT LIKE '_sqlx%'",
        ),
    };
    let mut primary_keys: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for row in sqlx::query_as::<_, ColumnRow>(columns).fetch_all(&mut conn).await? {
        let (table, column, position) = (row.table_name, row.column_name, row.key_position);
        if position > 0 {
            primary_keys.entry(table.clone()).or_default().push((position, column.clone()));
        }
        // A primary key column is NOT NULL on PostgreSQL whatever it says.
        let not_null = row.not_null != 0 || position > 0;
        tables.entry(table).or_default().columns.insert(column, (kind(&row.data_type), not_null));
    }
    for (table, mut key) in primary_keys {
        key.sort();
        tables.get_mut(&table).expect("listed").primary_key = key.into_iter().map(|(_, column)| column).collect();
    }
    for row in sqlx::query_as::<_, IndexRow>(indexes).fetch_all(&mut conn).await? {
        // A UNIQUE constraint's index is named by each dialect its own way.
        let name = if row.is_constraint != 0 { format!("unique ({})", row.columns) } else { row.index_name };
        let index = (row.columns.split(',').map(str::to_owned).collect(), row.is_unique != 0, row.partial != 0);
        tables.get_mut(&row.table_name).expect("indexed table listed").indexes.insert(name, index);
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

/// Every store read that maps columns to fields by name, on rows that it
/// finds: a column a dialect names otherwise (an expression without its
/// alias) fails here, not in a moderator's command.
/// The download queue against a flood (issue 31): 10,000 mxc strings in
/// custom fields, from one local sender and from forty senders of one
/// remote server, are indexed, but queued only up to the caps (32 per
/// event, 100 per sender, 1000 per server), each skip counted; an upload
/// posted after them is the first media due, a remote attachment next; a
/// stronger reference raises a media and a weaker one never lowers it.
async fn junk_references_are_capped_and_wait_behind_uploads(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let policy = QueuePolicy { local_server: Some("hs".into()), ..QueuePolicy::default() };
    assert_eq!((policy.per_event, policy.per_sender, policy.per_origin), (32, 100, 1000));
    let store = store.with_media_queue(policy);
    let junk = |id: &str, sender: &str, from: usize, n: usize| {
        let mxc: Vec<String> = (from..from + n).map(|i| format!("mxc://a{i}.example.invalid/x")).collect();
        extract_value(&event(
            id,
            1,
            "m.room.message",
            json!({"sender": sender, "content": {"body": "hi", "junk": mxc}}),
        ))
        .unwrap()
    };
    let mut skipped: BTreeMap<&str, u64> = BTreeMap::new();
    let mut queued = 0;
    // One local sender: five events of 1,200, one transaction each.
    for n in 0..5 {
        let counts =
            store.index_events(&[junk(&format!("$local{n}"), "@junk:hs", n * 1_200, 1_200)], Source::Live).await?;
        queued += counts.media_queued;
        for skip in counts.media_skipped {
            *skipped.entry(skip.reason.as_str()).or_default() += skip.count;
        }
    }
    // Forty senders of one remote server, 100 each, in one transaction.
    let remote: Vec<_> =
        (0..40).map(|n| junk(&format!("$remote{n}"), &format!("@s{n}:evil.example"), 6_000 + n * 100, 100)).collect();
    let counts = store.index_events(&remote, Source::Live).await?;
    queued += counts.media_queued;
    for skip in &counts.media_skipped {
        *skipped.entry(skip.reason.as_str()).or_default() += skip.count;
    }
    assert!(counts.media_skipped.iter().all(|s| s.reason != SkipReason::PerSender), "{:?}", counts.media_skipped);
    // Every reference is in the index; 160 of the local sender's reach the
    // sender cap (100 queued, 60 deferred), 1,280 of the server's its cap
    // (1,000 queued, 280 deferred): deferred, not dropped.
    assert_eq!(store.summary().await?.media_refs, 10_000);
    assert_eq!(queued, 1_440);
    assert_eq!(skipped, BTreeMap::from([("per_event", 5 * 1_168 + 40 * 68), ("per_origin", 280), ("per_sender", 60)]));
    assert_eq!(store.fetch_state_counts(None).await?, [(FetchState::Queued, 1_440)]);
    // Places are still taken in the next transaction: more of theirs is deferred.
    let counts = store.index_events(&[junk("$late", "@junk:hs", 20_000, 1)], Source::Live).await?;
    assert_eq!((counts.media_queued, counts.media_skipped[0].reason), (1, SkipReason::PerSender));
    let counts = store.index_events(&[junk("$late2", "@s99:evil.example", 20_001, 1)], Source::Live).await?;
    assert_eq!((counts.media_queued, counts.media_skipped[0].reason), (1, SkipReason::PerOrigin));

    // Then an upload here, and an attachment of another server.
    let image = |id: &str, sender: &str, url: &str| {
        let content = json!({"msgtype": "m.image", "body": "x", "url": url});
        extract_value(&event(id, 2, "m.room.message", json!({"sender": sender, "content": content}))).unwrap()
    };
    store.index_events(&[image("$pic", "@g:good.example", "mxc://good.example/pic")], Source::Live).await?;
    store.index_events(&[image("$upload", "@junk:hs", "mxc://hs/upload")], Source::Live).await?;
    let store = &store;
    let first = |n: i64| async move {
        anyhow::Ok(store.due_media(n).await?.into_iter().map(|d| d.media.mxc()).collect::<Vec<_>>())
    };
    assert_eq!(first(2).await?, ["mxc://hs/upload", "mxc://good.example/pic"]);
    let heads = store.media_queue_heads().await?;
    let waiting: Vec<_> = heads.iter().filter(|h| h.oldest.is_some()).map(|h| h.priority).collect();
    assert_eq!(waiting, [QueuePriority::Local, QueuePriority::Remote, QueuePriority::Mention, QueuePriority::Deferred]);
    // A junk mention shown as an attachment is raised (and waits since it was
    // first queued: ahead of the later one); the upload mentioned again stays first.
    store.index_events(&[image("$shown", "@g:good.example", "mxc://a0.example.invalid/x")], Source::Live).await?;
    let mention = json!({"sender": "@g:good.example", "content": {"body": "x", "see": "mxc://hs/upload"}});
    store
        .index_events(&[extract_value(&event("$mention", 3, "m.room.message", mention)).unwrap()], Source::Live)
        .await?;
    assert_eq!(first(3).await?, ["mxc://hs/upload", "mxc://a0.example.invalid/x", "mxc://good.example/pic"]);
    // Once downloaded, a media leaves the queue, and its sender's place is free.
    let fetched = Fetched { sha256: "00".into(), size: 1, mimetype: None };
    store.record_fetched(&MediaId { server_name: "a1.example.invalid".into(), media_id: "x".into() }, &fetched).await?;
    let counts = store.index_events(&[junk("$freed", "@junk:hs", 30_000, 1)], Source::Live).await?;
    assert_eq!((counts.media_queued, counts.media_skipped.len()), (1, 0));
    store.close().await;
    database.drop_database().await
}

/// MSC4207's example: a media rule's `hashes.sha256` for `mxc://example.com/0`.
const EXAMPLE_URI_HASH: &str = "ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM=";

/// A policy rule naming media only by the hash of its URI finds the media
/// indexed (both dialects' insert paths write the hash, in the rules' form),
/// once however often it was referenced.
async fn indexed_media_is_found_by_the_hash_of_its_uri(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let image = |id: &str, room: &str, url: &str| {
        let content = json!({"msgtype": "m.image", "body": "x", "url": url, "info": {"thumbnail_url": url}});
        extract_value(&event(id, 1, "m.room.message", json!({"room_id": room, "content": content}))).unwrap()
    };
    let example = MediaId { server_name: "example.com".into(), media_id: "0".into() };
    store
        .index_events(
            &[image("$a", "!r", "mxc://example.com/0"), image("$b", "!r", "mxc://example.com/1")],
            Source::Live,
        )
        .await?;
    store.index_events(&[image("$c", "!other", "mxc://example.com/0")], Source::Backfill).await?;
    assert_eq!(store.media_by_uri_hash(EXAMPLE_URI_HASH).await?, [example]);
    let other = housekeep::policy::sha256_base64(&housekeep::policy::sha256_of("mxc://example.com/1"));
    assert_eq!(
        store.media_by_uri_hash(&other).await?,
        [MediaId { server_name: "example.com".into(), media_id: "1".into() }]
    );
    // Only the padded standard form is stored; callers normalise.
    assert!(store.media_by_uri_hash(EXAMPLE_URI_HASH.trim_end_matches('=')).await?.is_empty());
    assert!(store.media_by_uri_hash(&housekeep::policy::sha256_base64(&[0; 32])).await?.is_empty());
    store.close().await;
    database.drop_database().await
}

/// References indexed before housekeep kept URI hashes (a NULL hash, set
/// here by hand) are not found by hash until `hash_known_media_uris` has
/// filled them, batch after batch; references hashed already are left as
/// they are.
async fn references_indexed_before_uri_hashes_are_hashed_later(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    // Twelve media, each in a message and its thumbnail, and the example twice more.
    let mut events: Vec<_> = (0..12)
        .map(|n| {
            let url = format!("mxc://example.com/{n}");
            let content = json!({"msgtype": "m.image", "body": "x", "url": url, "info": {"thumbnail_url": url}});
            extract_value(&event(&format!("$e{n}"), n, "m.room.message", json!({"content": content}))).unwrap()
        })
        .collect();
    for id in ["$again1", "$again2"] {
        events.push(
            extract_value(&event(id, 20, "m.sticker", json!({"content": {"url": "mxc://example.com/0"}}))).unwrap(),
        );
    }
    store.index_events(&events, Source::Live).await?;
    assert_eq!(store.hash_known_media_uris(5).await?, 0, "every reference indexed now is hashed");
    // As migration 0014 leaves the references indexed before it: all but two media's.
    let nulled = sqlx::query("UPDATE media_refs SET uri_sha256 = NULL WHERE media_id NOT IN ('10', '11')")
        .execute(store.pool())
        .await?
        .rows_affected();
    assert_eq!(nulled, 10 * 2 + 2);
    assert!(store.media_by_uri_hash(EXAMPLE_URI_HASH).await?.is_empty());
    let (mut hashed, mut batches) = (0, 0);
    loop {
        let rows = store.hash_known_media_uris(5).await?;
        if rows == 0 {
            break;
        }
        // Five references' media, each with all its references.
        assert!(rows <= 5 * 4, "{rows}");
        hashed += rows;
        batches += 1;
        assert!(batches <= 10, "it ends");
    }
    assert_eq!(hashed, nulled, "each reference hashed once, those hashed already untouched");
    assert!(batches >= 2, "in batches: {batches}");
    let example = MediaId { server_name: "example.com".into(), media_id: "0".into() };
    assert_eq!(store.media_by_uri_hash(EXAMPLE_URI_HASH).await?, [example]);
    let unhashed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM media_refs WHERE uri_sha256 IS NULL").fetch_one(store.pool()).await?;
    assert_eq!(unhashed, 0);
    store.close().await;
    database.drop_database().await
}

async fn every_query_reads_its_rows_by_name(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let extract = |v: Value| extract_value(&v).unwrap();
    let mxc = |server: &str, id: &str| MediaId { server_name: server.into(), media_id: id.into() };
    store
        .index_events(
            &[
                extract(event("$create", 5, "m.room.create", json!({"sender": "@z:hs", "state_key": ""}))),
                extract(event("$m1", 10, "m.room.message", json!({"content": {"url": "mxc://hs/one"}}))),
                extract(event(
                    "$m2",
                    20,
                    "m.room.message",
                    json!({"sender": "@b:hs", "content": {"url": "mxc://remote/two"}}),
                )),
                extract(event("$m3", 30, "m.room.message", json!({"content": {"custom": "mxc://hs/three"}}))),
                extract(event("$s1", 40, "m.room.name", json!({"state_key": ""}))),
                // Someone else's redaction: checked with the homeserver first.
                extract(event("$r", 60, "m.room.redaction", json!({"sender": "@c:hs", "redacts": "$m2"}))),
            ],
            Source::Live,
        )
        .await?;

    // Purge selections.
    let by_a = EventFilter { room_id: Some("!r".into()), senders: vec!["@a:hs".into()], ..Default::default() };
    let stats = store.event_selection_stats(&by_a).await?;
    assert_eq!(
        (stats.events, stats.rooms, stats.senders, stats.first_ts, stats.last_ts),
        (2, 1, 1, Some(10), Some(30))
    );
    assert_eq!((stats.top_rooms, stats.top_senders), (vec![("!r".into(), 2)], vec![("@a:hs".into(), 2)]));
    assert_eq!(stats.state_excluded, 1);
    let page = store.selected_events_page(&by_a, Some(&(10, "$m1".into())), 10).await?;
    assert_eq!(page.iter().map(|e| (e.event_id.as_str(), e.origin_server_ts)).collect::<Vec<_>>(), [("$m3", 30)]);
    let all: Vec<_> = store.selected_events(&by_a).try_collect().await?;
    assert_eq!(all.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["$m1", "$m3"]);
    // Two senders anywhere: the rooms and senders counted by grouping.
    let a_or_b = EventFilter { senders: vec!["@a:hs".into(), "@b:hs".into()], ..Default::default() };
    let stats = store.event_selection_stats(&a_or_b).await?;
    assert_eq!(stats.top_rooms, vec![("!r".into(), stats.events)]);
    assert_eq!(stats.top_senders.iter().map(|(_, n)| n).sum::<i64>(), stats.events);
    assert_eq!(stats.top_senders[0], ("@a:hs".into(), 2));
    // @a's room name is left out, and counted as such.
    assert_eq!((stats.senders, stats.state_excluded), (stats.top_senders.len() as i64, 1));
    // Nothing selected: nothing at the top either.
    let nobody = EventFilter { room_id: Some("!r".into()), senders: vec!["@nobody:hs".into()], ..Default::default() };
    let stats = store.event_selection_stats(&nobody).await?;
    assert_eq!(stats, housekeep::store::EventSelectionStats::default());
    let two = EventFilter { event_ids: vec!["$m2".into(), "$nope".into()], ..Default::default() };
    assert_eq!(store.event_selection_stats(&two).await?.events, 1);
    let media: Vec<_> = store.media_of_selection(&by_a).try_collect().await?;
    let media: Vec<_> = media.iter().map(|m| (m.media.mxc(), m.shared, m.senders.clone())).collect();
    assert_eq!(
        media,
        [
            ("mxc://hs/one".into(), true, vec!["@a:hs".to_owned()]),
            ("mxc://hs/three".into(), false, vec!["@a:hs".into()])
        ]
    );
    assert_eq!(store.first_event_at_or_after("!r", 15).await?, Some(("$m2".into(), 20)));
    assert_eq!(store.last_event_before("!r", 30).await?, Some(("$m2".into(), 20)));
    assert!(store.room_history_is_indexed("!r").await?);
    assert!(!store.index_is_empty().await?);

    // Media selections, quarantine records and the download queue.
    let of_a = store.media_selection_stats(RefsOf::Sender("@a:hs"), Scope::Shared, "hs").await?;
    assert_eq!(of_a.refs_by_kind, [("other".into(), 1), ("url".into(), 1)]);
    assert_eq!((of_a.media, of_a.local, of_a.already_quarantined, of_a.mentions_only), (1, 1, 0, 1));
    assert_eq!(
        (of_a.mention_samples, of_a.top_senders, of_a.senders),
        (vec!["mxc://hs/three".into()], vec![("@a:hs".into(), 1)], 1)
    );
    let room: Vec<_> = store.selected_media(RefsOf::Room("!r"), Scope::All).try_collect().await?;
    assert_eq!(room, [mxc("hs", "one"), mxc("hs", "three"), mxc("remote", "two")]);
    let due = store.due_media(10).await?;
    assert_eq!(due.iter().map(|d| (d.media.mxc(), d.failures)).collect::<Vec<_>>().len(), 3);
    let queued_at = store.next_media_due().await?.expect("media waits");
    assert!(queued_at > 0 && queued_at <= housekeep::clock::now_ms(), "{queued_at}");
    let heads = store.media_queue_heads().await?;
    // Not knowing the server's name (the default policy), all is remote; the custom field is a mention.
    let waiting: Vec<_> = heads.iter().filter(|h| h.oldest.is_some()).map(|h| h.priority).collect();
    assert_eq!(waiting, [QueuePriority::Remote, QueuePriority::Mention]);
    assert_eq!(
        store.unfetched_media_of_events(&["$m3".into(), "$x".into()]).await?,
        [DueMedia { media: mxc("hs", "three"), failures: 0 }]
    );
    let fetched = Fetched { sha256: "aa".into(), size: 5, mimetype: Some("image/png".into()) };
    store.record_fetched(&mxc("hs", "one"), &fetched).await?;
    store.record_fetched(&mxc("hs", "three"), &fetched).await?;
    assert_eq!(store.record_fetch_failure(&mxc("remote", "two"), "boom", 0, 1).await?, FetchState::Abandoned);
    assert_eq!(store.fetch_state(&mxc("remote", "two")).await?, Some((FetchState::Abandoned, 1)));
    assert_eq!(store.abandoned_media(10).await?, [(mxc("remote", "two"), Some("boom".into()))]);
    assert_eq!(store.abandoned_media_count().await?, 1);
    let states = [(FetchState::Abandoned, 1), (FetchState::Fetched, 2)];
    assert_eq!(store.fetch_state_counts(None).await?, states);
    assert_eq!(store.fetch_state_counts(Some("!r")).await?, states);
    let blocked = BlockedHash {
        sha256: "aa".into(),
        reason: Some("r".into()),
        added_by: "@mod:hs".into(),
        added_at: 1,
        source: "command".into(),
    };
    store.block_hash(&blocked).await?;
    assert_eq!(store.blocked_hash("aa").await?, Some(blocked.clone()));
    assert_eq!(store.blocklist(10).await?, [blocked]);
    assert_eq!(store.media_count_with_hash("aa").await?, 2);
    let with_hash: Vec<_> = store.media_with_hash("aa").try_collect().await?;
    assert_eq!(with_hash, [mxc("hs", "one"), mxc("hs", "three")]);
    // URI hashes: one reference as indexed before they were kept.
    sqlx::query("UPDATE media_refs SET uri_sha256 = NULL WHERE media_id = 'one'").execute(store.pool()).await?;
    assert_eq!(store.hash_known_media_uris(10).await?, 1);
    let uri_hash = housekeep::policy::sha256_base64(&housekeep::policy::sha256_of("mxc://hs/one"));
    assert_eq!(store.media_by_uri_hash(&uri_hash).await?, [mxc("hs", "one")]);
    store.set_media_quarantine(&[("hs", "one")], Some(("@mod:hs", Some("spam")))).await?;
    assert_eq!(store.blocked_unchecked(10).await?, [(mxc("hs", "three"), "aa".into())]);
    assert!(store.media_quarantined_at("hs", "one").await?.is_some());
    assert_eq!(store.media_quarantined_at("hs", "three").await?, None);
    assert_eq!(store.quarantined_media_count().await?, 1);
    // A selection counts what it holds that is quarantined already; a
    // quarantined mention only when mentions are selected too.
    store.set_media_quarantine(&[("hs", "three")], Some(("@mod:hs", None))).await?;
    let of_a = store.media_selection_stats(RefsOf::Sender("@a:hs"), Scope::Shared, "hs").await?;
    assert_eq!((of_a.media, of_a.already_quarantined), (1, 1));
    let of_a = store.media_selection_stats(RefsOf::Sender("@a:hs"), Scope::All, "hs").await?;
    assert_eq!((of_a.media, of_a.local, of_a.already_quarantined, of_a.mentions_only), (2, 2, 2, 1));
    store.set_media_quarantine(&[("hs", "three")], None).await?;
    let records = store.recent_quarantines(10).await?;
    let record = QuarantineRecord {
        mxc: "mxc://hs/one".into(),
        at: records[0].at,
        by: Some("@mod:hs".into()),
        reason: Some("spam".into()),
    };
    assert_eq!(records, [record]);
    assert_eq!(store.media_senders_in_room("!r", "hs", 10).await?, ["@a:hs"]);
    let kinds = store.room_media_by_kind("!r").await?;
    let kind = |kind: &str, refs, media, bytes| KindCount { kind: kind.into(), refs, media, bytes };
    assert_eq!(kinds, [kind("other", 1, 1, 5), kind("url", 2, 2, 5)]);

    // A job, its items and its tokens.
    let audit = |action: &str| AuditEntry {
        actor: "@mod:hs".into(),
        job_id: Some("j1".into()),
        action: action.into(),
        outcome: "ok".into(),
        ..Default::default()
    };
    let new = NewJob {
        id: "j1".into(),
        kind: "purge".into(),
        command_event_id: "$cmd".into(),
        room_id: "!admin".into(),
        requested_by: "@mod:hs".into(),
        command_text: "!purge".into(),
    };
    let job = store.begin_planning(&new).await?;
    assert_eq!((job.state, job.plan.clone(), job.cursor.clone()), (JobState::Planning, Value::Null, None));
    assert_eq!(store.insert_job_items("j1", 0, &[("k1".into(), json!(1)), ("k2".into(), json!({"a": 2}))]).await?, 2);
    let plan = FinishedPlan {
        plan: json!({"p": 1}),
        plan_hash: "h".into(),
        state: JobState::Confirmed,
        total_count: 2,
        expires_at: i64::MAX / 2,
        needs_second_moderator: true,
    };
    let job = store.finish_planning("j1", &plan, "@mod:hs", &audit("plan")).await?;
    assert_eq!(
        (job.plan, job.confirmed_by.as_deref(), job.needs_second_moderator),
        (json!({"p": 1}), Some("@mod:hs"), true)
    );
    assert!(store.runnable_jobs().await?.is_empty(), "it waits for its plan to be posted");
    store.set_plan_event("j1", "$plan").await?;
    assert_eq!(store.jobs_by_plan_event("$plan").await?.into_iter().map(|job| job.id).collect::<Vec<_>>(), ["j1"]);
    assert_eq!(store.runnable_jobs().await?.len(), 1);
    assert!(store.start_job("j1").await?);
    let done = ItemResult { seq: 0, key: "k1".into(), item: json!(1), state: ItemState::Done, detail: "ok".into() };
    store.checkpoint_job("j1", &json!({"c": 1}), &json!({"t": 1}), 1, 0, &[done], &[audit("batch")]).await?;
    let items = store.next_job_items("j1", -1, 10).await?;
    let items: Vec<_> =
        items.iter().map(|i| (i.seq, i.key.as_str(), i.item.clone(), i.state, i.detail.as_deref())).collect();
    assert_eq!(
        items,
        [(0, "k1", json!(1), ItemState::Done, Some("ok")), (1, "k2", json!({"a": 2}), ItemState::Pending, None)]
    );
    assert_eq!(store.job_item_keys_among("j1", &["k1".into(), "k3".into()]).await?, ["k1"]);
    assert_eq!(store.count_job_items_with_keys("j1", &["k2".into()]).await?, 1);
    assert_eq!(store.job_items_in_state("j1", ItemState::Pending, 10).await?.len(), 1);
    assert_eq!(store.job_item_counts("j1").await?, [(ItemState::Done, 1), (ItemState::Pending, 1)]);
    assert_eq!(store.cancel_job("j1").await?, CancelOutcome::Stopping);
    let job = store.job("j1").await?.expect("the job");
    assert_eq!(
        (job.cursor, job.tally, job.done_count, job.batches),
        (Some(json!({"c": 1})), Some(json!({"t": 1})), 1, 1)
    );
    assert!(job.cancel_requested);
    let token = JobToken { user_id: "@a:hs".into(), token: "secret".into(), expires_at: 9 };
    store.save_job_token("j1", &token).await?;
    assert_eq!(store.job_tokens("j1").await?, std::slice::from_ref(&token));
    assert!(store.tokens_of_ended_jobs().await?.is_empty());
    assert!(store.finish_job("j1", JobState::Done, &json!({"r": 1}), None, &audit("finish")).await?);
    assert_eq!(store.tokens_of_ended_jobs().await?, [("j1".into(), token)]);
    assert_eq!(store.job("j1").await?.and_then(|job| job.result), Some(json!({"r": 1})));
    assert_eq!(store.job_counts().await?, [(JobState::Done, 1)]);
    assert_eq!(store.recent_jobs(5).await?.len(), 1);
    assert_eq!(store.recent_jobs_of_kind("purge", 5).await?.len(), 1);

    // The audit log, stats and the rest.
    let filter =
        AuditFilter { actor: Some("@mod:hs"), action: Some("batch"), since: Some(0), before_id: Some(i64::MAX) };
    let page = store.audit_page(&filter, 10).await?;
    assert_eq!(page.iter().map(|r| r.entry.action.as_str()).collect::<Vec<_>>(), ["batch"]);
    let (newest, total) = store.job_audit("j1", 2).await?;
    assert_eq!(
        (newest.iter().map(|r| r.entry.action.as_str()).collect::<Vec<_>>(), total),
        (vec!["finish", "batch"], 3)
    );
    // One stored report per homeserver per gap (10 minutes here), whatever
    // the reports say their time is; a resend is a duplicate.
    const GAP: i64 = 600_000;
    let insert = |name: &'static str, report_ts: i64, received_at: i64| {
        store.insert_stats_report(name, report_ts, received_at, "synapse", None, "{}", GAP)
    };
    assert_eq!(insert("hs", 100, 1).await?, ReportStored::Stored);
    assert_eq!(insert("hs", 100, 2).await?, ReportStored::Duplicate);
    assert_eq!(insert("hs", 101, GAP).await?, ReportStored::TooSoon);
    assert_eq!(insert("other", 101, GAP).await?, ReportStored::Stored, "each homeserver has its own gap");
    assert_eq!(store.stats_report_counts(0, 1_000, 5).await?, [("hs".into(), 1), ("other".into(), 1)]);
    let report = StoredReport { homeserver: "hs".into(), report_ts: 100, received_at: 1, raw: "{}".into() };
    assert_eq!(store.stats_reports(0, 1_000, &["hs"]).await?, [report], "only the homeservers asked for");
    assert_eq!(insert("hs", 102, GAP + 2).await?, ReportStored::Stored, "the gap has passed");
    assert_eq!(store.stats_reports(0, 1_000, &["hs", "other"]).await?.len(), 2, "the last of each day");
    // Twenty at once, each claiming another time: one is stored.
    let at_once = (0..20).map(|n| {
        let store = store.clone();
        async move { store.insert_stats_report("burst", 500 + n, 10 * GAP, "synapse", None, "{}", GAP).await }
    });
    let outcomes = futures::future::try_join_all(at_once).await?;
    let stored = outcomes.iter().filter(|outcome| **outcome == ReportStored::Stored).count();
    assert_eq!(stored, 1, "{outcomes:?}");
    for room in [None, Some("!r")] {
        let totals = store.moderation_totals(room, 0, i64::MAX).await?;
        assert_eq!((totals.new_rooms, totals.media_hashed, totals.media_bytes), (1, 2, 10), "{room:?}");
        assert_eq!((totals.quarantined, totals.purges, totals.purged_events), (1, 1, 1), "{room:?}");
    }
    store.request_backfill(&["!r".into()], "why").await?;
    let requests = store.backfill_requests(5).await?;
    assert_eq!(
        requests.iter().map(|(room, reason, _)| (room.as_str(), reason.as_str())).collect::<Vec<_>>(),
        [("!r", "why")]
    );
    let check = RedactionCheck {
        redaction_id: "$r".into(),
        room_id: "!r".into(),
        target_id: "$m2".into(),
        redacted_at: 60,
        attempts: 0,
    };
    assert_eq!(store.due_redaction_checks(i64::MAX, 10).await?, [check]);
    assert_eq!(store.pending_redaction_checks().await?, 1);
    assert_eq!(store.inbox_next_due().await?, None);
    let watermark = store.watermark().await?;
    assert!(
        watermark.jobs_updated > 0 && watermark.audit_id > 0 && watermark.reports_received == 10 * GAP,
        "{watermark:?}"
    );
    store.remember_alias("#a:hs", "!r", 1).await?;
    assert_eq!(store.remembered_alias("#a:hs").await?.as_deref(), Some("!r"));

    // What purges leave.
    store.mark_event_redacted("$m1", 70).await?;
    let maybe = store.maybe_redacted(&["$m1".into(), "$m2".into(), "$m3".into()]).await?;
    assert_eq!(maybe, ["$m1".to_owned(), "$m2".into()].into());
    assert_eq!(store.forget_events(&["$m3".into(), "$x".into()]).await?, 1);
    assert!(store.room_media_refs("!r").await?.iter().all(|r| r.event_id != "$m3"));
    store.close().await;
    database.drop_database().await
}

/// A policy rule slot is written once per content (a crash between the
/// claim and the outcome hands it back as unfinished), a baseline rule can
/// be reopened once, and the index reads a rule is matched with narrow by
/// `LIKE` on both dialects (ASCII case folded only where asked, and
/// always on SQLite), with `LIKE`'s own wildcards escaped.
async fn policy_rule_slots_are_claimed_once_and_globs_narrow_in_sql(backend: Backend) -> anyhow::Result<()> {
    let (store, database, _dir) = open(backend).await?;
    let list = PolicyList::new("!list:hs", "#bans:hs", "plan", "command", "@mod:hs", 1);
    store.watch_list(&list).await?;
    store.watch_list(&PolicyList { action: "auto".into(), ..list.clone() }).await?;
    let rule = |key: &str, hash: &str| StoredRule {
        list_room_id: "!list:hs".into(),
        kind: "user".into(),
        state_key: key.into(),
        rule_type: "m.policy.rule.user".into(),
        event_id: Some(format!("${key}-{hash}")),
        sender: Some("@keeper:hs".into()),
        content: "{}".into(),
        content_hash: hash.into(),
        updated_at: 5,
        outcome: None,
        jobs: None,
    };
    let standing = StoredRule { outcome: Some("baseline".into()), ..rule("old", "h0") };
    store.set_baseline("!list:hs", std::slice::from_ref(&standing), 10).await?;
    let watched = store.policy_list("!list:hs").await?.expect("watched");
    assert_eq!((watched.action.as_str(), watched.baseline_at), ("auto", Some(10)));

    assert_eq!(store.claim_policy_rule(&rule("a", "h1")).await?, Claim::New(None));
    assert_eq!(store.claim_policy_rule(&rule("a", "h1")).await?, Claim::Unfinished, "a crash before its outcome");
    store.finish_policy_rule(&rule("a", "h1"), "planned", &["job1".into()], 1, true).await?;
    assert_eq!(store.claim_policy_rule(&rule("a", "h1")).await?, Claim::Handled);
    let Claim::New(Some(previous)) = store.claim_policy_rule(&rule("a", "h2")).await? else { panic!("a change") };
    assert_eq!((previous.outcome.as_deref(), previous.jobs.as_deref()), (Some("planned"), Some("[\"job1\"]")));
    assert_eq!(store.policy_rule_by_event("$a-h2").await?.map(|r| r.content_hash), Some("h2".into()));
    assert!(store.reopen_policy_rule(&standing).await?);
    assert!(!store.reopen_policy_rule(&standing).await?, "reopened once");
    let rules = store.policy_rules(Some("!list:hs")).await?;
    assert_eq!(rules.iter().map(|r| r.state_key.as_str()).collect::<Vec<_>>(), ["a", "old"]);
    assert_eq!(store.policy_rules(None).await?.len(), 2);
    let counted = store.policy_list("!list:hs").await?.expect("watched");
    assert_eq!((counted.rules_seen, counted.plans_made, counted.actions_run), (1, 1, 1));

    let extract = |v: Value| extract_value(&v).unwrap();
    let from = |id: &str, sender: &str, room: &str| {
        extract(event(id, 1, "m.room.message", json!({"sender": sender, "room_id": room})))
    };
    store
        .index_events(
            &[
                from("$1", "@glob-a:hs", "!spam:elsewhere"),
                from("$2", "@glob-b:hs", "!r"),
                from("$3", "@globber:hs", "!r"),
                from("$4", "@GLOB-C:hs", "!r"),
                from("$5", "@x:Spam.Example", "!r"),
                from("$6", "@50%_off:hs", "!r"),
            ],
            Source::Live,
        )
        .await?;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let globbed = sorted(store.senders_like("@glob-_:hs", false, 10).await?);
    match backend {
        // SQLite's LIKE folds ASCII case: the caller's own matching decides.
        Backend::Sqlite => assert_eq!(globbed, ["@GLOB-C:hs", "@glob-a:hs", "@glob-b:hs"]),
        Backend::Postgres => assert_eq!(globbed, ["@glob-a:hs", "@glob-b:hs"]),
    }
    assert_eq!(store.senders_like("%:spam.example%", true, 10).await?, ["@x:Spam.Example"]);
    assert_eq!(store.senders_like("@50\\%\\_off:hs", false, 10).await?, ["@50%_off:hs"]);
    assert_eq!(store.senders_like("@50\\%\\_of:hs", false, 10).await?, Vec::<String>::new());
    assert_eq!(store.all_senders(100).await?.len(), 6);
    assert_eq!(store.all_senders(2).await?.len(), 2);
    assert_eq!(store.rooms_like("!spam:%", 10).await?, ["!spam:elsewhere"]);
    assert_eq!(sorted(store.all_rooms(10).await?), ["!r", "!spam:elsewhere"]);
    assert!(store.sender_known("@globber:hs").await? && !store.sender_known("@nobody:hs").await?);
    assert!(store.room_known("!r").await? && !store.room_known("!nowhere").await?);

    assert!(store.unwatch_list("!list:hs").await?);
    assert!(store.policy_rules(Some("!list:hs")).await?.is_empty());
    assert!(!store.unwatch_list("!list:hs").await?);
    drop(store);
    database.drop_database().await
}
