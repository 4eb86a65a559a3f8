//! The admin room on a real Synapse: moderators command, others are refused
//! and audited, plans wait for confirmation, jobs survive kill -9.
//!
//! Through Synapse, so once, on PostgreSQL (see `tests!`).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{Backend, items_of, job_actions, job_id, wait_for_job, with_testbed};
use housekeep::store::JobState;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::{Value, json};

tests! {
    postgres: [
        moderators_command_and_others_are_refused,
        plans_wait_for_a_moderators_confirmation,
        a_job_killed_mid_way_resumes_and_finishes_once,
        invites_are_accepted_only_from_moderators,
        an_encrypted_admin_room_is_reported_not_sat_in_silently,
    ],
    plain: [
        a_remote_user_is_no_moderator,
    ],
}

/// With end-to-end encryption off, housekeep cannot read an encrypted room:
/// it must say so (on `/health`, where monitoring looks, and in its log),
/// with what to do, instead of sitting in the room deaf to every command.
async fn an_encrypted_admin_room_is_reported_not_sat_in_silently(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let room = testbed.admin_room().await?;
        let bot = bot(testbed);
        let status = testbed.admin.send_text(&room, "!status").await?;
        testbed.admin.wait_for_replies(&room, &status, &bot, 1).await?;
        let (_, health) = testbed.housekeep.health().await?;
        assert!(!health.contains("encrypted"), "{health}");

        let megolm = json!({"algorithm": "m.megolm.v1.aes-sha2"});
        testbed.admin.send_state(&room, "m.room.encryption", "", megolm).await?;
        // Noticed as it happens (from the event stream) ...
        let (status, health) = named_encrypted_on_health(testbed).await?;
        assert_eq!(status, 200, "the index still works: {health}");
        assert!(
            health.contains("e2ee.enabled") && health.contains("make a new room without encryption"),
            "says what to do: {health}"
        );
        // ... and at every start after (from the room's state).
        testbed.housekeep.restart().await?;
        named_encrypted_on_health(testbed).await?;
        Ok(())
    })
    .await
}

/// `/health` once it names the encrypted admin room: its status and body.
async fn named_encrypted_on_health(testbed: &Testbed) -> anyhow::Result<(u16, String)> {
    eventually(Duration::from_secs(30), "/health to name the encrypted admin room", || async {
        let (status, health) = testbed.housekeep.health().await?;
        Ok(health.contains("waiting for an unencrypted admin room").then_some((status, health)))
    })
    .await
}

/// A non-moderator member of the admin room.
async fn join_bob(testbed: &Testbed, room: &str) -> anyhow::Result<MatrixUser> {
    join_member(testbed, room, "bob").await
}

/// A new user `name`, invited into `room` by the admin, and joined.
async fn join_member(testbed: &Testbed, room: &str, name: &str) -> anyhow::Result<MatrixUser> {
    let user = testbed.synapse.register_user(name, false).await?;
    testbed.admin.invite(room, &user.user_id).await?;
    user.join(room).await?;
    Ok(user)
}

fn bot(testbed: &Testbed) -> String {
    testbed.config.bot_user_id().unwrap().to_string()
}

