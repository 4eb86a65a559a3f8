//! `housekeep demo`: a local Synapse and housekeep, a seeded room, and what
//! the index holds, printed. Nothing outside the demo folder is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::seed::seed_every_media_kind;
use super::{Housekeep, cache_dir, create_admin_room, eventually};

/// Messages in the demo's history written before housekeep was registered.
const HISTORY_MESSAGES: usize = 40;
use crate::store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo's Synapse, config and database (wiped first).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep Synapse and housekeep running until Ctrl-C, to explore with a client.
    #[arg(long)]
    pub keep_running: bool,
    /// Show an end-to-end encrypted admin room instead: the bot's device,
    /// encrypted commands, plans, ✅ and charts, and a restart.
    #[arg(long)]
    pub encrypted: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| cache_dir().join("demo"));
    // Only ever wipe a folder an earlier demo made.
    let marker = dir.join(".housekeep-demo");
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::ensure!(
            marker.exists(),
            "{} is not empty and not an earlier demo's folder; choose another --dir",
            dir.display()
        );
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&marker, "made by housekeep demo; wiped by the next one\n")?;
    let database_url = format!("sqlite://{}?mode=rwc", dir.join("housekeep.db").display());
    if args.encrypted {
        return super::demo_encrypted::run(&dir, &database_url, args.keep_running).await;
    }

    step("starting Synapse (installed from PyPI into the cache folder on first use), with another appservice");
    println!("  as most servers have a bridge: then Synapse does not replay old history to a new appservice");
    let (mut synapse, config_path, config, alice, old_times) = super::start_synapse_after_history(
        &dir,
        &database_url,
        true,
        "alice",
        async |synapse, alice| {
            println!(
                "  Synapse {} at {} (log: {}/synapse/homeserver.log)",
                super::SYNAPSE_VERSION,
                synapse.url,
                dir.display()
            );
            let room = alice.create_room(json!({"name": "Old times", "preset": "public_chat"})).await?;
            let picture =
                alice.upload(b"\x89PNG\r\n\x1a\nan old holiday picture".to_vec(), "image/png", "beach.png").await?;
            alice
                .send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "beach.png", "url": picture}))
                .await?;
            for n in 1..=HISTORY_MESSAGES {
                alice.send_text(&room, &format!("an old message, number {n}")).await?;
            }
            println!(
                "  @alice (a moderator) wrote the history of \"Old times\" {room} before housekeep was registered: \
                 {HISTORY_MESSAGES} messages and a picture"
            );
            Ok(room)
        },
        // Reports are polled every 2 s here (15 s by default) so the demo does not wait.
        |text| {
            text.replace("on_first_start: false", "on_first_start: true")
                .replace("poll_interval: 15s", "poll_interval: 2s")
        },
    )
    .await?;
    let bob = synapse.register_user("bob", false).await?;
    let admin_room = create_admin_room(&alice, &config).await?;
    println!("  @alice made the admin room {} and invited the bot", config.admin.room);

    step("registering housekeep with Synapse (restarted with its registration) and starting housekeep");
    let base_url = format!("http://127.0.0.1:{}", config.appservice.port);
    let mut housekeep = Housekeep::spawn(&std::env::current_exe()?, &config_path, &base_url).await?;
    println!("  housekeep at {base_url} (config: {}, log: {}/housekeep.log)", config_path.display(), dir.display());

    step("seeding: @alice sends one event of every media shape; @bob chats in a room the bot never joined");
    let room = alice.create_room(json!({"name": "Media gallery", "preset": "public_chat"})).await?;
    bob.join(&room).await?;
    let seeded = seed_every_media_kind(&alice, &room).await?;
    println!(
        "  @alice sent {} media references in {}; uploaded {} media (one never sent, so never indexed)",
        seeded.refs.len(),
        room,
        seeded.uploads.len()
    );
    let hello = bob.send_text(&room, "hello from bob").await?;
    alice.redact(&room, &hello, "demo redaction").await?;
    let side_room = bob.create_room(json!({"name": "Bob's side room"})).await?;
    for n in 1..=3 {
        bob.send_text(&side_room, &format!("side room message {n}")).await?;
    }

    let store = Store::connect(&database_url, Some(1)).await?;
    for (user, room_id) in [(&alice, &room), (&bob, &side_room)] {
        let timeline: BTreeSet<String> = user.room_event_ids(room_id).await?.into_iter().collect();
        eventually(Duration::from_secs(20), "the index to catch up", || async {
            let indexed: BTreeSet<String> = store.room_events(room_id).await?.into_iter().map(|e| e.event_id).collect();
            Ok((indexed == timeline).then_some(()))
        })
        .await?;
    }

    step("what the index holds");
    let summary = store.summary().await?;
    println!(
        "  {} events in {} rooms; {} media references to {} distinct media",
        summary.events, summary.rooms, summary.media_refs, summary.distinct_media
    );
    for (room_id, name) in [(&room, "Media gallery"), (&side_room, "Bob's side room (bot not a member)")] {
        let events = store.room_events(room_id).await?;
        let mut by_type = BTreeMap::<&str, usize>::new();
        for event in &events {
            *by_type.entry(&event.event_type).or_default() += 1;
        }
        println!("  {name} {room_id}: {} events {by_type:?}", events.len());
        let redacted: Vec<_> = events.iter().filter(|e| e.redacted_at.is_some()).map(|e| &e.event_id).collect();
        if !redacted.is_empty() {
            println!("    redacted: {redacted:?}");
        }
    }
    println!("  media references in Media gallery:");
    println!("    {:<15} {:<18} {:<48} event", "kind", "sender", "mxc");
    for media in store.room_media_refs(&room).await? {
        println!(
            "    {:<15} {:<18} mxc://{}/{:<32} {}",
            media.kind, media.sender, media.server_name, media.media_id, media.event_id
        );
    }
    let metrics = housekeep.metrics().await?;
    println!("  from {base_url}/metrics:");
    for line in metrics.lines().filter(|l| !l.starts_with('#') && !l.contains("_bucket") && !l.ends_with(" 0")) {
        println!("    {line}");
    }
    store.close().await;

    step("commands in the admin room");
    let bot = config.bot_user_id()?.to_string();
    for command in ["!status", "!help", "!stauts", "!purge", "!audit --limit 5"] {
        let event_id = alice.send_text(&admin_room, command).await?;
        let reply = alice.wait_for_reply(&admin_room, &event_id, &bot).await?;
        println!("  @alice: {command}");
        for line in reply.lines() {
            println!("    {line}");
        }
    }
    alice.invite(&admin_room, &bob.user_id).await?;
    bob.join(&admin_room).await?;
    let event_id = bob.send_text(&admin_room, "!status").await?;
    println!("  @bob (not a moderator): !status");
    println!("    {}", bob.wait_for_reply(&admin_room, &event_id, &bot).await?);

    step("backfill: the history written before housekeep existed");
    let store = Store::connect(&database_url, Some(1)).await?;
    println!("  \"Old times\" in the index so far: {} events", store.room_events(&old_times).await?.len());
    let bot_path = format!("/_synapse/admin/v2/users/{}", super::encode(&bot));
    alice.request(reqwest::Method::PUT, &bot_path, Some(serde_json::json!({"admin": true}))).await?;
    println!("  the bot is made a server admin (README: \"Bot as server admin\"); the first-start backfill begins");
    let job = eventually(Duration::from_secs(120), "the first-start backfill", || async {
        let job = store.recent_jobs_of_kind("backfill", 1).await?.into_iter().next();
        Ok(job.filter(|job| job.state == crate::store::JobState::Done))
    })
    .await?;
    let old = store.room_events(&old_times).await?;
    let hashed = store.fetch_state_counts(Some(&old_times)).await?;
    println!(
        "  \"Old times\" in the index now: {} events (source: backfill), media {:?}",
        old.len(),
        hashed.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect::<Vec<_>>()
    );
    let events = alice.recent_events(&admin_room, 50).await?;
    if let Some(report) = events
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .find(|b| b.starts_with(&format!("Backfill {} done", job.id)))
    {
        for line in report.lines() {
            println!("    {line}");
        }
    }
    store.close().await;

    step("a room quarantine: every media the gallery references, encrypted and inline ones included");
    let referenced: BTreeSet<String> = seeded.refs.iter().map(|r| r.mxc.clone()).collect();
    let before = count_available(&bob, &referenced).await?;
    let command = format!("!quarantine room {room} --reason \"demo\" --yes");
    let event_id = alice.send_text(&admin_room, &command).await?;
    let replies = alice.wait_for_replies(&admin_room, &event_id, &bot, 3).await?;
    println!("  @alice: {command}");
    for reply in &replies {
        for line in reply["content"]["body"].as_str().unwrap_or_default().lines() {
            println!("    {line}");
        }
    }
    let after = count_available(&bob, &referenced).await?;
    println!(
        "  downloadable media referenced in the gallery: {before} of {} before, {after} after \
         (the member's profile picture and the nested mention, left out as the plan said)",
        referenced.len()
    );

    step("a purge: bob's messages in his side room, which the bot never joined");
    let command = format!("!purge {side_room} --user {} --reason \"demo\" --yes", bob.user_id);
    let event_id = alice.send_text(&admin_room, &command).await?;
    let replies = alice.wait_for_replies(&admin_room, &event_id, &bot, 3).await?;
    println!("  @alice: {command}");
    for line in replies.last().map(|r| r["content"]["body"].as_str().unwrap_or_default()).unwrap_or_default().lines() {
        println!("    {line}");
    }
    let visible = bob
        .recent_events(&side_room, 100)
        .await?
        .iter()
        .filter(|e| e["type"] == "m.room.message" && e["content"]["body"].is_string())
        .count();
    println!("  messages bob still sees with content in his side room: {visible}");

    step("an event report, and !cleanup: one plan stops the spammer and removes what they sent");
    cleanup_after_a_report(&synapse, &alice, &bob, &admin_room, &room, &bot).await?;

    step("a ban list: a new rule becomes the cleanup plan, and an auto list runs it");
    ban_list_drives_the_cleanup(&synapse, &alice, &bob, &admin_room, &room, &bot).await?;

    step("stats: Synapse's phone-home reports, and what the index knows");
    let config = crate::registration::ensure_stats_secret(&config_path, false)?;
    let endpoint = crate::registration::stats_endpoint(&config)?;
    println!("  `housekeep stats-endpoint` wrote stats.secret and printed, for homeserver.yaml:");
    println!("    report_stats: true");
    println!("    report_stats_endpoint: \"{}?secret=…\"", endpoint.as_str().split('?').next().unwrap_or_default());
    housekeep.restart().await?;
    synapse.reconfigure(&format!("report_stats: true\nreport_stats_endpoint: \"{endpoint}\"\n")).await?;
    let store = Store::connect(&database_url, Some(1)).await?;
    eventually(Duration::from_secs(60), "Synapse's first report", || async {
        Ok((!store.stats_reports(0, i64::MAX / 1000, &["localhost"]).await?.is_empty()).then_some(()))
    })
    .await?;
    store.close().await;
    println!("  Synapse restarted with them (its report timers shortened for the demo); a report arrived");
    let event_id = alice.send_text(&admin_room, "!stats --days 3").await?;
    let reply = alice.wait_for_reply(&admin_room, &event_id, &bot).await?;
    println!("  @alice: !stats --days 3");
    for line in reply.lines() {
        println!("    {line}");
    }
    let chart = eventually(Duration::from_secs(30), "the chart", || async {
        let events = alice.recent_events(&admin_room, 10).await?;
        Ok(events.into_iter().find(|e| e["sender"] == bot.as_str() && e["content"]["msgtype"] == "m.image"))
    })
    .await?;
    let png = alice.download(chart["content"]["url"].as_str().unwrap_or_default()).await?;
    let chart_path = dir.join("stats-chart.png");
    std::fs::write(&chart_path, &png)?;
    println!(
        "    [m.image {}×{}, {} bytes: messages per day, active senders, daily active users] saved to {}",
        chart["content"]["info"]["w"],
        chart["content"]["info"]["h"],
        png.len(),
        chart_path.display()
    );

    step("the dashboard: trends, rooms, media, jobs and the audit log, signed in with a code sent in the admin room");
    let event_id = alice.send_text(&admin_room, "!dashboard").await?;
    let reply = alice.wait_for_reply(&admin_room, &event_id, &bot).await?;
    println!("  @alice: !dashboard");
    for line in reply.lines() {
        println!("    {line}");
    }
    if !args.keep_running {
        println!("  (the demo stops now: run it with --keep-running to open the dashboard and sign in)");
    }

    if args.keep_running {
        step("running until Ctrl-C");
        println!("  log in to {} as alice / alice-password or bob / bob-password", synapse.url);
        tokio::signal::ctrl_c().await?;
    }
    housekeep.stop().await?;
    synapse.stop().await?;
    step("done");
    Ok(())
}

