//! A real Synapse pushes transactions to a real housekeep process; the index
//! must hold exactly what users sent, on SQLite and PostgreSQL.
//!
//! Media kinds on both backends (the end-to-end smoke: index); the kill and
//! the stranded transactions on PostgreSQL only, as they go through Synapse
//! (`reliability` kills both).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{Backend, with_own_testbed, with_testbed};
use housekeep::store::Store;
use housekeep::testbed::seed::seed_every_media_kind;
use housekeep::testbed::{MatrixUser, eventually};
use serde_json::json;

tests! {
    both: [
        every_media_kind_is_indexed_from_live_events,
    ],
    postgres: [
        kill_9_loses_and_duplicates_nothing,
        transactions_synapse_stranded_are_sent_after_the_nudge,
    ],
}

/// Waits until the index holds exactly the events the homeserver shows a member.
pub async fn index_matches_timeline(store: &Store, user: &MatrixUser, room: &str) -> anyhow::Result<Vec<String>> {
    let timeline: BTreeSet<String> = user.room_event_ids(room).await?.into_iter().collect();
    let waited = eventually(Duration::from_secs(60), "the index to hold the room's timeline", || async {
        let indexed: BTreeSet<String> = store.room_events(room).await?.into_iter().map(|e| e.event_id).collect();
        Ok((indexed == timeline).then_some(()))
    })
    .await;
    if let Err(error) = waited {
        let indexed: BTreeSet<String> = store.room_events(room).await?.into_iter().map(|e| e.event_id).collect();
        let missing: Vec<_> = timeline.difference(&indexed).collect();
        let extra: Vec<_> = indexed.difference(&timeline).collect();
        anyhow::bail!(
            "{error}: timeline {}, indexed {}; missing {missing:?}; not in timeline {extra:?}",
            timeline.len(),
            indexed.len()
        );
    }
    Ok(timeline.into_iter().collect())
}

async fn every_media_kind_is_indexed_from_live_events(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let alice = testbed.synapse.register_user("alice", false).await?;
        let bob = testbed.synapse.register_user("bob", false).await?;
        let store = testbed.store().await?;

        let room = alice.create_room(json!({"name": "gallery"})).await?;
        let seeded = seed_every_media_kind(&alice, &room).await?;
        let plain = alice.send_text(&room, "to be redacted").await?;
        let redaction = alice.redact(&room, &plain, "oops").await?;

        // A room the bot never joined: the `!.*` rooms namespace still delivers it.
        let side_room = bob.create_room(json!({"name": "bob's"})).await?;
        let innocent =
            bob.upload(format!("{}: innocent bytes", bob.user_id).into_bytes(), "text/plain", "note.txt").await?;
        let bob_file = bob
            .send(&side_room, "m.room.message", json!({"msgtype": "m.file", "body": "note", "url": innocent}))
            .await?;

        index_matches_timeline(&store, &alice, &room).await?;
        index_matches_timeline(&store, &bob, &side_room).await?;

        let indexed: BTreeSet<(String, String, String)> = store
            .room_media_refs(&room)
            .await?
            .into_iter()
            .map(|r| (format!("mxc://{}/{}", r.server_name, r.media_id), r.event_id, r.kind))
            .collect();
        let expected: BTreeSet<(String, String, String)> =
            seeded.refs.iter().map(|r| (r.mxc.clone(), r.event_id.clone(), r.kind.to_owned())).collect();
        assert_eq!(indexed, expected, "media references of the seeded room");
        let referenced: BTreeSet<&String> = seeded.refs.iter().map(|r| &r.mxc).collect();
        let never_sent: Vec<_> = seeded.uploads.iter().filter(|m| !referenced.contains(m)).collect();
        assert_eq!(never_sent.len(), 1, "the seed uploads one media it never sends");
        assert!(indexed.iter().all(|(mxc, _, _)| mxc != never_sent[0]));
        assert!(store.room_media_refs(&room).await?.iter().all(|r| r.sender == alice.user_id));

        let side_refs = store.room_media_refs(&side_room).await?;
        assert_eq!(side_refs.len(), 1);
        assert_eq!((side_refs[0].event_id.as_str(), side_refs[0].kind.as_str()), (bob_file.as_str(), "url"));

        let events = store.room_events(&room).await?;
        let redacted = events.iter().find(|e| e.event_id == plain).expect("redacted event indexed");
        let redaction_row = events.iter().find(|e| e.event_id == redaction).expect("redaction indexed");
        assert_eq!(redacted.redacted_at, Some(redaction_row.origin_server_ts));
        assert!(events.iter().filter(|e| e.event_id != plain).all(|e| e.redacted_at.is_none()));
        assert!(events.iter().all(|e| e.source == "live"));
        let avatar = events.iter().find(|e| e.event_type == "m.room.avatar").expect("room avatar indexed");
        assert_eq!(avatar.state_key.as_deref(), Some(""));

        let metrics = testbed.housekeep.metrics().await?;
        assert!(!metrics.contains("reason=\"bad_mxc\""), "no mxc was rejected:\n{metrics}");
        assert!(metrics.contains("housekeep_appservice_transactions_total{outcome=\"indexed\"}"), "{metrics}");
        store.close().await;
        Ok(())
    })
    .await
}