async fn moderators_command_and_others_are_refused(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let room = testbed.admin_room().await?;
        let bot = bot(testbed);
        let admin = &testbed.admin;

        let status = admin.send_text(&room, "!status").await?;
        let replies = admin.wait_for_replies(&room, &status, &bot, 1).await?;
        let content = &replies[0]["content"];
        assert_eq!(content["msgtype"], "m.notice");
        assert!(content["body"].as_str().unwrap().starts_with("housekeep status"), "{content}");
        assert!(content["formatted_body"].as_str().unwrap().contains("<strong>housekeep status</strong>"));
        assert!(content["body"].as_str().unwrap().contains(&format!("database: {}", backend.as_str())));

        let bad = admin.send_text(&room, "!purge --all-rooms").await?;
        let reply = admin.wait_for_reply(&room, &bad, &bot).await?;
        assert!(
            reply.contains("--user") && reply.contains("Usage: !purge"),
            "says what is missing and shows usage: {reply}"
        );
        let typo = admin.send_text(&room, "!audti").await?;
        let reply = admin.wait_for_reply(&room, &typo, &bot).await?;
        assert!(reply.contains("!audit"), "suggests the nearest command: {reply}");

        let bob = join_bob(testbed, &room).await?;
        let refused = bob.send_text(&room, "!status").await?;
        let reply = bob.wait_for_reply(&room, &refused, &bot).await?;
        assert!(reply.contains("not a housekeep moderator"), "{reply}");
        // Commands in other rooms are not even looked at.
        let elsewhere = admin.create_room(json!({"name": "elsewhere", "invite": [bot]})).await?;
        let ignored = admin.send_text(&elsewhere, "!status").await?;

        let store = testbed.store().await?;
        let audit = store.audit_entries(50, Some(&bob.user_id)).await?;
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!((audit[0].entry.action.as_str(), audit[0].entry.outcome.as_str()), ("refused", "not a moderator"));
        assert_eq!(audit[0].entry.command.as_deref(), Some("!status"));
        let commands = store.audit_entries(50, Some(&admin.user_id)).await?;
        let texts: Vec<_> = commands.iter().filter_map(|r| r.entry.command.as_deref()).collect();
        assert!(texts.contains(&"!status") && texts.contains(&"!audti"), "{texts:?}");
        assert!(commands.iter().all(|r| r.entry.event_id.as_deref() != Some(ignored.as_str())));
        let audit = admin.send_text(&room, "!audit --limit 3").await?;
        let reply = admin.wait_for_reply(&room, &audit, &bot).await?;
        assert!(reply.starts_with("Audit log, newest first (3)"), "{reply}");
        store.close().await;
        Ok(())
    })
    .await
}

async fn plans_wait_for_a_moderators_confirmation(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let room = testbed.admin_room().await?;
        let bot = bot(testbed);
        let admin = &testbed.admin;
        let bob = join_bob(testbed, &room).await?;
        let store = testbed.store().await?;

        let command = admin.send_text(&room, "!testjob 6 --batch 2").await?;
        let plans = admin.wait_for_replies(&room, &command, &bot, 1).await?;
        let plan_event = plans[0]["event_id"].as_str().unwrap().to_owned();
        let plan = plans[0]["content"]["body"].as_str().unwrap();
        assert!(plan.contains("!confirm") && plan.contains("✅"), "{plan}");
        let id = job_id(plan);

        // Not run without a confirmation; a non-moderator's confirmations do nothing.
        let refused = bob.send_text(&room, &format!("!confirm {id}")).await?;
        assert!(bob.wait_for_reply(&room, &refused, &bot).await?.contains("not a housekeep moderator"));
        bob.react(&room, &plan_event, "✅").await?;
        let refusals = eventually(Duration::from_secs(30), "bob's ✅ to be handled", || async {
            let actions = job_actions(&store, &id).await?;
            let refused =
                actions.iter().filter(|r| r.entry.actor == bob.user_id && r.entry.outcome.starts_with("refused"));
            Ok((refused.count() == 1).then_some(actions))
        })
        .await?;
        let job = store.job(&id).await?.unwrap();
        assert_eq!(job.state, JobState::Planned, "both refused, the plan still waits");
        assert!(items_of(&refusals).is_empty());

        // A moderator's ✅ runs it, exactly once.
        admin.react(&room, &plan_event, "✅").await?;
        wait_for_job(&store, &id, JobState::Done).await?;
        let job = store.job(&id).await?.unwrap();
        assert_eq!(
            (job.done_count, job.failed_count, job.confirmed_by.as_deref()),
            (6, 0, Some(admin.user_id.as_str()))
        );
        let items = items_of(&job_actions(&store, &id).await?);
        assert_eq!(items, (0..6).map(|i| format!("item-{i}")).collect::<Vec<_>>());
        let results = admin.wait_for_replies(&room, &command, &bot, 3).await?;
        let result = results.last().unwrap()["content"]["body"].as_str().unwrap();
        assert!(result.contains(&format!("Job {id} (testjob) done")) && result.contains("done: 6"), "{result}");
        let confirm_again = admin.send_text(&room, &format!("!confirm {id}")).await?;
        assert!(admin.wait_for_reply(&room, &confirm_again, &bot).await?.contains("is done, not waiting"));

        // --dry-run never runs; a planned job can be cancelled.
        let dry = admin.send_text(&room, "!testjob 3 --dry-run").await?;
        let dry_id = job_id(&admin.wait_for_reply(&room, &dry, &bot).await?);
        let planned = admin.send_text(&room, "!testjob 3").await?;
        let planned_id = job_id(&admin.wait_for_reply(&room, &planned, &bot).await?);
        let cancel = admin.send_text(&room, &format!("!cancel {planned_id}")).await?;
        assert!(admin.wait_for_reply(&room, &cancel, &bot).await?.contains("cancelled"));
        let confirm_dry = admin.send_text(&room, &format!("!confirm {dry_id}")).await?;
        assert!(admin.wait_for_reply(&room, &confirm_dry, &bot).await?.contains("Not confirmed"));
        // The replies came after the state changes they report: no wait needed.
        assert_eq!(store.job(&dry_id).await?.unwrap().state, JobState::DryRun);
        assert_eq!(store.job(&planned_id).await?.unwrap().state, JobState::Cancelled);
        assert!(items_of(&job_actions(&store, &dry_id).await?).is_empty());
        assert!(items_of(&job_actions(&store, &planned_id).await?).is_empty());

        // A running job stops between batches when cancelled.
        let long = admin.send_text(&room, "!testjob 100 --batch 2 --delay-ms 200 --yes").await?;
        let long_id = job_id(&admin.wait_for_reply(&room, &long, &bot).await?);
        eventually(Duration::from_secs(30), "the long job to run", || async {
            Ok(store.job(&long_id).await?.filter(|job| job.batches >= 2).map(|_| ()))
        })
        .await?;
        let stop = admin.send_text(&room, &format!("!cancel {long_id}")).await?;
        assert!(admin.wait_for_reply(&room, &stop, &bot).await?.contains("stops after its current batch"));
        wait_for_job(&store, &long_id, JobState::Cancelled).await?;
        let stopped = store.job(&long_id).await?.unwrap();
        assert!(stopped.done_count < 100 && stopped.done_count == 2 * stopped.batches, "{stopped:?}");
        assert_eq!(items_of(&job_actions(&store, &long_id).await?).len() as i64, stopped.done_count);

        let jobs = admin.send_text(&room, "!jobs").await?;
        let listing = admin.wait_for_reply(&room, &jobs, &bot).await?;
        for id in [&id, &dry_id, &planned_id] {
            assert!(listing.contains(id.as_str()), "{listing}");
        }
        store.close().await;
        Ok(())
    })
    .await
}

