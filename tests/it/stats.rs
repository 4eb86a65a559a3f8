//! Stats: Synapse's phone-home reports into housekeep (a real Synapse with
//! `report_stats: true`), what bad reports get, `!stats` with its chart,
//! and scheduled summaries across a restart.
//!
//! Through Synapse, so once, on PostgreSQL (see `tests!`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use housekeep::config::Schedule;
use housekeep::metrics::Metrics;
use housekeep::notice::{Destination, Image, Notice, Sink};
use housekeep::stats::post::{Scheduled, Scheduler};
use housekeep::store::Store;
use housekeep::testbed::{TestDatabase, Testbed, eventually};
use serde_json::{Value, json};

use crate::common::{Backend, command_reply, field, finish, housekeep_binary, with_testbed};

tests! {
    postgres: [
        synapse_reports_are_stored_once_and_summarized_with_a_chart,
        bad_reports_get_the_right_status_and_store_nothing,
        scheduled_summaries_post_once_per_period_across_a_restart,
    ],
}

/// Runs `housekeep stats-endpoint` as an operator would; returns the endpoint URL.
pub fn stats_endpoint(testbed: &Testbed) -> anyhow::Result<String> {
    let output = std::process::Command::new(housekeep_binary())
        .args(["stats-endpoint", "-c"])
        .arg(&testbed.config_path)
        .env_remove("RUST_LOG")
        .output()?;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout)?;
    assert!(stdout.contains("report_stats: true"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("report_stats_endpoint:")).expect("the endpoint line");
    Ok(line.trim_start_matches("report_stats_endpoint:").trim().trim_matches('"').to_owned())
}

async fn synapse_reports_are_stored_once_and_summarized_with_a_chart(backend: Backend) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        let endpoint = stats_endpoint(&testbed)?;
        testbed.housekeep.restart().await?; // it reads the new secret
        for name in ["alice", "bob"] {
            testbed.synapse.register_user(name, false).await?;
        }
        let extra = format!("report_stats: true\nreport_stats_endpoint: \"{endpoint}\"\n");
        testbed.synapse.reconfigure(&extra).await?;
        let store = testbed.store().await?;
        let report = eventually(Duration::from_secs(60), "a phone-home report", || async {
            Ok(store.stats_reports(0, i64::MAX / 1000, &["localhost"]).await?.into_iter().next())
        })
        .await?;
        let fields: Value = serde_json::from_str(&report.raw)?;
        let users = testbed.admin.request(reqwest::Method::GET, "/_synapse/admin/v2/users?limit=100", None).await?;
        // @admin, @alice, @bob and the bot (appservice users are counted, as "bridged").
        assert_eq!(fields["total_users"], 4, "every user the test registered: {fields}");
        assert_eq!(fields["total_users"], users["total"], "as Synapse's admin API counts them");
        assert_eq!(fields["homeserver"], "localhost");
        assert!(report.received_at > 0 && report.report_ts > 0);

        // The same report again (a resend): stored once.
        let http = housekeep::testbed::http();
        let again = http.put(&endpoint).body(report.raw.clone()).send().await?;
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await?, json!({"stored": false, "outcome": "duplicate"}));
        let stored = store.stats_reports(0, i64::MAX / 1000, &["localhost"]).await?;
        assert_eq!(stored.iter().filter(|r| r.report_ts == report.report_ts).count(), 1);

        // !stats: the summary with the report's figures, then its chart.
        let admin_room = testbed.admin_room().await?;
        let summary = command_reply(&testbed, &admin_room, "!stats --days 2", 1).await?;
        assert!(summary.contains("localhost (Synapse's phone-home"), "{summary}");
        assert!(summary.contains(&format!("users: {}", users["total"])), "{summary}");
        assert!(summary.contains("From housekeep's index"), "{summary}");
        let bot = testbed.config.bot_user_id()?.to_string();
        let image = eventually(Duration::from_secs(30), "the chart", || async {
            let events = testbed.admin.recent_events(&admin_room, 10).await?;
            Ok(events.into_iter().find(|e| e["sender"] == bot.as_str() && e["content"]["msgtype"] == "m.image"))
        })
        .await?;
        let content = &image["content"];
        let png = testbed.admin.download(content["url"].as_str().expect("url")).await?;
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let info = decoder.read_info()?.info().clone();
        assert_eq!((info.width, info.height), (1000, 500));
        assert_eq!(content["info"]["w"], 1000);
        assert_eq!(content["info"]["h"], 500);
        assert_eq!(content["info"]["size"], png.len());
        assert_eq!(content["info"]["mimetype"], "image/png");

        // One room: the admin room's own messages (these commands among them).
        let room = command_reply(&testbed, &admin_room, "!stats room #housekeep-admin:localhost --days 1", 1).await?;
        assert!(room.starts_with("Stats of #housekeep-admin:localhost"), "{room}");
        let today = field(&room, "messages per day");
        let count: i64 = today.rsplit(' ').next().unwrap_or("0").parse()?;
        assert!(count >= 2, "the commands sent today: {room}");
        assert!(!room.contains("Synapse's phone-home"), "no server-wide reports for a room: {room}");

        // Offline, the same figures by their payload names.
        let output = std::process::Command::new(housekeep_binary())
            .args(["stats", "--days", "2", "--format", "json", "-c"])
            .arg(&testbed.config_path)
            .env_remove("RUST_LOG")
            .output()?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let offline: Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(offline["homeservers"][0]["latest"]["total_users"], users["total"], "{offline}");
        assert_eq!(offline["days"], 2);
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