async fn kill_9_loses_and_duplicates_nothing(backend: Backend) -> anyhow::Result<()> {
    const MESSAGES: usize = 300;
    // A Synapse of its own: see `reliability` on restarts and stranded transactions.
    with_own_testbed(backend, async |testbed| {
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "busy"})).await?;
        let store = testbed.store().await?;
        let sent = Arc::new(AtomicUsize::new(0));
        let sender = tokio::spawn({
            let (room, sent) = (room.clone(), sent.clone());
            async move {
                for n in 0..MESSAGES {
                    alice.send_text(&room, &format!("message {n}")).await?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(alice)
            }
        });
        let messages_indexed = async || -> anyhow::Result<usize> {
            Ok(store.room_events(&room).await?.iter().filter(|e| e.event_type == "m.room.message").count())
        };
        eventually(Duration::from_secs(60), "50 messages in the index", || async {
            Ok((messages_indexed().await? >= 50).then_some(()))
        })
        .await?;
        testbed.housekeep.kill_9().await?;
        // The process is gone: what it committed is all there is.
        let at_kill = messages_indexed().await?;
        assert!((50..MESSAGES).contains(&at_kill), "the kill landed mid-stream: {at_kill} of {MESSAGES} indexed");
        println!("kill -9 ({}) with {at_kill} of {MESSAGES} messages indexed", backend.as_str());
        // Messages keep coming while housekeep is down; Synapse queues and retries.
        let sent_at_kill = sent.load(Ordering::Relaxed);
        let more = (sent_at_kill + 10).min(MESSAGES);
        eventually(Duration::from_secs(60), "messages sent while housekeep is down", || async {
            Ok((sent.load(Ordering::Relaxed) >= more || sender.is_finished()).then_some(()))
        })
        .await?;
        testbed.housekeep.restart().await?;
        let alice = sender.await??;

        let timeline = index_matches_timeline(&store, &alice, &room).await?;
        let indexed = store.room_events(&room).await?;
        assert_eq!(indexed.len(), timeline.len(), "no duplicates");
        let messages = indexed.iter().filter(|e| e.event_type == "m.room.message").count();
        assert_eq!(messages, MESSAGES);

        // Synapse recovered from the outage; once the stream is quiet the
        // bot sends a nudge of its own, refuses its transaction once (so
        // that Synapse resends a transaction stranded at the end of that
        // recovery first), and Synapse resends it.
        let admin_room = testbed.admin_room().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let nudge = eventually(Duration::from_secs(60), "the bot's nudge in the index", || async {
            Ok(store.room_events(&admin_room).await?.into_iter().find(|e| e.event_type == "org.housekeep.nudge"))
        })
        .await?;
        assert_eq!(nudge.sender, bot);
        let log = testbed.housekeep.log()?;
        assert!(log.contains("the bot's nudge arrived: its transaction is refused once"), "refused first");
        let metrics = testbed.housekeep.metrics().await?;
        let nudges =
            metrics.lines().find_map(|l| l.strip_prefix("housekeep_appservice_nudges_total ")?.parse::<f64>().ok());
        assert!(nudges.is_some_and(|n| n >= 1.0), "counted: {nudges:?}");
        store.close().await;
        Ok(())
    })
    .await
}