async fn a_job_killed_mid_way_resumes_and_finishes_once(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let room = testbed.admin_room().await?;
        let bot = bot(testbed);
        let store = testbed.store().await?;
        let command = testbed.admin.send_text(&room, "!testjob 40 --batch 4 --delay-ms 300 --yes").await?;
        let id = job_id(&testbed.admin.wait_for_reply(&room, &command, &bot).await?);
        eventually(Duration::from_secs(30), "a few batches", || async {
            Ok(store.job(&id).await?.filter(|job| job.batches >= 3).map(|_| ()))
        })
        .await?;
        testbed.housekeep.kill_9().await?;
        let interrupted = store.job(&id).await?.unwrap();
        assert_eq!(interrupted.state, JobState::Running);
        assert!(interrupted.done_count < 40, "killed mid-way: {}", interrupted.done_count);
        testbed.housekeep.restart().await?;

        wait_for_job(&store, &id, JobState::Done).await?;
        let job = store.job(&id).await?.unwrap();
        assert_eq!((job.done_count, job.failed_count, job.batches), (40, 0, 10));
        let items = items_of(&job_actions(&store, &id).await?);
        assert_eq!(items.len(), 40, "each item exactly once: {items:?}");
        assert_eq!(items.iter().collect::<BTreeSet<_>>().len(), 40);
        // One result message, even though the job was reported on after a
        // restart. A job is recorded done only after its report was sent, so
        // every message it posts is in the room now.
        let replies: Vec<Value> = testbed.admin.wait_for_replies(&room, &command, &bot, 3).await?;
        let results = replies.iter().filter(|r| r["content"]["body"].as_str().unwrap_or("").contains(") done")).count();
        assert_eq!(results, 1, "{replies:#?}");
        store.close().await;
        Ok(())
    })
    .await
}

/// `user`'s view of `member`'s membership in `room`.
async fn membership(user: &MatrixUser, room: &str, member: &str) -> Option<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{member}", housekeep::testbed::encode(room));
    let content = user.request(reqwest::Method::GET, &path, None).await.ok()?;
    content["membership"].as_str().map(str::to_owned)
}