async fn bad_reports_get_the_right_status_and_store_nothing(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let endpoint = stats_endpoint(testbed)?;
        testbed.reconfigure(|text| text.replace("reports_per_minute: 30", "reports_per_minute: 12")).await?;
        let store = testbed.store().await?;
        let http = housekeep::testbed::http();
        let wrong = endpoint.replace("secret=", "secret=wrong");
        let missing = endpoint.split('?').next().unwrap().to_owned();
        let good = json!({"homeserver": "localhost", "timestamp": 1_795_000_000, "total_users": 3}).to_string();
        let cases: Vec<(&str, String, u16, &str)> = vec![
            (&missing, good.clone(), 401, "M_MISSING_TOKEN"),
            (&wrong, good.clone(), 403, "M_FORBIDDEN"),
            (&endpoint, "not json".to_owned(), 400, "not JSON"),
            (
                &endpoint,
                r#"{"homeserver": "localhost", "timestamp": 1, "total_users": "many"}"#.to_owned(),
                400,
                "total_users",
            ),
            (&endpoint, r#"{"timestamp": 1}"#.to_owned(), 400, "homeserver: required"),
            (&endpoint, r#"{"homeserver": "localhost", "timestamp": 4000000000}"#.to_owned(), 400, "in the future"),
            (
                &endpoint,
                format!(r#"{{"homeserver": "x", "timestamp": 1, "pad": "{}"}}"#, "a".repeat(70_000)),
                400,
                "at most 65536 bytes",
            ),
        ];
        for (url, body, status, says) in &cases {
            let answer = http.put(*url).body(body.clone()).send().await?;
            assert_eq!(answer.status().as_u16(), *status, "{url}");
            let text = answer.text().await?;
            assert!(text.contains(says), "{status}: {text}");
        }
        // Anyone with the secret can name any homeserver: only the listed ones
        // (here homeserver.domain, the default) are taken.
        let stranger = json!({"homeserver": "evil.example", "timestamp": 1_795_000_000}).to_string();
        let answer = http.put(&endpoint).body(stranger).send().await?;
        assert_eq!(answer.status(), 403);
        assert!(answer.text().await?.contains("evil.example is not in stats.homeservers"));
        let all = store.stats_report_counts(0, i64::MAX / 1000, 10).await?;
        assert!(all.is_empty(), "nothing stored: {all:?}");

        // Failed secrets use up the address's 12 a minute (two above) ...
        let mut refused = 2;
        while http.put(&wrong).body(good.clone()).send().await?.status() == 403 {
            refused += 1;
            assert!(refused <= 12, "429 once the address failed more than 12 times in a minute");
        }
        // ... but not Synapse's report from the same address, with the secret
        // (POST is taken too). Only its known fields are stored.
        let padded = json!({"homeserver": "localhost", "timestamp": 1_795_000_100, "total_users": 3,
            "pad": "a".repeat(60_000), "server_context": "b".repeat(257)});
        let answer = http.put(&endpoint).body(padded.to_string()).send().await?;
        assert_eq!(answer.status(), 400, "a known text field is at most 256 characters");
        let padded = json!({"homeserver": "localhost", "timestamp": 1_795_000_100, "total_users": 3,
            "pad": "a".repeat(60_000), "server_context": "b".repeat(256)});
        let posted = http.post(&endpoint).body(padded.to_string()).send().await?;
        assert_eq!(posted.status(), 200);
        assert_eq!(posted.json::<Value>().await?, json!({"stored": true, "outcome": "stored"}));
        let stored = store.stats_reports(0, i64::MAX / 1000, &["localhost"]).await?;
        assert_eq!(stored.len(), 1);
        assert!(stored[0].raw.len() < 500 && !stored[0].raw.contains("pad"), "{}", stored[0].raw);
        // One report a homeserver per 10 minutes: a flood stores nothing more.
        for n in 1..=5 {
            let next = json!({"homeserver": "localhost", "timestamp": 1_795_000_100 + n, "total_users": 3});
            let answer = http.put(&endpoint).body(next.to_string()).send().await?;
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.json::<Value>().await?, json!({"stored": false, "outcome": "too_soon"}));
        }
        assert_eq!(store.stats_report_counts(0, i64::MAX / 1000, 10).await?, vec![("localhost".to_owned(), 1)]);

        let metrics = testbed.housekeep.metrics().await?;
        assert!(metrics.contains("housekeep_stats_reports_total{outcome=\"rate_limited\"} 1"), "{metrics}");
        assert!(metrics.contains("housekeep_stats_reports_total{outcome=\"unknown_homeserver\"} 1"), "{metrics}");
        assert!(metrics.contains("housekeep_stats_reports_total{outcome=\"too_soon\"} 5"), "{metrics}");
        store.close().await;
        Ok(())
    })
    .await
}

