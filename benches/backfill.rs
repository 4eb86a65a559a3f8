//! Backfill and the media worker against a real Synapse (SQLite index).
//!
//! - `BENCH_PART=download`: 1,000 attachments (`BENCH_MEDIA`) downloaded and
//!   hashed through a local proxy that adds 200 ms to each download, with 32
//!   downloads at once against one at a time (goal: ≥ 20× faster).
//! - `BENCH_PART=side_by_side`: `!backfill --all` over a server of 100 rooms
//!   × 200 events (`BENCH_ROOMS`, `BENCH_ROOM_EVENTS`) with
//!   `backfill.parallel_rooms` at 4 and at 1, beside Synapse's own admin
//!   pagination of the same rooms (the same requests, 4 rooms at a time: the
//!   ceiling; 1 at a time; and 4 at a time downloading the rooms' media as
//!   housekeep does), `BENCH_ROUNDS` times (default 2): events/s from the
//!   command to the job's end, housekeep's peak RSS, how much of a core
//!   Synapse and housekeep were busy, and how many of the media were
//!   downloaded by the walk's end (goals: ≥ 0.8× the ceiling, ≥ 3× one room
//!   at a time, RSS < 150 MB).
//! - `BENCH_PART=big_room`: `!backfill <room>` of one room of 100,000 events
//!   (`BENCH_BIG_ROOM_EVENTS`) beside Synapse's pagination of it alone
//!   (without and with its media), `BENCH_ROUNDS` times: events/s and peak
//!   RSS (goal < 150 MB).
//! - `BENCH_PART=blocklist`: time from a blocklisted file being posted to
//!   its quarantine (goal < 5 s), 10 times.
//!
//! `cargo bench --bench backfill` runs all four. The servers of
//! `side_by_side` and `big_room` are written once and kept under
//! `.cache/bench-fixtures/synapse-<version>/`, named by their size and `FIXTURE_VERSION`;
//! each run starts a fresh copy. Synapse writes about 80 events/s on this
//! machine idle and 11–13 with other builds running: the 100 rooms took 29
//! minutes to write, the big room hours. `BENCH_SEED_ONLY=1` only writes the
//! ones missing (e.g. with `nohup`, while the release binary builds).
//! A plain `cargo bench --bench backfill` (or `BENCH_SEED_ONLY=1` without
//! `BENCH_PART`) writes the big room's fixture too: hours the first time;
//! `BENCH_BIG_ROOM_EVENTS=20000` writes a smaller one. `BENCH_LATENCY_MS`
//! (default 50; 0 skips it) runs `side_by_side` again with each request to
//! Synapse held back that long. `BENCH_KEEP=1` keeps each housekeep run's
//! folder (its log, Synapse's).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use futures::{StreamExt, TryStreamExt};
use housekeep::clock;
use housekeep::extract::extract_value;
use housekeep::homeserver::HomeserverClient;
use housekeep::jobs::Services;
use housekeep::media::{FetchConfig, MediaFetcher};
use housekeep::metrics::Metrics;
use housekeep::store::Backend;
use housekeep::store::Source;
use housekeep::testbed::{MatrixUser, Synapse, SynapseFixture, Testbed, eventually};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_housekeep"))
}

/// A link to Synapse that holds each request `delay` before forwarding it:
/// a homeserver a network away, or a slow one. Its target is set once
/// Synapse has started ([`edit`](Self::edit) or [`to`](Self::to)).
struct SlowLink {
    url: String,
    target: Arc<OnceLock<String>>,
    serve: tokio::task::JoinHandle<()>,
}

type LinkState = (reqwest::Client, Arc<OnceLock<String>>, Duration);

