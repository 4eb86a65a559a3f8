//! `!quarantine` / `!unquarantine` against a real Synapse: what a moderator
//! checks is whether the media still downloads.
//!
//! The first test on both backends (the end-to-end smoke: a quarantine); the
//! rest goes through Synapse, so once, on PostgreSQL (see `tests!`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{Backend, command_reply, field, first_reply, job_id, wait_for_job, with_testbed};
use housekeep::store::{JobState, Store};
use housekeep::testbed::seed::seed_every_media_kind;
use housekeep::testbed::{MatrixUser, encode, eventually};
use serde_json::{Value, json};

tests! {
    both: [
        a_room_quarantine_covers_every_reference_kind,
    ],
    postgres: [
        user_event_media_and_unquarantine_round_trips,
        a_quarantine_killed_mid_way_resumes_and_does_each_media_once,
        synapses_room_call_is_not_used_when_it_would_take_more_than_the_plan,
        synapses_user_call_is_not_used_for_uploads_made_after_the_plan,
    ],
}

/// Waits until the index holds `count` media references in `room`.
async fn indexed(store: &Store, room: &str, count: usize) -> anyhow::Result<()> {
    eventually(Duration::from_secs(30), "media references to be indexed", || async {
        Ok((store.room_media_refs(room).await?.len() >= count).then_some(()))
    })
    .await
}

async fn statuses(user: &MatrixUser, media: &[String]) -> anyhow::Result<BTreeMap<String, u16>> {
    let mut out = BTreeMap::new();
    for mxc in media {
        out.insert(mxc.clone(), user.download_status(mxc).await?);
    }
    Ok(out)
}

