//! The job runner on a real Synapse: lanes, item locks, a busy inbox, and
//! the tokens a purge mints for senders.
//!
//! Overlapping purges on both backends (two jobs writing at once meet
//! SQLite's single writer); the rest once, on PostgreSQL (see `tests!`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{Backend, command_reply, field, first_reply, indexed, job_id, with_testbed};
use housekeep::store::{JobState, Store};
use housekeep::testbed::{MatrixUser, eventually};
use serde_json::json;
use sqlx::Row;

tests! {
    both: [
        two_overlapping_purges_redact_each_event_once,
    ],
    postgres: [
        a_takedown_does_not_wait_behind_background_jobs,
        cancel_is_answered_while_another_command_is_retrying,
        a_purges_sender_tokens_are_revoked_when_it_ends,
    ],
}

async fn wait_state(store: &Store, id: &str, state: JobState, limit: Duration) -> anyhow::Result<()> {
    eventually(limit, &format!("job {id} to be {}", state.as_str()), || async {
        Ok(store.job(id).await?.filter(|job| job.state == state).map(|_| ()))
    })
    .await
}

async fn send_all(user: &MatrixUser, room: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(user.send_text(room, &format!("spam {i}")).await?);
    }
    Ok(ids)
}

async fn a_takedown_does_not_wait_behind_background_jobs(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.reconfigure(|text| text.replace("max_concurrent: 4", "max_concurrent: 2")).await?;
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "gallery"})).await?;
        let picture =
            alice.upload(format!("{}: urgent takedown", alice.user_id).into_bytes(), "image/png", "x.png").await?;
        let event =
            alice.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": picture})).await?;
        indexed(&store, &room, &[event]).await?;

        // Background work fills every slot.
        let mut background = Vec::new();
        for _ in 0..2 {
            let command = "!testjob 500 --batch 1 --delay-ms 300 --background --yes";
            background.push(job_id(&first_reply(testbed, &admin_room, command).await?));
        }
        for id in &background {
            eventually(Duration::from_secs(30), "the background jobs to run", || async {
                Ok(store.job(id).await?.filter(|job| job.state == JobState::Running && job.batches >= 1).map(|_| ()))
            })
            .await?;
        }

        let started = Instant::now();
        let command = testbed.admin.send_text(&admin_room, &format!("!quarantine media {picture} --yes")).await?;
        let replies = testbed.admin.wait_for_replies(&admin_room, &command, &bot, 3).await?;
        let waited = started.elapsed();
        let result = replies[2]["content"]["body"].as_str().unwrap_or_default();
        assert_eq!(field(result, "quarantined_count"), "1", "{result}");
        assert_eq!(alice.download_status(&picture).await?, 404);
        for id in &background {
            let job = store.job(id).await?.unwrap();
            assert!(!job.state.is_final() && job.done_count < 500, "still going: {job:?}");
        }
        eprintln!("figure: a quarantine behind 2 busy background jobs took {waited:?} from command to result");
        for id in &background {
            command_reply(testbed, &admin_room, &format!("!cancel {id}"), 1).await?;
            wait_state(&store, id, JobState::Cancelled, Duration::from_secs(30)).await?;
        }
        store.close().await;
        Ok(())
    })
    .await
}

async fn cancel_is_answered_while_another_command_is_retrying(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let long = job_id(&first_reply(testbed, &admin_room, "!testjob 500 --batch 1 --delay-ms 300 --yes").await?);

        // A command that keeps failing (as against a homeserver that is down) is retried with backoff.
        let failing = testbed.admin.send_text(&admin_room, "!testjob 1 --plan-error").await?;
        eventually(Duration::from_secs(30), "the failing command's first attempt", || async {
            let row = sqlx::query("SELECT attempts FROM bot_inbox WHERE event_id = $1")
                .bind(&failing)
                .fetch_optional(store.pool())
                .await?;
            Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.filter(|attempts| *attempts >= 1).map(|_| ()))
        })
        .await?;

        let started = Instant::now();
        let cancel = testbed.admin.send_text(&admin_room, &format!("!cancel {long}")).await?;
        let reply = testbed.admin.wait_for_reply(&admin_room, &cancel, &bot).await?;
        let answered = started.elapsed();
        assert!(reply.contains("stops after its current batch"), "{reply}");
        // Answered while the other is still being retried, not after it.
        let row = sqlx::query("SELECT handled_at FROM bot_inbox WHERE event_id = $1")
            .bind(&failing)
            .fetch_one(store.pool())
            .await?;
        assert!(row.try_get::<Option<i64>, _>(0)?.is_none(), "the failing command is still being retried");
        wait_state(&store, &long, JobState::Cancelled, Duration::from_secs(30)).await?;
        eprintln!("figure: !cancel answered in {answered:?} while another command was failing and retrying");

        // In the end the failing one is given up, and the moderator told.
        let given_up = eventually(Duration::from_secs(60), "the failing command to be given up", || async {
            let replies = testbed.admin.wait_for_replies(&admin_room, &failing, &bot, 1).await;
            Ok(replies.ok().map(|r| r[0]["content"]["body"].as_str().unwrap_or_default().to_owned()))
        })
        .await?;
        assert!(given_up.contains("Could not handle this command") && given_up.contains("--plan-error"), "{given_up}");
        store.close().await;
        Ok(())
    })
    .await
}

