//! Reliability against a real Synapse: housekeep killed with SIGKILL again
//! and again while events stream and a job runs (nothing lost, nothing
//! twice), and stopped with SIGTERM mid-job (what is in flight is
//! checkpointed, exit 0 within 10 s). RELIABILITY.md says what each shows.
//!
//! The soak's length: `HOUSEKEEP_SOAK_KILLS` (20 by default, as in CI; the
//! long soak in RELIABILITY.md sets 200).
//!
//! Every test here has a Synapse of its own: each restart or refused
//! transaction makes Synapse recover the appservice, and a transaction it
//! strands then is found by the hole it leaves in the numbering, which only
//! a homeserver with no other appservice's transactions shows (see
//! `appservice::transactions`), or flushed by the bot's nudge once the
//! stream is quiet (`appservice::nudge`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::common::{Backend, items_of, job_actions, job_id, wait_for_job, with_own_testbed};
use crate::live_index::index_matches_timeline;
use housekeep::store::{JobState, Store};
use housekeep::testbed::{CuttableLink, HealthProxy, Housekeep, MatrixUser, Testbed, eventually, free_port};

tests! {
    both: [
        killed_again_and_again_while_events_stream_loses_and_repeats_nothing,
        sigterm_checkpoints_what_is_in_flight_and_exits_within_10_s,
    ],
    postgres: [
        a_standby_takes_over_when_the_active_one_dies,
    ],
    plain: [
        postgres_unreachable_mid_stream_is_refused_then_recovered_from,
        a_locked_sqlite_file_is_refused_then_recovered_from,
    ],
}

fn soak_kills() -> usize {
    std::env::var("HOUSEKEEP_SOAK_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(20)
}

/// Sends messages into `room` until told to stop; counts what the homeserver accepted.
fn stream_messages(
    user: MatrixUser,
    room: String,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<anyhow::Result<(MatrixUser, String)>> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let n = sent.load(Ordering::Relaxed);
            user.send_text(&room, &format!("message {n}")).await?;
            sent.fetch_add(1, Ordering::Relaxed);
        }
        anyhow::Ok((user, room))
    })
}

/// The items the test job audited as done, in order.
async fn job_items(store: &Store, id: &str) -> anyhow::Result<Vec<String>> {
    Ok(items_of(&job_actions(store, id).await?))
}

async fn killed_again_and_again_while_events_stream_loses_and_repeats_nothing(backend: Backend) -> anyhow::Result<()> {
    with_own_testbed(backend, async |testbed| {
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "soak"})).await?;
        let admin_room = testbed.admin_room().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let store = testbed.store().await?;
        // A job that runs across the kills: 60 items, 3 a batch, 200 ms each.
        let command = testbed.admin.send_text(&admin_room, "!testjob 60 --batch 3 --delay-ms 200 --yes").await?;
        let job = job_id(&testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?);

        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let sender = stream_messages(alice, room, stop.clone(), sent.clone());
        let kills = soak_kills();
        let started = Instant::now();
        for _ in 0..kills {
            // Uptime and downtime at random: some kills land mid-transaction, some mid-batch.
            let (up, down) = {
                let mut rng = rand::rng();
                (rng.random_range(300..2500), rng.random_range(0..800))
            };
            tokio::time::sleep(Duration::from_millis(up)).await;
            testbed.housekeep.kill_9().await?;
            tokio::time::sleep(Duration::from_millis(down)).await;
            testbed.housekeep.restart().await?;
        }
        stop.store(true, Ordering::Relaxed);
        let (alice, room) = sender.await??;
        let sent = sent.load(Ordering::Relaxed);

        let timeline = index_matches_timeline(&store, &alice, &room).await?;
        let indexed = store.room_events(&room).await?;
        assert_eq!(indexed.len(), timeline.len(), "no duplicates");
        let messages = indexed.iter().filter(|e| e.event_type == "m.room.message").count();
        assert_eq!(messages, sent, "every message the homeserver accepted is indexed");

        wait_for_job(&store, &job, JobState::Done).await?;
        let done = store.job(&job).await?.expect("the job");
        assert_eq!((done.done_count, done.failed_count), (60, 0));
        let items = job_items(&store, &job).await?;
        assert_eq!(items.len(), 60, "each item exactly once: {items:?}");
        assert_eq!(items.iter().collect::<BTreeSet<_>>().len(), 60);
        // The last process's own count: holes asked for, nudges sent.
        let metrics = testbed.housekeep.metrics().await?;
        let counter = |name: &str| {
            metrics.lines().find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
        };
        println!(
            "soak ({}): {kills} kills in {:.0?}, {sent} messages indexed exactly once, job of 60 items done once; \
             last process: {} transactions answered with an error, {} nudges",
            backend.as_str(),
            started.elapsed(),
            counter("housekeep_appservice_transactions_total{outcome=\"failed\"}"),
            counter("housekeep_appservice_nudges_total"),
        );
        store.close().await;
        Ok(())
    })
    .await
}

