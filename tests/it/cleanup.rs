//! `!cleanup` on a real Synapse: one plan stops a local spammer, redacts
//! everything they sent in every room (their own rooms too, where only
//! they may redact), quarantines what they shared and uploaded, and locks
//! them last; other users' messages stay. On PostgreSQL, with a tenant of
//! the shared Synapse.

use crate::common::{Backend, command_reply, first_reply, indexed, job_id, wait_for_job, with_testbed};
use housekeep::grammar::percent_encode;
use std::time::Duration;

use housekeep::store::{FetchState, JobState, MediaId};
use housekeep::testbed::{MatrixUser, eventually};
use serde_json::{Value, json};

tests! {
    postgres: [
        one_plan_stops_a_spammer_and_leaves_nothing_of_theirs_readable,
    ],
}

/// The event as `user` is served it.
async fn event_as(user: &MatrixUser, room: &str, event_id: &str) -> anyhow::Result<Value> {
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", percent_encode(event_id));
    user.request(reqwest::Method::GET, &path, None).await
}

async fn one_plan_stops_a_spammer_and_leaves_nothing_of_theirs_readable(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        // Alice's room, and one of the spammer's own, where housekeep's bot has no power.
        let lobby = alice.create_room(json!({"preset": "public_chat"})).await?;
        let own = spammer.create_room(json!({"preset": "public_chat"})).await?;
        spammer.join(&lobby).await?;
        alice.join(&own).await?;
        let shared = spammer.upload(b"spam picture".to_vec(), "image/png", "deal.png").await?;
        let unshared = spammer.upload(b"never posted".to_vec(), "image/png", "later.png").await?;
        let mut spam = Vec::new();
        for room in [&lobby, &own] {
            let mut sent = Vec::new();
            for i in 0..3 {
                sent.push(spammer.send_text(room, &format!("cheap watches {i}")).await?);
            }
            indexed(&store, room, &sent).await?;
            spam.extend(sent.into_iter().map(|event| (room.clone(), event)));
        }
        let image = json!({"msgtype": "m.image", "body": "deal.png", "url": shared});
        let picture = spammer.send(&lobby, "m.room.message", image).await?;
        let kept = alice.send_text(&lobby, "not spam").await?;
        // Alice's cat, and the spammer's byte-for-byte copy of it: Synapse
        // quarantines every copy of a file, so the copy must be left alone.
        let cat = alice.upload(b"alice's cat".to_vec(), "image/png", "cat.png").await?;
        let cat_event = json!({"msgtype": "m.image", "body": "cat.png", "url": cat});
        let alices_cat = alice.send(&lobby, "m.room.message", cat_event).await?;
        let copy = spammer.upload(b"alice's cat".to_vec(), "image/png", "cat.png").await?;
        let copy_event = json!({"msgtype": "m.image", "body": "cat.png", "url": copy});
        let copied = spammer.send(&lobby, "m.room.message", copy_event).await?;
        indexed(&store, &lobby, &[picture.clone(), kept.clone(), alices_cat, copied.clone()]).await?;
        spam.push((lobby.clone(), picture));
        spam.push((lobby.clone(), copied));
        let (server, id) = cat.trim_start_matches("mxc://").split_once('/').expect("an mxc URI");
        let cat_id = MediaId { server_name: server.to_owned(), media_id: id.to_owned() };
        eventually(Duration::from_secs(30), "alice's cat hashed by the media worker", || async {
            Ok(store.fetch_state(&cat_id).await?.filter(|(state, _)| *state == FetchState::Fetched))
        })
        .await?;

        let who = &spammer.user_id;
        let plan = first_reply(testbed, &admin_room, &format!("!cleanup {who} --lock --with-media quarantine")).await?;
        for expected in [
            "1. Stop: suspend now",
            "Would redact 8 events in 2 rooms",
            "media: 2 shared, quarantined after the events",
            "3. Media: also 1 more uploads of theirs",
            "4. Then: lock them",
            "planned",
        ] {
            assert!(plan.contains(expected), "{expected:?} missing from {plan}");
        }
        let id = job_id(&plan);
        command_reply(testbed, &admin_room, &format!("!confirm {id}"), 1).await?;
        wait_for_job(&store, &id, JobState::Done).await?;

        for (room, event) in &spam {
            let served = event_as(&alice, room, event).await?;
            assert_eq!(served["content"], json!({}), "{event} in {room} is still readable: {served}");
        }
        assert_eq!(event_as(&alice, &lobby, &kept).await?["content"]["body"], "not spam");
        for mxc in [&shared, &unshared] {
            assert_eq!(alice.download_status(mxc).await?, 404, "{mxc} is still served");
        }
        assert_eq!(alice.download_status(&cat).await?, 200, "alice's cat went down with the spammer's copy");
        let account =
            testbed.admin.request(reqwest::Method::GET, &format!("/_synapse/admin/v2/users/{who}"), None).await?;
        assert_eq!((&account["locked"], &account["suspended"]), (&json!(true), &json!(false)), "{account}");

        let result = command_reply(testbed, &admin_room, &format!("!job {id}"), 1).await?;
        assert!(result.contains("done"), "{result}");
        let outcome = eventually(Duration::from_secs(30), "the cleanup's result in the admin room", || async {
            let events = testbed.admin.recent_events(&admin_room, 50).await?;
            Ok(events
                .iter()
                .filter_map(|e| e["content"]["body"].as_str())
                .find(|body| body.starts_with(&format!("Job {id} (cleanup) done")))
                .map(str::to_owned))
        })
        .await?;
        for expected in ["suspend: now suspended", "lock: now locked", "unsuspend: now no longer suspended"] {
            assert!(outcome.contains(expected), "{expected:?} missing from {outcome}");
        }
        assert!(outcome.contains(&format!("{copy}: the same file is shared by {} too", alice.user_id)), "{outcome}");
        let audit = command_reply(testbed, &admin_room, "!audit --limit 100", 1).await?;
        for action in ["sanction.suspend", "purge.event", "purge.media", "sanction.lock", "sanction.unsuspend"] {
            assert!(audit.contains(action), "{action} missing from {audit}");
        }

        let remote = command_reply(testbed, &admin_room, "!cleanup @spam:elsewhere.example --suspend", 1).await?;
        assert!(remote.contains("--suspend acts on this homeserver's accounts only"), "{remote}");
        Ok(())
    })
    .await
}