async fn a_room_quarantine_covers_every_reference_kind(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let bob = testbed.synapse.register_user("bob", false).await?;
        let room = alice.create_room(json!({"name": "gallery"})).await?;
        let seeded = seed_every_media_kind(&alice, &room).await?;
        let innocent_room = bob.create_room(json!({"name": "innocent"})).await?;
        let innocent = bob.upload(format!("{}: innocent", bob.user_id).into_bytes(), "text/plain", "a.txt").await?;
        bob.send(&innocent_room, "m.room.message", json!({"msgtype": "m.file", "body": "a", "url": innocent})).await?;
        indexed(&store, &room, seeded.refs.len()).await?;
        indexed(&store, &innocent_room, 1).await?;

        let distinct = |kinds: &dyn Fn(&str) -> bool| -> Vec<String> {
            let mut m: Vec<String> = seeded.refs.iter().filter(|r| kinds(r.kind)).map(|r| r.mxc.clone()).collect();
            m.sort();
            m.dedup();
            m
        };
        let referenced = distinct(&|_| true);
        // A room's member avatars are its members' profile pictures and a
        // nested custom field is a mention: not what the room shared.
        let shared = distinct(&|kind| !matches!(kind, "member_avatar" | "other"));
        let mentioned = distinct(&|kind| matches!(kind, "member_avatar" | "other"));
        assert_eq!((shared.len(), mentioned.len()), (referenced.len() - 2, 2));
        assert!(statuses(&alice, &referenced).await?.values().all(|s| *s == 200));

        // Without server-admin rights the plan says so, and how to fix it.
        let refused = command_reply(testbed, &admin_room, &format!("!quarantine room {room} --yes"), 1).await?;
        assert!(
            refused.contains("is not a server admin") && refused.contains("/_synapse/admin/v2/users/"),
            "{refused}"
        );
        testbed.make_bot_admin().await?;

        // A dry run plans and changes nothing.
        let dry = command_reply(testbed, &admin_room, &format!("!quarantine room {room} --dry-run"), 1).await?;
        assert!(dry.contains(&format!("Would quarantine {} media", shared.len())), "{dry}");
        assert!(dry.contains("html_img 1") && dry.contains("thumbnail_file 1"), "{dry}");
        assert!(dry.contains("2 media, left out; add --include-mentions"), "{dry}");
        assert!(statuses(&alice, &referenced).await?.values().all(|s| *s == 200));

        // Protected media stays, and is reported, whichever call would take
        // it: the sticker is in Synapse's room call, the encrypted file is
        // quarantined one by one (its protection read from alice's uploads).
        let of_kind = |kind: &str| seeded.refs.iter().find(|r| r.kind == kind).unwrap().mxc.clone();
        let (protected, protected_file) = (of_kind("sticker"), of_kind("file"));
        let is_protected = |mxc: &str| mxc == protected || mxc == protected_file;
        for mxc in [&protected, &protected_file] {
            let path = format!("/_synapse/admin/v1/media/protect/{}", mxc.rsplit('/').next().unwrap());
            testbed.admin.request(reqwest::Method::POST, &path, Some(json!({}))).await?;
        }

        let result =
            command_reply(testbed, &admin_room, &format!("!quarantine room {room} --reason \"csam report\" --yes"), 3)
                .await?;
        assert_eq!(field(&result, "quarantined_count"), (shared.len() - 2).to_string(), "{result}");
        assert_eq!(field(&result, "status"), "done");
        assert_eq!(field(&result, "failed"), "0");
        assert!(field(&result, "not quarantined").contains(&format!("{protected} (protected")), "{result}");
        assert!(field(&result, "not quarantined").contains(&format!("{protected_file} (protected")), "{result}");
        let after = statuses(&alice, &shared).await?;
        assert!(
            after.iter().all(|(mxc, s)| *s == if is_protected(mxc) { 200 } else { 404 }),
            "every shared media but the protected ones is gone: {after:?}"
        );
        // Synapse's room call took what its scan sees; the rest went one by one.
        let audit = store.audit_entries(100, None).await?;
        let outcome = |mxc: &str| {
            audit.iter().find(|r| r.entry.target.as_deref() == Some(mxc)).map(|r| r.entry.outcome.clone()).unwrap()
        };
        assert_eq!(outcome(&of_kind("url")), "done: quarantined by Synapse's room quarantine");
        assert_eq!(outcome(&of_kind("html_img")), "done: quarantined");
        assert_eq!(outcome(&of_kind("thumbnail_file")), "done: quarantined");
        assert!(outcome(&protected).starts_with("skipped: protected"), "{}", outcome(&protected));
        assert!(outcome(&protected_file).starts_with("skipped: protected"), "{}", outcome(&protected_file));
        let kept = statuses(&alice, &mentioned).await?;
        assert!(kept.values().all(|s| *s == 200), "mentions and profile pictures stay: {kept:?}");
        let unreferenced: Vec<String> = seeded.uploads.iter().filter(|u| !referenced.contains(u)).cloned().collect();
        assert!(statuses(&alice, &unreferenced).await?.values().all(|s| *s == 200), "never-sent upload stays");
        assert_eq!(bob.download_status(&innocent).await?, 200, "the other room's media stays");

        // Asked for, mentions go too.
        let result =
            command_reply(testbed, &admin_room, &format!("!quarantine room {room} --include-mentions --yes"), 3)
                .await?;
        assert_eq!(field(&result, "quarantined_count"), (referenced.len() - 2).to_string(), "{result}");
        let after = statuses(&alice, &referenced).await?;
        assert!(after.iter().all(|(mxc, s)| *s == if is_protected(mxc) { 200 } else { 404 }), "{after:?}");

        // Quarantine is by media ID: posting the same media elsewhere brings nothing back.
        let elsewhere = alice.create_room(json!({"name": "elsewhere"})).await?;
        let gone = referenced.iter().find(|mxc| !is_protected(mxc)).unwrap();
        alice.send(&elsewhere, "m.room.message", json!({"msgtype": "m.image", "body": "again", "url": gone})).await?;
        assert_eq!(bob.download_status(gone).await?, 404);

        let status = command_reply(testbed, &admin_room, "!status", 1).await?;
        assert_eq!(field(&status, "quarantined media"), (referenced.len() - 2).to_string(), "{status}");
        let audit = store.audit_entries(100, None).await?;
        let actions = audit.iter().filter(|r| r.entry.action == "quarantine.media").count();
        assert_eq!(actions, shared.len() + referenced.len(), "each media of each job audited");
        store.close().await;
        Ok(())
    })
    .await
}