impl SlowLink {
    async fn start(delay: Duration) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let target = Arc::new(OnceLock::new());
        let state: LinkState = (housekeep::testbed::http(), target.clone(), delay);
        let app = axum::Router::new().fallback(forward_late).with_state(state);
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, target, serve })
    }

    fn to(self, synapse: &str) -> Self {
        let _ = self.target.set(synapse.to_owned());
        self
    }

    /// housekeep's config (`text`) pointed at this link instead of at Synapse.
    fn edit(&self, text: String) -> String {
        let line = regex::Regex::new(r"(?m)^  url: (http://127\.0\.0\.1:\d+)$").expect("a valid pattern");
        let synapse = line.captures(&text).expect("homeserver.url in the config")[1].to_owned();
        let _ = self.target.set(synapse.clone());
        text.replacen(&format!("  url: {synapse}\n"), &format!("  url: {}\n", self.url), 1)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

async fn forward_late(State((http, target, delay)): State<LinkState>, request: axum::extract::Request) -> Response {
    use axum::http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
    let fail = |status: u16| Response::builder().status(status).body(Body::empty()).expect("a response");
    tokio::time::sleep(delay).await;
    let Some(target) = target.get() else { return fail(502) };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else { return fail(400) };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = http.request(parts.method, format!("{target}{path}")).body(body);
    for (name, value) in &parts.headers {
        if name != HOST && name != CONTENT_LENGTH {
            forward = forward.header(name, value);
        }
    }
    let Ok(answer) = forward.send().await else { return fail(502) };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if ![CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING].contains(name) {
            response = response.header(name, value);
        }
    }
    response.body(Body::from_stream(answer.bytes_stream())).expect("a response")
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

    // Every download 200 ms late.
    let link = SlowLink::start(Duration::from_millis(200)).await?.to(&testbed.synapse.url);
    let services = Services {
        store: store.clone(),
        homeserver: HomeserverClient::new(link.url.parse()?, testbed.config.appservice.as_token.clone())?,
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

/// Parameters of the fixtures: a new version whenever what they hold changes.
const FIXTURE_VERSION: u32 = 1;

/// What a fixture's writer sent, as the homeserver's admin API lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Written {
    rooms: Vec<String>,
    /// Events in those rooms.
    events: usize,
    /// Media uploaded and referenced (images, avatars).
    media: usize,
}

type Fixture = SynapseFixture<Written>;

/// Bytes of one upload, 4 to 48 KiB like a small picture; distinct per
/// upload, as Synapse quarantines by hash.
fn picture() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(rand::random_range(4096..49_152), 0);
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes[8..]);
    bytes
}

/// Sends `count` messages into `room`, `writers` in turn: mostly plain
/// text, one in ten with HTML, one in `image_every` an image of its own
/// upload, now and then a reaction to the message before. Returns how
/// many images it uploaded.
async fn write_messages(writers: &[MatrixUser], room: &str, count: usize, image_every: usize) -> anyhow::Result<usize> {
    let (mut images, mut last) = (0, None::<String>);
    for n in 0..count {
        let writer = &writers[n % writers.len()];
        let event_id = match (n % image_every, n % 25, &last) {
            (7, _, _) => {
                let bytes = picture();
                let size = bytes.len();
                let mxc = writer.upload(bytes, "image/png", "photo.png").await?;
                images += 1;
                let content = json!({"msgtype": "m.image", "body": "photo.png", "url": mxc,
                    "info": {"mimetype": "image/png", "size": size, "w": 640, "h": 480}});
                writer.send(room, "m.room.message", content).await?
            }
            (_, 3, Some(target)) => writer.react(room, target, "👍").await?,
            _ if n % 10 == 5 => {
                let content = json!({"msgtype": "m.text", "body": format!("see *this* ({n})"),
                    "format": "org.matrix.custom.html", "formatted_body": format!("see <em>this</em> ({n})")});
                writer.send(room, "m.room.message", content).await?
            }
            _ => writer.send_text(room, &format!("message {n}: a few words of ordinary chat about the day")).await?,
        };
        last = Some(event_id);
    }
    Ok(images)
}

/// Every event of `rooms`, counted through the admin API.
async fn count_events(synapse: &Synapse, admin: &MatrixUser, rooms: &[String]) -> anyhow::Result<usize> {
    let client = HomeserverClient::new(synapse.url.parse()?, admin.access_token.clone())?;
    let mut total = 0;
    for room in rooms {
        total += walk_room(&client, room, None).await?.0;
    }
    Ok(total)
}

