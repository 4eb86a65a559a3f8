//! Policy-list figures (issue 33, "Measure"), on one real Synapse with
//! housekeep on PostgreSQL: a ban rule sent to a watched list, as a list
//! keeper sends it, until the spam is gone.
//!
//! 1. **User rule, auto list**: a local spammer seeded as the cleanup bench
//!    seeds one (`BENCH_MESSAGES` messages, default 1,000, over
//!    `BENCH_ROOMS` rooms, default 100, `BENCH_IMAGES` of them images of
//!    their own uploads, default 100); `!policy watch <list> --auto` with
//!    `admin.confirm_threshold` above the plan, then an `m.policy.rule.user`
//!    ban: rule → plan posted (Synapse's timestamps of the rule and the
//!    notice; housekeep's own `elapsed_ms` from its log), rule → last
//!    redaction (Synapse's timestamps), rule → last media quarantined (the
//!    job's audit; every download 404 checked after), redactions/s.
//! 2. **Ceiling**: Synapse alone on a second spammer seeded the same: a
//!    loop of `PUT /rooms/{room}/redact/{event}/{txn}` as the room's admin
//!    (as the sender in their own rooms, as housekeep does) with
//!    `jobs.homeserver_concurrency` in flight (`BENCH_CONCURRENCY`, default
//!    8, housekeep's default); housekeep's rate as a ratio of it. Then
//!    Synapse's user redact (`POST /_synapse/admin/v1/user/<user>/redact`
//!    with `{"rooms": []}`) on a third.
//! 3. **Gentleness**: an ordinary user sending messages one after another
//!    into a quiet room: latency p50/p99 of `BENCH_SENDS` sends (default
//!    200) with nothing running, then of every send while the cleanup runs
//!    (and while the ceiling's loop runs).
//! 4. **Hashed user rule (MSC4205)**: a fourth spammer (`BENCH_HASHED_ROOMS`
//!    20, `BENCH_HASHED_MESSAGES` 200, `BENCH_HASHED_IMAGES` 20) banned by a
//!    rule with no entity and `hashes: {sha256: …}`, with
//!    `BENCH_HASH_SENDERS` (default 10,000) more remote senders injected
//!    into the index: rule → plan posted, and the senders it hashed.
//! 5. **Server rule**: `spam.example` (a server rule matches every user of
//!    that server, `@*:spam.example`), with `BENCH_REMOTE_SENDERS` (20)
//!    senders of that server, `BENCH_REMOTE_MESSAGES` (10) messages each,
//!    injected into housekeep's index as transactions (there is no second
//!    homeserver here), on a list watched without `--auto`: rule → plan
//!    posted, and the plan. Redacting those events needs a second
//!    homeserver (Synapse never saw them); not measured here.
//!
//! `BENCH_SEED_CONCURRENCY` is the rooms seeded at once (default 4).
//! `cargo bench --bench spam_wave` (default size: about 5 minutes, most of
//! it seeding); `BENCH_ROOMS=10 BENCH_MESSAGES=100 BENCH_IMAGES=10` for a
//! quick run.
//!
//! Figures (2026-12-07, 2 cores shared with other builds, Synapse 1.163.2
//! on SQLite, default size, a quiet moment: load average 1.2): seeding 31,
//! 28, 28 and 6 s. **User rule, auto list**: rule → plan posted 211 ms
//! (housekeep's own 179 ms), suspended +0.3 s, first redaction +0.6 s,
//! last +23.2 s, media quarantined +23.4…+23.9 s (100/100 downloads 404
//! after); 1,000 events redacted (900 by the bot, 100 as the sender), 100
//! media, 0 failed; 44.2 redactions/s first → last (43.1/s from the rule),
//! in 20 batches with 12 pauses of 250 ms or more (3.7 s in all; 73 of the
//! bot's 90 admin joins fall in them: each batch of 64 reads its new rooms'
//! state and joins them before its first redaction). **Ceiling**: the
//! `PUT …/redact` loop, 8 in flight, 43.1/s: housekeep at **1.02×**;
//! Synapse's user redact 1,100 redactions (100 of them joins) in 26.1 s,
//! 42.2/s. **Gentleness**: idle p50 23.8 ms, p99 32.4 ms; during the
//! cleanup p50 118 ms, p99 173 ms (**5.3×** idle: the goal of 2× is not
//! met); during the ceiling's loop p99 224 ms (6.9×). **Hashed rule**:
//! 10,029 senders in the index, rule → plan 155 ms (housekeep's own 148 ms;
//! the scan alone, every sender read and hashed, median 8.3 ms); its
//! cleanup of 200 events and 20 media done. **Server rule**: 20 senders,
//! 200 events: rule → plan 66 ms, one purge of 20 users, 200 events in 1
//! room, waiting for a ✅; redacting them needs a second homeserver; not
//! measured here.
//!
//! Other runs the same day, busier (load 1.5–5): housekeep 23.5–32.4/s
//! against a loop taking the events room by room at 29.0–37.9/s
//! (0.81–0.92×); against the loop as it is now, in housekeep's order (by
//! `origin_server_ts`, the rooms interleaved), 0.99× twice. Gentleness
//! during the cleanup p99 3.8–7.6× idle, during the loop 2.9–7.1×.
//! `BENCH_CONCURRENCY=4` (load 1.4): housekeep 31.9/s, the loop 25.8/s,
//! p99 4.65× idle (loop 5.3×); `BENCH_CONCURRENCY=2` (load 1.4): housekeep
//! 25.4/s, the loop 24.0/s, p99 2.82× (p50 2.55×; loop 3.0×). The ordinary
//! user's send waits behind the redactions whoever sends them: the loop is
//! no gentler at any concurrency tried, and only 2 in flight comes near
//! the goal.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{
    Redacted, Shape, Spammer, cleanup_counts, count, env, indexed, main_with, reconfigure_and_wait, redacted, seed,
    sent_at, span, synapse_user_redact, timed, unavailable, with_homeserver_concurrency,
};
use futures::{StreamExt, TryStreamExt};
use housekeep::policy::{sha256_base64, sha256_of};
use housekeep::store::{Backend, EventFilter, Job, Store};
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::{Value, json};

