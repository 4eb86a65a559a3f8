//! Backfill and the media worker on a real Synapse: history written before
//! housekeep existed comes into the index, media is downloaded and hashed,
//! failures persist and end, a kill -9 re-reads nothing finished, and a
//! blocklisted file is quarantined by itself.
//!
//! Through Synapse, so once, on PostgreSQL (see `tests!`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::{Backend, command_reply, finish, housekeep_binary};
use housekeep::store::{FetchState, JobState, MediaId, Store};
use housekeep::testbed::seed::seed_every_media_kind;
use housekeep::testbed::{MatrixUser, Testbed, encode, eventually};
use serde_json::json;

tests! {
    postgres: [
        history_written_before_registration_is_backfilled_with_its_media,
        history_synapse_replays_is_indexed_live_and_not_read_again,
        a_backfill_killed_mid_way_resumes_and_rereads_nothing_finished,
        failed_downloads_are_retried_then_abandoned_and_reported,
        a_blocklisted_file_posted_again_is_quarantined_by_itself,
        a_since_walk_reads_past_an_event_claiming_an_old_time,
        rooms_read_side_by_side_are_each_indexed_whole,
    ],
}

/// What the history holds: rooms, and the media referenced in them.
struct History {
    rooms: Vec<String>,
    media: Vec<String>,
    redacted: String,
}

/// Every event ID of a room as the homeserver's admin API lists it.
async fn admin_room_event_ids(admin: &MatrixUser, room: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = format!("/_synapse/admin/v1/rooms/{}/messages?dir=b&limit=1000", encode(room));
        if let Some(token) = &from {
            path.push_str(&format!("&from={}", encode(token)));
        }
        let page = admin.request(reqwest::Method::GET, &path, None).await?;
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        ids.extend(chunk.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)));
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return Ok(ids),
        }
    }
}

async fn send_many(user: &MatrixUser, room: &str, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        user.send_text(room, &format!("old message {i}")).await?;
    }
    Ok(())
}

/// The history: a room with one event of every media shape, and a private
/// room of `big` messages the bot never joins, plus `small` more rooms.
async fn write_history(admin: &MatrixUser, big: usize, small: usize) -> anyhow::Result<History> {
    let gallery = admin.create_room(json!({"name": "a gallery", "preset": "public_chat"})).await?;
    let seeded = seed_every_media_kind(admin, &gallery).await?;
    let redacted = admin.send_text(&gallery, "regrettable").await?;
    admin.redact(&gallery, &redacted, "oops").await?;
    let chatter = admin.create_room(json!({"name": "b chatter", "preset": "private_chat"})).await?;
    send_many(admin, &chatter, big).await?;
    let mut rooms = vec![gallery, chatter];
    for n in 0..small {
        let room = admin.create_room(json!({"name": format!("c small {n}")})).await?;
        send_many(admin, &room, 3).await?;
        rooms.push(room);
    }
    let mut media: Vec<String> = seeded.refs.iter().map(|r| r.mxc.clone()).collect();
    media.sort();
    media.dedup();
    Ok(History { rooms, media, redacted })
}

/// Small pages and chunks, so that a few hundred events (Synapse writes
/// them at tens a second here) cross pages and batches as millions would.
fn small_pages(text: String) -> String {
    text.replace("chunk_events: 5000", "chunk_events: 100").replace("page_events: 1000", "page_events: 40")
}

fn first_start_config(text: String) -> String {
    small_pages(text.replace("on_first_start: false", "on_first_start: true"))
}

async fn backfill_job(store: &Store) -> anyhow::Result<Option<housekeep::store::Job>> {
    Ok(store.recent_jobs_of_kind("backfill", 1).await?.into_iter().next())
}

async fn wait_backfill_done(store: &Store) -> anyhow::Result<housekeep::store::Job> {
    eventually(Duration::from_secs(240), "the backfill to finish", || async {
        Ok(backfill_job(store).await?.filter(|job| job.state == JobState::Done))
    })
    .await
}

