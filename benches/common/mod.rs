#![allow(dead_code)]

//! Shared by the moderation benchmarks: the 1,000,000-event index, the
//! timing of a selection, the `main` that runs one part or all, and the
//! spammers seeded on a real Synapse (`cleanup`, `spam_wave`).

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use housekeep::extract::extract_value;
use housekeep::store::{AuditRecord, Backend, EventFilter};
use housekeep::store::{Source, Store};
use housekeep::testbed::{MatrixUser, TestDatabase, Testbed, encode, eventually};
use serde_json::{Value, json};

/// A size from the environment (`BENCH_EVENTS=200`), else `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A fresh database holding 1,000,000 events in 100 rooms (`!room0` …
/// `!room99`) from 5,000 senders (`@u0:hs.example` …), one millisecond apart
/// from 1,700,000,000,000; a tenth of every room's events carry an image
/// (1,000 media references per room).
pub struct MillionEvents {
    pub store: Store,
    pub database: TestDatabase,
    pub load: Duration,
    _dir: tempfile::TempDir,
}

pub const FIRST_TS: i64 = 1_700_000_000_000;

impl MillionEvents {
    pub async fn load(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let database = TestDatabase::create(backend, dir.path()).await?;
        let store = Store::connect(&database.url, None).await?;
        store.migrate().await?;
        let load = load_million(&store, |n| format!("@u{}:hs.example", n % 5000)).await?;
        Ok(Self { store, database, load, _dir: dir })
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        self.store.close().await;
        self.database.drop_database().await
    }
}

/// Writes the million events into `store`, the `n`th sent by `sender(n)`;
/// returns how long it took.
pub async fn load_million(store: &Store, sender: impl Fn(usize) -> String) -> anyhow::Result<Duration> {
    {
        let started = Instant::now();
        for chunk in 0..1000 {
            let batch: Vec<_> = (0..1000)
                .map(|i| {
                    let n = chunk * 1000 + i;
                    let mut content = json!({"msgtype": "m.text", "body": "hello"});
                    if (n / 100) % 10 == 0 {
                        content = json!({"msgtype": "m.image", "body": "p", "url": format!("mxc://hs.example/m{n}")});
                    }
                    let event = json!({"event_id": format!("$e{n}"), "room_id": format!("!room{}", n % 100),
                        "sender": sender(n), "origin_server_ts": FIRST_TS + n as i64,
                        "type": "m.room.message", "content": content});
                    extract_value(&event).expect("valid event")
                })
                .collect();
            store.index_events(&batch, Source::Backfill).await?;
        }
        Ok(started.elapsed())
    }
}

/// Runs a selection 21 times: "`name`: N `unit`, median …, max …".
pub async fn timed(
    name: &str,
    unit: &str,
    mut select: impl AsyncFnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<String> {
    let rows = select().await?;
    let mut runs = Vec::with_capacity(21);
    for _ in 0..21 {
        let started = Instant::now();
        select().await?;
        runs.push(started.elapsed());
    }
    runs.sort();
    Ok(format!(
        "{name}: {rows} {unit}, median {:.2} ms, max {:.2} ms",
        runs[10].as_secs_f64() * 1e3,
        runs[20].as_secs_f64() * 1e3
    ))
}

/// `cargo bench` passes `--bench`; `cargo test --benches` only builds and
/// starts the binary, so without it nothing runs (each part takes minutes).
/// `BENCH_PART=selection|side-by-side` runs one part.
pub fn main_with<S, SF, B, BF>(selection: S, side_by_side: B) -> anyhow::Result<()>
where
    S: Fn(Backend) -> SF,
    SF: Future<Output = anyhow::Result<()>>,
    B: FnOnce() -> BF,
    BF: Future<Output = anyhow::Result<()>>,
{
    main_with_parts(selection, side_by_side, async |_| Ok(()))
}

/// [`main_with`], with a third part per backend (`BENCH_PART=<third_name>`).
pub fn main_with_parts<S, SF, B, BF>(
    selection: S,
    side_by_side: B,
    third: impl AsyncFn(Backend) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    S: Fn(Backend) -> SF,
    SF: Future<Output = anyhow::Result<()>>,
    B: FnOnce() -> BF,
    BF: Future<Output = anyhow::Result<()>>,
{
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let part = std::env::var("BENCH_PART").unwrap_or_default();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        if part.is_empty() || part == "selection" {
            selection(Backend::Sqlite).await?;
            selection(Backend::Postgres).await?;
        }
        if part.is_empty() || part == "side-by-side" {
            side_by_side().await?;
        }
        if part.is_empty() || part == "planning-ack" {
            third(Backend::Sqlite).await?;
            third(Backend::Postgres).await?;
        }
        Ok(())
    })
}

/// Restarts housekeep with `jobs.homeserver_concurrency` at `n`, and waits
/// until it answers in the admin room again: Synapse backs off from an
/// appservice it could not reach.
pub async fn set_homeserver_concurrency(testbed: &mut Testbed, n: usize, admin_room: &str) -> anyhow::Result<()> {
    reconfigure_and_wait(testbed, admin_room, |text| with_homeserver_concurrency(&text, n)).await
}

