//! `!purge` figures: selection on a 1,000,000-event index (SQLite and
//! PostgreSQL), and, on one real Synapse, housekeep's purge of one user's
//! messages against Synapse's own user-redact API: wall time to done, events
//! redacted, and redactions per second.
//!
//! `cargo bench --bench purge`. `BENCH_PART=selection|side-by-side` runs one
//! part; `BENCH_EVENTS` / `BENCH_USER_EVENTS` size each room (default 1,000 /
//! 500); `BENCH_CONCURRENCY` lists the calls in flight to compare (default
//! 4,16), each against Synapse alone at the same concurrency.

use std::time::{Duration, Instant};

mod common;

use common::{
    FIRST_TS, MillionEvents, Redacted, env, load_million, main_with_parts, set_homeserver_concurrency,
    synapse_user_redact, timed,
};
use futures::{StreamExt, TryStreamExt};
use housekeep::store::Backend;
use housekeep::store::EventFilter;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::json;

/// Purge selections on the 1M-event index.
async fn selection(backend: Backend) -> anyhow::Result<()> {
    let index = MillionEvents::load(backend).await?;
    let store = &index.store;
    let room_before =
        EventFilter { room_id: Some("!room7".into()), before: Some(FIRST_TS + 500_000), ..Default::default() };
    let room_sender =
        EventFilter { room_id: Some("!room7".into()), senders: vec!["@u7:hs.example".into()], ..Default::default() };
    let sender = EventFilter { senders: vec!["@u7:hs.example".into()], ..Default::default() };
    let mut out = Vec::new();
    for (name, filter) in
        [("room + before", &room_before), ("room + sender", &room_sender), ("sender, all rooms", &sender)]
    {
        // What a plan does: count in SQL, then stream the selection into items.
        out.push(
            timed(name, "events", async || {
                let stats = store.event_selection_stats(filter).await?;
                let streamed = store.selected_events(filter).try_fold(0, |n, _| async move { Ok(n + 1) }).await?;
                anyhow::ensure!(stats.events == streamed, "counted {} but streamed {streamed}", stats.events);
                Ok(streamed as usize)
            })
            .await?,
        );
    }
    println!(
        "{:<8} 1,000,000 events in 100 rooms (loaded in {:.0?}): {}",
        backend.as_str(),
        index.load,
        out.join("; ")
    );
    index.drop_database().await
}

/// A room of `total` events, `by_user` of them from `spammer`.
async fn seed(
    spammer: &MatrixUser,
    other: &MatrixUser,
    room: &str,
    total: usize,
    by_user: usize,
) -> anyhow::Result<()> {
    for n in 0..total {
        let user = if n * by_user / total != (n + 1) * by_user / total { spammer } else { other };
        user.send_text(room, &format!("message {n}")).await?;
    }
    Ok(())
}

/// How a run redacts the spammer's events.
#[derive(Clone, Copy)]
enum Redacter {
    /// Synapse's user-redact admin API (one call, Synapse's own loop).
    SynapseUserRedact,
    /// The room's creator redacting through the client API, this many at
    /// once: Synapse's ceiling at the concurrency housekeep uses.
    SynapseClient(usize),
    /// `!purge --user` with `jobs.homeserver_concurrency` at this.
    Housekeep(usize),
}

impl Redacter {
    fn label(self) -> String {
        match self {
            Self::SynapseUserRedact => "Synapse user redact API".to_owned(),
            Self::SynapseClient(n) => format!("Synapse alone, {n} at once"),
            Self::Housekeep(n) => format!("housekeep !purge, {n} at once"),
        }
    }
}

