//! `!quarantine room` against Synapse's own room quarantine, and
//! `!quarantine user` against Synapse's user quarantine, on one real
//! Synapse: coverage (how many referenced media become unavailable) and wall
//! time; then the selection query alone on a 1,000,000-event index, on
//! SQLite and PostgreSQL.
//!
//! `cargo bench --bench quarantine` (takes a few minutes: it sends 10,000
//! events). `BENCH_CONCURRENCY` lists `jobs.homeserver_concurrency` values
//! to run housekeep with (default 4,8,16,32). `BENCH_PART=side-by-side` or `BENCH_PART=selection` runs one part.

use std::time::{Duration, Instant};

mod common;

use common::{MillionEvents, main_with, set_homeserver_concurrency, timed, unavailable};
use futures::{StreamExt, TryStreamExt};
use housekeep::store::Backend;
use housekeep::store::{JobState, RefsOf, Scope};
use housekeep::testbed::{MatrixUser, Testbed, encode, eventually};
use serde_json::{Value, json};

const EVENTS: usize = 10_000;

/// The media-carrying events of the benchmark room: 1,000 media in 950
/// events, in every shape Synapse's room quarantine does and does not read.
fn media_event(n: usize, mxc: &str, second: Option<&str>) -> (&'static str, Value) {
    match n % 19 {
        0..=8 => ("m.room.message", json!({"msgtype": "m.image", "body": "p.png", "url": mxc})),
        9 => (
            "m.room.message",
            json!({"msgtype": "m.image", "body": "p.png", "url": mxc, "info": {"thumbnail_url": second.unwrap()}}),
        ),
        10..=13 => (
            "m.room.message",
            json!({"msgtype": "m.file", "body": "f", "file": {"url": mxc, "key": {"k": "x"}, "iv": "y", "hashes": {}, "v": "v2"}}),
        ),
        14..=16 => (
            "m.room.message",
            json!({"msgtype": "m.text", "body": "img", "format": "org.matrix.custom.html",
                   "formatted_body": format!("<img src=\"{mxc}\">")}),
        ),
        _ => ("m.sticker", json!({"body": "s", "url": mxc, "info": {}})),
    }
}

async fn seed(user: &MatrixUser, room: &str) -> anyhow::Result<Vec<String>> {
    let mut media = Vec::new();
    let mut sent = 0;
    let mut n = 0;
    while media.len() < 1000 {
        let upload = |label: String| user.upload(label.into_bytes(), "image/png", "p.png");
        let mxc = upload(format!("bench media {n} {}", rand::random::<u64>())).await?;
        let second =
            if n % 19 == 9 { Some(upload(format!("bench thumb {n} {}", rand::random::<u64>())).await?) } else { None };
        let (event_type, content) = media_event(n, &mxc, second.as_deref());
        user.send(room, event_type, content).await?;
        media.push(mxc);
        media.extend(second);
        sent += 1;
        n += 1;
        // Spread text messages between the media events.
        for _ in 0..9 {
            if sent < EVENTS - (1000 - media.len()) {
                user.send_text(room, &format!("chat {sent}")).await?;
                sent += 1;
            }
        }
    }
    while sent < EVENTS {
        user.send_text(room, &format!("chat {sent}")).await?;
        sent += 1;
    }
    Ok(media)
}

/// Makes every media available again, so each run has the same work.
async fn release(testbed: &Testbed, media: &[String]) -> anyhow::Result<()> {
    for mxc in media {
        let path = format!("/_synapse/admin/v1/media/unquarantine/{}", mxc.trim_start_matches("mxc://"));
        testbed.admin.request(reqwest::Method::POST, &path, Some(json!({}))).await?;
    }
    let user = &testbed.admin;
    anyhow::ensure!(unavailable(user, media).await? == 0, "unquarantine between the runs failed");
    Ok(())
}