/// A spammer posts in the gallery and in a room of their own; bob reports
/// one message; the report reaches the admin room with the spammer's
/// footprint; alice runs the cleanup the notice suggests, with a suspension.
async fn cleanup_after_a_report(
    synapse: &super::Synapse,
    alice: &super::MatrixUser,
    bob: &super::MatrixUser,
    admin_room: &str,
    gallery: &str,
    bot: &str,
) -> anyhow::Result<()> {
    let mallory = synapse.register_user("mallory", false).await?;
    mallory.join(gallery).await?;
    let own = mallory.create_room(json!({"name": "Cheap deals", "preset": "public_chat"})).await?;
    bob.join(&own).await?;
    let flyer = mallory.upload(b"\x89PNG\r\n\x1a\na flyer".to_vec(), "image/png", "flyer.png").await?;
    let spare = mallory.upload(b"\x89PNG\r\n\x1a\nanother flyer".to_vec(), "image/png", "later.png").await?;
    let mut sent = vec![(gallery.to_owned(), mallory.send_text(gallery, "cheap watches, DM me").await?)];
    let image = json!({"msgtype": "m.image", "body": "flyer.png", "url": flyer});
    sent.push((gallery.to_owned(), mallory.send(gallery, "m.room.message", image).await?));
    for n in 1..=3 {
        sent.push((own.clone(), mallory.send_text(&own, &format!("deal number {n}")).await?));
    }
    println!(
        "  @mallory joined the gallery and made \"Cheap deals\": {} messages, one with a picture, one more upload",
        sent.len()
    );
    let path = format!("/_matrix/client/v3/rooms/{gallery}/report/{}", super::encode(&sent[0].1));
    bob.request(reqwest::Method::POST, &path, Some(json!({"reason": "spam", "score": -100}))).await?;
    println!("  @bob reported mallory's first message with his client (\"Report content\")");
    let notice = eventually(Duration::from_secs(30), "the report in the admin room", || async {
        let events = alice.recent_events(admin_room, 20).await?;
        Ok(events
            .iter()
            .filter(|e| e["sender"] == bot && e["content"].get("m.relates_to").is_none())
            .filter_map(|e| e["content"]["body"].as_str())
            .find(|body| body.starts_with("Report "))
            .map(str::to_owned))
    })
    .await?;
    println!("  in the admin room, within one poll:");
    for line in notice.lines() {
        println!("    {line}");
    }

    let media: BTreeSet<String> = [flyer, spare].into();
    let (messages_before, media_before) = (readable(bob, &sent).await?, count_available(bob, &media).await?);
    let command = format!("!cleanup {} --suspend --with-media quarantine --reason \"spam\" --yes", mallory.user_id);
    let event_id = alice.send_text(admin_room, &command).await?;
    let replies = alice.wait_for_replies(admin_room, &event_id, bot, 3).await?;
    println!("  @alice: {command}");
    for reply in [replies.first(), replies.last()].into_iter().flatten() {
        for line in reply["content"]["body"].as_str().unwrap_or_default().lines() {
            println!("    {line}");
        }
    }
    let refused = mallory.send_text(gallery, "still here?").await.err().map(|e| e.to_string()).unwrap_or_default();
    println!(
        "  mallory's messages bob can read: {messages_before} before, {} after; her media served: {media_before} \
         before, {} after; mallory sending now: {}",
        readable(bob, &sent).await?,
        count_available(bob, &media).await?,
        if refused.contains("M_USER_SUSPENDED") { "refused (suspended)" } else { "allowed?" }
    );
    let event_id = alice.send_text(admin_room, "!reports --all").await?;
    println!("  @alice: !reports --all");
    for line in alice.wait_for_reply(admin_room, &event_id, bot).await?.lines() {
        println!("    {line}");
    }
    Ok(())
}

