//! `!cleanup` figures (issue 32, "Measure"), on one real Synapse with
//! housekeep on PostgreSQL: two local spammers seeded with the same shape
//! of data; `!cleanup @spammer1 --suspend --with-media quarantine` (command
//! → plan latency, confirm → done, redactions/s), then Synapse's own
//! `POST /_synapse/admin/v1/user/<spammer2>/redact` with `{"rooms": []}`
//! on the second (redactions/s), and the media each leaves downloadable.
//!
//! Each spammer gets `BENCH_ROOMS` public rooms (default 100), one in ten
//! their own (they created it: housekeep's bot has no power there and
//! redacts as the sender, as with a real spammer's rooms), the others
//! created by another user who gave the bot power 100 (the spammer joins);
//! `BENCH_MESSAGES` messages (default 1,000) spread evenly over the rooms,
//! of which `BENCH_IMAGES` (default 100) are images of their own uploads,
//! one per room first. Synapse's user redact also redacts their joins
//! (counted apart) and leaves media alone. `BENCH_CONCURRENCY` is
//! `jobs.homeserver_concurrency` (default 8, housekeep's default);
//! `BENCH_SEED_CONCURRENCY` the rooms seeded at once (default 4: one
//! Synapse process writes every event, and more only queue).
//!
//! `cargo bench --bench cleanup` (default size: about 3½ minutes, most of
//! it seeding); `BENCH_ROOMS=10 BENCH_MESSAGES=100 BENCH_IMAGES=10` for a
//! quick run.
//!
//! Figures (2026-12-06, 2 cores shared with other builds, Synapse 1.163.2
//! on SQLite, default size): seeding 76 s and 60 s; command → plan 169 ms
//! (the index selection alone: median 6 ms); confirm → done 30.1 s
//! (suspended +0.1 s, events +2.0…+29.3 s, media +29.3…+29.7 s): 1,000
//! events redacted (900 by the bot, 100 as the sender), 100 media
//! quarantined, 0 failed, 33.3 redactions/s (34.3/s over the events part);
//! Synapse's user redact on the same shape: 1,100 redactions (1,000
//! messages and 100 joins) in 31.1 s, 35.3 redactions/s, media untouched;
//! media unavailable 100/100 after `!cleanup` vs 0/100 after Synapse's.
//! A second run: 28.2 against 25.1 redactions/s, so the two are level
//! here (the spread between runs is the shared machine). Of the events
//! part, about 4.5 s are the 90 rooms' state reads and the bot's admin
//! joins (about 50 ms a room, timed apart on the second spammer's rooms in
//! an exploratory run), made one after another before each batch's
//! redactions.

use std::time::{Duration, Instant};

mod common;

use common::{
    Shape, Spammer, cleanup_counts, count, env, indexed, main_with, redacted, seed, sent_at,
    set_homeserver_concurrency, span, synapse_user_redact, timed, unavailable,
};
use futures::TryStreamExt;
use housekeep::store::{Backend, EventFilter};
use housekeep::testbed::{Testbed, eventually};
use serde_json::json;

