//! Index throughput through the real HTTP endpoint: 100-event transactions,
//! one in flight at a time, as Synapse sends them. Prints events/s and the
//! p50/p99 time to acknowledge one transaction, for SQLite and PostgreSQL,
//! each beside its anchor: the same rows written straight through the
//! store (no HTTP, parsing or extraction), i.e. the database's own cost.
//!
//! `cargo bench --bench index_throughput` (PostgreSQL from
//! `$HOUSEKEEP_TEST_POSTGRES`, default postgres://postgres@127.0.0.1:5432).
//! `BENCH_TRANSACTIONS` sets how many transactions are timed (default 500),
//! `BENCH_BACKENDS` which backends run (default `sqlite,postgres`).

use std::time::{Duration, Instant};

use housekeep::appservice::{AppState, router};
use housekeep::store::Backend;
use housekeep::store::{QueuePolicy, Source, Store};
use housekeep::testbed::TestDatabase;
use serde_json::{Value, json};

const EVENTS_PER_TXN: usize = 100;
const WARMUP_TXNS: usize = 20;
const SEGMENT_TXNS: usize = 1_000;
const HS_TOKEN: &str = "bench";

/// An ID as random as the homeserver's: event IDs of room v4+ and media IDs
/// are hashes and random strings, so each new row lands at a random place
/// in the B-trees keyed by them (sequential IDs would all land at one edge
/// and flatter the figures once the index outgrows the cache).
/// `len` hex digits (at most 64) derived from `what` and `n`.
fn random_id(what: &str, n: usize, len: usize) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{what}{n}")))[..len].to_owned()
}

/// A realistic mix: mostly text, some images with thumbnails, some HTML with
/// inline images, some membership changes with avatars.
fn event(n: usize) -> Value {
    let media = |kind: &str| format!("mxc://bench.example/{}", random_id(kind, n, 24));
    let room = format!("!room{}:bench.example", n % 50);
    let sender = format!("@user{}:bench.example", n % 400);
    let ts = 1_700_000_000_000u64 + n as u64;
    let (event_type, content) = match n % 10 {
        0 | 1 => (
            "m.room.message",
            json!({"msgtype": "m.image", "body": "photo.jpg", "url": media("img"),
                   "info": {"mimetype": "image/jpeg", "size": 123456, "w": 800, "h": 600,
                            "thumbnail_url": media("thumb")}}),
        ),
        2 => (
            "m.room.message",
            json!({"msgtype": "m.text", "body": "look", "format": "org.matrix.custom.html",
                   "formatted_body": format!("<p>look <img src=\"{}\" alt=\"x\"> at this</p>", media("inline"))}),
        ),
        3 => ("m.room.member", json!({"membership": "join", "displayname": "User", "avatar_url": media("avatar")})),
        _ => (
            "m.room.message",
            json!({"msgtype": "m.text", "body": format!("message number {n} with some ordinary chat text in it")}),
        ),
    };
    let mut event = json!({
        "event_id": format!("${}", random_id("event", n, 43)), "room_id": room, "sender": sender,
        "origin_server_ts": ts, "type": event_type, "content": content,
        "unsigned": {"age": 12},
    });
    if event_type == "m.room.member" {
        event["state_key"] = json!(sender);
    }
    event
}