async fn sigterm_checkpoints_what_is_in_flight_and_exits_within_10_s(backend: Backend) -> anyhow::Result<()> {
    with_own_testbed(backend, async |testbed| {
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "busy"})).await?;
        let admin_room = testbed.admin_room().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let store = testbed.store().await?;
        let command = testbed.admin.send_text(&admin_room, "!testjob 40 --batch 4 --delay-ms 300 --yes").await?;
        let job = job_id(&testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?);
        eventually(Duration::from_secs(30), "a few batches", || async {
            Ok(store.job(&job).await?.filter(|job| job.batches >= 2).map(|_| ()))
        })
        .await?;
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let sender = stream_messages(alice, room, stop.clone(), sent.clone());
        // The stream is flowing when SIGTERM lands.
        eventually(Duration::from_secs(30), "a few messages streamed", || async {
            Ok((sent.load(Ordering::Relaxed) >= 5).then_some(()))
        })
        .await?;

        let (status, took) = testbed.housekeep.sigterm().await?;
        assert!(status.success(), "exit status {status}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let log = testbed.housekeep.log()?;
        assert!(log.contains("shutting down") && log.contains("stopped"), "{log}");
        // Checkpointed: whole batches only, the rest resumes.
        let interrupted = store.job(&job).await?.expect("the job");
        assert_eq!(interrupted.state, JobState::Running, "stopped mid-way, to resume");
        assert_eq!(interrupted.done_count % 4, 0, "no half batch: {}", interrupted.done_count);
        assert_eq!(job_items(&store, &job).await?.len() as i64, interrupted.done_count);

        // Messages keep coming while it is stopped; Synapse retries them.
        let sent_at_stop = sent.load(Ordering::Relaxed);
        eventually(Duration::from_secs(30), "messages sent while housekeep is stopped", || async {
            Ok((sent.load(Ordering::Relaxed) >= sent_at_stop + 5).then_some(()))
        })
        .await?;
        testbed.housekeep.restart().await?;
        stop.store(true, Ordering::Relaxed);
        let (alice, room) = sender.await??;
        let timeline = index_matches_timeline(&store, &alice, &room).await?;
        let messages = store.room_events(&room).await?.iter().filter(|e| e.event_type == "m.room.message").count();
        assert_eq!(messages, sent.load(Ordering::Relaxed));
        assert!(!timeline.is_empty());
        wait_for_job(&store, &job, JobState::Done).await?;
        let items = job_items(&store, &job).await?;
        assert_eq!((items.len(), items.iter().collect::<BTreeSet<_>>().len()), (40, 40), "{items:?}");
        println!("SIGTERM ({}): exit 0 in {took:.1?} with a job and a message stream in flight", backend.as_str());
        store.close().await;
        Ok(())
    })
    .await
}

/// PUTs a transaction as the homeserver would; the status code.
async fn put_transaction(testbed: &Testbed, txn_id: &str, events: &[serde_json::Value]) -> anyhow::Result<u16> {
    Ok(testbed.put_transaction(txn_id, events).await?.status().as_u16())
}

fn message(room: &str, event_id: &str) -> serde_json::Value {
    json!({
        "event_id": event_id, "room_id": room, "sender": "@someone:localhost",
        "origin_server_ts": housekeep::clock::now_ms(), "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "sent during a database fault"},
    })
}

/// After a fault: the refused transaction, sent again, is indexed once, and
/// every message the homeserver accepted meanwhile arrives by itself.
async fn recovered(
    testbed: &Testbed,
    store: &Store,
    alice: &MatrixUser,
    room: &str,
    sent: usize,
) -> anyhow::Result<()> {
    let pushed = "!pushed:localhost";
    eventually(Duration::from_secs(60), "the retried transaction accepted", || async {
        Ok((put_transaction(testbed, "fault-1", &[message(pushed, "$during-fault")]).await? == 200).then_some(()))
    })
    .await?;
    let events = store.room_events(pushed).await?;
    assert_eq!(events.len(), 1, "indexed once, nothing left half-written: {events:?}");
    index_matches_timeline(store, alice, room).await?;
    let messages = store.room_events(room).await?.iter().filter(|e| e.event_type == "m.room.message").count();
    assert_eq!(messages, sent);
    let metrics = testbed.housekeep.metrics().await?;
    let failed = metrics
        .lines()
        .find(|line| line.starts_with("housekeep_appservice_transactions_total{outcome=\"failed\"}"))
        .unwrap_or_default();
    assert!(!failed.ends_with(" 0") && !failed.is_empty(), "refusals are counted: {failed:?}");
    let (status, body) = testbed.housekeep.health().await?;
    assert_eq!((status, body.as_str()), (200, "OK"));
    Ok(())
}

