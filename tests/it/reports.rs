//! Event reports on a real Synapse: a report a user files with their client
//! reaches the admin room with the reported sender's footprint; many at
//! once make one summary. On PostgreSQL, with a Synapse of its own (the bot,
//! a server admin, reads every report on its homeserver).

use std::time::Duration;

use crate::common::{Backend, command_reply, indexed, with_own_testbed};
use housekeep::grammar::percent_encode;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::{Value, json};

tests! {
    postgres: [
        a_report_reaches_the_admin_room_with_the_senders_footprint,
    ],
}

/// The bot's messages of its own (not replies to a command) in the admin
/// room whose text starts with `start`.
async fn bot_notices(testbed: &Testbed, room: &str, start: &str) -> anyhow::Result<Vec<String>> {
    let bot = testbed.config.bot_user_id()?.to_string();
    Ok(testbed
        .admin
        .recent_events(room, 100)
        .await?
        .iter()
        .filter(|e| e["sender"] == bot.as_str() && e["type"] == "m.room.message")
        .filter(|e| e["content"].get("m.relates_to").is_none())
        .filter_map(|e| e["content"]["body"].as_str())
        .filter(|body| body.starts_with(start))
        .map(str::to_owned)
        .collect())
}

async fn report(user: &MatrixUser, room: &str, event_id: &str, reason: &str) -> anyhow::Result<Value> {
    let path = format!("/_matrix/client/v3/rooms/{room}/report/{}", percent_encode(event_id));
    user.request(reqwest::Method::POST, &path, Some(json!({"reason": reason, "score": -100}))).await
}