/// The bench's homeserver is bench.example: its media are its users'
/// uploads, queued as such (priority local, never capped by sender), as on
/// a homeserver's own traffic.
fn queue_policy() -> QueuePolicy {
    QueuePolicy { local_server: Some("bench.example".into()), ..QueuePolicy::default() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One line of figures for `timed` transactions of [`EVENTS_PER_TXN`] events.
/// Long runs also print each [`SEGMENT_TXNS`] transactions' rate, to show
/// how the rate changes as the index grows.
fn report(label: &str, backend: Backend, elapsed: Duration, mut latencies: Vec<Duration>) {
    if latencies.len() >= 2 * SEGMENT_TXNS {
        for (segment, chunk) in latencies.chunks(SEGMENT_TXNS).enumerate() {
            let before = (WARMUP_TXNS + segment * SEGMENT_TXNS) * EVENTS_PER_TXN;
            println!(
                "{:<8} {label:<22} with {:>9} events indexed: {:>8.0} events/s over the next {}",
                backend.as_str(),
                before,
                (chunk.len() * EVENTS_PER_TXN) as f64 / chunk.iter().sum::<Duration>().as_secs_f64(),
                chunk.len() * EVENTS_PER_TXN,
            );
        }
    }
    latencies.sort();
    println!(
        "{:<8} {label:<22} {:>6} txns x {EVENTS_PER_TXN} events: {:>8.0} events/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        backend.as_str(),
        latencies.len(),
        (latencies.len() * EVENTS_PER_TXN) as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn transactions_of(count: usize) -> Vec<Vec<Value>> {
    (0..count).map(|t| (0..EVENTS_PER_TXN).map(|i| event(t * EVENTS_PER_TXN + i)).collect()).collect()
}

/// Runs `run` on each transaction in turn; the first [`WARMUP_TXNS`] are
/// not timed. Returns the timed span and each timed transaction's latency.
async fn timed_after_warmup<T>(
    transactions: Vec<T>,
    mut run: impl AsyncFnMut(usize, T) -> anyhow::Result<()>,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let mut latencies = Vec::with_capacity(transactions.len().saturating_sub(WARMUP_TXNS));
    let mut timed_start = Instant::now();
    for (t, transaction) in transactions.into_iter().enumerate() {
        if t == WARMUP_TXNS {
            timed_start = Instant::now();
        }
        let started = Instant::now();
        run(t, transaction).await?;
        if t >= WARMUP_TXNS {
            latencies.push(started.elapsed());
        }
    }
    Ok((timed_start.elapsed(), latencies))
}

/// housekeep as Synapse sees it: HTTP, parsing, extraction, the commit.
async fn through_http(backend: Backend, transactions: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = TestDatabase::create(backend, dir.path()).await?;
    let store = Store::connect(&database.url, None).await?.with_media_queue(queue_policy());
    store.migrate().await?;
    let state = AppState::new(store.clone(), HS_TOKEN, "@housekeep:bench.example".try_into()?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    // Through the listener housekeep serves with (its limits and timeouts).
    let (app, metrics) = (router(state.clone(), 16 << 20, true), state.metrics.clone());
    let limits = housekeep::serve::Limits::DEFAULT;
    tokio::spawn(housekeep::serve::serve(listener, app, limits, "appservice", metrics, std::future::pending()));

    let bodies: Vec<String> = transactions_of(WARMUP_TXNS + transactions)
        .into_iter()
        .map(|events| json!({"events": events, "ephemeral": []}).to_string())
        .collect();
    let http = housekeep::testbed::http();
    // SQLite's write-ahead log, sampled after each acknowledgement: it must
    // stay bounded however long the stream runs.
    let wal = dir.path().join("housekeep.db-wal");
    let mut largest_wal = 0;
    let (elapsed, latencies) = timed_after_warmup(bodies, async |t, body| {
        let response = http
            .put(format!("{base}/_matrix/app/v1/transactions/{t}"))
            .bearer_auth(HS_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "txn {t}: {}", response.status());
        if backend == Backend::Sqlite {
            largest_wal = largest_wal.max(std::fs::metadata(&wal)?.len());
        }
        Ok(())
    })
    .await?;
    let summary = store.summary().await?;
    anyhow::ensure!(summary.events as usize == (WARMUP_TXNS + transactions) * EVENTS_PER_TXN, "events missing");
    report("housekeep (HTTP)", backend, elapsed, latencies);
    if backend == Backend::Sqlite {
        println!("{:<8} {:<22} largest WAL file: {} MiB", backend.as_str(), "housekeep (HTTP)", largest_wal >> 20);
    }
    store.close().await;
    database.drop_database().await
}

/// The anchor: the same rows written by the index's own statements, one
/// database transaction per batch, with no HTTP, parsing or extraction:
/// what the database itself costs, the ceiling of the line above.
async fn database_alone(backend: Backend, transactions: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = TestDatabase::create(backend, dir.path()).await?;
    let store = Store::connect(&database.url, None).await?.with_media_queue(queue_policy());
    store.migrate().await?;
    let batches: Vec<Vec<housekeep::extract::Extracted>> = transactions_of(WARMUP_TXNS + transactions)
        .iter()
        .map(|events| events.iter().map(housekeep::extract::extract_value).collect::<Result<_, _>>())
        .collect::<Result<_, _>>()?;
    let (elapsed, latencies) = timed_after_warmup(batches, async |_, batch| {
        store.index_events(&batch, Source::Live).await?;
        Ok(())
    })
    .await?;
    report("database alone", backend, elapsed, latencies);
    store.close().await;
    database.drop_database().await
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let transactions = std::env::var("BENCH_TRANSACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") { 500 } else { 5 });
    housekeep::service::init_logging(None);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // `BENCH_BACKENDS=postgres` runs one backend (for profiling).
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    runtime.block_on(async {
        for backend in backends.split(',') {
            let backend = match backend.trim() {
                "sqlite" => Backend::Sqlite,
                "postgres" => Backend::Postgres,
                other => anyhow::bail!("BENCH_BACKENDS: unknown backend {other:?} (sqlite, postgres)"),
            };
            through_http(backend, transactions).await?;
            database_alone(backend, transactions).await?;
        }
        Ok(())
    })
}