async fn invites_are_accepted_only_from_moderators(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let bot = bot(testbed);
        let bob = testbed.synapse.register_user("bob", false).await?;
        let bobs = bob.create_room(json!({"name": "bob's", "invite": [bot]})).await?;
        let admins = testbed.admin.create_room(json!({"name": "admin's", "invite": [bot]})).await?;
        eventually(Duration::from_secs(30), "the bot to join the moderator's room", || async {
            Ok((membership(&testbed.admin, &admins, &bot).await.as_deref() == Some("join")).then_some(()))
        })
        .await?;
        eventually(Duration::from_secs(30), "the bot to decline bob's invite", || async {
            Ok((membership(&bob, &bobs, &bot).await.as_deref() == Some("leave")).then_some(()))
        })
        .await?;
        let store = testbed.store().await?;
        // The invite is audited when its inbox item is marked handled, just
        // after the bot leaves the room.
        let declined_invite = async |user: &str| {
            eventually(Duration::from_secs(30), "the declined invite to be audited", || async {
                let audit = store.audit_entries(10, Some(user)).await?;
                Ok(audit.into_iter().find(|record| record.entry.action == "invite"))
            })
            .await
        };
        assert_eq!(declined_invite(&bob.user_id).await?.entry.outcome, "declined: not a moderator");

        // A power-level moderator is one only while in the admin room: once
        // kicked, carol keeps her power level entry, and her invites are declined.
        testbed.reconfigure(|text| text.replace("moderator_power_level: null", "moderator_power_level: 50")).await?;
        let room = testbed.admin_room().await?;
        let carol = join_member(testbed, &room, "carol").await?;
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
        let mut levels = testbed.admin.request(reqwest::Method::GET, &path, None).await?;
        levels["users"][&carol.user_id] = json!(50);
        testbed.admin.request(reqwest::Method::PUT, &path, Some(levels)).await?;
        let status = carol.send_text(&room, "!status").await?;
        let reply = carol.wait_for_reply(&room, &status, &bot).await?;
        assert!(reply.starts_with("housekeep status"), "at power level 50 in the room: a moderator: {reply}");
        let kick = format!("/_matrix/client/v3/rooms/{room}/kick");
        testbed.admin.request(reqwest::Method::POST, &kick, Some(json!({"user_id": carol.user_id}))).await?;
        let carols = carol.create_room(json!({"name": "carol's", "invite": [bot]})).await?;
        eventually(Duration::from_secs(30), "the bot to decline the kicked moderator's invite", || async {
            Ok((membership(&carol, &carols, &bot).await.as_deref() == Some("leave")).then_some(()))
        })
        .await?;
        assert_eq!(declined_invite(&carol.user_id).await?.entry.outcome, "declined: not a moderator");
        store.close().await;
        Ok(())
    })
    .await
}

/// A remote server decides who its users are: `@admin:evil.example` is not
/// the moderator `@admin:localhost`, nor is a remote user at a high power
/// level a moderator, unless `admin.allow_remote_moderators` says so. (The
/// command arrives as a federated event would: pushed as a transaction.)
async fn a_remote_user_is_no_moderator() {
    with_testbed(Backend::Sqlite, async |testbed| {
        testbed.reconfigure(|text| text.replace("moderator_power_level: null", "moderator_power_level: 50")).await?;
        let room = testbed.admin_room().await?;
        let bot = bot(testbed);
        let remote = "@admin:evil.example";
        // The remote user even holds power level 100 in the admin room.
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
        let mut levels = testbed.admin.request(reqwest::Method::GET, &path, None).await?;
        levels["users"][remote] = json!(100);
        testbed.admin.request(reqwest::Method::PUT, &path, Some(levels)).await?;
        let command = json!({
            "event_id": "$remote-command", "room_id": room, "sender": remote,
            "origin_server_ts": housekeep::clock::now_ms(), "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "!status"},
        });
        testbed.push_transaction("remote-1", vec![command]).await?;
        let reply = testbed.admin.wait_for_reply(&room, "$remote-command", &bot).await?;
        assert!(reply.contains("not a housekeep moderator"), "{reply}");
        let store = testbed.store().await?;
        let audit = store.audit_entries(10, Some(remote)).await?;
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!((audit[0].entry.action.as_str(), audit[0].entry.outcome.as_str()), ("refused", "not a moderator"));
        store.close().await;
        Ok(())
    })
    .await
    .unwrap();
}