/// PostgreSQL unreachable mid-stream (every connection dropped, new ones
/// refused): transactions get a 5xx, `/health` says so, and when the
/// database is back housekeep recovers by itself, instance lock included.
async fn postgres_unreachable_mid_stream_is_refused_then_recovered_from() {
    with_own_testbed(Backend::Postgres, async |testbed| {
        let mut url = url::Url::parse(&testbed.database.url)?;
        let target = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432));
        let link = CuttableLink::to(target).await?;
        url.set_port(Some(link.port)).map_err(|()| anyhow::anyhow!("no port in the URL"))?;
        let (direct, through_link) = (testbed.database.url.clone(), url.to_string());
        testbed.reconfigure(|text| text.replace(&direct, &through_link)).await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "during an outage"})).await?;
        let store = testbed.store().await?;
        for n in 0..10 {
            alice.send_text(&room, &format!("before {n}")).await?;
        }

        link.cut();
        let cut_at = Instant::now();
        let refused = put_transaction(testbed, "fault-1", &[message("!pushed:localhost", "$during-fault")]).await?;
        assert!((500..600).contains(&refused), "a 5xx, for the homeserver to retry: {refused}");
        println!("PostgreSQL cut: transaction refused with {refused} after {:.1?}", cut_at.elapsed());
        let (status, body) = testbed.housekeep.health().await?;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("database unreachable"), "{body}");
        for n in 0..10 {
            alice.send_text(&room, &format!("during {n}")).await?;
        }
        // The lock's connection check notices the lost connection (and
        // cannot take the lock again while the database is away).
        eventually(Duration::from_secs(60), "the lost instance lock in the log", || async {
            let log = testbed.housekeep.log()?;
            Ok((log.contains("lost the database connection that holds the instance lock")
                && log.contains("cannot take the instance lock again yet"))
            .then_some(()))
        })
        .await?;
        link.restore();

        recovered(testbed, &store, &alice, &room, 20).await?;
        eventually(Duration::from_secs(30), "the instance lock taken again", || async {
            Ok(testbed.housekeep.log()?.contains("instance lock taken again").then_some(()))
        })
        .await?;
        let admin_room = testbed.admin_room().await?;
        let asked = testbed.admin.send_text(&admin_room, "!help").await?;
        testbed.admin.wait_for_reply(&admin_room, &asked, testbed.config.bot_user_id()?.as_str()).await?;
        store.close().await;
        Ok(())
    })
    .await
    .unwrap();
}

/// The SQLite file locked by another process for longer than the busy
/// timeout: transactions get a 5xx and `/health` names the failure; once
/// the lock is gone, everything arrives once.
async fn a_locked_sqlite_file_is_refused_then_recovered_from() {
    with_own_testbed(Backend::Sqlite, async |testbed| {
        use sqlx::Connection;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "during a lock"})).await?;
        let store = testbed.store().await?;
        alice.send_text(&room, "before").await?;
        index_matches_timeline(&store, &alice, &room).await?;

        let mut locker = sqlx::SqliteConnection::connect(&testbed.database.url).await?;
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await?;
        let locked_at = Instant::now();
        let refused = put_transaction(testbed, "fault-1", &[message("!pushed:localhost", "$during-fault")]).await?;
        assert!((500..600).contains(&refused), "a 5xx after the busy timeout: {refused}");
        println!("SQLite locked: transaction refused with {refused} after {:.1?}", locked_at.elapsed());
        let (status, body) = testbed.housekeep.health().await?;
        assert_eq!(status, 200, "reads still work: {body}");
        assert!(body.contains("waiting for database: the last transaction could not be committed"), "{body}");
        // /health needs no token: the database's own words stay in the log.
        assert!(!body.contains("locked") && !body.contains("code:"), "{body}");
        alice.send_text(&room, "during").await?;
        sqlx::query("ROLLBACK").execute(&mut locker).await?;
        locker.close().await?;

        recovered(testbed, &store, &alice, &room, 2).await?;
        store.close().await;
        Ok(())
    })
    .await
    .unwrap();
}