/// Users who write the history, each with an avatar of their own (so
/// their member events reference media).
async fn register_writers(synapse: &Synapse, count: usize) -> anyhow::Result<Vec<MatrixUser>> {
    let mut writers = Vec::with_capacity(count);
    for n in 0..count {
        let user = synapse.register_user(&format!("writer{n}"), false).await?;
        let avatar = user.upload(picture(), "image/png", "me.png").await?;
        user.set_avatar(&avatar).await?;
        writers.push(user);
    }
    Ok(writers)
}

/// `rooms` rooms of about `events` events each: each created by one of 20
/// writers and joined by three more, who write its messages (one in 20 an
/// image). Eight rooms are written at once.
async fn side_by_side_fixture(rooms: usize, events: usize) -> anyhow::Result<Fixture> {
    let name = format!("backfill-{rooms}x{events}-v{FIXTURE_VERSION}");
    Fixture::cached(&name, async |synapse, admin| {
        let writers = &register_writers(synapse, 20).await?;
        let started = Instant::now();
        let written: Vec<(String, usize)> = futures::stream::iter(0..rooms)
            .map(|r| async move {
                let members: Vec<MatrixUser> = (0..4).map(|m| writers[(r + m) % writers.len()].clone()).collect();
                let room =
                    members[0].create_room(json!({"name": format!("room {r}"), "preset": "public_chat"})).await?;
                for member in &members[1..] {
                    member.join(&room).await?;
                }
                // The creation's state events and the joins are about ten.
                let images = write_messages(&members, &room, events.saturating_sub(10), 20).await?;
                anyhow::Ok((room, images))
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let (rooms, images): (Vec<String>, Vec<usize>) = written.into_iter().unzip();
        let events = count_events(synapse, admin, &rooms).await?;
        println!(
            "side_by_side: Synapse wrote {} rooms, {events} events in {:.0?} ({:.0} events/s)",
            rooms.len(),
            started.elapsed(),
            events as f64 / started.elapsed().as_secs_f64()
        );
        Ok(Written { rooms, events, media: images.iter().sum::<usize>() + writers.len() })
    })
    .await
}

/// One room of about `events` events by eight writers at once (one in 50 an image).
async fn big_room_fixture(events: usize) -> anyhow::Result<Fixture> {
    let name = format!("backfill-big-room-{events}-v{FIXTURE_VERSION}");
    Fixture::cached(&name, async |synapse, admin| {
        let writers = register_writers(synapse, 8).await?;
        let room = admin.create_room(json!({"name": "big", "preset": "public_chat"})).await?;
        for writer in &writers {
            writer.join(&room).await?;
        }
        let started = Instant::now();
        let per_writer = events.saturating_sub(10).div_ceil(writers.len());
        let images: Vec<usize> = futures::future::try_join_all(
            writers.iter().map(|writer| write_messages(std::slice::from_ref(writer), &room, per_writer, 50)),
        )
        .await?;
        let events = count_events(synapse, admin, std::slice::from_ref(&room)).await?;
        println!(
            "big_room: Synapse wrote {events} events into one room in {:.0?} ({:.0} events/s with 8 writers)",
            started.elapsed(),
            events as f64 / started.elapsed().as_secs_f64()
        );
        Ok(Written { rooms: vec![room], events, media: images.iter().sum::<usize>() + writers.len() })
    })
    .await
}

/// One room's history read through the admin API as housekeep reads it
/// (`admin_room_messages`, newest first, pages of 1,000, until the answer
/// has no `end`): its events and pages. With `media`, each page's media not
/// downloaded yet is downloaded (the bytes read and dropped) before the
/// next page, as housekeep downloads a chunk's before its checkpoint.
async fn walk_room(client: &HomeserverClient, room: &str, media: Option<&Downloads>) -> anyhow::Result<(usize, usize)> {
    let (mut from, mut events, mut pages) = (None::<String>, 0, 0);
    loop {
        let page = client.admin_room_messages(room, from.as_deref(), PAGE).await?;
        pages += 1;
        events += page.chunk.len();
        if let Some(media) = media {
            media.of_page(client, room, &page.chunk).await?;
        }
        match page.end {
            Some(end) if !page.chunk.is_empty() => from = Some(end),
            _ => return Ok((events, pages)),
        }
    }
}

/// Events per page, as housekeep asks (`backfill::kind::PAGE_SIZE`).
const PAGE: u32 = 1000;

/// Media downloads beside the pagination: each media once, at most 32 at
/// once over every room (housekeep's `media.download_concurrency`).
struct Downloads {
    seen: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    slots: tokio::sync::Semaphore,
}

impl Downloads {
    fn new() -> Self {
        Self { seen: Default::default(), slots: tokio::sync::Semaphore::new(32) }
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("not poisoned").len()
    }

    async fn of_page(&self, client: &HomeserverClient, room: &str, chunk: &[serde_json::Value]) -> anyhow::Result<()> {
        let mut due = Vec::new();
        for event in chunk {
            let mut event = event.clone();
            event["room_id"] = json!(room);
            let Ok(rows) = extract_value(&event) else { continue };
            let mut seen = self.seen.lock().expect("not poisoned");
            for media in rows.media {
                if seen.insert((media.server_name.clone(), media.media_id.clone())) {
                    due.push(media);
                }
            }
        }
        futures::future::try_join_all(due.iter().map(|media| async move {
            let _slot = self.slots.acquire().await?;
            let response = client.download_media(&media.server_name, &media.media_id, Duration::from_secs(60)).await?;
            response.bytes().await?;
            anyhow::Ok(())
        }))
        .await?;
        Ok(())
    }
}

/// CPU time a process has used so far (user + system, all its threads), from /proc.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(stat) = pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()) else {
        return 0.0;
    };
    // After the command name in parentheses (which may hold spaces): utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    // USER_HZ: 100 on Linux everywhere this runs.
    ticks as f64 / 100.0
}