/// Latencies of sends, sorted.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut all: Vec<Duration>) -> Self {
        all.sort();
        Self(all)
    }

    /// The nearest-rank percentile `p` (0–100), in ms.
    fn p(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0 * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1].as_secs_f64() * 1e3
    }

    fn describe(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} sends",
            self.p(50.0),
            self.p(99.0),
            self.p(100.0),
            self.0.len()
        )
    }
}

/// An ordinary user sending messages one after another into a quiet room,
/// in the background, until stopped (or `limit` sends).
struct Chatter {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>,
}

impl Chatter {
    fn start(user: &MatrixUser, room: &str, limit: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (user, room, stopped) = (user.clone(), room.to_owned(), stop.clone());
        let task = tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stopped.load(Ordering::Relaxed) && latencies.len() < limit {
                let started = Instant::now();
                user.send_text(&room, &format!("still here {}", latencies.len())).await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        });
        Self { stop, task }
    }

    async fn stop(self) -> anyhow::Result<Latencies> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(Latencies::new(self.task.await??))
    }
}

fn body(event: &Value) -> &str {
    event["content"]["body"].as_str().unwrap_or_default()
}

/// A ban rule's content.
fn ban(entity: &str, reason: &str) -> Value {
    json!({"entity": entity, "recommendation": "m.ban", "reason": reason})
}

/// Waits for the bot's policy notice in the admin room that contains `needle`.
async fn policy_notice(testbed: &Testbed, admin_room: &str, needle: &str) -> anyhow::Result<Value> {
    let bot = testbed.config.bot_user_id()?.to_string();
    eventually(Duration::from_secs(300), &format!("a policy notice with {needle:?}"), || async {
        let recent = testbed.admin.recent_events(admin_room, 50).await?;
        Ok(recent
            .into_iter()
            .find(|e| e["sender"] == bot && body(e).contains("Policy list") && body(e).contains(needle)))
    })
    .await
}

/// The ID of the job a policy notice names for `label` ("Job abc123 (cleanup of @x): …").
fn job_for(notice: &str, label: &str) -> anyhow::Result<String> {
    let line = notice.lines().find(|l| l.starts_with("Job ") && l.contains(label));
    let id = line.and_then(|l| l.split_whitespace().nth(1));
    id.map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no job for {label:?} in {notice}"))
}

