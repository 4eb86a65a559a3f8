//! The dashboard in a real headless Chromium on a real Synapse: the
//! browser's `/sign-in` shows a code, the moderator sends `!dashboard
//! <code>` in the admin room, and that browser (no other) lands signed in;
//! the pages show what the store holds (room names and search from
//! Synapse); a running job's progress and a quarantine show on the open
//! page without a reload; spent, unknown and mistyped codes get a clear
//! reply; an open page is signed out at `!dashboard logout-all` and when
//! its user is no longer a moderator.
//!
//! Through Synapse and a browser, so once, on PostgreSQL (see `tests!`).

use std::time::Duration;

use housekeep::store::Store;
use housekeep::testbed::{Testbed, eventually};
use serde_json::{Value, json};
use url::Url;

use crate::browser::{Browser, screenshot_dir};
use crate::common::{Backend, command_reply, finish, housekeep_binary};
use crate::stats::stats_endpoint;

tests! {
    postgres: [
        a_moderator_signs_in_from_the_admin_room_and_watches_the_server,
    ],
}

const WAIT: Duration = Duration::from_secs(30);

/// Opens `/sign-in` in the browser; the code it shows.
async fn code_shown(browser: &Browser, base: &Url) -> anyhow::Result<String> {
    browser.goto(base.join("sign-in")?.as_str()).await?;
    browser.wait_for_text("Send this in housekeep's admin room", WAIT).await?;
    let code = browser.texts("#code").await?.into_iter().next().expect("a code on the page");
    assert!(
        code.len() == 9
            && code.chars().enumerate().all(|(n, c)| if n == 4 { c == '-' } else { c.is_ascii_uppercase() }),
        "shown as ABCD-EFGH: {code}"
    );
    Ok(code)
}

/// Whether `text` holds anything shaped like a token or secret housekeep makes.
fn holds_a_secret(text: &str) -> bool {
    regex::Regex::new("[0-9a-f]{64}").unwrap().is_match(text)
}

