//! Load: drives a real `housekeep run` process through its appservice
//! endpoint with realistic transactions (text, edits, every media kind,
//! reactions, redactions, state, commands in the admin room), one in flight
//! as Synapse sends them, at rising offered rates until the acknowledgement
//! p99 passes 100 ms or housekeep no longer keeps up. Prints, per step, the
//! offered and achieved rate, p50/p99 and housekeep's resident memory; then
//! the sustained rate and the memory at 1× and 10× the first rate.
//!
//! `cargo bench --bench load` (PostgreSQL from `$HOUSEKEEP_TEST_POSTGRES`).
//! `LOAD_STEP_SECONDS` (default 6) and `LOAD_FIRST_RATE` (events/s, default
//! 1,000) tune it. The homeserver is down throughout: the index runs anyway
//! (the workers wait for it), which is also what this shows.

use std::path::Path;
use std::time::{Duration, Instant};

use housekeep::store::Backend;
use housekeep::store::Store;
use housekeep::testbed::{Housekeep, TestDatabase, write_config};
use serde_json::{Value, json};

const EVENTS_PER_TXN: usize = 50;
const P99_LIMIT: Duration = Duration::from_millis(100);
const ADMIN_ROOM: &str = "!admin:localhost";
const MODERATOR: &str = "@admin:localhost";

/// Event `n` of the stream: a realistic mix, with edits, reactions and
/// redactions pointing at earlier events.
fn event(n: usize) -> Value {
    let room = format!("!room{}:localhost", n % 40);
    let sender = format!("@user{}:localhost", n % 300);
    let earlier = format!("$load{}", n.saturating_sub(7));
    let media = |what: &str| format!("mxc://localhost/{what}{n}");
    let mut state_key = None;
    let (event_type, content) = match n % 20 {
        0..=7 => {
            ("m.room.message", json!({"msgtype": "m.text", "body": format!("chat message {n}, an ordinary line")}))
        }
        8 => (
            "m.room.message",
            json!({"msgtype": "m.text", "body": "* fixed", "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                                        "m.relates_to": {"rel_type": "m.replace", "event_id": earlier}}),
        ),
        9 | 10 => (
            "m.room.message",
            json!({"msgtype": "m.image", "body": "photo.jpg", "url": media("img"),
                                             "info": {"mimetype": "image/jpeg", "size": 120_000, "thumbnail_url": media("thumb")}}),
        ),
        11 => (
            "m.room.message",
            json!({"msgtype": "m.file", "body": "secret.pdf",
                                         "file": {"url": media("enc"), "v": "v2", "key": {}, "iv": "", "hashes": {}}}),
        ),
        12 => ("m.sticker", json!({"body": "sticker", "url": media("sticker"), "info": {}})),
        13 => (
            "m.room.message",
            json!({"msgtype": "m.text", "body": "look", "format": "org.matrix.custom.html",
                                         "formatted_body": format!("<p>look <img src=\"{}\"> here</p>", media("inline"))}),
        ),
        14 => {
            state_key = Some(sender.clone());
            ("m.room.member", json!({"membership": "join", "displayname": "User", "avatar_url": media("avatar")}))
        }
        15 => {
            state_key = Some(String::new());
            ("m.room.avatar", json!({"url": media("roomavatar")}))
        }
        16 => {
            state_key = Some(String::new());
            ("m.room.topic", json!({"topic": format!("topic {n}")}))
        }
        17 => ("m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": earlier, "key": "👍"}})),
        18 => ("m.room.redaction", json!({"redacts": earlier, "reason": "oops"})),
        _ => ("m.room.message", json!({"msgtype": "m.notice", "body": "a bot says hello"})),
    };
    let mut event = json!({
        "event_id": format!("$load{n}"), "room_id": room, "sender": sender,
        "origin_server_ts": 1_700_000_000_000u64 + n as u64, "type": event_type, "content": content,
        "unsigned": {"age": 20},
    });
    if event_type == "m.room.redaction" {
        event["redacts"] = json!(format!("$load{}", n.saturating_sub(7)));
    }
    if let Some(key) = state_key {
        event["state_key"] = json!(key);
    }
    event
}