/// An index that lacks part of a room's history (here: one reference
/// removed, as if never read) plans less than Synapse's room call would
/// take: housekeep then quarantines one by one, and the media it does not
/// know of stays available.
async fn synapses_room_call_is_not_used_when_it_would_take_more_than_the_plan(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "half read"})).await?;
        let mut media = Vec::new();
        for n in 0..3 {
            let mxc =
                alice.upload(format!("{}: picture {n}", alice.user_id).into_bytes(), "image/png", "p.png").await?;
            alice.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "p", "url": mxc})).await?;
            media.push(mxc);
        }
        indexed(&store, &room, 3).await?;
        let unknown = media[0].clone();
        sqlx::query("DELETE FROM media_refs WHERE media_id = $1")
            .bind(unknown.rsplit('/').next().unwrap())
            .execute(store.pool())
            .await?;

        let result = command_reply(testbed, &admin_room, &format!("!quarantine room {room} --yes"), 3).await?;
        assert_eq!(field(&result, "quarantined_count"), "2", "{result}");
        let now = statuses(&alice, &media).await?;
        assert_eq!((now[&media[0]], now[&media[1]], now[&media[2]]), (200, 404, 404), "{now:?}");
        assert_eq!(quarantine_outcomes(&store).await?, ["done: quarantined", "done: quarantined"], "one by one");
        store.close().await;
        Ok(())
    })
    .await
}

/// The outcomes audited for each media quarantined.
async fn quarantine_outcomes(store: &Store) -> anyhow::Result<Vec<String>> {
    let audit = store.audit_entries(100, None).await?;
    Ok(audit.into_iter().filter(|r| r.entry.action == "quarantine.media").map(|r| r.entry.outcome).collect())
}

async fn synapses_user_call_is_not_used_for_uploads_made_after_the_plan(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "alice's"})).await?;
        let sent = alice.upload(format!("{}: alice sent", alice.user_id).into_bytes(), "image/png", "a.png").await?;
        alice.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "a", "url": sent})).await?;
        let kept = alice.upload(format!("{}: alice kept", alice.user_id).into_bytes(), "image/png", "b.png").await?;
        indexed(&store, &room, 1).await?;

        let plan = first_reply(testbed, &admin_room, &format!("!quarantine user {}", alice.user_id)).await?;
        let id = job_id(&plan);
        // Uploaded after the moderator saw the plan: not theirs to take.
        let late = alice.upload(format!("{}: alice later", alice.user_id).into_bytes(), "image/png", "c.png").await?;
        testbed.admin.send_text(&admin_room, &format!("!confirm {id}")).await?;
        wait_for_job(&store, &id, JobState::Done).await?;

        let now = statuses(&alice, &[sent.clone(), kept.clone(), late.clone()]).await?;
        assert_eq!((now[&sent], now[&kept], now[&late]), (404, 404, 200), "{now:?}");
        assert_eq!(quarantine_outcomes(&store).await?, ["done: quarantined", "done: quarantined"], "one by one");
        store.close().await;
        Ok(())
    })
    .await
}

async fn user_event_media_and_unquarantine_round_trips(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let bob = testbed.synapse.register_user("bob", false).await?;
        let room = alice.create_room(json!({"name": "shared", "preset": "public_chat"})).await?;
        bob.join(&room).await?;
        let sent = alice.upload(format!("{}: alice sent", alice.user_id).into_bytes(), "image/png", "a.png").await?;
        let unsent = alice.upload(format!("{}: alice kept", alice.user_id).into_bytes(), "image/png", "b.png").await?;
        alice.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "a", "url": sent})).await?;
        let theirs = bob.upload(format!("{}: bob sent", bob.user_id).into_bytes(), "image/png", "c.png").await?;
        let bob_event =
            bob.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "c", "url": theirs})).await?;
        indexed(&store, &room, 2).await?;
        let all = [sent.clone(), unsent.clone(), theirs.clone()];

        // user: what they referenced anywhere plus what they uploaded.
        let result =
            command_reply(testbed, &admin_room, &format!("!quarantine user {} --yes", alice.user_id), 3).await?;
        assert_eq!(field(&result, "quarantined_count"), "2", "{result}");
        let now = statuses(&bob, &all).await?;
        assert_eq!((now[&sent], now[&unsent], now[&theirs]), (404, 404, 200), "{now:?}");
        let by_user_call = "done: quarantined by Synapse's user quarantine";
        assert_eq!(quarantine_outcomes(&store).await?, [by_user_call, by_user_call], "in one call");
        let result =
            command_reply(testbed, &admin_room, &format!("!unquarantine user {} --yes", alice.user_id), 3).await?;
        assert_eq!(field(&result, "unquarantined_count"), "2", "{result}");
        assert!(statuses(&bob, &all).await?.values().all(|s| *s == 200));

        // event, then media.
        let matrix_to = format!("https://matrix.to/#/{}/{}", encode(&room), encode(&bob_event));
        let result = command_reply(testbed, &admin_room, &format!("!quarantine event {matrix_to} --yes"), 3).await?;
        assert_eq!(field(&result, "quarantined_count"), "1", "{result}");
        assert_eq!(bob.download_status(&theirs).await?, 404);
        let result = command_reply(testbed, &admin_room, &format!("!unquarantine media {theirs} --yes"), 3).await?;
        assert_eq!(field(&result, "unquarantined_count"), "1", "{result}");
        assert_eq!(bob.download_status(&theirs).await?, 200);

        // A selection the homeserver cannot resolve is answered at once, with the reason.
        let unknown = command_reply(testbed, &admin_room, "!quarantine room #no-such-room:localhost --yes", 1).await?;
        assert!(unknown.starts_with("Could not run quarantine") && unknown.contains("M_NOT_FOUND"), "{unknown}");

        // A dry run of a media quarantine changes nothing.
        let dry = command_reply(testbed, &admin_room, &format!("!quarantine media {sent} --dry-run"), 1).await?;
        assert!(dry.contains("dry_run"), "{dry}");
        assert_eq!(bob.download_status(&sent).await?, 200);

        // Protected media is reported as still available, not as quarantined.
        let media_id = unsent.rsplit('/').next().unwrap();
        testbed
            .admin
            .request(reqwest::Method::POST, &format!("/_synapse/admin/v1/media/protect/{media_id}"), Some(json!({})))
            .await?;
        let result =
            command_reply(testbed, &admin_room, &format!("!quarantine media {unsent} {sent} --yes"), 3).await?;
        assert_eq!(field(&result, "quarantined_count"), "1", "{result}");
        assert!(field(&result, "not quarantined").contains("protected"), "{result}");
        assert_eq!(bob.download_status(&unsent).await?, 200);
        assert_eq!(bob.download_status(&sent).await?, 404);
        store.close().await;
        Ok(())
    })
    .await
}