/// The `elapsed_ms` housekeep logged for the rule in `state_key` ("a
/// policy rule was planned and posted … elapsed_ms=…").
fn logged_elapsed(testbed: &Testbed, state_key: &str) -> Option<u64> {
    let log = testbed.housekeep.log().ok()?;
    let line =
        log.lines().rev().find(|l| l.contains("a policy rule was planned and posted") && l.contains(state_key))?;
    let elapsed = regex::Regex::new(r"elapsed_ms=(\d+)").ok()?;
    elapsed.captures(line)?[1].parse().ok()
}

fn logged(elapsed: Option<u64>) -> String {
    elapsed.map_or_else(|| "not found in its log".to_owned(), |ms| format!("{ms} ms"))
}

/// Waits until the job is done, failed or cancelled.
async fn finished(store: &Store, id: &str) -> anyhow::Result<Job> {
    eventually(Duration::from_secs(3600), &format!("job {id}"), || async {
        Ok(store.job(id).await?.filter(|job| job.state.is_final()))
    })
    .await
}

/// What `alice` is shown of the spammer's rooms.
struct Seen {
    /// Their events shown redacted.
    redacted: Redacted,
    /// Every redaction's `origin_server_ts`, sorted.
    redactions: Vec<i64>,
    /// Every join of `bot`'s (housekeep joins a room it may redact in
    /// through the admin API), sorted.
    joins: Vec<i64>,
}

async fn redactions_seen(alice: &MatrixUser, spammer: &Spammer, bot: &str) -> anyhow::Result<Seen> {
    let mut seen = Seen { redacted: Redacted::default(), redactions: Vec::new(), joins: Vec::new() };
    for room in &spammer.rooms {
        let timeline = alice.room_timeline(room).await?;
        seen.redacted.add(Redacted::of(&timeline, &spammer.user.user_id));
        for event in &timeline {
            let ts = count(&event["origin_server_ts"]);
            if event["type"] == "m.room.redaction" {
                seen.redactions.push(ts);
            } else if event["type"] == "m.room.member"
                && event["state_key"] == bot
                && event["content"]["membership"] == "join"
            {
                seen.joins.push(ts);
            }
        }
    }
    seen.redactions.sort_unstable();
    seen.joins.sort_unstable();
    Ok(seen)
}

/// The first and last of sorted `times`.
fn ends(times: &[i64]) -> Option<(i64, i64)> {
    Some((*times.first()?, *times.last()?))
}

/// The pauses between redactions: how many gaps of [`PAUSE_MS`] or more,
/// how long they add up to, and how many of the bot's joins fall in them.
fn pauses(seen: &Seen) -> String {
    let long: Vec<(i64, i64)> =
        seen.redactions.windows(2).map(|w| (w[0], w[1])).filter(|(a, b)| b - a >= PAUSE_MS).collect();
    let joins_in = seen.joins.iter().filter(|join| long.iter().any(|(a, b)| a < *join && *join < b)).count();
    format!(
        "{} pauses of {PAUSE_MS} ms or more between redactions, {:.1} s in all (longest {} ms); {joins_in} of the \
         bot's {} joins in them",
        long.len(),
        long.iter().map(|(a, b)| b - a).sum::<i64>() as f64 / 1e3,
        long.iter().map(|(a, b)| b - a).max().unwrap_or_default(),
        seen.joins.len()
    )
}

/// A gap between two redactions this long is a pause (8 in flight at about
/// 30/s: one lands every 35 ms or so).
const PAUSE_MS: i64 = 250;

/// The 1-minute load average (`/proc/loadavg`): the machine is shared.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("unknown").to_owned()
}

/// `count` events per second over `ms` milliseconds.
fn per_second(count: usize, ms: i64) -> f64 {
    if ms <= 0 { f64::NAN } else { count as f64 * 1e3 / ms as f64 }
}

/// A rule sent, and what came of it: the notice and its job IDs.
struct RuleOutcome {
    rule_ts: i64,
    to_plan_ms: i64,
    logged_ms: Option<u64>,
    notice: String,
}