async fn history_written_before_registration_is_backfilled_with_its_media(backend: Backend) -> anyhow::Result<()> {
    let (testbed, history) = Testbed::start_after_history(
        backend,
        housekeep_binary(),
        true,
        async |_, admin| write_history(admin, 310, 1).await,
        first_start_config,
    )
    .await?;
    let result = async {
        let store = testbed.store().await?;
        // Synapse sent none of it: the index holds only what came after.
        for room in &history.rooms {
            assert!(store.room_events(room).await?.is_empty(), "{room} was not replayed");
        }
        // The first start asked for a backfill; it starts once the bot is a server admin.
        testbed.make_bot_admin().await?;
        let job = wait_backfill_done(&store).await?;
        assert!(job.total_count as usize >= history.rooms.len(), "every room the homeserver knows: {job:?}");
        for room in &history.rooms {
            let expected = admin_room_event_ids(&testbed.admin, room).await?;
            let indexed: BTreeSet<String> = store.room_events(room).await?.into_iter().map(|e| e.event_id).collect();
            assert_eq!(indexed, expected, "{room}: the index holds exactly what the homeserver has");
        }
        let chatter = store.room_events(&history.rooms[1]).await?;
        assert!(chatter.len() > 310 && chatter.iter().all(|e| e.source == "backfill"), "pages crossed");
        let gallery = store.room_events(&history.rooms[0]).await?;
        assert!(gallery.iter().find(|e| e.event_id == history.redacted).unwrap().redacted_at.is_some());

        // Every media downloaded and hashed as Synapse has it.
        eventually(Duration::from_secs(60), "every media fetched", || async {
            let mut all = true;
            for mxc in &history.media {
                let (server, id) = mxc.trim_start_matches("mxc://").split_once('/').unwrap();
                let media = MediaId { server_name: server.into(), media_id: id.into() };
                all &= store.fetch_state(&media).await?.map(|(s, _)| s) == Some(FetchState::Fetched);
            }
            Ok(all.then_some(()))
        })
        .await?;
        for mxc in &history.media {
            let id = mxc.rsplit('/').next().unwrap();
            let info = testbed
                .admin
                .request(reqwest::Method::GET, &format!("/_synapse/admin/v1/media/localhost/{id}"), None)
                .await?;
            let info = &info["media_info"];
            let row = sqlx::query_as::<_, (Option<String>, Option<i64>, Option<String>)>(
                "SELECT sha256, size, mimetype FROM media WHERE server_name = 'localhost' AND media_id = $1",
            )
            .bind(id)
            .fetch_one(store.pool())
            .await?;
            assert_eq!(row.0.as_deref(), info["sha256"].as_str(), "{mxc} sha256");
            assert_eq!(row.1, info["media_length"].as_i64(), "{mxc} size");
            assert_eq!(row.2.as_deref(), info["media_type"].as_str(), "{mxc} type");
        }
        let status = command_reply(&testbed, &testbed.admin_room().await?, "!backfill status", 1).await?;
        assert!(status.contains(&format!("job {} [done]", job.id)) && status.contains("[done]"), "{status}");
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

async fn history_synapse_replays_is_indexed_live_and_not_read_again(backend: Backend) -> anyhow::Result<()> {
    // No other appservice: Synapse sends the first one the server's whole history.
    let (testbed, history) = Testbed::start_after_history(
        backend,
        housekeep_binary(),
        false,
        async |_, admin| write_history(admin, 120, 1).await,
        small_pages,
    )
    .await?;
    let result = async {
        let store = testbed.store().await?;
        for room in &history.rooms {
            let expected = admin_room_event_ids(&testbed.admin, room).await?;
            eventually(Duration::from_secs(120), "the replayed history to be indexed", || async {
                let indexed: BTreeSet<String> =
                    store.room_events(room).await?.into_iter().map(|e| e.event_id).collect();
                Ok((indexed == expected).then_some(()))
            })
            .await?;
            assert!(store.room_events(room).await?.iter().all(|e| e.source == "live"), "it came as transactions");
        }
        testbed.make_bot_admin().await?;
        let before = pages_requested(&testbed)?;
        let admin_room = testbed.admin_room().await?;
        let plan = crate::common::first_reply(&testbed, &admin_room, "!backfill --all").await?;
        assert!(plan.contains("(backfill): confirmed") && plan.contains("Running now"), "it starts at once: {plan}");
        let job = wait_backfill_done(&store).await?;
        let tally = job.tally.clone().unwrap();
        assert_eq!(tally["events_new"], 0, "nothing new: {tally}");
        let after = pages_requested(&testbed)?;
        for room in &history.rooms {
            let read = after.get(room).copied().unwrap_or(0) - before.get(room).copied().unwrap_or(0);
            assert_eq!(read, 1, "{room}: one page, all indexed, ends the walk");
        }
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

/// Synapse's own count of admin messages requests per room, from its log.
fn pages_requested(testbed: &Testbed) -> anyhow::Result<BTreeMap<String, usize>> {
    let log = std::fs::read_to_string(testbed.synapse.dir.join("homeserver.log"))?;
    let mut counts = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("GET /_synapse/admin/v1/rooms/") && l.contains("/messages?")) {
        if let Some(rest) = line.split("/_synapse/admin/v1/rooms/").nth(1) {
            let room = rest.split('/').next().unwrap_or_default();
            let room = percent_encoding::percent_decode_str(room).decode_utf8_lossy().into_owned();
            *counts.entry(room).or_default() += 1;
        }
    }
    Ok(counts)
}

async fn a_backfill_killed_mid_way_resumes_and_rereads_nothing_finished(backend: Backend) -> anyhow::Result<()> {
    let (mut testbed, history) = Testbed::start_after_history(
        backend,
        housekeep_binary(),
        true,
        async |_, admin| write_history(admin, 620, 2).await,
        first_start_config,
    )
    .await?;
    let result = async {
        let store = testbed.store().await?;
        testbed.make_bot_admin().await?;
        // Kill it once a room is done and another is half read.
        let job = eventually(Duration::from_secs(120), "a room done and one half read", || async {
            let Some(job) = backfill_job(&store).await? else { return Ok(None) };
            let done = store.job_item_counts(&job.id).await?.iter().any(|(s, n)| s.as_str() == "done" && *n >= 1);
            let reading = job.cursor.as_ref().is_some_and(|c| {
                c["rooms"].as_array().is_some_and(|walks| walks.iter().any(|w| w["pages"].as_u64().unwrap_or(0) >= 1))
            });
            Ok((done && reading).then_some(job))
        })
        .await?;
        testbed.housekeep.kill_9().await?;
        let finished: Vec<String> = store
            .job_items_in_state(&job.id, housekeep::store::ItemState::Done, 1000)
            .await?
            .into_iter()
            .map(|i| i.key)
            .collect();
        let before = pages_requested(&testbed)?;
        testbed.housekeep.restart().await?;
        // And again, at random, while it runs.
        let more = crate::common::kill_while_running(&mut testbed.housekeep, &store, &job.id, 4).await?;
        println!("backfill: killed {} times mid-way", 1 + more);
        let done = wait_backfill_done(&store).await?;
        assert_eq!(done.id, job.id, "the same job resumed");
        let after = pages_requested(&testbed)?;
        for room in &finished {
            assert_eq!(after.get(room), before.get(room), "{room} was finished and is not read again");
        }
        for room in &history.rooms {
            let expected = admin_room_event_ids(&testbed.admin, room).await?;
            let events = store.room_events(room).await?;
            let indexed: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
            assert_eq!(indexed.len(), events.len(), "no duplicates");
            assert_eq!(indexed, expected, "{room}: no gaps");
        }
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

async fn failed_downloads_are_retried_then_abandoned_and_reported(backend: Backend) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        testbed.reconfigure(|text| text.replace("retry_delay: 30s", "retry_delay: 1s")).await?;
        let store = testbed.store().await?;
        let admin_room = testbed.admin_room().await?;
        let room = testbed.admin.create_room(json!({"name": "broken links"})).await?;
        // A server that does not exist: every attempt fails. A local media that does not exist: 404.
        let unreachable = "mxc://unreachable.invalid/nothing";
        let missing = "mxc://localhost/doesnotexist";
        for url in [unreachable, missing] {
            testbed.admin.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": url})).await?;
        }
        let unreachable_id = MediaId { server_name: "unreachable.invalid".into(), media_id: "nothing".into() };
        let missing_id = MediaId { server_name: "localhost".into(), media_id: "doesnotexist".into() };
        eventually(Duration::from_secs(120), "the download to be abandoned", || async {
            Ok(store.fetch_state(&unreachable_id).await?.filter(|(state, _)| *state == FetchState::Abandoned))
        })
        .await?;
        let (state, failures) = store.fetch_state(&unreachable_id).await?.unwrap();
        assert_eq!((state, failures), (FetchState::Abandoned, 3), "tried up to the cap");
        let (state, failures) = store.fetch_state(&missing_id).await?.unwrap();
        assert_eq!((state, failures), (FetchState::Unavailable, 0), "a 404 is recorded, not retried");
        let status = command_reply(&testbed, &admin_room, "!backfill status", 1).await?;
        assert!(status.contains("Abandoned downloads") && status.contains(unreachable), "{status}");
        let metrics = testbed.housekeep.metrics().await?;
        assert!(metrics.contains("housekeep_media_downloads_total{outcome=\"abandoned\"} 1"), "{metrics}");
        assert!(metrics.contains("housekeep_media_downloads_total{outcome=\"failed\"} 2"), "{metrics}");
        // retry-failed queues it again, from scratch.
        let retried = command_reply(&testbed, &admin_room, "!backfill retry-failed", 1).await?;
        assert!(retried.contains("Queued 1 failed media downloads again"), "{retried}");
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

async fn a_blocklisted_file_posted_again_is_quarantined_by_itself(backend: Backend) -> anyhow::Result<()> {
    let testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        testbed.make_bot_admin().await?;
        let store = testbed.store().await?;
        let admin_room = testbed.admin_room().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let bytes = format!("forbidden file {}", rand::random::<u64>()).into_bytes();
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        // Posted before anyone blocked it: downloaded and hashed, nothing more.
        let old_room = alice.create_room(json!({"name": "somewhere old"})).await?;
        let old = alice.upload(bytes.clone(), "image/png", "first.png").await?;
        alice.send(&old_room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": old})).await?;
        let (server, id) = old.trim_start_matches("mxc://").split_once('/').unwrap();
        let old_id = MediaId { server_name: server.into(), media_id: id.into() };
        eventually(Duration::from_secs(30), "the first copy to be hashed", || async {
            Ok(store.fetch_state(&old_id).await?.filter(|(state, _)| *state == FetchState::Fetched))
        })
        .await?;
        assert_eq!(alice.download_status(&old).await?, 200);

        // Blocking it takes down the copy known already.
        let blocked =
            command_reply(&testbed, &admin_room, &format!("!blocklist add {sha256} --reason \"test\""), 1).await?;
        assert!(blocked.starts_with(&format!("Blocked {sha256}")), "{blocked}");
        assert!(blocked.contains("1 media with this hash are known already"), "{blocked}");
        eventually(Duration::from_secs(30), "the known copy to be quarantined", || async {
            Ok((alice.download_status(&old).await? == 404).then_some(()))
        })
        .await?;

        // Uploaded again (a new media ID) and posted in a new room: quarantined by itself.
        let room = alice.create_room(json!({"name": "somewhere new"})).await?;
        let mxc = alice.upload(bytes.clone(), "image/png", "again.png").await?;
        assert_ne!(mxc, old);
        let posted = Instant::now();
        alice.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": mxc})).await?;
        eventually(Duration::from_secs(30), "the file to be quarantined", || async {
            Ok((alice.download_status(&mxc).await? == 404).then_some(()))
        })
        .await?;
        eprintln!("figure: a blocklisted file was quarantined {:?} after it was posted", posted.elapsed());
        let audit = eventually(Duration::from_secs(30), "both quarantines audited", || async {
            let audit = store.audit_entries(50, None).await?;
            let by_blocklist = |target: &str| {
                audit
                    .iter()
                    .any(|r| r.entry.action == "blocklist.quarantine" && r.entry.target.as_deref() == Some(target))
            };
            Ok((by_blocklist(&old) && by_blocklist(&mxc)).then_some(audit))
        })
        .await?;
        assert!(!audit.is_empty());
        let notice = eventually(Duration::from_secs(30), "the notice in the admin room", || async {
            let events = testbed.admin.recent_events(&admin_room, 20).await?;
            Ok(events
                .iter()
                .filter_map(|e| e["content"]["body"].as_str())
                .find(|b| b.starts_with("Quarantined 1 of 1 media by itself") && b.contains(&mxc))
                .map(str::to_owned))
        })
        .await?;
        assert!(notice.contains(&sha256), "{notice}");
        let metrics = testbed.housekeep.metrics().await?;
        assert!(metrics.contains("housekeep_blocklist_enforced_total{outcome=\"quarantined\"} 2"), "{metrics}");
        let list = command_reply(&testbed, &admin_room, "!blocklist list", 1).await?;
        assert!(list.contains(&sha256) && list.contains("test"), "{list}");
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

async fn a_since_walk_reads_past_an_event_claiming_an_old_time(backend: Backend) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        testbed.make_bot_admin().await?;
        testbed.reconfigure(small_pages).await?;
        let store = testbed.store().await?;
        let admin_room = testbed.admin_room().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let room = testbed.admin.create_room(json!({"name": "busy", "invite": [bot]})).await?;
        eventually(Duration::from_secs(30), "the bot to join", || async {
            Ok(testbed.bot()?.send_text(&room, "here").await.ok())
        })
        .await?;
        send_many(&testbed.admin, &room, 150).await?;
        // Any server may claim any time: this one says 1970.
        testbed.bot()?.send_at(&room, 0, json!({"msgtype": "m.text", "body": "from 1970"})).await?;
        send_many(&testbed.admin, &room, 150).await?;
        let before = backfill_job(&store).await?.map(|job| job.id);
        let reply = command_reply(&testbed, &admin_room, &format!("!backfill {room} --since 1h --full"), 1).await?;
        assert!(reply.to_lowercase().contains("backfill"), "{reply}");
        let job = eventually(Duration::from_secs(120), "the backfill to finish", || async {
            Ok(backfill_job(&store)
                .await?
                .filter(|job| Some(&job.id) != before.as_ref() && job.state == JobState::Done))
        })
        .await?;
        let pages = job.tally.as_ref().and_then(|t| t["pages"].as_i64()).unwrap_or(0);
        assert!(pages >= 8, "read past the 1970 event down to the room's creation: {pages} pages of 40");
        let rooms = store.job_items_in_state(&job.id, housekeep::store::ItemState::Done, 10).await?;
        let detail = rooms[0].detail.clone().unwrap_or_default();
        assert!(detail.contains("down to the room's creation"), "{detail}");
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

async fn rooms_read_side_by_side_are_each_indexed_whole(backend: Backend) -> anyhow::Result<()> {
    let (testbed, history) = Testbed::start_after_history(
        backend,
        housekeep_binary(),
        true,
        // One room of three chunks, the rest of one: the big one's walk goes
        // on while the small ones beside it end and others take their place.
        async |_, admin| write_history(admin, 240, 8).await,
        |text| {
            let text = first_start_config(text);
            assert!(text.contains("parallel_rooms: 4"), "four rooms at once");
            text
        },
    )
    .await?;
    let result = async {
        let store = testbed.store().await?;
        testbed.make_bot_admin().await?;
        let job = wait_backfill_done(&store).await?;
        assert!(job.total_count as usize >= history.rooms.len(), "every room the homeserver knows: {job:?}");
        assert_eq!(job.done_count, job.total_count, "every room done: {job:?}");
        // One room at a time takes a batch a room at least (and three for
        // the big one): fewer batches than rooms means they were read together.
        assert!(job.batches < job.total_count, "{} batches for {} rooms", job.batches, job.total_count);
        for room in &history.rooms {
            let expected = admin_room_event_ids(&testbed.admin, room).await?;
            let events = store.room_events(room).await?;
            let indexed: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
            assert_eq!(indexed.len(), events.len(), "no duplicates");
            assert_eq!(indexed, expected, "{room}: the index holds exactly what the homeserver has");
        }
        let chatter = store.room_events(&history.rooms[1]).await?;
        assert!(chatter.len() > 240 && chatter.iter().all(|e| e.source == "backfill"), "chunks crossed");
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}