/// What Synapse alone served.
struct Alone {
    events: usize,
    pages: usize,
    media: usize,
    elapsed: Duration,
    /// CPU seconds Synapse used meanwhile.
    synapse_cpu: f64,
}

impl Alone {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn describe(&self) -> String {
        let media = if self.media > 0 { format!(" and {} media", self.media) } else { String::new() };
        format!(
            "{} events{media} in {:.1?} = {:.0} events/s ({} pages; Synapse used {:.1} s of CPU, {:.0}% of one core)",
            self.events,
            self.elapsed,
            self.rate(),
            self.pages,
            self.synapse_cpu,
            100.0 * self.synapse_cpu / self.elapsed.as_secs_f64()
        )
    }
}

/// The ceiling: a fresh copy of the fixture, and the bench itself reading
/// every room's history (`rooms`; `None`: every room the homeserver lists,
/// as `!backfill --all` does) with the bot's token, `at_once` rooms at a
/// time, doing nothing with the events; `with_media`: downloading their
/// media too; `delay`: each request that late. housekeep runs beside it, idle.
async fn synapse_alone(
    fixture: &Fixture,
    rooms: Option<&[String]>,
    at_once: usize,
    with_media: bool,
    delay: Option<Duration>,
) -> anyhow::Result<Alone> {
    let testbed = Testbed::start_from_fixture(Backend::Sqlite, binary(), fixture, |text| text).await?;
    testbed.make_bot_admin().await?;
    let link = match delay {
        Some(delay) => Some(SlowLink::start(delay).await?.to(&testbed.synapse.url)),
        None => None,
    };
    let url = link.as_ref().map_or(&testbed.synapse.url, |link| &link.url);
    let client = HomeserverClient::new(url.parse()?, testbed.config.appservice.as_token.clone())?;
    let downloads = with_media.then(Downloads::new);
    let cpu_before = cpu_seconds(testbed.synapse.pid());
    let started = Instant::now();
    let rooms = match rooms {
        Some(rooms) => rooms.to_vec(),
        None => {
            let (mut rooms, mut from) = (Vec::new(), Some(0));
            while let Some(at) = from {
                let (page, next) = client.admin_rooms_page(at, 500).await?;
                rooms.extend(page.into_iter().map(|room| room.room_id));
                from = next;
            }
            rooms
        }
    };
    let walks: Vec<(usize, usize)> = futures::stream::iter(&rooms)
        .map(|room| walk_room(&client, room, downloads.as_ref()))
        .buffer_unordered(at_once)
        .try_collect()
        .await?;
    let elapsed = started.elapsed();
    let synapse_cpu = cpu_seconds(testbed.synapse.pid()) - cpu_before;
    testbed.shutdown().await?;
    Ok(Alone {
        events: walks.iter().map(|w| w.0).sum(),
        pages: walks.iter().map(|w| w.1).sum(),
        media: downloads.as_ref().map_or(0, Downloads::count),
        elapsed,
        synapse_cpu,
    })
}