/// A list keeper's ban list, watched `--auto`: a rule for a spammer
/// becomes `!cleanup` (posted, and run at once: it is small), and
/// `!policy match` says which rule matched and why.
async fn ban_list_drives_the_cleanup(
    synapse: &super::Synapse,
    alice: &super::MatrixUser,
    bob: &super::MatrixUser,
    admin_room: &str,
    gallery: &str,
    bot: &str,
) -> anyhow::Result<()> {
    let trent = synapse.register_user("trent", false).await?;
    trent.join(gallery).await?;
    let mut sent = Vec::new();
    for n in 1..=3 {
        sent.push(trent.send_text(gallery, &format!("crypto giveaway {n}")).await?);
    }
    let keeper = synapse.register_user("listkeeper", false).await?;
    let list = keeper.create_room(json!({"name": "Community bans", "preset": "public_chat"})).await?;
    println!("  @trent posted {} messages in the gallery; @listkeeper keeps a ban list, {list}", sent.len());
    let command = format!("!policy watch {list} --auto");
    let event_id = alice.send_text(admin_room, &command).await?;
    println!("  @alice: {command}");
    println!("    {}", alice.wait_for_reply(admin_room, &event_id, bot).await?);
    let rule = json!({"entity": trent.user_id, "recommendation": "m.ban", "reason": "crypto spam"});
    keeper.send_state(&list, "m.policy.rule.user", "rule-trent", rule).await?;
    println!("  @listkeeper added a ban rule for @trent (m.policy.rule.user)");
    let notice = eventually(Duration::from_secs(30), "the rule's plan in the admin room", || async {
        let events = alice.recent_events(admin_room, 20).await?;
        Ok(events
            .iter()
            .filter(|e| e["sender"] == bot)
            .filter_map(|e| e["content"]["body"].as_str())
            .find(|body| body.starts_with("Policy list"))
            .map(str::to_owned))
    })
    .await?;
    println!("  in the admin room:");
    for line in notice.lines().take(12) {
        println!("    {line}");
    }
    let sent: Vec<(String, String)> = sent.into_iter().map(|event| (gallery.to_owned(), event)).collect();
    eventually(Duration::from_secs(60), "trent's messages redacted", || async {
        Ok((readable(bob, &sent).await? == 0).then_some(()))
    })
    .await?;
    println!("  trent's messages bob can read now: 0 of {}", sent.len());
    let command = format!("!policy match {}", trent.user_id);
    let event_id = alice.send_text(admin_room, &command).await?;
    println!("  @alice: {command}");
    for line in alice.wait_for_reply(admin_room, &event_id, bot).await?.lines() {
        println!("    {line}");
    }
    Ok(())
}

/// How many of `events` (room, event) `user` is served with their text.
async fn readable(user: &super::MatrixUser, events: &[(String, String)]) -> anyhow::Result<usize> {
    let mut readable = 0;
    for (room, event) in events {
        let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", super::encode(event));
        let served = user.request(reqwest::Method::GET, &path, None).await?;
        readable += usize::from(served["content"]["body"].is_string());
    }
    Ok(readable)
}

/// How many of `media` still download (status 200) for `user`.
async fn count_available(user: &super::MatrixUser, media: &BTreeSet<String>) -> anyhow::Result<usize> {
    let mut available = 0;
    for mxc in media {
        if user.download_status(mxc).await? == 200 {
            available += 1;
        }
    }
    Ok(available)
}

pub(super) fn step(text: &str) {
    println!("\n== {text}");
}