async fn side_by_side() -> anyhow::Result<()> {
    let mut testbed =
        Testbed::start_own(Backend::Sqlite, std::path::Path::new(env!("CARGO_BIN_EXE_housekeep"))).await?;
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    let alice = testbed.synapse.register_user("alice", false).await?;
    let room = alice.create_room(json!({"name": "bench"})).await?;
    let started = Instant::now();
    let media = seed(&alice, &room).await?;
    println!("seeded {EVENTS} events with {} media references in {:.0?}", media.len(), started.elapsed());
    let store = testbed.store().await?;
    eventually(Duration::from_secs(120), "the index to catch up", || async {
        Ok((store.room_media_refs(&room).await?.len() >= media.len()).then_some(()))
    })
    .await?;

    let started = Instant::now();
    let answer = testbed
        .admin
        .request(
            reqwest::Method::POST,
            &format!("/_synapse/admin/v1/room/{}/media/quarantine", encode(&room)),
            Some(json!({})),
        )
        .await?;
    let synapse_time = started.elapsed();
    let synapse_covered = unavailable(&alice, &media).await?;
    // What Synapse's room call cannot see, for the per-media anchor below.
    let mut unseen = Vec::new();
    for mxc in &media {
        if alice.download_status(mxc).await? != 404 {
            unseen.push(mxc.clone());
        }
    }
    println!(
        "Synapse room quarantine:   {synapse_covered:>4} of {} referenced media unavailable, {:>8.1?} (answered {answer})",
        media.len(),
        synapse_time
    );
    let mut lines = vec![format!(
        "Synapse room quarantine:        {synapse_covered:>4} of {} referenced media unavailable, {synapse_time:>8.1?}",
        media.len()
    )];
    let concurrencies: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "4,8,16,32".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let bot = testbed.config.bot_user_id()?.to_string();
    for &n in &concurrencies {
        // Released between the runs, so each run has the same work.
        release(&testbed, &media).await?;
        set_homeserver_concurrency(&mut testbed, n, &admin_room).await?;
        // 1,000 media is above `admin.confirm_threshold`: planned, then confirmed.
        let planning = Instant::now();
        let command = testbed.admin.send_text(&admin_room, &format!("!quarantine room {room}")).await?;
        let plan = testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
        let planned = planning.elapsed();
        let id = plan.split_whitespace().nth(3).unwrap_or_default().to_owned();
        testbed.admin.send_text(&admin_room, &format!("!confirm {id}")).await?;
        let started = Instant::now();
        let job = eventually(Duration::from_secs(600), "the quarantine job", || async {
            Ok(store.job(&id).await?.filter(|job| matches!(job.state, JobState::Done | JobState::Failed)))
        })
        .await?;
        let housekeep_time = started.elapsed();
        let housekeep_covered = unavailable(&alice, &media).await?;
        let line = format!(
            "housekeep, {n:>2} calls at once:  {housekeep_covered:>4} of {} referenced media unavailable, \
             {housekeep_time:>8.1?} from confirmation to done ({:.0} media/s; {} done, {} failed; planned in {planned:.1?})",
            media.len(),
            media.len() as f64 / housekeep_time.as_secs_f64(),
            job.done_count,
            job.failed_count,
        );
        println!("{line}");
        lines.push(line);
    }
    // Synapse alone on what housekeep must do one by one: its per-media
    // quarantine of the media its room call cannot see, as many at once as
    // housekeep was allowed.
    for &n in &concurrencies {
        release(&testbed, &media).await?;
        let started = Instant::now();
        futures::stream::iter(&unseen)
            .map(|mxc| {
                let path = format!("/_synapse/admin/v1/media/quarantine/{}", mxc.trim_start_matches("mxc://"));
                let admin = &testbed.admin;
                async move { admin.request(reqwest::Method::POST, &path, Some(json!({}))).await }
            })
            .buffer_unordered(n)
            .try_collect::<Vec<_>>()
            .await?;
        let per_media = started.elapsed();
        lines.push(format!(
            "Synapse alone, per-media quarantine of the {} its room call misses, {n:>2} at once: {per_media:>8.1?} ({:.0} media/s)",
            unseen.len(),
            unseen.len() as f64 / per_media.as_secs_f64()
        ));
    }

    // The same media as one user's uploads: Synapse's user call, then `!quarantine user`.
    release(&testbed, &media).await?;
    let started = Instant::now();
    let path = format!("/_synapse/admin/v1/user/{}/media/quarantine", encode(&alice.user_id));
    testbed.admin.request(reqwest::Method::POST, &path, Some(json!({}))).await?;
    let synapse_time = started.elapsed();
    lines.push(format!(
        "Synapse user quarantine:        {:>4} of {} uploads unavailable, {synapse_time:>8.1?}",
        unavailable(&alice, &media).await?,
        media.len()
    ));
    release(&testbed, &media).await?;
    set_homeserver_concurrency(&mut testbed, 8, &admin_room).await?;
    let command = testbed.admin.send_text(&admin_room, &format!("!quarantine user {}", alice.user_id)).await?;
    let plan = testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
    let id = plan.split_whitespace().nth(3).unwrap_or_default().to_owned();
    testbed.admin.send_text(&admin_room, &format!("!confirm {id}")).await?;
    let started = Instant::now();
    let job = eventually(Duration::from_secs(600), "the user quarantine job", || async {
        Ok(store.job(&id).await?.filter(|job| matches!(job.state, JobState::Done | JobState::Failed)))
    })
    .await?;
    let housekeep_time = started.elapsed();
    lines.push(format!(
        "housekeep !quarantine user, 8: {:>4} of {} uploads unavailable, {housekeep_time:>8.1?} from confirmation to done \
         ({:.0} media/s; {} done, {} failed)",
        unavailable(&alice, &media).await?,
        media.len(),
        media.len() as f64 / housekeep_time.as_secs_f64(),
        job.done_count,
        job.failed_count,
    ));
    println!("--");
    for line in lines {
        println!("{line}");
    }
    store.close().await;
    testbed.shutdown().await
}

/// Selecting a room's, a sender's and an event's media on the 1M-event index.
async fn selection(backend: Backend) -> anyhow::Result<()> {
    let index = MillionEvents::load(backend).await?;
    let store = &index.store;
    let summary = store.summary().await?;
    let mut timings = Vec::new();
    for (name, of) in [
        ("room", RefsOf::Room("!room0")),
        ("sender", RefsOf::Sender("@u0:hs.example")),
        ("event", RefsOf::Event("$e500000")),
    ] {
        // What a plan does: count in SQL, then stream the distinct media into items.
        timings.push(
            timed(name, "media", async || {
                let stats = store.media_selection_stats(of, Scope::Shared, "hs.example").await?;
                let streamed =
                    store.selected_media(of, Scope::Shared).try_fold(0, |n, _| async move { Ok(n + 1) }).await?;
                anyhow::ensure!(stats.media == streamed, "counted {} but streamed {streamed}", stats.media);
                Ok(streamed as usize)
            })
            .await?,
        );
    }
    println!(
        "{:<8} index of {} events / {} media refs (loaded in {:.0?}): {}",
        backend.as_str(),
        summary.events,
        summary.media_refs,
        index.load,
        timings.join("; ")
    );
    index.drop_database().await
}

fn main() -> anyhow::Result<()> {
    main_with(selection, side_by_side)
}
