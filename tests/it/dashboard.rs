//! The dashboard in a real headless Chromium: `!dashboard` in the admin room
//! on a real Synapse gives a link that signs in once; the pages show what
//! the store holds (room names and search from Synapse); a running job's
//! progress and a quarantine show on the open page without a reload; links
//! used twice or late, and requests without a session, are refused.
//!
//! Through Synapse and a browser, so once, on PostgreSQL (see `tests!`).

use std::time::Duration;

use housekeep::store::Store;
use housekeep::testbed::{Testbed, eventually};
use serde_json::{Value, json};

use crate::browser::{Browser, screenshot_dir};
use crate::common::{Backend, command_reply, finish, housekeep_binary};
use crate::stats::stats_endpoint;

tests! {
    postgres: [
        a_moderator_signs_in_from_the_admin_room_and_watches_the_server,
    ],
}

const WAIT: Duration = Duration::from_secs(30);

/// The link in the bot's answer to `!dashboard`.
async fn sign_in_link(testbed: &Testbed, admin_room: &str) -> anyhow::Result<String> {
    let reply = command_reply(testbed, admin_room, "!dashboard", 1).await?;
    let link = reply.lines().find(|l| l.starts_with("http")).unwrap_or_else(|| panic!("no link in {reply}"));
    assert!(link.contains("/sign-in?token="), "{reply}");
    Ok(link.to_owned())
}