/// Synapse strands a transaction it creates while its recoverer ends: the
/// appservice is marked up after the recoverer's last look for unsent ones,
/// and nothing sends it until the next failed send. Made here as that race
/// leaves it: the appservice marked down in Synapse's database while no
/// recoverer runs (each new transaction is stored, not sent), two messages
/// in two transactions, marked up again. Two in a row leave a hole the
/// numbering does not show as suspect (as beside a bridge, whose
/// transactions share the numbers), so only the nudge brings them: after a
/// restart, once the stream is quiet, the transaction carrying the bot's
/// nudge is refused once, and Synapse's recoverer sends the stranded ones
/// first.
async fn transactions_synapse_stranded_are_sent_after_the_nudge(backend: Backend) -> anyhow::Result<()> {
    with_own_testbed(backend, async |testbed| {
        let store = testbed.store().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "stranded"})).await?;
        let indexed = async |event_id: &str| -> anyhow::Result<bool> {
            Ok(store.room_events(&room).await?.iter().any(|e| e.event_id == event_id))
        };
        let before = alice.send_text(&room, "before").await?;
        eventually(Duration::from_secs(60), "the first message indexed", || async {
            Ok(indexed(&before).await?.then_some(()))
        })
        .await?;

        let synapse_db = format!("sqlite://{}", testbed.synapse.dir.join("homeserver.db").display());
        let synapse_db = sqlx::SqlitePool::connect(&synapse_db).await?;
        let as_id = testbed.config.appservice.id.clone();
        let set_state = async |state: &str| -> anyhow::Result<()> {
            sqlx::query("UPDATE application_services_state SET state = ? WHERE as_id = ?")
                .bind(state)
                .bind(&as_id)
                .execute(&synapse_db)
                .await?;
            Ok(())
        };
        // Unsent transactions are rows of `application_services_txns` (a sent one is deleted).
        let unsent = async || -> anyhow::Result<Vec<String>> {
            Ok(sqlx::query_scalar("SELECT event_ids FROM application_services_txns WHERE as_id = ? ORDER BY txn_id")
                .bind(&as_id)
                .fetch_all(&synapse_db)
                .await?)
        };
        set_state("down").await?;
        let mut stranded = Vec::new();
        for n in 1..=2 {
            let event_id = alice.send_text(&room, &format!("stranded {n}")).await?;
            eventually(Duration::from_secs(30), "Synapse to store a transaction it does not send", || async {
                let rows = unsent().await?;
                Ok((rows.len() == n && rows.last().is_some_and(|ids| ids.contains(&event_id))).then_some(()))
            })
            .await?;
            stranded.push(event_id);
        }
        set_state("up").await?;
        synapse_db.close().await;

        // A start opens a round: Synapse may have recovered from an outage.
        testbed.housekeep.restart().await?;
        for event_id in &stranded {
            eventually(Duration::from_secs(90), "a stranded message indexed", || async {
                Ok(indexed(event_id).await?.then_some(()))
            })
            .await?;
        }
        let log = testbed.housekeep.log()?;
        assert!(log.contains("the bot's nudge arrived: its transaction is refused once"), "by the nudge's refusal");
        assert!(log.contains("asked the homeserver to resend the nudge's transaction at once"), "and at once");
        store.close().await;
        Ok(())
    })
    .await
}
