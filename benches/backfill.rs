//! Backfill and the media worker against a real Synapse (SQLite index).
//!
//! - `BENCH_PART=download`: 1,000 attachments (`BENCH_MEDIA`) downloaded and
//!   hashed through a local proxy that adds 200 ms to each download, with 32
//!   downloads at once against one at a time (goal: ≥ 20× faster).
//! - `BENCH_PART=backfill`: one room of `BENCH_EVENTS` events (default
//!   20,000; the goal's 100,000 takes Synapse half an hour to write) read by
//!   `!backfill`: events/s and housekeep's peak RSS (goal < 150 MB).
//! - `BENCH_PART=blocklist`: time from a blocklisted file being posted to
//!   its quarantine (goal < 5 s), 10 times.
//!
//! `cargo bench --bench backfill` runs all three.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use housekeep::extract::extract_value;
use housekeep::homeserver::HomeserverClient;
use housekeep::jobs::Services;
use housekeep::media::{FetchConfig, MediaFetcher};
use housekeep::metrics::Metrics;
use housekeep::store::Backend;
use housekeep::store::Source;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_housekeep"))
}

/// Forwards media downloads to Synapse, 200 ms late.
async fn slow_download(
    State((http, synapse)): State<(reqwest::Client, String)>,
    Path((server, media_id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut request = http.get(format!("{synapse}/_matrix/client/v1/media/download/{server}/{media_id}"));
    if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION) {
        request = request.header(axum::http::header::AUTHORIZATION, auth);
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let body = Body::from_stream(answer.bytes_stream());
            Response::builder().status(status.as_u16()).body(body).expect("a response")
        }
        Err(_) => Response::builder().status(502).body(Body::empty()).expect("a response"),
    }
}