/// Sends `content` as the rule `(event_type, state_key)` of `list`, waits
/// for the policy notice that contains `needle`.
async fn send_rule(
    testbed: &Testbed,
    keeper: &MatrixUser,
    admin_room: &str,
    list: &str,
    (event_type, state_key): (&str, &str),
    content: Value,
    needle: &str,
) -> anyhow::Result<RuleOutcome> {
    let rule = keeper.send_state(list, event_type, state_key, content).await?;
    let notice = policy_notice(testbed, admin_room, needle).await?;
    let rule_ts = sent_at(keeper, list, &rule).await?;
    let to_plan_ms = count(&notice["origin_server_ts"]) - rule_ts;
    // The log line is written just after the notice is posted.
    let logged_ms = match logged_elapsed(testbed, state_key) {
        None => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            logged_elapsed(testbed, state_key)
        }
        found => found,
    };
    Ok(RuleOutcome { rule_ts, to_plan_ms, logged_ms, notice: body(&notice).to_owned() })
}

/// Watches `list` (`!policy watch <list> [--auto]`); the bot's reply.
async fn watch(testbed: &Testbed, admin_room: &str, list: &str, auto: bool) -> anyhow::Result<String> {
    let bot = testbed.config.bot_user_id()?.to_string();
    let command = format!("!policy watch {list}{}", if auto { " --auto" } else { "" });
    let sent = testbed.admin.send_text(admin_room, &command).await?;
    testbed.admin.wait_for_reply(admin_room, &sent, &bot).await
}

/// Injects `per_sender` messages of each of `senders` into `room` of
/// housekeep's index, as transactions from the homeserver would bring a
/// remote server's events; waits until the last sender's are indexed.
async fn inject(
    testbed: &Testbed,
    store: &Store,
    room: &str,
    senders: &[String],
    per_sender: usize,
    tag: &str,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let events: Vec<Value> = senders
        .iter()
        .enumerate()
        .flat_map(|(s, sender)| {
            (0..per_sender).map(move |m| {
                json!({
                    "event_id": format!("${tag}-{s}-{m}"), "room_id": room, "sender": sender,
                    "origin_server_ts": now + (s * per_sender + m) as i64, "type": "m.room.message",
                    "content": {"msgtype": "m.text", "body": format!("cheap watches from afar {m}")},
                })
            })
        })
        .collect();
    for (n, chunk) in events.chunks(500).enumerate() {
        testbed.push_transaction(&format!("{tag}-{n}"), chunk.to_vec()).await?;
    }
    if let Some(last) = senders.last() {
        indexed(store, last, per_sender).await?;
    }
    Ok(())
}