async fn a_quarantine_killed_mid_way_resumes_and_does_each_media_once(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"name": "many"})).await?;
        // 1,000 references (media IDs Synapse has never seen: quarantining them
        // is a no-op there), mentioned in a custom field: --include-mentions.
        for event in 0..20 {
            let refs: Vec<Value> = (0..50).map(|n| json!(format!("mxc://localhost/bulk{event}x{n}"))).collect();
            alice.send(&room, "org.example.gallery", json!({"pictures": refs})).await?;
        }
        indexed(&store, &room, 1000).await?;

        let bot = testbed.config.bot_user_id()?.to_string();
        let command =
            testbed.admin.send_text(&admin_room, &format!("!quarantine room {room} --include-mentions --yes")).await?;
        let plan = testbed.admin.wait_for_reply(&admin_room, &command, &bot).await?;
        let id = job_id(&plan);
        // 1,000 media is above admin.confirm_threshold (100): --yes is not enough.
        assert!(plan.contains("--yes is not enough") && plan.contains(": planned"), "{plan}");
        let confirm = testbed.admin.send_text(&admin_room, &format!("!confirm {id}")).await?;
        testbed.admin.wait_for_reply(&admin_room, &confirm, &bot).await?;
        eventually(Duration::from_secs(30), "a few batches", || async {
            Ok(store.job(&id).await?.filter(|job| job.batches >= 3).map(|_| ()))
        })
        .await?;
        testbed.housekeep.kill_9().await?;
        let interrupted = store.job(&id).await?.unwrap();
        assert_eq!(interrupted.state, JobState::Running, "killed mid-way");
        assert!(interrupted.done_count < 1000);
        testbed.housekeep.restart().await?;
        // And again, at random, while it runs.
        let more = crate::common::kill_while_running(&mut testbed.housekeep, &store, &id, 4).await?;
        println!("quarantine: killed {} times mid-way", 1 + more);

        eventually(Duration::from_secs(120), "the job to finish", || async {
            Ok(store.job(&id).await?.filter(|job| job.state == JobState::Done).map(|_| ()))
        })
        .await?;
        let job = store.job(&id).await?.unwrap();
        assert_eq!((job.done_count, job.failed_count), (1000, 0));
        let (audit, _) = store.job_audit(&id, 100_000).await?;
        let mut per_media = BTreeMap::<String, usize>::new();
        for record in audit.iter().filter(|r| r.entry.action == "quarantine.media") {
            *per_media.entry(record.entry.target.clone().unwrap()).or_default() += 1;
        }
        assert_eq!(per_media.len(), 1000);
        assert!(per_media.values().all(|n| *n == 1), "each media recorded once");
        store.close().await;
        Ok(())
    })
    .await
}
