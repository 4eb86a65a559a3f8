//! `!purge` against a real Synapse: what a member of the room sees afterwards.
//!
//! The first test on both backends (the end-to-end smoke: a purge); the rest
//! goes through Synapse, so once, on PostgreSQL (see `tests!`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{Backend, command_reply, field, indexed, job_id, with_testbed};
use housekeep::store::JobState;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::{Value, json};

tests! {
    both: [
        a_spammers_early_messages_are_redacted_and_nothing_else,
    ],
    postgres: [
        all_rooms_and_delete_by_time,
        a_purge_killed_mid_way_redacts_each_event_once,
    ],
}

/// Every message of a room as `user` sees it: event ID → body (`None` once redacted).
async fn bodies(user: &MatrixUser, room: &str) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    for event in user.recent_events(room, 1000).await? {
        if event["type"] == "m.room.message" {
            let body = event["content"]["body"].as_str().map(str::to_owned);
            out.insert(event["event_id"].as_str().unwrap().to_owned(), body);
        }
    }
    Ok(out)
}

async fn send_all(user: &MatrixUser, room: &str, label: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(user.send_text(room, &format!("{label} {i}")).await?);
    }
    Ok(ids)
}

async fn a_spammers_early_messages_are_redacted_and_nothing_else(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bystander = testbed.synapse.register_user("bystander", false).await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let room = bystander.create_room(json!({"name": "lobby", "preset": "public_chat"})).await?;
        spammer.join(&room).await?;
        let mut early = send_all(&spammer, &room, "early spam", 5).await?;
        let picture =
            spammer.upload(format!("{}: spam picture", spammer.user_id).into_bytes(), "image/png", "spam.png").await?;
        early.push(
            spammer
                .send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "spam", "url": picture}))
                .await?,
        );
        let bystander_early = send_all(&bystander, &room, "hello", 2).await?;
        indexed(&store, &room, &bystander_early).await?;
        let cut = store.room_events(&room).await?.iter().map(|e| e.origin_server_ts).max().unwrap() + 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let late = send_all(&spammer, &room, "late spam", 3).await?;
        let bystander_late = send_all(&bystander, &room, "bye", 1).await?;
        indexed(&store, &room, &bystander_late).await?;
        let before = bodies(&bystander, &room).await?;

        let command = format!("!purge {room} --user {} --before {cut}", spammer.user_id);
        let dry = command_reply(testbed, &admin_room, &format!("{command} --dry-run"), 1).await?;
        assert!(dry.contains("Would redact 6 events in 1 rooms"), "{dry}");
        assert!(dry.contains("local only"), "{dry}");
        assert_eq!(bodies(&bystander, &room).await?, before, "a dry run changes nothing");

        assert_eq!(bystander.download_status(&picture).await?, 200);
        let command = format!("{command} --with-media quarantine --reason \"spam wave\" --yes");
        let result = command_reply(testbed, &admin_room, &command, 3).await?;
        assert_eq!(field(&result, "purged_count"), "6", "{result}");
        assert_eq!(field(&result, "media quarantined"), "1", "{result}");
        assert_eq!(bystander.download_status(&picture).await?, 404, "the spam's media is quarantined too");
        assert_eq!(field(&result, "method"), "redact");
        assert_eq!(field(&result, "status"), "done");
        assert!(result.contains("redacted as the sender (admin login)"), "the way is reported: {result}");
        assert!(result.contains("A purge is local only"), "{result}");
        let after = bodies(&bystander, &room).await?;
        for id in &early {
            assert_eq!(after[id], None, "early spam {id} redacted");
        }
        for id in late.iter().chain(&bystander_early).chain(&bystander_late) {
            assert!(after[id].is_some(), "{id} untouched");
        }
        let events = store.room_events(&room).await?;
        assert!(early.iter().all(|id| events.iter().any(|e| &e.event_id == id && e.redacted_at.is_some())));

        // --event: just that one.
        let result =
            command_reply(testbed, &admin_room, &format!("!purge {room} --event {} --yes", bystander_late[0]), 3)
                .await?;
        assert_eq!(field(&result, "purged_count"), "1", "{result}");
        let after = bodies(&bystander, &room).await?;
        assert_eq!(after[&bystander_late[0]], None);
        assert!(after[&late[0]].is_some() && after[&bystander_early[0]].is_some());
        store.close().await;
        Ok(())
    })
    .await
}