/// A sink that keeps what it was given.
#[derive(Default)]
struct Recorded {
    posts: Mutex<Vec<(String, String)>>,
    images: Mutex<Vec<(String, Image)>>,
}

#[async_trait]
impl Sink for Recorded {
    async fn post(&self, to: &Destination, key: &str, notice: &Notice) -> anyhow::Result<String> {
        anyhow::ensure!(to.room_id != "!broken:localhost", "M_FORBIDDEN: the bot is not in this room");
        let mut posts = self.posts.lock().unwrap();
        // Like the homeserver: the same key is the same message.
        if !posts.iter().any(|(k, _)| k == key) {
            posts.push((key.to_owned(), format!("{}: {}", to.room_id, notice.plain)));
        }
        Ok(format!("$post-{key}"))
    }

    async fn edit(&self, _: &str, _: &str, key: &str, _: &Notice) -> anyhow::Result<String> {
        Ok(format!("$edit-{key}"))
    }

    async fn post_image(&self, _: &Destination, key: &str, image: &Image) -> anyhow::Result<String> {
        self.images.lock().unwrap().push((key.to_owned(), image.clone()));
        Ok(format!("$image-{key}"))
    }
}

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

async fn scheduled_summaries_post_once_per_period_across_a_restart(backend: Backend) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = TestDatabase::create(backend, dir.path()).await?;
    let result = async {
        let clock = Arc::new(AtomicI64::new(at("2026-12-01T07:00:00Z")));
        let sink = Arc::new(Recorded::default());
        let scheduler = |store: Store| {
            let clock = clock.clone();
            let summary = |room: &str| Scheduled {
                room: room.to_owned(),
                schedule: Schedule::parse("daily 09:00 Europe/Berlin").unwrap(),
                days: 7,
                include_top: false,
            };
            Scheduler {
                store,
                sink: sink.clone(),
                metrics: Arc::new(Metrics::new()),
                // One the bot cannot post in, listed first: it must not hold up the other.
                summaries: vec![summary("!broken:localhost"), summary("!ops:localhost")],
                prefix: "!".to_owned(),
                homeserver: None,
                retention: Duration::from_secs(400 * 86400),
                clock: Arc::new(move || clock.load(Ordering::SeqCst)),
                backoff: Default::default(),
            }
        };
        let open = || async { anyhow::Ok(housekeep::service::open_store_at(&database.url).await?) };
        let first = scheduler(open().await?);
        let tick = async |scheduler: &Scheduler, now: &str| {
            clock.store(at(now), Ordering::SeqCst);
            anyhow::Ok(scheduler.tick(at(now)).await)
        };
        // 09:00 in Berlin is 08:00 UTC in December.
        assert_eq!(tick(&first, "2026-12-01T07:00:00Z").await?, 0, "set up; nothing for the past");
        assert_eq!(tick(&first, "2026-12-01T07:59:59Z").await?, 0);
        assert_eq!(tick(&first, "2026-12-01T08:00:00Z").await?, 1, "the first period");
        assert_eq!(tick(&first, "2026-12-01T08:00:30Z").await?, 0, "not twice");
        first.store.close().await;

        // A restart later that day: nothing again; the next day: once.
        let second = scheduler(open().await?);
        assert_eq!(tick(&second, "2026-12-01T20:00:00Z").await?, 0, "not again after a restart");
        assert_eq!(tick(&second, "2026-12-02T08:00:01Z").await?, 1);

        // Reports older than the retention are dropped.
        let old = json!({"homeserver": "localhost", "timestamp": 1_700_000_000}).to_string();
        second
            .store
            .insert_stats_report("localhost", 1_700_000_000, at("2025-01-01T00:00:00Z"), "test", None, &old, 0)
            .await?;
        let recent = json!({"homeserver": "localhost", "timestamp": 1_764_000_000}).to_string();
        second
            .store
            .insert_stats_report("localhost", 1_764_000_000, at("2026-11-30T00:00:00Z"), "test", None, &recent, 0)
            .await?;
        assert_eq!(second.prune(at("2026-12-02T09:00:00Z")).await, 1);
        assert_eq!(
            second.store.stats_reports(0, i64::MAX / 1000, &["localhost"]).await?.len(),
            1,
            "the recent one stays"
        );
        second.store.close().await;

        // Down for three days: the missed period is posted once on start.
        let third = scheduler(open().await?);
        assert_eq!(tick(&third, "2026-12-05T12:00:00Z").await?, 1, "the latest missed period, once");
        assert_eq!(tick(&third, "2026-12-05T12:00:10Z").await?, 0);
        third.store.close().await;

        let posts = sink.posts.lock().unwrap().clone();
        assert_eq!(posts.len(), 3, "{posts:?}");
        assert!(posts.iter().all(|(_, text)| text.starts_with("!ops:localhost: Stats, ")), "{posts:?}");
        assert!(posts[0].1.contains("2026-11-24 to 2026-11-30"), "the 7 whole days before: {}", posts[0].1);
        assert!(posts[2].1.contains("to 2026-12-04"), "{}", posts[2].1);
        let images = sink.images.lock().unwrap();
        assert_eq!(images.len(), 3, "a chart with each");
        assert!(images.iter().all(|(_, image)| image.width == 1000 && image.png.starts_with(b"\x89PNG")));
        anyhow::Ok(())
    }
    .await;
    database.drop_database().await?;
    result
}