async fn side_by_side() -> anyhow::Result<()> {
    let total = env("BENCH_EVENTS", 1_000);
    let by_user = env("BENCH_USER_EVENTS", 500);
    let concurrencies: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "4,16".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let mut testbed =
        Testbed::start_own(Backend::Sqlite, std::path::Path::new(env!("CARGO_BIN_EXE_housekeep"))).await?;
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    let store = testbed.store().await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    let mut runs = vec![Redacter::SynapseUserRedact];
    for &n in &concurrencies {
        runs.extend([Redacter::SynapseClient(n), Redacter::Housekeep(n)]);
    }
    let mut results = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        let label = run.label();
        if let Redacter::Housekeep(n) = run {
            set_homeserver_concurrency(&mut testbed, n, &admin_room).await?;
        }
        let spammer = testbed.synapse.register_user(&format!("spammer{i}"), false).await?;
        let other = testbed.synapse.register_user(&format!("other{i}"), false).await?;
        let room = other.create_room(json!({"name": label, "preset": "public_chat"})).await?;
        spammer.join(&room).await?;
        let started = Instant::now();
        seed(&spammer, &other, &room, total, by_user).await?;
        println!("seeded {total} events ({by_user} by one user) in {:.0?}", started.elapsed());
        eventually(Duration::from_secs(300), "the index to catch up", || async {
            Ok((store.room_events(&room).await?.len() >= total).then_some(()))
        })
        .await?;
        let spam: Vec<String> = other
            .room_timeline(&room)
            .await?
            .iter()
            .filter(|e| e["sender"] == spammer.user_id.as_str() && e["type"] == "m.room.message")
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect();
        let started = Instant::now();
        match run {
            Redacter::SynapseUserRedact => {
                let body = json!({"rooms": [room], "limit": by_user * 2});
                synapse_user_redact(&testbed.admin, &spammer.user_id, body).await?;
            }
            Redacter::SynapseClient(n) => {
                futures::stream::iter(&spam)
                    .map(|event_id| other.redact(&room, event_id, "spam"))
                    .buffer_unordered(n)
                    .try_collect::<Vec<_>>()
                    .await?;
            }
            Redacter::Housekeep(_) => {
                let command = testbed
                    .admin
                    .send_text(&admin_room, &format!("!purge {room} --user {} --yes", spammer.user_id))
                    .await?;
                testbed.admin.wait_for_replies(&admin_room, &command, &bot, 3).await?;
            }
        }
        let elapsed = started.elapsed();
        let seen = Redacted::of(&other.room_timeline(&room).await?, &spammer.user_id);
        let (redacted, redactions) = (seen.messages + seen.others, seen.redactions);
        let line = format!(
            "{label:<30} {elapsed:>8.1?} to done; {redacted} of the user's {} messages redacted by {redactions} \
             redactions ({:.1} redactions/s)",
            spam.len(),
            redactions as f64 / elapsed.as_secs_f64()
        );
        println!("{line}");
        results.push(line);
    }
    println!("--");
    for line in results {
        println!("{line}");
    }
    store.close().await;
    testbed.shutdown().await
}

/// The index keeps acknowledging transactions while a plan of a million
/// events is built: ack latency of live transactions meanwhile (goal < 100 ms).
async fn planning_ack(backend: Backend) -> anyhow::Result<()> {
    let testbed = Testbed::start_own(backend, std::path::Path::new(env!("CARGO_BIN_EXE_housekeep"))).await?;
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    let store = testbed.store().await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    let loaded = load_million(&store, |_| "@flooder:localhost".to_owned()).await?;
    let command = testbed.admin.send_text(&admin_room, "!purge --all-rooms --user @flooder:localhost --yes").await?;
    let started = Instant::now();
    let http = housekeep::testbed::http();
    let mut acks = Vec::new();
    let plan = loop {
        let n = acks.len();
        let event = json!({"event_id": format!("$live{n}"), "room_id": "!live", "sender": "@someone:localhost",
            "origin_server_ts": 1, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"}});
        let url = format!("{}/_matrix/app/v1/transactions/bench-ack-{n}", testbed.housekeep.base_url);
        let sent = Instant::now();
        let response = http
            .put(url)
            .bearer_auth(&testbed.config.appservice.hs_token)
            .json(&json!({"events": [event]}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "transaction refused: {}", response.status());
        acks.push(sent.elapsed());
        let replies = testbed.admin.recent_events(&admin_room, 10).await?;
        if let Some(reply) = replies.iter().find(|e| {
            e["sender"] == bot.as_str()
                && e.pointer("/content/m.relates_to/m.in_reply_to/event_id").and_then(|v| v.as_str())
                    == Some(command.as_str())
        }) {
            break reply["content"]["body"].as_str().unwrap_or_default().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let planned = started.elapsed();
    acks.sort();
    let percentile = |p: f64| acks[((acks.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{:<8} plan of 1,000,000 events (--all-rooms --user) in {planned:.1?} (index loaded in {loaded:.0?}); \
         {} live transactions meanwhile: ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal < 100 ms)",
        backend.as_str(),
        acks.len(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0),
    );
    anyhow::ensure!(plan.contains("1000000 events"), "unexpected plan: {plan}");
    store.close().await;
    testbed.shutdown().await
}

fn main() -> anyhow::Result<()> {
    main_with_parts(selection, side_by_side, planning_ack)
}
