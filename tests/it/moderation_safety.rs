//! Moderation that remote data cannot break or mislead, on a real Synapse:
//! timestamps from the far future, panics in a worker, redactions the
//! homeserver did not apply, media merely mentioned, and selections too big
//! for one moderator's `--yes`.
//!
//! Through Synapse, so once, on PostgreSQL (see `tests!`).

use std::time::Duration;

use crate::common::{Backend, command_reply, field, indexed, job_id, with_testbed};
use housekeep::store::JobState;
use housekeep::testbed::{Testbed, eventually};
use serde_json::json;

tests! {
    postgres: [
        a_timestamp_from_the_far_future_gets_a_plan_not_a_crash,
        a_panic_fails_one_job_or_command_and_the_workers_go_on,
        a_redaction_the_homeserver_did_not_apply_hides_nothing_from_purge,
        a_user_quarantine_takes_what_they_shared_and_names_whose_it_is,
        big_selections_wait_for_a_confirmation_and_a_second_moderator,
    ],
}

async fn metric(testbed: &Testbed, line_start: &str) -> anyhow::Result<f64> {
    let text = testbed.housekeep.metrics().await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

async fn a_timestamp_from_the_far_future_gets_a_plan_not_a_crash(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        // The largest timestamp JSON numbers carry exactly (2^53 - 1): far past year 9999.
        let far = (1i64 << 53) - 1;
        let bot = testbed.bot()?;
        let room = bot.create_room(json!({"name": "from the future"})).await?;
        let event = bot.send_at(&room, far, json!({"msgtype": "m.text", "body": "hello from 287396 AD"})).await?;
        indexed(&store, &room, std::slice::from_ref(&event)).await?;
        assert_eq!(store.room_events(&room).await?.iter().find(|e| e.event_id == event).unwrap().origin_server_ts, far);

        let command = format!("!purge {room} --user {} --dry-run", testbed.config.bot_user_id()?);
        let plan = command_reply(testbed, &admin_room, &command, 1).await?;
        assert!(plan.contains("Would redact 1 events in 1 rooms"), "{plan}");
        assert_eq!(field(&plan, "to"), format!("{far} ms since 1970 (not a calendar date)"), "{plan}");
        // Still up, still answering.
        let status = command_reply(testbed, &admin_room, "!status", 1).await?;
        assert!(status.starts_with("housekeep status"), "{status}");
        assert_eq!(metric(testbed, "housekeep_panics_total").await?, 0.0);
        store.close().await;
        Ok(())
    })
    .await
}

async fn a_panic_fails_one_job_or_command_and_the_workers_go_on(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bot = testbed.config.bot_user_id()?.to_string();

        // A job that hits a bug on its third item: failed, audited, reported.
        let result = command_reply(testbed, &admin_room, "!testjob 5 --batch 1 --panic-at 3 --yes", 3).await?;
        assert!(result.contains("failed") && result.contains("internal error"), "{result}");
        assert!(result.contains("asked to panic at item 3"), "{result}");
        let failed = store.recent_jobs(1).await?.remove(0);
        assert_eq!((failed.state, failed.done_count), (JobState::Failed, 2));
        let (audit, _) = store.job_audit(&failed.id, 100).await?;
        assert!(audit.iter().any(|r| r.entry.action == "job.finish" && r.entry.outcome == "failed"), "{audit:?}");

        // A command whose handling hits a bug: given up at once, the moderator told.
        let command = testbed.admin.send_text(&admin_room, "!testjob 1 --panic-in-plan").await?;
        let reply = testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
        assert!(reply.starts_with("Could not handle this command") && reply.contains("internal error"), "{reply}");

        // Both workers go on.
        let result = command_reply(testbed, &admin_room, "!testjob 2 --yes", 3).await?;
        assert!(result.contains("done: 2"), "{result}");
        let status = command_reply(testbed, &admin_room, "!status", 1).await?;
        assert!(status.starts_with("housekeep status"), "{status}");
        assert_eq!(metric(testbed, "housekeep_panics_total{worker=\"job\"}").await?, 1.0);
        assert_eq!(metric(testbed, "housekeep_panics_total{worker=\"inbox\"}").await?, 1.0);
        store.close().await;
        Ok(())
    })
    .await
}