async fn side_by_side() -> anyhow::Result<()> {
    let shape = Shape::from_env();
    let concurrency = env("BENCH_CONCURRENCY", 8);
    let seeding = env("BENCH_SEED_CONCURRENCY", 4);
    let mut testbed =
        Testbed::start_own(Backend::Postgres, std::path::Path::new(env!("CARGO_BIN_EXE_housekeep"))).await?;
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    set_homeserver_concurrency(&mut testbed, concurrency, &admin_room).await?;
    let store = testbed.store().await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    let alice = testbed.synapse.register_user("alice", false).await?;
    let own = shape.own();
    let mut seeded = Vec::new();
    for localpart in ["spammer1", "spammer2"] {
        let started = Instant::now();
        seeded.push(seed(&testbed, &alice, localpart, shape, seeding).await?);
        println!(
            "seeded {localpart}: {} messages ({} images) in {} rooms ({own} their own), {seeding} rooms at once, in {:.1?}",
            shape.messages,
            shape.images,
            shape.rooms,
            started.elapsed()
        );
    }
    let [one, two] = <[Spammer; 2]>::try_from(seeded).map_err(|_| anyhow::anyhow!("two spammers"))?;
    let started = Instant::now();
    for spammer in [&one, &two] {
        indexed(&store, &spammer.user.user_id, shape.messages).await?;
    }
    println!("the index held both spammers' messages {:.1?} after the seeding", started.elapsed());

    // What the plan reads from the index, alone.
    let filter = EventFilter { senders: vec![one.user.user_id.clone()], ..EventFilter::default() };
    let selection = timed("the plan's index selection (count, events, their media)", "events", async || {
        let stats = store.event_selection_stats(&filter).await?;
        let events = store.selected_events(&filter).try_fold(0, |n, _| async move { Ok(n + 1) }).await?;
        let media = store.media_of_selection(&filter).try_fold(0, |n, _| async move { Ok(n + 1) }).await?;
        anyhow::ensure!(stats.events == events, "counted {} but streamed {events}", stats.events);
        anyhow::ensure!(media >= shape.images, "{media} media of {} images", shape.images);
        Ok(events as usize)
    })
    .await?;
    println!("{selection}");

    // housekeep: command → plan, confirm → done.
    let who = &one.user.user_id;
    let asked = Instant::now();
    let command =
        testbed.admin.send_text(&admin_room, &format!("!cleanup {who} --suspend --with-media quarantine")).await?;
    let reply = testbed.admin.wait_for_replies(&admin_room, &command, &bot, 1).await?.remove(0);
    let polled = asked.elapsed();
    let plan = reply["content"]["body"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(plan.starts_with("Plan for job "), "not a plan: {plan}");
    let to_plan = count(&reply["origin_server_ts"]) - sent_at(&testbed.admin, &admin_room, &command).await?;
    for line in plan.lines().filter(|l| l.starts_with("Would redact") || l.starts_with("media:")) {
        println!("plan: {line}");
    }
    let id = plan.split_whitespace().nth(3).unwrap_or_default().to_owned();
    let confirming = Instant::now();
    let confirm = testbed.admin.send_text(&admin_room, &format!("!confirm {id}")).await?;
    let job = eventually(Duration::from_secs(3600), "the cleanup job", || async {
        Ok(store.job(&id).await?.filter(|job| job.state.is_final()))
    })
    .await?;
    let to_done = confirming.elapsed();
    let confirmed_at = sent_at(&testbed.admin, &admin_room, &confirm).await?;
    let (purged, quarantined, ways) = cleanup_counts(&job);
    let (audit, _) = store.job_audit(&id, 100_000).await?;
    let secs = |ts: i64| (ts - confirmed_at) as f64 / 1e3;
    let mut parts = Vec::new();
    let stop = span(&audit, "sanction.suspend");
    if let Some((at, _)) = stop {
        parts.push(format!("suspended +{:.1} s", secs(at)));
    }
    let events = span(&audit, "purge.event");
    if let Some((first, last)) = events {
        parts.push(format!("events +{:.1}…+{:.1} s", secs(first), secs(last)));
    }
    if let Some((first, last)) = span(&audit, "purge.media") {
        parts.push(format!("media +{:.1}…+{:.1} s", secs(first), secs(last)));
    }
    // The events part alone: from the suspension's commit to the last batch of redactions.
    let events_rate = match (stop, events) {
        (Some((start, _)), Some((_, end))) if end > start => purged as f64 * 1e3 / (end - start) as f64,
        _ => f64::NAN,
    };
    let housekeep_seen = redacted(&alice, &one).await?;
    let housekeep_unavailable = unavailable(&alice, &one.media).await?;
    let housekeep_rate = purged as f64 / to_done.as_secs_f64();

    // Synapse alone, on the second spammer's identical data.
    let started = Instant::now();
    let status = synapse_user_redact(&testbed.admin, &two.user.user_id, json!({"rooms": []})).await?;
    let synapse_time = started.elapsed();
    let synapse_failed = status["failed_redactions"].as_object().map_or(0, |failed| failed.len());
    let synapse_seen = redacted(&alice, &two).await?;
    let synapse_unavailable = unavailable(&alice, &two.media).await?;
    let synapse_rate = synapse_seen.redactions as f64 / synapse_time.as_secs_f64();

    let images = shape.images;
    println!("--");
    println!(
        "!cleanup bench: per spammer {} messages ({images} images) in {} rooms ({own} their own); housekeep on \
         PostgreSQL, jobs.homeserver_concurrency {concurrency}",
        shape.messages, shape.rooms
    );
    println!(
        "command → plan:          {to_plan} ms (Synapse's timestamps of the command and the plan; {:.0} ms seen by \
         the client, polling every 100 ms)",
        polled.as_secs_f64() * 1e3
    );
    println!("confirm → done:          {to_done:.1?} (job {}; {})", job.state.as_str(), parts.join(", "));
    println!(
        "housekeep !cleanup:      {purged} events redacted ({} by the bot, {} as the sender), {quarantined} media \
         quarantined, {} failed; {housekeep_rate:.1} redactions/s over confirm → done ({events_rate:.1}/s over \
         the events part); Synapse shows {} of the messages redacted by {} redactions, {} other events of theirs",
        ways[0], ways[1], job.failed_count, housekeep_seen.messages, housekeep_seen.redactions, housekeep_seen.others,
    );
    println!(
        "Synapse user redact:     {} redactions in {synapse_time:.1?} ({} messages and {} joins: it redacts joins \
         too), {synapse_failed} failed ({}); {synapse_rate:.1} redactions/s; media not touched",
        synapse_seen.redactions,
        synapse_seen.messages,
        synapse_seen.others,
        status["status"].as_str().unwrap_or_default(),
    );
    println!(
        "media unavailable:       {housekeep_unavailable}/{images} after !cleanup vs {synapse_unavailable}/{images} \
         after Synapse's user redact (downloads as another user)"
    );
    store.close().await;
    testbed.shutdown().await
}

fn main() -> anyhow::Result<()> {
    // One part: the side by side (`BENCH_PART=side-by-side`).
    main_with(|_| async { Ok(()) }, side_by_side)
}