/// How many redaction events point at each event of the room, as a member sees it.
async fn redactions(user: &MatrixUser, room: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for event in user.room_timeline(room).await? {
        if event["type"] == "m.room.redaction" {
            let target = event["content"]["redacts"].as_str().or(event["redacts"].as_str()).unwrap_or_default();
            *counts.entry(target.to_owned()).or_default() += 1;
        }
    }
    Ok(counts)
}

async fn two_overlapping_purges_redact_each_event_once(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let room = spammer.create_room(json!({"name": "flood"})).await?;
        let spam = send_all(&spammer, &room, 60).await?;
        indexed(&store, &room, &spam).await?;

        let command = format!("!purge {room} --user {} --yes", spammer.user_id);
        let first = testbed.admin.send_text(&admin_room, &command).await?;
        let second = testbed.admin.send_text(&admin_room, &command).await?;
        let mut ids = Vec::new();
        for command in [&first, &second] {
            ids.push(job_id(&testbed.admin.wait_for_reply(&admin_room, command, &bot).await?));
        }
        let mut purged = 0;
        let mut already = 0;
        for id in &ids {
            wait_state(&store, id, JobState::Done, Duration::from_secs(120)).await?;
            let tally = store.job(id).await?.unwrap().tally.unwrap();
            purged += tally["purged"].as_i64().unwrap();
            already += tally["already"].as_i64().unwrap();
        }
        assert_eq!((purged, already), (60, 60), "each event redacted by one job, found redacted by the other");
        let counts = redactions(&spammer, &room).await?;
        let missed: Vec<_> = spam.iter().filter(|id| !counts.contains_key(*id)).collect();
        assert!(missed.is_empty(), "not redacted: {missed:?}");
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "redacted twice: {twice:?}");
        store.close().await;
        Ok(())
    })
    .await
}

async fn a_purges_sender_tokens_are_revoked_when_it_ends(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        // The spammer's own room: the bot has no power there, so it redacts as the sender.
        let room = spammer.create_room(json!({"name": "spammer's"})).await?;
        let spam = send_all(&spammer, &room, 150).await?;
        indexed(&store, &room, &spam).await?;

        let plan =
            first_reply(testbed, &admin_room, &format!("!purge {room} --user {} --yes", spammer.user_id)).await?;
        let id = job_id(&plan);
        let token = eventually(Duration::from_secs(60), "the job's sender token", || async {
            Ok(store.job_tokens(&id).await?.into_iter().next())
        })
        .await?;
        assert_eq!(token.user_id, spammer.user_id);
        let as_sender = MatrixUser::new(&testbed.synapse.url, &spammer.user_id, &token.token);
        as_sender.request(reqwest::Method::GET, "/_matrix/client/v3/account/whoami", None).await?;

        wait_state(&store, &id, JobState::Done, Duration::from_secs(120)).await?;
        let refused = as_sender.request(reqwest::Method::GET, "/_matrix/client/v3/account/whoami", None).await;
        let error = refused.expect_err("the token is revoked").to_string();
        assert!(error.contains("401") && error.contains("M_UNKNOWN_TOKEN"), "{error}");
        assert!(store.job_tokens(&id).await?.is_empty(), "and forgotten");
        // The token never reaches the audit log or the job's listing.
        let (audit, _) = store.job_audit(&id, 100_000).await?;
        assert!(audit.iter().all(|r| !format!("{:?}", r.entry).contains(&token.token)));
        let listing = command_reply(testbed, &admin_room, &format!("!job {id}"), 1).await?;
        assert!(!listing.contains(&token.token));
        let log = std::fs::read_to_string(testbed.dir.path().join("housekeep.log"))?;
        assert!(!log.contains(&token.token), "nor the log");
        store.close().await;
        Ok(())
    })
    .await
}