async fn a_redaction_the_homeserver_did_not_apply_hides_nothing_from_purge(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let bystander = testbed.synapse.register_user("bystander", false).await?;
        let room = testbed.admin.create_room(json!({"name": "lobby", "preset": "public_chat"})).await?;
        spammer.join(&room).await?;
        bystander.join(&room).await?;
        let mut spam = Vec::new();
        for n in 0..3 {
            spam.push(spammer.send_text(&room, &format!("spam {n}")).await?);
        }
        indexed(&store, &room, &spam).await?;

        // A redaction Synapse would not apply (the bystander has no power):
        // as a remote server can send it and Synapse forwards it, unapplied.
        let fake = json!({
            "event_id": "$not-applied", "room_id": room, "sender": bystander.user_id, "type": "m.room.redaction",
            "origin_server_ts": 1, "redacts": spam[0], "content": {"redacts": spam[0]},
        });
        testbed.push_transaction("test-unapplied-redaction", vec![fake]).await?;
        // A real one by the room's admin, which Synapse applies.
        testbed.admin.redact(&room, &spam[1], "moderated").await?;
        eventually(Duration::from_secs(30), "both redactions judged", || async {
            let applied = metric(testbed, "housekeep_redaction_verdicts_total{verdict=\"applied\"}").await?;
            let ignored = metric(testbed, "housekeep_redaction_verdicts_total{verdict=\"not_applied\"}").await?;
            Ok((applied >= 1.0 && ignored >= 1.0).then_some(()))
        })
        .await?;
        let events = store.room_events(&room).await?;
        let redacted = |id: &str| events.iter().find(|e| e.event_id == id).unwrap().redacted_at.is_some();
        assert!(!redacted(&spam[0]), "the unapplied redaction does not hide it");
        assert!(redacted(&spam[1]), "the applied one is marked");
        assert_eq!(store.pending_redaction_checks().await?, 0);

        // So the purge finds the "redacted" spam and redacts it for real.
        let result =
            command_reply(testbed, &admin_room, &format!("!purge {room} --user {} --yes", spammer.user_id), 3).await?;
        assert_eq!(field(&result, "purged_count"), "2", "{result}");
        for id in [&spam[0], &spam[2]] {
            let seen = bystander
                .request(
                    reqwest::Method::GET,
                    &format!("/_matrix/client/v3/rooms/{}/event/{}", housekeep::testbed::encode(&room), id),
                    None,
                )
                .await?;
            assert!(seen["unsigned"]["redacted_because"].is_object(), "{id} redacted: {seen}");
        }
        store.close().await;
        Ok(())
    })
    .await
}

async fn a_user_quarantine_takes_what_they_shared_and_names_whose_it_is(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let victim = testbed.synapse.register_user("victim", false).await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let room = victim.create_room(json!({"name": "lobby", "preset": "public_chat"})).await?;
        spammer.join(&room).await?;
        let avatar =
            victim.upload(format!("{}: victim's face", victim.user_id).into_bytes(), "image/png", "me.png").await?;
        victim.set_avatar(&avatar).await?;
        let photo = victim
            .upload(format!("{}: victim's holiday", victim.user_id).into_bytes(), "image/png", "beach.png")
            .await?;
        let spam =
            spammer.upload(format!("{}: spam picture", spammer.user_id).into_bytes(), "image/png", "spam.png").await?;
        let events = vec![
            // Merely mentions the victim's avatar: pasted into a field of a message.
            spammer
                .send(&room, "m.room.message", json!({"msgtype": "m.text", "body": "look", "org.example.see": avatar}))
                .await?,
            // Shares the victim's photo as an attachment: it is shared, but not theirs.
            spammer.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": photo})).await?,
            spammer.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "y", "url": spam})).await?,
        ];
        indexed(&store, &room, &events).await?;

        let command = format!("!quarantine user {}", spammer.user_id);
        let plan = command_reply(testbed, &admin_room, &format!("{command} --dry-run"), 1).await?;
        assert!(plan.contains("Would quarantine 2 media"), "{plan}");
        assert!(plan.contains("1 media, left out; add --include-mentions"), "{plan}");
        assert!(plan.contains(&format!("{photo} uploaded by {}", victim.user_id)), "{plan}");
        let with_mentions =
            command_reply(testbed, &admin_room, &format!("{command} --include-mentions --dry-run"), 1).await?;
        assert!(with_mentions.contains("Would quarantine 3 media"), "{with_mentions}");

        let result = command_reply(testbed, &admin_room, &format!("{command} --yes"), 3).await?;
        assert_eq!(field(&result, "quarantined_count"), "1", "{result}");
        assert!(
            result.contains(&format!("uploaded by {}, not by who shared it: left alone", victim.user_id)),
            "{result}"
        );
        assert_eq!(victim.download_status(&avatar).await?, 200, "a mention takes nothing down");
        assert_eq!(victim.download_status(&spam).await?, 404);
        assert_eq!(victim.download_status(&photo).await?, 200, "shared by the spammer, but the victim's upload");

        // The moderator looked and wants the shared copy gone too.
        let result =
            command_reply(testbed, &admin_room, &format!("{command} --include-others-uploads --yes"), 3).await?;
        assert_eq!(victim.download_status(&photo).await?, 404, "{result}");
        assert_eq!(victim.download_status(&avatar).await?, 200, "still only mentioned");
        store.close().await;
        Ok(())
    })
    .await
}