/// A config's text with `jobs.homeserver_concurrency` at `n`.
pub fn with_homeserver_concurrency(text: &str, n: usize) -> String {
    let setting = regex::Regex::new(r"(?m)^  homeserver_concurrency: \d+\n").expect("a valid pattern");
    let without = setting.replace(text, "");
    without.replacen("\njobs:\n", &format!("\njobs:\n  homeserver_concurrency: {n}\n"), 1)
}

/// Restarts housekeep with its config edited by `edit`, and waits until it
/// answers in the admin room again: Synapse backs off from an appservice it
/// could not reach.
pub async fn reconfigure_and_wait(
    testbed: &mut Testbed,
    admin_room: &str,
    edit: impl FnOnce(String) -> String,
) -> anyhow::Result<()> {
    testbed.reconfigure(edit).await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    for _ in 0..10 {
        let ping = testbed.admin.send_text(admin_room, "!status").await?;
        if testbed.admin.wait_for_reply(admin_room, &ping, &bot).await.is_ok() {
            return Ok(());
        }
    }
    anyhow::bail!("housekeep does not answer after its restart")
}

/// Synapse's own user redaction: `POST /_synapse/admin/v1/user/<user_id>/redact`
/// with `body` (`{"rooms": []}`: every room they are in), then its
/// `redact_status` polled until it is `complete` or `failed`. Returns that
/// last status (`failed_redactions` maps what it could not redact to why).
pub async fn synapse_user_redact(admin: &MatrixUser, user_id: &str, body: Value) -> anyhow::Result<Value> {
    let path = format!("/_synapse/admin/v1/user/{}/redact", encode(user_id));
    let answer = admin.request(reqwest::Method::POST, &path, Some(body)).await?;
    let id = answer["redact_id"].as_str().unwrap_or_default().to_owned();
    let status_path = format!("/_synapse/admin/v1/user/redact_status/{id}");
    eventually(Duration::from_secs(3600), "Synapse's redaction", || async {
        let status = admin.request(reqwest::Method::GET, &status_path, None).await?;
        Ok((status["status"] == "complete" || status["status"] == "failed").then_some(status))
    })
    .await
}

/// How many of `media` `user` can no longer download (404: quarantined).
pub async fn unavailable(user: &MatrixUser, media: &[String]) -> anyhow::Result<usize> {
    let mut count = 0;
    for mxc in media {
        if user.download_status(mxc).await? == 404 {
            count += 1;
        }
    }
    Ok(count)
}

/// What a room's timeline shows redacted of one sender's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redacted {
    /// Redactions in the room, by anyone.
    pub redactions: usize,
    /// The sender's messages (`m.room.message`) shown redacted.
    pub messages: usize,
    /// Their other events shown redacted (joins, for Synapse's user redact).
    pub others: usize,
}

impl Redacted {
    pub fn of(timeline: &[Value], sender: &str) -> Self {
        let mut counts = Self::default();
        for event in timeline {
            if event["type"] == "m.room.redaction" {
                counts.redactions += 1;
            } else if event["sender"] == sender && event["unsigned"]["redacted_because"].is_object() {
                if event["type"] == "m.room.message" {
                    counts.messages += 1;
                } else {
                    counts.others += 1;
                }
            }
        }
        counts
    }

    pub fn add(&mut self, other: Self) {
        self.redactions += other.redactions;
        self.messages += other.messages;
        self.others += other.others;
    }
}

/// One room in this many of a seeded spammer's is their own.
pub const OWN_EVERY: usize = 10;

/// What a spammer is seeded with.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rooms: usize,
    pub messages: usize,
    pub images: usize,
}

impl Shape {
    /// `BENCH_ROOMS` (default 100), `BENCH_MESSAGES` (default 1,000),
    /// `BENCH_IMAGES` (default 100).
    pub fn from_env() -> Self {
        Self::from_env_prefixed("BENCH", 100, 1_000, 100)
    }

    /// `<prefix>_ROOMS`, `<prefix>_MESSAGES`, `<prefix>_IMAGES`, else these defaults.
    pub fn from_env_prefixed(prefix: &str, rooms: usize, messages: usize, images: usize) -> Self {
        let messages = env(&format!("{prefix}_MESSAGES"), messages);
        Self {
            rooms: env(&format!("{prefix}_ROOMS"), rooms).max(1),
            messages,
            images: env(&format!("{prefix}_IMAGES"), images).min(messages),
        }
    }

    /// The rooms that are the spammer's own.
    pub fn own(self) -> usize {
        self.rooms.div_ceil(OWN_EVERY)
    }

    /// The messages of room `room`: message `n` goes to room `n % rooms`,
    /// and is image `n` if there is one.
    fn messages_of(self, room: usize) -> impl Iterator<Item = usize> {
        (room..self.messages).step_by(self.rooms)
    }
}

/// A seeded spammer: their rooms, the media they uploaded and posted, and
/// every message they sent.
pub struct Spammer {
    pub user: MatrixUser,
    pub rooms: Vec<String>,
    pub media: Vec<String>,
    pub sent: Vec<Sent>,
}