async fn all_rooms_and_delete_by_time(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let spammer = testbed.synapse.register_user("spammer", false).await?;

        // One room where the bot is a member with power, one it never joined.
        let moderated = testbed
            .admin
            .create_room(json!({"name": "moderated", "preset": "public_chat", "invite": [bot],
                                "power_level_content_override": {"users": {bot.clone(): 100}}}))
            .await?;
        bot_joined(testbed, &moderated).await?;
        spammer.join(&moderated).await?;
        let own = spammer.create_room(json!({"name": "spammer's"})).await?;
        let mut spam = send_all(&spammer, &moderated, "spam", 2).await?;
        let own_spam = send_all(&spammer, &own, "spam", 2).await?;
        indexed(&store, &moderated, &spam).await?;
        indexed(&store, &own, &own_spam).await?;
        spam.extend(own_spam.iter().cloned());

        let result =
            command_reply(testbed, &admin_room, &format!("!purge --all-rooms --user {} --yes", spammer.user_id), 3)
                .await?;
        assert_eq!(field(&result, "purged_count"), "4", "{result}");
        assert!(result.contains(&format!("{moderated}: 2 redacted by housekeep")), "{result}");
        assert!(result.contains(&format!("{own}: 2 redacted as the sender")), "{result}");
        let seen = bodies(&spammer, &moderated)
            .await?
            .into_iter()
            .chain(bodies(&spammer, &own).await?)
            .collect::<BTreeMap<_, _>>();
        assert!(spam.iter().all(|id| seen[id].is_none()), "{seen:?}");

        // delete: the history before a time leaves this homeserver.
        let diary = testbed.admin.create_room(json!({"name": "diary", "invite": [bot]})).await?;
        bot_joined(testbed, &diary).await?;
        let old = send_all(&testbed.admin, &diary, "old", 6).await?;
        indexed(&store, &diary, &old).await?;
        let cut = store.room_events(&diary).await?.iter().map(|e| e.origin_server_ts).max().unwrap() + 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let new = send_all(&testbed.admin, &diary, "new", 4).await?;
        // Sent last, but claiming a time before the cut (as any server may):
        // Synapse cuts by the room's order and keeps it, so must the index.
        let backdated =
            testbed.bot()?.send_at(&diary, cut - 60_000, json!({"msgtype": "m.text", "body": "backdated"})).await?;
        indexed(&store, &diary, &new).await?;
        indexed(&store, &diary, std::slice::from_ref(&backdated)).await?;
        let result =
            command_reply(testbed, &admin_room, &format!("!purge {diary} --before {cut} --method delete --yes"), 3)
                .await?;
        assert_eq!(field(&result, "method"), "delete", "{result}");
        assert!(result.contains("purge_history"), "{result}");
        assert_eq!(field(&result, "purged_count"), "6", "{result}");
        assert!(result.contains("selected events Synapse kept (it cuts by the room's order"), "{result}");
        assert!(result.contains("they stay in the index: 1"), "{result}");
        let left = bodies(&testbed.admin, &diary).await?;
        assert!(old.iter().all(|id| !left.contains_key(id)), "old messages deleted: {left:?}");
        assert!(new.iter().all(|id| left.contains_key(id)), "new messages kept: {left:?}");
        assert!(left.contains_key(&backdated), "the backdated message is after the cut in the room: {left:?}");
        let indexed_now = store.room_events(&diary).await?;
        assert!(old.iter().all(|id| indexed_now.iter().all(|e| &e.event_id != id)), "the index forgets them too");
        assert!(indexed_now.iter().any(|e| e.event_id == backdated), "but not what Synapse kept");
        store.close().await;
        Ok(())
    })
    .await
}

/// Waits until housekeep's bot is in `room` (it accepts a moderator's invite).
async fn bot_joined(testbed: &Testbed, room: &str) -> anyhow::Result<()> {
    let bot = testbed.config.bot_user_id()?.to_string();
    eventually(Duration::from_secs(30), "the bot to join", || async {
        let state = testbed.admin.recent_events(room, 50).await?;
        Ok(state
            .iter()
            .any(|e| {
                e["type"] == "m.room.member" && e["state_key"] == bot.as_str() && e["content"]["membership"] == "join"
            })
            .then_some(()))
    })
    .await
}

async fn a_purge_killed_mid_way_redacts_each_event_once(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let room = spammer.create_room(json!({"name": "flood"})).await?;
        let spam = send_all(&spammer, &room, "flood", 300).await?;
        indexed(&store, &room, &spam).await?;

        let bot = testbed.config.bot_user_id()?.to_string();
        let command =
            testbed.admin.send_text(&admin_room, &format!("!purge {room} --user {} --yes", spammer.user_id)).await?;
        let plan = testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
        let id = job_id(&plan);
        eventually(Duration::from_secs(60), "a few batches", || async {
            Ok(store.job(&id).await?.filter(|job| job.batches >= 2).map(|_| ()))
        })
        .await?;
        testbed.housekeep.kill_9().await?;
        assert_eq!(store.job(&id).await?.unwrap().state, JobState::Running, "killed mid-way");
        testbed.housekeep.restart().await?;
        // And again, at random, while it runs.
        let more = crate::common::kill_while_running(&mut testbed.housekeep, &store, &id, 4).await?;
        println!("purge: killed {} times mid-way", 1 + more);
        eventually(Duration::from_secs(120), "the purge to finish", || async {
            Ok(store.job(&id).await?.filter(|job| job.state == JobState::Done).map(|_| ()))
        })
        .await?;

        // Each message redacted, by exactly one redaction event.
        let mut redactions = BTreeMap::<String, usize>::new();
        for event in spammer.recent_events(&room, 1000).await? {
            if event["type"] == "m.room.redaction" {
                let target = event["content"]["redacts"].as_str().or(event["redacts"].as_str()).unwrap_or_default();
                *redactions.entry(target.to_owned()).or_default() += 1;
            }
        }
        let missed: Vec<&String> = spam.iter().filter(|id| !redactions.contains_key(*id)).collect();
        assert!(missed.is_empty(), "not redacted: {missed:?}");
        let twice: Vec<_> = redactions.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "redacted twice: {twice:?}");
        let seen: Value = json!(bodies(&spammer, &room).await?.values().filter(|b| b.is_some()).count());
        assert_eq!(seen, json!(0));
        store.close().await;
        Ok(())
    })
    .await
}