async fn a_moderator_signs_in_from_the_admin_room_and_watches_the_server(backend: Backend) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        // A real phone-home report from Synapse.
        let endpoint = stats_endpoint(&testbed)?;
        testbed.housekeep.restart().await?;
        // Room names and quarantine go through Synapse's admin API.
        testbed.make_bot_admin().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let extra = format!("report_stats: true\nreport_stats_endpoint: \"{endpoint}\"\n");
        testbed.synapse.reconfigure(&extra).await?;
        let store = testbed.store().await?;
        let report = eventually(Duration::from_secs(60), "a phone-home report", || async {
            Ok(store.stats_reports(0, i64::MAX / 1000, &["localhost"]).await?.into_iter().next())
        })
        .await?;
        let report: Value = serde_json::from_str(&report.raw)?;

        // Two rooms, one busier.
        let busy = alice.create_room(json!({"name": "busy"})).await?;
        let quiet = alice.create_room(json!({"name": "quiet"})).await?;
        for n in 0..5 {
            alice.send_text(&busy, &format!("busy {n}")).await?;
        }
        alice.send_text(&quiet, "quiet").await?;
        let picture = alice.upload(b"a picture".to_vec(), "image/png", "p.png").await?;
        alice.send(&busy, "m.room.message", json!({"msgtype": "m.image", "body": "p", "url": picture})).await?;
        indexed_rooms(&store, 2).await?;
        eventually(WAIT, "the picture to be indexed", || async {
            Ok((!store.room_media_by_kind(&busy).await?.is_empty()).then_some(()))
        })
        .await?;

        let admin_room = testbed.admin_room().await?;
        let base = testbed.config.web.public_url().expect("the testbed turns the dashboard on");
        let browser = Browser::start().await?;
        let shots = screenshot_dir().join(format!("dashboard-{}", backend.as_str()));

        // Without a session: the sign-in explanation, status 401.
        let refused = housekeep::testbed::http().get(base.join("jobs")?).send().await?;
        assert_eq!(refused.status(), 401);
        assert!(refused.text().await?.contains("!dashboard"));
        browser.goto(base.as_str()).await?;
        assert!(browser.wait_for_text("Not signed in", WAIT).await?.contains("!dashboard"));

        // The link signs in.
        let link = sign_in_link(&testbed, &admin_room).await?;
        browser.goto(&link).await?;
        browser.click("#sign-in").await?;
        let overview = browser.wait_for_text("Overview", WAIT).await?;
        assert!(overview.contains(testbed.admin.user_id.as_str()), "signed in as the admin: {overview}");
        let cards = browser.texts("#cards .card").await?;
        let card = |label: &str| cards.iter().find(|c| c.ends_with(label)).cloned().unwrap_or_default();
        assert_eq!(card("\nusers"), format!("{}\nusers", report["total_users"]), "{cards:?}");
        assert_eq!(card("daily active users"), format!("{}\ndaily active users", report["daily_active_users"]));
        let charts = browser.texts(".charts img").await?.len();
        assert_eq!(charts, 9, "eight trends of the report and the index's chart");
        browser.screenshot(&shots.join("overview.png")).await?;

        // Rooms in activity order.
        browser.goto(base.join("rooms")?.as_str()).await?;
        browser.wait_for_text("Rooms", WAIT).await?;
        let listed = browser.texts("#rooms td a").await?;
        let (at_busy, at_quiet) = (position(&listed, &busy), position(&listed, &quiet));
        assert!(at_busy < at_quiet, "busiest first: {listed:?}");
        let rows = browser.texts("#rooms tr").await?;
        assert!(rows.iter().any(|r| r.starts_with("busy") && r.contains(&busy)), "named from Synapse: {rows:?}");
        browser.screenshot(&shots.join("rooms.png")).await?;
        // A search by name, through Synapse's room search.
        browser.goto(base.join("rooms?q=quiet")?.as_str()).await?;
        browser.wait_for_text("Rooms", WAIT).await?;
        assert_eq!(browser.texts("#rooms td a").await?, std::slice::from_ref(&quiet), "only the room named quiet");
        // Ordered by media: the room with the picture first, even when quiet is busier.
        for n in 0..6 {
            alice.send_text(&quiet, &format!("quiet {n}")).await?;
        }
        eventually(WAIT, "quiet to be the busier room", || async {
            let today = housekeep::clock::utc_day(housekeep::clock::now_ms());
            let rooms = store.top_by_messages(housekeep::store::TopBy::Room, None, today - 1, today, 10).await?;
            Ok((rooms.first().map(|(room, _)| room) == Some(&quiet)).then_some(()))
        })
        .await?;
        browser.goto(base.join("rooms?sort=media")?.as_str()).await?;
        browser.wait_for_text("Rooms", WAIT).await?;
        let by_media = browser.texts("#rooms td a").await?;
        assert!(position(&by_media, &busy) < position(&by_media, &quiet), "{by_media:?}");

        // A quarantine shows on the open media page, who, why, without a reload.
        browser.goto(base.join("media")?.as_str()).await?;
        browser.wait_for_text("Nothing quarantined yet", WAIT).await?;
        browser.execute("window.__still_this_page = true").await?;
        let quarantine = format!("!quarantine media {picture} --reason \"dashboard test\" --yes");
        command_reply(&testbed, &admin_room, &quarantine, 3).await?;
        browser.wait_for_text("dashboard test", WAIT).await?;
        let row = browser.texts("#quarantined tr").await?.into_iter().find(|r| r.contains(&picture));
        let row = row.unwrap_or_else(|| panic!("{picture} not among the quarantined"));
        assert!(row.contains(testbed.admin.user_id.as_str()), "by whom: {row}");
        let same = browser.execute("return window.__still_this_page === true").await?;
        assert_eq!(same, json!(true), "updated in place, not reloaded");
        browser.screenshot(&shots.join("media.png")).await?;

        browser.goto(base.join("audit")?.as_str()).await?;
        browser.wait_for_text("dashboard.sign_in", WAIT).await?;
        browser.screenshot(&shots.join("audit.png")).await?;

        // A running job's progress moves on the open page.
        browser.goto(base.join("jobs")?.as_str()).await?;
        browser.wait_for_text("Jobs", WAIT).await?;
        browser.execute("window.__still_this_page = true").await?;
        let command = testbed.admin.send_text(&admin_room, "!testjob 6 --batch 1 --delay-ms 700 --yes").await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
        let midway = eventually(WAIT, "the job to be part done on the page", || async {
            let text = browser.text().await?;
            Ok(["1 / 6", "2 / 6", "3 / 6", "4 / 6"].iter().any(|p| text.contains(p)).then_some(()))
        })
        .await;
        midway?;
        browser.wait_for_text("6 / 6", Duration::from_secs(60)).await?;
        let same = browser.execute("return window.__still_this_page === true").await?;
        assert_eq!(same, json!(true), "updated in place, not reloaded");
        browser.screenshot(&shots.join("jobs.png")).await?;

        // The link works once.
        browser.goto(&link).await?;
        browser.click("#sign-in").await?;
        assert!(browser.wait_for_text("used before", WAIT).await?.contains("signs in once"));

        // A link opened too late.
        let late = sign_in_link(&testbed, &admin_room).await?;
        sqlx::query("UPDATE web_links SET expires_at = 0 WHERE spent_at IS NULL").execute(store.pool()).await?;
        browser.goto(&late).await?;
        browser.click("#sign-in").await?;
        browser.wait_for_text("expired", WAIT).await?;

        // logout-all ends the session the browser still has.
        let ended = command_reply(&testbed, &admin_room, "!dashboard logout-all", 1).await?;
        assert!(ended.starts_with("Ended 1 dashboard session;"), "{ended}");
        browser.goto(base.join("audit")?.as_str()).await?;
        browser.wait_for_text("Not signed in", WAIT).await?;
        let audited = store.audit_entries(200, None).await?;
        let sign_ins: Vec<&str> = audited
            .iter()
            .filter(|r| r.entry.action == "dashboard.sign_in")
            .map(|r| r.entry.outcome.as_str())
            .collect();
        assert_eq!(sign_ins, ["refused: the link expired", "refused: the link was used before", "signed in"]);
        browser.close().await?;
        store.close().await;
        Ok(())
    }
    .await;
    finish(testbed, result).await
}

fn position(listed: &[String], room: &str) -> usize {
    listed.iter().position(|r| r == room).unwrap_or_else(|| panic!("{room} not listed in {listed:?}"))
}

/// Waits until the activity rollup has messages in `count` rooms.
async fn indexed_rooms(store: &Store, count: usize) -> anyhow::Result<()> {
    let today = housekeep::clock::utc_day(housekeep::clock::now_ms());
    eventually(WAIT, "the rooms' messages to be indexed", || async {
        let rooms = store.top_by_messages(housekeep::store::TopBy::Room, None, today - 1, today, 10).await?;
        Ok((rooms.len() >= count).then_some(()))
    })
    .await
}