/// Two housekeeps on one PostgreSQL behind a health-checking proxy, as
/// README's "A standby" sets them up: the second waits (its `/health` 503
/// `standby`, nothing indexed, nothing run) until the first is killed
/// mid-job under a message stream; then it takes over: the job finishes
/// with each item once, every message is indexed once, and a command is
/// answered once.
async fn a_standby_takes_over_when_the_active_one_dies(backend: Backend) -> anyhow::Result<()> {
    with_own_testbed(backend, async |testbed| {
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "busy"})).await?;
        let admin_room = testbed.admin_room().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let store = testbed.store().await?;

        // The registration names one port: the proxy takes it, the two
        // housekeeps get ports of their own.
        let port = testbed.config.appservice.port;
        testbed.housekeep.sigterm().await?;
        let (port_a, port_b) = (free_port()?, free_port()?);
        let text = std::fs::read_to_string(&testbed.config_path)?;
        let on = |to: u16| text.replace(&format!("port: {port}\n"), &format!("port: {to}\n"));
        std::fs::write(&testbed.config_path, on(port_a))?;
        let standby_dir = testbed.dir.path().join("standby");
        std::fs::create_dir_all(&standby_dir)?;
        let standby_config = standby_dir.join("config.yaml");
        std::fs::write(&standby_config, on(port_b))?;
        let proxy = HealthProxy::listen(port, vec![port_a, port_b]).await?;
        testbed.housekeep.restart().await?;
        let binary = crate::common::housekeep_binary();
        let standby = Housekeep::spawn_standby(binary, &standby_config, &format!("http://127.0.0.1:{port_b}")).await?;

        let command = testbed.admin.send_text(&admin_room, "!testjob 40 --batch 2 --delay-ms 150 --yes").await?;
        let job = job_id(&testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?);
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let sender = stream_messages(alice, room, stop.clone(), sent.clone());
        eventually(Duration::from_secs(30), "the job under way", || async {
            Ok(store.job(&job).await?.filter(|j| j.done_count >= 6).map(|_| ()))
        })
        .await?;
        let (status, body) = standby.health().await?;
        assert_eq!((status, body.starts_with("standby")), (503, true), "{body}");
        // Monitoring sees a standby there, and the active one as active.
        let standby_metrics = standby.metrics().await?;
        assert!(standby_metrics.contains("\nhousekeep_standby 1\n"), "{standby_metrics}");
        let active_metrics = testbed.housekeep.metrics().await?;
        assert!(active_metrics.contains("\nhousekeep_standby 0\n"), "{active_metrics}");
        // Even sent to it directly, a transaction is not taken by the standby.
        let direct = format!("http://127.0.0.1:{port_b}/_matrix/app/v1/transactions/direct-1");
        let refused = housekeep::testbed::http()
            .put(direct)
            .bearer_auth(&testbed.config.appservice.hs_token)
            .json(&json!({"events": []}))
            .send()
            .await?;
        assert_eq!(refused.status().as_u16(), 503);

        testbed.housekeep.kill_9().await?;
        let killed = Instant::now();
        eventually(Duration::from_secs(30), "the standby to take over", || async {
            Ok(standby.health().await.ok().filter(|(status, _)| *status == 200).map(|_| ()))
        })
        .await?;
        let failover = killed.elapsed();
        // Messages keep coming through the proxy to the new active one.
        let before = sent.load(Ordering::Relaxed);
        eventually(Duration::from_secs(30), "messages sent after the takeover", || async {
            Ok((sent.load(Ordering::Relaxed) >= before + 10).then_some(()))
        })
        .await?;
        stop.store(true, Ordering::Relaxed);
        let (alice, room) = sender.await??;
        let sent = sent.load(Ordering::Relaxed);

        wait_for_job(&store, &job, JobState::Done).await?;
        let items = job_items(&store, &job).await?;
        assert_eq!(items.len(), 40, "each item exactly once: {items:?}");
        assert_eq!(items.iter().collect::<BTreeSet<_>>().len(), 40);
        let timeline = index_matches_timeline(&store, &alice, &room).await?;
        let indexed = store.room_events(&room).await?;
        assert_eq!(indexed.len(), timeline.len(), "no duplicates");
        let messages = indexed.iter().filter(|e| e.event_type == "m.room.message").count();
        assert_eq!(messages, sent, "every message the homeserver accepted is indexed");
        let status = testbed.admin.send_text(&admin_room, "!status").await?;
        let replies = testbed.admin.wait_for_replies(&admin_room, &status, &bot, 1).await?;
        assert_eq!(replies.len(), 1, "answered once");
        println!(
            "standby: took over {failover:.1?} after kill -9 of the active one; {sent} messages indexed once, \
             a job of 40 items done once"
        );

        // Back to the testbed's own process (which takes the lock again), for its shutdown.
        standby.stop().await?;
        testbed.housekeep.restart().await?;
        drop(proxy);
        store.close().await;
        Ok(())
    })
    .await
}