/// What a backfill by housekeep did.
struct Run {
    events: i64,
    pages: i64,
    batches: i64,
    /// From the command sent to the job done.
    elapsed: Duration,
    /// Peak RSS of housekeep's process (kB).
    rss_kb: u64,
    /// Events indexed before the command (the admin room's: Synapse sent none of the history).
    before: i64,
    /// CPU seconds housekeep and Synapse used from the command to the job's end.
    housekeep_cpu: f64,
    synapse_cpu: f64,
    media: MediaOverlap,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Whether media downloads ran during the walk.
struct MediaOverlap {
    queued: i64,
    /// Fetched and hashed when the job was done.
    fetched_at_end: i64,
    /// The first and the last download's end, from the command (s).
    first: Option<f64>,
    last: Option<f64>,
}

/// A fresh copy of the fixture, housekeep with `backfill.parallel_rooms`
/// at `parallel`, `command` sent in the admin room, timed until the job is
/// done; `delay`: every request housekeep makes to Synapse that late.
async fn housekeep_backfill(
    fixture: &Fixture,
    parallel: u32,
    command: &str,
    delay: Option<Duration>,
) -> anyhow::Result<Run> {
    let link = match delay {
        Some(delay) => Some(SlowLink::start(delay).await?),
        None => None,
    };
    let testbed = Testbed::start_from_fixture(Backend::Sqlite, binary(), fixture, |text| {
        let text = text.replace("parallel_rooms: 4", &format!("parallel_rooms: {parallel}"));
        match &link {
            Some(link) => link.edit(text),
            None => text,
        }
    })
    .await?;
    let mut testbed = testbed;
    if env("BENCH_KEEP", 0) == 1 {
        println!("(kept: {})", testbed.keep_dir().display());
    }
    testbed.make_bot_admin().await?;
    let admin_room = testbed.admin_room().await?;
    // Synapse backs off from an appservice it could not reach (it tried
    // with the admin room's invite before housekeep ran): a command answered
    // first shows it delivers again, so the timing below is the backfill's,
    // not Synapse's wait before its next try (a second, seen here).
    let bot = testbed.config.bot_user_id()?.to_string();
    let status = testbed.admin.send_text(&admin_room, "!status").await?;
    testbed.admin.wait_for_reply(&admin_room, &status, &bot).await?;
    let store = testbed.store().await?;
    let count =
        async |sql: &'static str| -> anyhow::Result<i64> { Ok(sqlx::query_scalar(sql).fetch_one(store.pool()).await?) };
    let before = count("SELECT COUNT(*) FROM events").await?;
    let (pids, cpu) = ((testbed.housekeep.pid(), testbed.synapse.pid()), |pid| cpu_seconds(pid));
    let cpu_before = (cpu(pids.0), cpu(pids.1));
    let sent = clock::now_ms();
    let started = Instant::now();
    testbed.admin.send_text(&admin_room, command).await?;
    // Polled often: the figure is the time to the job's end, not to a poll.
    let job = loop {
        if let Some(job) = store.recent_jobs_of_kind("backfill", 1).await?.into_iter().next()
            && job.state.is_final()
        {
            break job;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(7200), "the backfill did not end in two hours");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    let (housekeep_cpu, synapse_cpu) = (cpu(pids.0) - cpu_before.0, cpu(pids.1) - cpu_before.1);
    let rss_kb = testbed.housekeep.pid().and_then(peak_rss_kb).unwrap_or(0);
    anyhow::ensure!(job.state.as_str() == "done", "the backfill ended {}: {:?}", job.state.as_str(), job.error);
    let fetched_at_end = count("SELECT COUNT(*) FROM media WHERE fetch_state = 'fetched'").await?;
    let queued = count("SELECT COUNT(*) FROM media").await?;
    // The rest of the downloads, if the walk left any to the media worker.
    eventually(Duration::from_secs(600), "every download", || async {
        Ok((count("SELECT COUNT(*) FROM media WHERE fetch_state IN ('queued', 'failed')").await? == 0).then_some(()))
    })
    .await?;
    let (first, last): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT MIN(fetched_at), MAX(fetched_at) FROM media").fetch_one(store.pool()).await?;
    let tally = job.tally.clone().unwrap_or_default();
    let since = |at: Option<i64>| at.map(|at| (at - sent) as f64 / 1000.0);
    let run = Run {
        events: tally["events"].as_i64().unwrap_or_default(),
        pages: tally["pages"].as_i64().unwrap_or_default(),
        batches: job.batches,
        elapsed,
        rss_kb,
        before,
        housekeep_cpu,
        synapse_cpu,
        media: MediaOverlap { queued, fetched_at_end, first: since(first), last: since(last) },
    };
    store.close().await;
    testbed.shutdown().await?;
    Ok(run)
}

fn describe(run: &Run) -> String {
    let media = &run.media;
    let span = match (media.first, media.last) {
        (Some(first), Some(last)) => format!(", downloads ended between +{first:.1} s and +{last:.1} s"),
        _ => String::new(),
    };
    let busy = |cpu: f64| 100.0 * cpu / run.elapsed.as_secs_f64();
    format!(
        "{} events in {:.1?} = {:.0} events/s; peak RSS {:.0} MB; {} pages, {} batches; CPU: Synapse {:.1} s ({:.0}% of one core), housekeep {:.1} s ({:.0}%); media {}/{} fetched when the job ended{span}; {} events indexed before",
        run.events,
        run.elapsed,
        run.rate(),
        run.rss_kb as f64 / 1024.0,
        run.pages,
        run.batches,
        run.synapse_cpu,
        busy(run.synapse_cpu),
        run.housekeep_cpu,
        busy(run.housekeep_cpu),
        media.fetched_at_end,
        media.queued,
        run.before
    )
}

/// `!backfill --all` over the 100-room fixture at 4 rooms at once and at
/// 1, beside Synapse's own pagination at 4 and at 1 (and at 4 with the
/// media), `rounds` times; then the same with every request to Synapse
/// `BENCH_LATENCY_MS` late (default 50; 0: not run).
async fn side_by_side(rooms: usize, events: usize, rounds: usize, seed_only: bool) -> anyhow::Result<()> {
    let fixture = side_by_side_fixture(rooms, events).await?;
    let written = &fixture.data;
    println!(
        "side_by_side: fixture {} ({} rooms, {} events, {} media; written once in {:.0?})",
        fixture.dir.display(),
        written.rooms.len(),
        written.events,
        written.media,
        fixture.written_in
    );
    if seed_only {
        return Ok(());
    }
    for round in 1..=rounds {
        side_by_side_round(&fixture, &format!("side_by_side {round}"), None).await?;
    }
    let latency = env("BENCH_LATENCY_MS", 50) as u64;
    if latency > 0 {
        for round in 1..=rounds {
            let label = format!("side_by_side, {latency} ms late, {round}");
            side_by_side_round(&fixture, &label, Some(Duration::from_millis(latency))).await?;
        }
    }
    Ok(())
}

async fn side_by_side_round(fixture: &Fixture, label: &str, delay: Option<Duration>) -> anyhow::Result<()> {
    let ceiling = synapse_alone(fixture, None, 4, false, delay).await?;
    println!("{label}: Synapse alone, 4 rooms at once: {} (the ceiling)", ceiling.describe());
    let four = housekeep_backfill(fixture, 4, "!backfill --all", delay).await?;
    println!("{label}: housekeep, parallel_rooms 4: {}", describe(&four));
    let one = housekeep_backfill(fixture, 1, "!backfill --all", delay).await?;
    println!("{label}: housekeep, parallel_rooms 1: {}", describe(&one));
    let alone_one = synapse_alone(fixture, None, 1, false, delay).await?;
    println!("{label}: Synapse alone, 1 room at a time: {}", alone_one.describe());
    let with_media = synapse_alone(fixture, None, 4, true, delay).await?;
    println!("{label}: Synapse alone, 4 rooms at once, with their media: {}", with_media.describe());
    println!(
        "{label}: housekeep at 4 = {:.2}x the ceiling (goal >= 0.8x; {:.2}x Synapse alone with the media), \
         {:.2}x itself at 1 (goal >= 3x; Synapse alone at 4 = {:.2}x at 1); peak RSS {:.0} MB (goal < 150 MB)",
        four.rate() / ceiling.rate(),
        four.rate() / with_media.rate(),
        four.rate() / one.rate(),
        ceiling.rate() / alone_one.rate(),
        four.rss_kb.max(one.rss_kb) as f64 / 1024.0
    );
    Ok(())
}

/// `!backfill <room>` of the one-room fixture beside Synapse's own
/// pagination of that room, `rounds` times.
async fn big_room(events: usize, rounds: usize, seed_only: bool) -> anyhow::Result<()> {
    let fixture = big_room_fixture(events).await?;
    let room = fixture.data.rooms[0].clone();
    println!(
        "big_room: fixture {} ({} events, {} media; written once in {:.0?})",
        fixture.dir.display(),
        fixture.data.events,
        fixture.data.media,
        fixture.written_in
    );
    if seed_only {
        return Ok(());
    }
    for round in 1..=rounds {
        let alone = synapse_alone(&fixture, Some(std::slice::from_ref(&room)), 1, false, None).await?;
        println!("big_room {round}: Synapse alone: {}", alone.describe());
        let with_media = synapse_alone(&fixture, Some(std::slice::from_ref(&room)), 1, true, None).await?;
        println!("big_room {round}: Synapse alone, with the media: {}", with_media.describe());
        let run = housekeep_backfill(&fixture, 4, &format!("!backfill {room}"), None).await?;
        println!("big_room {round}: housekeep: {}", describe(&run));
        println!(
            "big_room {round}: housekeep = {:.2}x Synapse alone ({:.2}x with the media); peak RSS {:.0} MB (goal < 150 MB)",
            run.rate() / alone.rate(),
            run.rate() / with_media.rate(),
            run.rss_kb as f64 / 1024.0
        );
    }
    Ok(())
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
    let (rounds, seed_only) = (env("BENCH_ROUNDS", 2), env("BENCH_SEED_ONLY", 0) == 1);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        if (part.is_empty() && !seed_only) || part == "download" {
            download(env("BENCH_MEDIA", 1000)).await?;
        }
        if part.is_empty() || part == "side_by_side" {
            side_by_side(env("BENCH_ROOMS", 100), env("BENCH_ROOM_EVENTS", 200), rounds, seed_only).await?;
        }
        if part.is_empty() || part == "big_room" {
            big_room(env("BENCH_BIG_ROOM_EVENTS", 100_000), rounds, seed_only).await?;
        }
        if seed_only {
            return Ok(());
        }
        if part.is_empty() || part == "blocklist" {
            blocklist(10).await?;
        }
        Ok(())
    })
}