/// One message of a seeded spammer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub room: String,
    pub event_id: String,
    /// In a room of the spammer's own (where nobody else has power over it).
    pub own_room: bool,
}

/// Registers `localpart` and seeds them with `shape`, `concurrency` rooms at
/// once: each public, one in [`OWN_EVERY`] their own (they created it:
/// housekeep's bot has no power there and redacts as the sender, as with a
/// real spammer's rooms), the others created by `alice`, who gives the bot
/// power 100 (the spammer joins); `alice` joins the spammer's own (she is
/// the one who downloads their media afterwards). The images are uploads
/// of their own, one per room first.
pub async fn seed(
    testbed: &Testbed,
    alice: &MatrixUser,
    localpart: &str,
    shape: Shape,
    concurrency: usize,
) -> anyhow::Result<Spammer> {
    let spammer = &testbed.synapse.register_user(localpart, false).await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    // Synapse quarantines by content hash: bytes of this spammer's own.
    let media: &Vec<String> = &futures::stream::iter(0..shape.images)
        .map(|i| {
            let bytes = format!("{} spam picture {i} {}", spammer.user_id, rand::random::<u64>()).into_bytes();
            spammer.upload(bytes, "image/png", "deal.png")
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    // The creator is not listed: room version 12 gives creators every power.
    let mut levels = serde_json::Map::new();
    levels.insert(bot, json!(100));
    let alices = &json!({"preset": "public_chat", "power_level_content_override": {"users": levels}});
    let rooms: Vec<(String, Vec<Sent>)> = futures::stream::iter(0..shape.rooms)
        .map(|r| async move {
            let own_room = r % OWN_EVERY == 0;
            let room = if own_room {
                let room = spammer.create_room(json!({"preset": "public_chat"})).await?;
                alice.join(&room).await?;
                room
            } else {
                let room = alice.create_room(alices.clone()).await?;
                spammer.join(&room).await?;
                room
            };
            let mut sent = Vec::new();
            for n in shape.messages_of(r) {
                let event_id = match media.get(n) {
                    Some(mxc) => {
                        let image = json!({"msgtype": "m.image", "body": "deal.png", "url": mxc});
                        spammer.send(&room, "m.room.message", image).await?
                    }
                    None => spammer.send_text(&room, &format!("cheap watches {n}")).await?,
                };
                sent.push(Sent { room: room.clone(), event_id, own_room });
            }
            anyhow::Ok((room, sent))
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let (rooms, sent): (Vec<String>, Vec<Vec<Sent>>) = rooms.into_iter().unzip();
    Ok(Spammer { user: spammer.clone(), rooms, media: media.clone(), sent: sent.concat() })
}

/// Waits until the index holds all `messages` of `user_id`.
pub async fn indexed(store: &Store, user_id: &str, messages: usize) -> anyhow::Result<()> {
    let filter = EventFilter { senders: vec![user_id.to_owned()], ..EventFilter::default() };
    eventually(Duration::from_secs(600), "the index to hold the spammer's messages", || async {
        Ok((store.event_selection_stats(&filter).await?.events >= messages as i64).then_some(()))
    })
    .await
}

/// What `alice` is shown redacted of the spammer's events, over all their rooms.
pub async fn redacted(alice: &MatrixUser, spammer: &Spammer) -> anyhow::Result<Redacted> {
    let mut total = Redacted::default();
    for room in &spammer.rooms {
        total.add(Redacted::of(&alice.room_timeline(room).await?, &spammer.user.user_id));
    }
    Ok(total)
}

/// An event's `origin_server_ts`, as Synapse stamped it.
pub async fn sent_at(user: &MatrixUser, room: &str, event_id: &str) -> anyhow::Result<i64> {
    let path = format!("/_matrix/client/v3/rooms/{}/event/{}", encode(room), encode(event_id));
    let event = user.request(reqwest::Method::GET, &path, None).await?;
    event["origin_server_ts"].as_i64().ok_or_else(|| anyhow::anyhow!("no origin_server_ts in {event}"))
}

/// The first and last audit time (ms) of `action`: the commits of the
/// batches that did it.
pub fn span(audit: &[AuditRecord], action: &str) -> Option<(i64, i64)> {
    let times = audit.iter().filter(|r| r.entry.action == action).map(|r| r.ts);
    Some((times.clone().min()?, times.max()?))
}

pub fn count(value: &Value) -> i64 {
    value.as_i64().unwrap_or_default()
}

/// What a finished cleanup job's tally says: events purged, media
/// quarantined, and the redactions by housekeep's bot and as the sender.
pub fn cleanup_counts(job: &housekeep::store::Job) -> (i64, i64, [i64; 2]) {
    let tally = job.tally.clone().unwrap_or_default();
    let purge = &tally["purge"];
    let mut ways = [0; 2];
    for room in purge["ways"].as_object().into_iter().flat_map(|rooms| rooms.values()) {
        ways[0] += count(&room["redacted_by_housekeep"]);
        ways[1] += count(&room["redacted_as_sender"]);
    }
    (count(&purge["purged"]), count(&purge["media_quarantined"]), ways)
}