async fn download(media: usize) -> anyhow::Result<()> {
    let testbed = Testbed::start_own(Backend::Sqlite, binary()).await?;
    testbed.make_bot_admin().await?;
    let alice = testbed.synapse.register_user("alice", false).await?;
    let store = testbed.store().await?;
    let mut uploads = Vec::with_capacity(media);
    for n in 0..media {
        uploads.push(
            alice
                .upload(format!("attachment {n} {}", rand::random::<u64>()).into_bytes(), "text/plain", "a.txt")
                .await?,
        );
    }
    // Referenced by events in a room housekeep does not know: only this bench fetches them.
    let events: Vec<_> = uploads
        .iter()
        .enumerate()
        .map(|(n, mxc)| {
            let event = json!({"event_id": format!("$dl{n}"), "room_id": "!bench", "sender": "@alice:localhost",
                "origin_server_ts": 1, "type": "m.room.message",
                "content": {"msgtype": "m.file", "body": "a.txt", "url": mxc}});
            extract_value(&event).expect("valid event")
        })
        .collect();
    store.index_events(&events, Source::Backfill).await?;

    let app = axum::Router::new()
        .route("/_matrix/client/v1/media/download/{server}/{media_id}", axum::routing::get(slow_download))
        .with_state((housekeep::testbed::http(), testbed.synapse.url.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let services = Services {
        store: store.clone(),
        homeserver: HomeserverClient::new(proxy.parse()?, testbed.config.appservice.as_token.clone())?,
        metrics: Arc::new(Metrics::new()),
        bot_user_id: testbed.config.bot_user_id()?,
        prefix: "!".into(),
        operators: None,
        media_wake: Arc::default(),
        homeserver_concurrency: 8,
        watched_lists: Default::default(),
    };
    let mut figures = Vec::new();
    for concurrency in [32, 1] {
        sqlx::query("UPDATE media SET fetch_state = 'queued', fetch_failures = 0, next_attempt_at = 0, sha256 = NULL")
            .execute(store.pool())
            .await?;
        let config = FetchConfig {
            concurrency,
            timeout: Duration::from_secs(60),
            stall: Duration::from_secs(30),
            max_attempts: 3,
            retry_delay: Duration::from_secs(30),
        };
        let fetcher = MediaFetcher::new(services.clone(), config);
        let ids: Vec<String> = events.iter().map(|e| e.event.event_id.clone()).collect();
        let due = store.unfetched_media_of_events(&ids).await?;
        anyhow::ensure!(due.len() == media, "{} due of {media}", due.len());
        let started = Instant::now();
        let counts = fetcher.fetch_all(due, &CancellationToken::new()).await;
        let elapsed = started.elapsed();
        anyhow::ensure!(counts.fetched as usize == media, "fetched {counts:?}");
        println!(
            "download: {media} attachments, 200 ms added each, {concurrency:>2} at once: {elapsed:.1?} ({:.0} media/s)",
            media as f64 / elapsed.as_secs_f64()
        );
        figures.push(elapsed);
    }
    println!(
        "download: 32 at once is {:.1}x faster than one at a time (goal >= 20x)",
        figures[1].as_secs_f64() / figures[0].as_secs_f64()
    );
    store.close().await;
    testbed.shutdown().await
}

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn seed_room(users: &[MatrixUser], room: &str, events: usize) -> anyhow::Result<()> {
    let per_user = events.div_ceil(users.len());
    let mut tasks = Vec::new();
    for (u, user) in users.iter().enumerate() {
        let (user, room) = (user.clone(), room.to_owned());
        tasks.push(tokio::spawn(async move {
            for n in 0..per_user {
                user.send_text(&room, &format!("history {u}/{n} with a few words of ordinary chat")).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn backfill(events: usize) -> anyhow::Result<()> {
    let mut users = Vec::new();
    let (testbed, room) = Testbed::start_after_history(
        Backend::Sqlite,
        binary(),
        true,
        async |synapse, admin| {
            let room = admin.create_room(json!({"name": "big", "preset": "public_chat"})).await?;
            for n in 0..8 {
                let user = synapse.register_user(&format!("writer{n}"), false).await?;
                user.join(&room).await?;
                users.push(user);
            }
            let started = Instant::now();
            seed_room(&users, &room, events).await?;
            println!(
                "backfill: Synapse wrote {events} events into one room in {:.0?} ({:.0} events/s with 8 writers)",
                started.elapsed(),
                events as f64 / started.elapsed().as_secs_f64()
            );
            Ok(room)
        },
        |text| text,
    )
    .await?;
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    let store = testbed.store().await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    let started = Instant::now();
    let command = testbed.admin.send_text(&admin_room, &format!("!backfill {room}")).await?;
    testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
    let job = eventually(Duration::from_secs(3600), "the backfill", || async {
        let job = store.recent_jobs_of_kind("backfill", 1).await?.into_iter().next();
        Ok(job.filter(|job| job.state.is_final()))
    })
    .await?;
    let elapsed = started.elapsed();
    let read = job.tally.as_ref().and_then(|t| t["events"].as_i64()).unwrap_or(0);
    let rss = testbed.housekeep.pid().and_then(peak_rss_kb).unwrap_or(0);
    println!(
        "backfill: read {read} events in {elapsed:.1?} ({:.0} events/s, {}); housekeep's peak RSS {:.0} MB (goal < 150 MB)",
        read as f64 / elapsed.as_secs_f64(),
        job.state.as_str(),
        rss as f64 / 1024.0
    );
    // The anchor: the same pages from Synapse alone, nothing indexed.
    let started = Instant::now();
    let (mut from, mut pages, mut events) = (None::<String>, 0, 0);
    loop {
        let mut path =
            format!("/_synapse/admin/v1/rooms/{}/messages?dir=b&limit=1000", housekeep::testbed::encode(&room));
        if let Some(from) = &from {
            path.push_str(&format!("&from={}", housekeep::testbed::encode(from)));
        }
        let page = testbed.admin.request(reqwest::Method::GET, &path, None).await?;
        pages += 1;
        events += page["chunk"].as_array().map_or(0, Vec::len);
        match page["end"].as_str() {
            Some(end) if !page["chunk"].as_array().is_none_or(Vec::is_empty) => from = Some(end.to_owned()),
            _ => break,
        }
    }
    println!(
        "backfill: Synapse alone serves the same {events} events ({pages} pages of 1,000) in {:.1?} ({:.0} events/s)",
        started.elapsed(),
        events as f64 / started.elapsed().as_secs_f64()
    );
    store.close().await;
    testbed.shutdown().await
}

async fn blocklist(times: usize) -> anyhow::Result<()> {
    let testbed = Testbed::start_own(Backend::Sqlite, binary()).await?;
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    let alice = testbed.synapse.register_user("alice", false).await?;
    let room = alice.create_room(json!({"name": "uploads"})).await?;
    let mut delays = Vec::new();
    for n in 0..times {
        let bytes = format!("blocked file {n} {}", rand::random::<u64>()).into_bytes();
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let command = testbed.admin.send_text(&admin_room, &format!("!blocklist add {sha256}")).await?;
        testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
        let mxc = alice.upload(bytes, "image/png", "x.png").await?;
        let posted = Instant::now();
        alice.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": mxc})).await?;
        eventually(Duration::from_secs(30), "the quarantine", || async {
            Ok((alice.download_status(&mxc).await? == 404).then_some(()))
        })
        .await?;
        delays.push(posted.elapsed());
    }
    delays.sort();
    println!(
        "blocklist: a blocked file posted to its quarantine: median {:.0?}, max {:.0?} of {times} (goal < 5 s)",
        delays[times / 2],
        delays[times - 1]
    );
    testbed.shutdown().await
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let part = std::env::var("BENCH_PART").unwrap_or_default();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        if part.is_empty() || part == "download" {
            download(env("BENCH_MEDIA", 1000)).await?;
        }
        if part.is_empty() || part == "backfill" {
            backfill(env("BENCH_EVENTS", 20_000)).await?;
        }
        if part.is_empty() || part == "blocklist" {
            blocklist(10).await?;
        }
        Ok(())
    })
}