async fn a_moderator_signs_in_from_the_admin_room_and_watches_the_server(backend: Backend) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        // A real phone-home report from Synapse. Power-level moderators,
        // checked again every 2 s while signed in.
        let endpoint = stats_endpoint(&testbed)?;
        testbed
            .reconfigure(|text| {
                text.replace("moderator_power_level: null", "moderator_power_level: 50")
                    .replace("recheck_moderator_every: 5m", "recheck_moderator_every: 2s")
            })
            .await?;
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

        // The browser shows a code; someone else (who will read it in the
        // room) gets a code of their own.
        let code = code_shown(&browser, &base).await?;
        browser.screenshot(&shots.join("sign-in.png")).await?;
        let stranger = housekeep::testbed::http();
        let theirs = stranger.get(base.join("sign-in")?).send().await?;
        assert_eq!(theirs.status(), 200);
        let their_cookie = theirs.headers()["set-cookie"].to_str()?.split(';').next().unwrap_or_default().to_owned();
        // The moderator sends the code; the bot says who was signed in where, and no secret.
        let bot = testbed.config.bot_user_id()?.to_string();
        let reply = command_reply(&testbed, &admin_room, &format!("!dashboard {}", code.to_lowercase()), 1).await?;
        let admin_id = testbed.admin.user_id.as_str();
        assert!(reply.starts_with(&format!("Signed in {admin_id} on the browser that showed {code}:")), "{reply}");
        assert!(reply.contains("127.0.0.1 (") && reply.contains("HeadlessChrome"), "where: {reply}");
        assert!(!holds_a_secret(&reply), "{reply}");
        // The waiting page opens the dashboard by itself.
        let overview = browser.wait_for_text("Overview", WAIT).await?;
        assert!(overview.contains(admin_id), "signed in as the admin: {overview}");
        assert_eq!(browser.current_url().await?, base.as_str());
        // The code signed in that browser only: the stranger, with the
        // code but not the browser's cookie, is not signed in.
        let same_origin = |request: reqwest::RequestBuilder| request.header("sec-fetch-site", "same-origin");
        let theirs = same_origin(stranger.post(base.join("sign-in")?)).header("cookie", &their_cookie).send().await?;
        assert!(theirs.headers().get("set-cookie").is_none(), "no session for the stranger");
        assert!(theirs.text().await?.contains("Not approved yet"));
        let without_cookie = same_origin(stranger.post(base.join("sign-in/wait")?)).send().await?;
        assert_eq!(without_cookie.status(), 410);
        assert!(without_cookie.headers().get("set-cookie").is_none());
        assert_eq!(stranger.get(base.join("jobs")?).header("cookie", &their_cookie).send().await?.status(), 401);
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

        // A spent code, an unknown one, and a typo get a clear reply (sent
        // late: the admin room's messages would make it the busiest room above).
        for sent in [code.clone(), "BCDF-GHJK".to_owned()] {
            let reply = command_reply(&testbed, &admin_room, &format!("!dashboard {sent}"), 1).await?;
            assert!(reply.starts_with(&format!("No browser is waiting with code {sent}")), "{reply}");
            assert!(reply.contains(&format!("Open {base}sign-in and send the code it shows")), "{reply}");
        }
        let reply = command_reply(&testbed, &admin_room, "!dashboard logout", 1).await?;
        assert!(reply.contains("is not a sign-in code") && reply.contains("!dashboard logout-all"), "{reply}");
        let reply = command_reply(&testbed, &admin_room, "!dashboard", 1).await?;
        assert!(reply.starts_with(&format!("To sign in to the dashboard, open {base}sign-in")), "{reply}");

        // logout-all ends the session, and its open page says so without
        // a reload by anyone (its event stream ends).
        let ended = command_reply(&testbed, &admin_room, "!dashboard logout-all", 1).await?;
        assert!(ended.starts_with("Ended 1 dashboard session;"), "{ended}");
        browser.wait_for_text("Not signed in", WAIT).await?;

        // Carol moderates by power level; her page is signed out once she
        // is lowered below it, within seconds.
        let carol = testbed.synapse.register_user("carol", false).await?;
        testbed.admin.invite(&admin_room, &carol.user_id).await?;
        carol.join(&admin_room).await?;
        let levels_path = format!("/_matrix/client/v3/rooms/{admin_room}/state/m.room.power_levels/");
        let mut levels = testbed.admin.request(reqwest::Method::GET, &levels_path, None).await?;
        levels["users"][&carol.user_id] = json!(50);
        testbed.admin.request(reqwest::Method::PUT, &levels_path, Some(levels.clone())).await?;
        let code = code_shown(&browser, &base).await?;
        let sent = carol.send_text(&admin_room, &format!("!dashboard {code}")).await?;
        let reply = carol.wait_for_reply(&admin_room, &sent, &bot).await?;
        assert!(reply.starts_with(&format!("Signed in {} on the browser", carol.user_id)), "{reply}");
        browser.wait_for_text("Overview", WAIT).await?;
        browser.goto(base.join("jobs")?.as_str()).await?;
        assert!(browser.wait_for_text("Jobs", WAIT).await?.contains(&carol.user_id));
        eventually(WAIT, "the jobs page to be live", || async {
            Ok(browser.texts("#live").await?.first().is_some_and(|s| s == "live").then_some(()))
        })
        .await?;
        let session = browser.cookie("housekeep_session").await?.expect("carol's session cookie");
        levels["users"][&carol.user_id] = json!(0);
        testbed.admin.request(reqwest::Method::PUT, &levels_path, Some(levels)).await?;
        let lowered = std::time::Instant::now();
        browser.wait_for_text("Not signed in", WAIT).await?;
        let took = lowered.elapsed();
        eprintln!("carol's open page was signed out {took:?} after her power level was lowered");
        assert!(took < Duration::from_secs(15), "within seconds (checked every 2 s): {took:?}");
        let with_her_cookie = housekeep::testbed::http()
            .get(base.join("jobs")?)
            .header("cookie", format!("housekeep_session={session}"))
            .send()
            .await?;
        assert_eq!(with_her_cookie.status(), 401, "her session ended");
        let carols = store.audit_entries(10, Some(&carol.user_id)).await?;
        assert!(
            carols
                .iter()
                .any(|r| r.entry.action == "dashboard.sign_out" && r.entry.outcome.contains("no longer a moderator")),
            "{carols:?}"
        );
        let audited = store.audit_entries(500, None).await?;
        let sign_ins: Vec<&str> =
            audited.iter().filter(|r| r.entry.action == "dashboard.sign_in").map(|r| r.entry.actor.as_str()).collect();
        assert_eq!(sign_ins, [carol.user_id.as_str(), admin_id], "each approval, newest first");
        let metrics = testbed.housekeep.metrics().await?;
        assert!(metrics.contains("housekeep_dashboard_sign_ins_total{outcome=\"signed_in\"} 2"), "{metrics}");
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