/// Transaction `t`; one in 20 also carries a moderator's command in the admin room.
fn transaction(t: usize) -> String {
    let mut events: Vec<Value> = (0..EVENTS_PER_TXN).map(|i| event(t * EVENTS_PER_TXN + i)).collect();
    if t.is_multiple_of(20) {
        events[0] = json!({
            "event_id": format!("$command{t}"), "room_id": ADMIN_ROOM, "sender": MODERATOR,
            "origin_server_ts": 1_700_000_000_000u64, "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "!status"},
        });
    }
    json!({"events": events}).to_string()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Step {
    offered: f64,
    achieved: f64,
    p50: Duration,
    p99: Duration,
    rss: f64,
}

async fn run(backend: Backend, step: Duration, first_rate: f64, quick: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = TestDatabase::create(backend, dir.path()).await?;
    // Port 9 (discard) on localhost: nothing answers, the homeserver is down.
    let (config_path, config, _) = write_config(dir.path(), "http://127.0.0.1:9", &database.url)?;
    let text = std::fs::read_to_string(&config_path)?.replace("#housekeep-admin:localhost", ADMIN_ROOM);
    std::fs::write(&config_path, text)?;
    let base = format!("http://127.0.0.1:{}", config.appservice.port);
    let binary = Path::new(env!("CARGO_BIN_EXE_housekeep"));
    let mut housekeep = Housekeep::spawn(binary, &config_path, &base).await?;
    let pid = housekeep.pid().expect("running");
    let http = housekeep::testbed::http();
    let url = |t: usize| format!("{base}/_matrix/app/v1/transactions/{t}");

    let mut steps: Vec<Step> = Vec::new();
    let (mut t, mut rate) = (0usize, first_rate);
    println!(
        "{:<8} {:>10} {:>10} {:>8} {:>8} {:>9}",
        backend.as_str(),
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "RSS MiB"
    );
    loop {
        let interval = Duration::from_secs_f64(EVENTS_PER_TXN as f64 / rate);
        let started = Instant::now();
        let mut latencies = Vec::new();
        let mut next = started;
        while started.elapsed() < step {
            tokio::time::sleep_until(next.into()).await;
            let sent = Instant::now();
            let response =
                http.put(url(t)).bearer_auth(&config.appservice.hs_token).body(transaction(t)).send().await?;
            anyhow::ensure!(response.status().is_success(), "txn {t}: {}", response.status());
            latencies.push(sent.elapsed());
            t += 1;
            // Open loop: the schedule does not wait for slow answers (behind it, send at once).
            next += interval;
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let result = Step {
            offered: rate,
            achieved: (latencies.len() * EVENTS_PER_TXN) as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            rss: rss_mib(pid),
        };
        println!(
            "{:<8} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>9.1}",
            "",
            result.offered,
            result.achieved,
            result.p50.as_secs_f64() * 1e3,
            result.p99.as_secs_f64() * 1e3,
            result.rss
        );
        let saturated = result.p99 > P99_LIMIT || result.achieved < 0.9 * result.offered;
        steps.push(result);
        if saturated || quick {
            break;
        }
        rate *= 1.5;
    }
    let sustained = steps.iter().rfind(|s| s.p99 <= P99_LIMIT && s.achieved >= 0.9 * s.offered);
    let tenfold = steps.iter().find(|s| s.offered >= first_rate * 9.9).map_or_else(
        || format!("10× ({:.0}/s) not reached", first_rate * 10.0),
        |s| format!("{:.1} MiB at {:.0}/s (10×)", s.rss, s.offered),
    );
    match sustained {
        Some(s) => println!(
            "{:<8} sustained {:.0} events/s (p99 {:.1} ms ≤ 100 ms); RSS {:.1} MiB at {first_rate:.0}/s (1×), {tenfold}",
            backend.as_str(),
            s.achieved,
            s.p99.as_secs_f64() * 1e3,
            steps[0].rss,
        ),
        None => println!("{:<8} did not sustain the first rate", backend.as_str()),
    }
    // Every event of every transaction acknowledged is in the index.
    let store = Store::connect(&database.url, Some(2)).await?;
    let indexed = store.summary().await?.events as usize;
    let commands = store.pending_inbox(i64::MAX).await?.len();
    anyhow::ensure!(indexed == t * EVENTS_PER_TXN, "{indexed} indexed of {} acknowledged", t * EVENTS_PER_TXN);
    anyhow::ensure!(commands == t.div_ceil(20), "{commands} commands queued of {}", t.div_ceil(20));
    println!("{:<8} {indexed} events indexed, {commands} commands queued for the bot, none lost", "");
    store.close().await;
    housekeep.sigterm().await?;
    database.drop_database().await
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs this without `--bench`: one short step.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 =
        std::env::var("LOAD_STEP_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick { 1.0 } else { 6.0 });
    let first_rate: f64 = std::env::var("LOAD_FIRST_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(1000.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        run(Backend::Sqlite, Duration::from_secs_f64(seconds), first_rate, quick).await?;
        run(Backend::Postgres, Duration::from_secs_f64(seconds), first_rate, quick).await
    })
}