async fn a_report_reaches_the_admin_room_with_the_senders_footprint(backend: Backend) -> anyhow::Result<()> {
    with_own_testbed(backend, async |testbed| {
        // REPORT_POLL_INTERVAL and REPORT_LATENCY_SAMPLES measure other
        // settings (the 20 reports at the default 15s); the suite
        // runs 5 at 1s.
        let poll = std::env::var("REPORT_POLL_INTERVAL").unwrap_or_else(|_| "1s".to_owned());
        let samples = std::env::var("REPORT_LATENCY_SAMPLES").ok().and_then(|n| n.parse().ok()).unwrap_or(5);
        testbed.reconfigure(|text| text.replace("poll_interval: 15s", &format!("poll_interval: {poll}"))).await?;
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = spammer.create_room(json!({"name": "Bazaar", "preset": "public_chat"})).await?;
        alice.join(&room).await?;
        let picture = spammer.upload(b"not really a png".to_vec(), "image/png", "deal.png").await?;
        let mut sent = vec![
            spammer.send_text(&room, "cheap watches, DM me").await?,
            spammer
                .send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "deal.png", "url": picture}))
                .await?,
        ];
        indexed(&store, &room, &sent).await?;

        report(&alice, &room, &sent[0], "spam\nReport 99: forged line").await?;
        let notice = eventually(Duration::from_secs(30), "the report in the admin room", || async {
            Ok(bot_notices(testbed, &admin_room, "Report ").await?.into_iter().next())
        })
        .await?;
        for expected in [
            &format!("reported an event of {}", spammer.user_id),
            "Text: cheap watches, DM me",
            "Room: \"Bazaar\"",
            "events: ",
            "media shared: 1 (0 quarantined)",
            "open reports against them: 1",
            &format!("!purge --all-rooms --user {} --with-media quarantine --dry-run", spammer.user_id),
        ] {
            assert!(notice.contains(expected), "{expected:?} missing from {notice}");
        }
        assert!(!notice.lines().any(|l| l.starts_with("Report 99")), "a reason cannot forge lines: {notice}");

        // How soon a report reaches the admin room, one at a time.
        let mut latencies = Vec::new();
        for i in 0..samples {
            let event = spammer.send_text(&room, &format!("timed {i}")).await?;
            indexed(&store, &room, std::slice::from_ref(&event)).await?;
            let filed = std::time::Instant::now();
            report(&alice, &room, &event, "timed").await?;
            eventually(Duration::from_secs(30), "the timed report in the admin room", || async {
                let notices = bot_notices(testbed, &admin_room, "Report ").await?;
                Ok(notices.iter().any(|n| n.contains(&format!("Text: timed {i}"))).then_some(()))
            })
            .await?;
            latencies.push(filed.elapsed());
        }
        latencies.sort();
        eprintln!(
            "figure: report filed -> its notice in the admin room at poll_interval {poll}: p50 {:?}, max {:?} over {}",
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1],
            latencies.len()
        );
        let singles = 1 + latencies.len();

        // Six at once: one summary, not six notices. Filed while housekeep is
        // stopped, so that they arrive in one poll however slowly they are
        // filed (filed while it polled every second, they could come 5 + 1).
        for i in 0..6 {
            sent.push(spammer.send_text(&room, &format!("spam {i}")).await?);
        }
        testbed.housekeep.sigterm().await?;
        for event in &sent[2..] {
            report(&alice, &room, event, "more spam").await?;
        }
        testbed.housekeep.restart().await?;
        let summary = eventually(Duration::from_secs(30), "the summary in the admin room", || async {
            Ok(bot_notices(testbed, &admin_room, "6 new event reports").await?.into_iter().next())
        })
        .await?;
        assert_eq!(summary.lines().filter(|l| l.starts_with("- ")).count(), 6, "{summary}");
        assert_eq!(bot_notices(testbed, &admin_room, "Report ").await?.len(), singles, "no notice per report");
        // Counted since the restart: the six.
        let metrics = testbed.housekeep.metrics().await?;
        let reports_filed = singles + 6;
        assert!(metrics.contains("housekeep_event_reports_total{outcome=\"seen\"} 6"), "{metrics}");
        assert!(metrics.contains("housekeep_event_reports_total{outcome=\"summarized\"} 6"), "{metrics}");

        // The moderators' view of them, and closing one.
        let listed =
            command_reply(testbed, &admin_room, &format!("!reports --user {} --limit 200", spammer.user_id), 1).await?;
        assert!(listed.starts_with(&format!("Open reports, newest first ({reports_filed}):")), "{listed}");
        let first =
            notice.strip_prefix("Report ").and_then(|rest| rest.split(':').next()).unwrap_or_default().to_owned();
        let shown = command_reply(testbed, &admin_room, &format!("!report {first}"), 1).await?;
        assert!(shown.contains("State: open") && shown.contains("Text: cheap watches, DM me"), "{shown}");
        let dismissed =
            command_reply(testbed, &admin_room, &format!("!report {first} dismiss --reason \"seen to\" --delete"), 1)
                .await?;
        assert!(dismissed.contains(&format!("Report {first} dismissed.")), "{dismissed}");
        assert!(dismissed.contains("Synapse's copy is deleted"), "{dismissed}");
        let in_synapse = testbed
            .admin
            .request(reqwest::Method::GET, &format!("/_synapse/admin/v1/event_reports/{first}"), None)
            .await;
        assert!(in_synapse.is_err_and(|e| e.to_string().contains("404")), "deleted from Synapse");
        let again = command_reply(testbed, &admin_room, &format!("!report {first} dismiss"), 1).await?;
        assert!(
            again.contains(&format!("Report {first} is not open: dismissed by {}", testbed.admin.user_id)),
            "{again}"
        );
        assert!(again.contains("seen to"), "{again}");
        let open = command_reply(testbed, &admin_room, "!reports --limit 200", 1).await?;
        assert!(open.starts_with(&format!("Open reports, newest first ({}):", reports_filed - 1)), "{open}");
        let all = command_reply(testbed, &admin_room, "!reports --all --limit 200", 1).await?;
        assert!(all.contains(&format!("{first} [dismissed]")), "{all}");
        let audit = command_reply(testbed, &admin_room, "!audit --limit 5", 1).await?;
        assert!(audit.contains("report.dismiss") && audit.contains("deleted from Synapse"), "{audit}");

        // The first command a report suggests, run: its report is handled.
        let all = housekeep::store::ReportFilter { all: true, ..Default::default() };
        let kept = store.kept_reports(&all, 20).await?;
        let target = kept.iter().find(|k| k.report.event_id == sent[2]).expect("the report of spam 0");
        let purge = format!("!purge {room} --event {} --yes", sent[2]);
        let result = command_reply(testbed, &admin_room, &purge, 3).await?;
        assert!(result.contains("redacted"), "{result}");
        let id = target.report.report_id;
        eventually(Duration::from_secs(20), "the report to be handled", || async {
            Ok(store.kept_report(id).await?.filter(|k| k.state == "handled").map(|_| ()))
        })
        .await?;
        let handled = command_reply(testbed, &admin_room, &format!("!report {id}"), 1).await?;
        assert!(handled.contains(&format!("State: handled by {}", testbed.admin.user_id)), "{handled}");
        assert!(handled.contains("(job "), "{handled}");

        // A restart tells nothing again.
        testbed.housekeep.restart().await?;
        testbed.housekeep.wait_ready().await?;
        let asked = testbed.admin.send_text(&admin_room, "!status").await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        testbed.admin.wait_for_reply(&admin_room, &asked, &bot).await?;
        assert_eq!(bot_notices(testbed, &admin_room, "Report ").await?.len(), singles);
        assert_eq!(bot_notices(testbed, &admin_room, "6 new event reports").await?.len(), 1);
        store.close().await;
        Ok(())
    })
    .await
}