async fn spam_wave() -> anyhow::Result<()> {
    let shape = Shape::from_env();
    let hashed_shape = Shape::from_env_prefixed("BENCH_HASHED", 20, 200, 20);
    let concurrency = env("BENCH_CONCURRENCY", 8);
    let seeding = env("BENCH_SEED_CONCURRENCY", 4);
    let sends = env("BENCH_SENDS", 200);
    let hash_senders = env("BENCH_HASH_SENDERS", 10_000);
    let remote_senders = env("BENCH_REMOTE_SENDERS", 20);
    let remote_messages = env("BENCH_REMOTE_MESSAGES", 10);
    let mut testbed =
        Testbed::start_own(Backend::Postgres, std::path::Path::new(env!("CARGO_BIN_EXE_housekeep"))).await?;
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    // The plan must run by itself: a threshold above it (events or media).
    let events_threshold = (shape.messages * 10).max(100_000);
    let media_threshold = (shape.images * 10).max(10_000);
    let threshold = regex::Regex::new(r"(?m)^  confirm_threshold: .*$")?;
    reconfigure_and_wait(&mut testbed, &admin_room, |text| {
        let text = with_homeserver_concurrency(&text, concurrency);
        let line = format!("  confirm_threshold: {{events: {events_threshold}, media: {media_threshold}}}");
        threshold.replace(&text, line.as_str()).into_owned()
    })
    .await?;
    let store = testbed.store().await?;
    let alice = testbed.synapse.register_user("alice", false).await?;
    let keeper = testbed.synapse.register_user("listkeeper", false).await?;
    let chatter = testbed.synapse.register_user("chatter", false).await?;
    let quiet = chatter.create_room(json!({"preset": "private_chat", "name": "quiet"})).await?;

    let mut seeded = Vec::new();
    for (localpart, shape) in
        [("spammer1", shape), ("spammer2", shape), ("spammer3", shape), ("spammer4", hashed_shape)]
    {
        let started = Instant::now();
        seeded.push(seed(&testbed, &alice, localpart, shape, seeding).await?);
        println!(
            "seeded {localpart}: {} messages ({} images) in {} rooms ({} their own), {seeding} rooms at once, in {:.1?}",
            shape.messages,
            shape.images,
            shape.rooms,
            shape.own(),
            started.elapsed()
        );
    }
    let [one, two, three, four] = <[Spammer; 4]>::try_from(seeded).map_err(|_| anyhow::anyhow!("four spammers"))?;
    let started = Instant::now();
    for (spammer, messages) in
        [(&one, shape.messages), (&two, shape.messages), (&three, shape.messages), (&four, hashed_shape.messages)]
    {
        indexed(&store, &spammer.user.user_id, messages).await?;
    }
    println!("the index held every spammer's messages {:.1?} after the seeding", started.elapsed());
    let elsewhere = alice.create_room(json!({"preset": "public_chat", "name": "federated lobby"})).await?;
    let started = Instant::now();
    let hashed_crowd: Vec<String> = (0..hash_senders).map(|n| format!("@h{n}:elsewhere.example")).collect();
    inject(&testbed, &store, &elsewhere, &hashed_crowd, 1, "crowd").await?;
    let spam_senders: Vec<String> = (0..remote_senders).map(|n| format!("@spam{n}:spam.example")).collect();
    inject(&testbed, &store, &elsewhere, &spam_senders, remote_messages, "spam-example").await?;
    println!(
        "injected {hash_senders} senders of elsewhere.example (one message each) and {remote_senders} of \
         spam.example ({remote_messages} messages each) in {:.1?}",
        started.elapsed()
    );

    // Gentleness, idle: nothing runs.
    let idle = Chatter::start(&chatter, &quiet, sends).task.await??;
    let idle = Latencies::new(idle);
    let load_idle = load_average();
    println!("sends, idle: {}", idle.describe());

    let auto_list = keeper.create_room(json!({"preset": "public_chat", "name": "spam wave bans"})).await?;
    let watched = watch(&testbed, &admin_room, &auto_list, true).await?;
    anyhow::ensure!(watched.contains("action auto"), "not watched as auto: {watched}");
    let plan_list = keeper.create_room(json!({"preset": "public_chat", "name": "server bans"})).await?;
    watch(&testbed, &admin_room, &plan_list, false).await?;

    // 1. A user rule on the auto list, an ordinary user chatting meanwhile.
    let spammer = one.user.user_id.clone();
    let chat = Chatter::start(&chatter, &quiet, usize::MAX);
    let rule = send_rule(
        &testbed,
        &keeper,
        &admin_room,
        &auto_list,
        ("m.policy.rule.user", "wave-user"),
        ban(&spammer, "spam wave"),
        &format!("cleanup of {spammer}"),
    )
    .await?;
    let id = job_for(&rule.notice, "cleanup of")?;
    let job = finished(&store, &id).await?;
    let during_cleanup = chat.stop().await?;
    let load_cleanup = load_average();
    let (purged, quarantined, ways) = cleanup_counts(&job);
    let (audit, _) = store.job_audit(&id, 100_000).await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    let seen_one = redactions_seen(&alice, &one, &bot).await?;
    let times_one = &seen_one.redactions;
    let unavailable_one = unavailable(&alice, &one.media).await?;
    let after_rule = |ts: i64| format!("+{:.1} s", (ts - rule.rule_ts) as f64 / 1e3);
    let suspended = span(&audit, "sanction.suspend").map(|(at, _)| after_rule(at));
    let media_span = span(&audit, "purge.media");
    let (first_redaction, last_redaction) = ends(times_one).unwrap_or((rule.rule_ts, rule.rule_ts));
    let housekeep_rate = per_second(seen_one.redacted.redactions, last_redaction - first_redaction);
    let overall_rate = per_second(seen_one.redacted.redactions, last_redaction - rule.rule_ts);

    // 2. The ceiling: Synapse alone, the same shape, as many in flight.
    // In the order housekeep's plan takes them (the index's, by
    // origin_server_ts: the rooms seeded side by side interleave), as
    // the room's admin, or as the sender in a room of their own.
    let filter = EventFilter { senders: vec![two.user.user_id.clone()], ..EventFilter::default() };
    let order: Vec<_> = store.selected_events(&filter).try_collect().await?;
    let own: HashSet<&str> = two.sent.iter().filter(|sent| sent.own_room).map(|sent| sent.room.as_str()).collect();
    let chat = Chatter::start(&chatter, &quiet, usize::MAX);
    let started = Instant::now();
    let redactions: Vec<String> = futures::stream::iter(&order)
        .map(|event| {
            let redactor = if own.contains(event.room_id.as_str()) { &two.user } else { &alice };
            redactor.redact(&event.room_id, &event.event_id, "ceiling")
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let ceiling_wall = started.elapsed();
    let during_ceiling = chat.stop().await?;
    let load_ceiling = load_average();
    let seen_two = redactions_seen(&alice, &two, &bot).await?;
    let times_two = &seen_two.redactions;
    let ceiling_span = ends(times_two).map_or(0, |(first, last)| last - first);
    let ceiling_rate = per_second(seen_two.redacted.redactions, ceiling_span);
    let ceiling_wall_rate = redactions.len() as f64 / ceiling_wall.as_secs_f64();

    let started = Instant::now();
    let status = synapse_user_redact(&testbed.admin, &three.user.user_id, json!({"rooms": []})).await?;
    let user_redact_time = started.elapsed();
    let user_redact_failed = status["failed_redactions"].as_object().map_or(0, |failed| failed.len());
    let seen_three = redacted(&alice, &three).await?;
    let user_redact_rate = seen_three.redactions as f64 / user_redact_time.as_secs_f64();

    // 4. A hashed user rule: every sender the index knows is hashed.
    let hidden = four.user.user_id.clone();
    let hash = sha256_of(&hidden);
    let senders = store.all_senders(10_000_000).await?.len();
    let scan = timed("the index's senders, each hashed (the rule's scan alone)", "senders", async || {
        let all = store.all_senders(1_000_000).await?;
        let hits = all.iter().filter(|sender| sha256_of(sender) == hash).count();
        anyhow::ensure!(hits == 1, "{hits} senders hash to the rule's");
        Ok(all.len())
    })
    .await?;
    let hashed = json!({"recommendation": "m.ban", "hashes": {"sha256": sha256_base64(&hash)}, "reason": "hidden"});
    let hashed_rule = send_rule(
        &testbed,
        &keeper,
        &admin_room,
        &auto_list,
        ("m.policy.rule.user", "wave-hashed"),
        hashed,
        &format!("cleanup of {hidden}"),
    )
    .await?;
    let hashed_job = finished(&store, &job_for(&hashed_rule.notice, "cleanup of")?).await?;
    let hashed_tally = hashed_job.tally.clone().unwrap_or_default();

    // 5. A server rule, on the list that waits for a ✅.
    let server_rule = send_rule(
        &testbed,
        &keeper,
        &admin_room,
        &plan_list,
        ("m.policy.rule.server", "wave-server"),
        ban("spam.example", "spam server"),
        "rule for spam.example",
    )
    .await?;

    let images = shape.images;
    println!("--");
    println!(
        "spam wave bench: per spammer {} messages ({images} images) in {} rooms ({} their own); housekeep on \
         PostgreSQL, jobs.homeserver_concurrency {concurrency}, admin.confirm_threshold {{events: \
         {events_threshold}, media: {media_threshold}}}; the machine's 1-minute load average after the idle \
         sends {load_idle}, after the cleanup {load_cleanup}, after the ceiling's loop {load_ceiling}",
        shape.messages,
        shape.rooms,
        shape.own()
    );
    println!("1. user rule, auto list ({spammer}):");
    println!(
        "   rule sent → plan posted:       {} ms (Synapse's timestamps of the rule and the notice; goal ≤ 1 s); \
         housekeep's own: {}",
        rule.to_plan_ms,
        logged(rule.logged_ms)
    );
    println!(
        "   rule sent → last redaction:    {} (first {}; Synapse's timestamps of the redactions){}",
        after_rule(last_redaction),
        after_rule(first_redaction),
        suspended.map_or_else(String::new, |at| format!("; suspended {at}"))
    );
    println!(
        "   rule sent → last media gone:   {} (the job's audit of its quarantines, first {}); {} of {images} \
         downloads 404 after",
        media_span.map_or_else(|| "none".to_owned(), |(_, last)| after_rule(last)),
        media_span.map_or_else(|| "none".to_owned(), |(first, _)| after_rule(first)),
        unavailable_one
    );
    println!(
        "   job {id} {}: {purged} events redacted ({} by the bot, {} as the sender), {quarantined} media \
         quarantined, {} failed; Synapse shows {} messages redacted by {} redactions",
        job.state.as_str(),
        ways[0],
        ways[1],
        job.failed_count,
        seen_one.redacted.messages,
        seen_one.redacted.redactions
    );
    println!(
        "   redactions/s:                  {housekeep_rate:.1} (first → last redaction), {overall_rate:.1} (rule \
         sent → last redaction); {} batches, {}",
        job.batches,
        pauses(&seen_one)
    );
    println!("2. ceiling (Synapse alone, {} in flight, {}):", concurrency, two.user.user_id);
    println!(
        "   PUT …/redact loop:             {} redactions in {ceiling_wall:.1?}; {ceiling_rate:.1}/s (first → last \
         redaction), {ceiling_wall_rate:.1}/s (wall clock); {}",
        seen_two.redacted.redactions,
        pauses(&seen_two)
    );
    println!(
        "   housekeep / ceiling:           {:.2}× (goal ≥ 0.9×; first → last redaction of each)",
        housekeep_rate / ceiling_rate
    );
    println!(
        "   Synapse user redact:           {} redactions ({} messages and {} joins) in {user_redact_time:.1?}, \
         {user_redact_rate:.1}/s, {user_redact_failed} failed ({}) ({})",
        seen_three.redactions,
        seen_three.messages,
        seen_three.others,
        status["status"].as_str().unwrap_or_default(),
        three.user.user_id
    );
    println!("3. gentleness (an ordinary user's PUT …/send, one after another, in a quiet room):");
    println!("   idle:                          {}", idle.describe());
    println!("   during the cleanup:            {}", during_cleanup.describe());
    println!(
        "   cleanup / idle:                p50 {:.2}×, p99 {:.2}× (goal p99 ≤ 2×)",
        during_cleanup.p(50.0) / idle.p(50.0),
        during_cleanup.p(99.0) / idle.p(99.0)
    );
    println!(
        "   during the ceiling's loop:     {} (p99 {:.2}× idle)",
        during_ceiling.describe(),
        during_ceiling.p(99.0) / idle.p(99.0)
    );
    println!("4. hashed user rule (MSC4205, {hidden}; {senders} senders in the index, each hashed):");
    println!(
        "   rule sent → plan posted:       {} ms; housekeep's own: {}",
        hashed_rule.to_plan_ms,
        logged(hashed_rule.logged_ms)
    );
    println!("   {scan}");
    println!(
        "   job {}: {} events redacted, {} media quarantined, {} failed",
        hashed_job.state.as_str(),
        count(&hashed_tally["purge"]["purged"]),
        count(&hashed_tally["purge"]["media_quarantined"]),
        hashed_job.failed_count
    );
    println!(
        "5. server rule (spam.example, {remote_senders} remote senders, {} events injected into the index):",
        remote_senders * remote_messages
    );
    println!(
        "   rule sent → plan posted:       {} ms; housekeep's own: {}",
        server_rule.to_plan_ms,
        logged(server_rule.logged_ms)
    );
    for line in server_rule.notice.lines() {
        println!("   | {line}");
    }
    println!(
        "   redacting them:                not measured (needs a second homeserver: Synapse never saw these \
         events); the plan waits for a ✅ on a list watched without --auto"
    );
    let log = testbed.housekeep.log()?;
    let troubles: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
    println!("housekeep's log: {} warnings or errors", troubles.len());
    for line in troubles.iter().take(10) {
        println!("   | {line}");
    }
    store.close().await;
    testbed.shutdown().await
}

fn main() -> anyhow::Result<()> {
    // One part (`BENCH_PART=side-by-side`): everything runs on one testbed.
    main_with(|_| async { Ok(()) }, spam_wave)
}