async fn big_selections_wait_for_a_confirmation_and_a_second_moderator(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        testbed
            .reconfigure(|text| {
                text.replace(
                    "confirm_threshold: {events: 1000, media: 100}",
                    "confirm_threshold: {events: 3, media: 100}",
                )
                .replace("two_person_threshold: null", "two_person_threshold: {events: 5, media: 100}")
            })
            .await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let alice = testbed.synapse.register_user("alice", false).await?;
        testbed.admin.invite(&admin_room, &alice.user_id).await?;
        alice.join(&admin_room).await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let room = spammer.create_room(json!({"name": "spam"})).await?;
        let mut spam = Vec::new();
        for n in 0..4 {
            spam.push(spammer.send_text(&room, &format!("spam {n}")).await?);
        }
        indexed(&store, &room, &spam).await?;

        // 4 events: above the confirm threshold (3), so --yes is not enough.
        let purge = format!("!purge {room} --user {} --yes", spammer.user_id);
        let plan = command_reply(testbed, &admin_room, &purge, 1).await?;
        assert!(plan.contains(": planned") && plan.contains("--yes is not enough"), "{plan}");
        let id = job_id(&plan);
        assert_eq!(store.job(&id).await?.unwrap().state, JobState::Planned);
        let confirmed = command_reply(testbed, &admin_room, &format!("!confirm {id}"), 1).await?;
        assert!(confirmed.contains("confirmed"), "{confirmed}");

        // 6 more: above the two-person threshold (5): the requester alone cannot confirm.
        eventually(Duration::from_secs(60), "the first purge", || async {
            Ok(store.job(&id).await?.filter(|j| j.state == JobState::Done).map(|_| ()))
        })
        .await?;
        for n in 0..6 {
            spam.push(spammer.send_text(&room, &format!("more spam {n}")).await?);
        }
        indexed(&store, &room, &spam).await?;
        let plan = command_reply(testbed, &admin_room, &purge, 1).await?;
        assert!(plan.contains(&format!("a moderator other than {}", testbed.admin.user_id)), "{plan}");
        let id = job_id(&plan);
        let refused = command_reply(testbed, &admin_room, &format!("!confirm {id}"), 1).await?;
        assert!(refused.contains("needs a second moderator") || refused.contains("someone other than"), "{refused}");
        assert_eq!(store.job(&id).await?.unwrap().state, JobState::Planned);
        let confirm = alice.send_text(&admin_room, &format!("!confirm {id}")).await?;
        let confirmed = alice.wait_for_reply(&admin_room, &confirm, &bot).await?;
        assert!(confirmed.contains(&format!("confirmed by {}", alice.user_id)), "{confirmed}");
        eventually(Duration::from_secs(60), "the second purge", || async {
            Ok(store.job(&id).await?.filter(|j| j.state == JobState::Done).map(|_| ()))
        })
        .await?;
        assert_eq!(store.job(&id).await?.unwrap().done_count, 6);

        // A policy rule's plan above the two-person threshold: housekeep
        // asked for it, so it takes two moderators' ✅, not one.
        let second = testbed.synapse.register_user("spammer2", false).await?;
        second.join(&room).await.ok();
        let lobby = second.create_room(json!({"preset": "public_chat"})).await?;
        let mut more = Vec::new();
        for n in 0..6 {
            more.push(second.send_text(&lobby, &format!("listed spam {n}")).await?);
        }
        indexed(&store, &lobby, &more).await?;
        let list = alice.create_room(json!({"preset": "public_chat"})).await?;
        command_reply(testbed, &admin_room, &format!("!policy watch {list}"), 1).await?;
        let rule = json!({"entity": second.user_id, "recommendation": "m.ban"});
        alice.send_state(&list, "m.policy.rule.user", "s2", rule).await?;
        let notice = eventually(Duration::from_secs(30), "the rule's plan", || async {
            let events = testbed.admin.recent_events(&admin_room, 30).await?;
            Ok(events.into_iter().find(|e| {
                e["sender"] == bot.as_str()
                    && e["content"]["body"].as_str().is_some_and(|b| b.starts_with("Policy list"))
            }))
        })
        .await?;
        let plan_event = notice["event_id"].as_str().unwrap().to_owned();
        let body = notice["content"]["body"].as_str().unwrap_or_default();
        let id =
            body.lines().find(|l| l.starts_with("Job ")).and_then(|l| l.split_whitespace().nth(1)).unwrap().to_owned();
        let first = testbed.admin.react(&admin_room, &plan_event, "✅").await?;
        let said = testbed.admin.wait_for_reply(&admin_room, &plan_event, &bot).await?;
        assert!(said.contains("the first of the two moderators"), "{said}");
        assert_eq!(store.job(&id).await?.unwrap().state, JobState::Planned, "one ✅ ({first}) is not enough");
        let again = command_reply(testbed, &admin_room, &format!("!confirm {id}"), 1).await?;
        assert!(again.contains("someone other than"), "the same moderator twice: {again}");
        alice.react(&admin_room, &plan_event, "✅").await?;
        eventually(Duration::from_secs(60), "the rule's cleanup", || async {
            Ok(store.job(&id).await?.filter(|j| j.state == JobState::Done).map(|_| ()))
        })
        .await?;
        store.close().await;
        Ok(())
    })
    .await
}
