//! `!room takedown|block|unblock` on a real Synapse: what a moderator would
//! check through Synapse afterwards. On PostgreSQL, each test with a
//! Synapse of its own (the bot is made a server admin, and rooms are
//! blocked server-wide).

use std::time::{Duration, Instant};

use crate::common::{Backend, command_reply, field, indexed, job_id, wait_for_job, with_own_testbed};
use housekeep::grammar::percent_encode;
use housekeep::store::JobState;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use reqwest::Method;
use serde_json::{Value, json};

tests! {
    postgres: [
        a_room_taken_down_is_blocked_purged_and_its_media_quarantined_first,
        block_unblock_a_message_and_the_admin_room_refused,
    ],
}

/// Synapse's admin view of a room's block (`{"block": bool, "user_id"?}`).
async fn block_state(testbed: &Testbed, room: &str) -> anyhow::Result<Value> {
    let path = format!("/_synapse/admin/v1/rooms/{}/block", percent_encode(room));
    testbed.admin.request(Method::GET, &path, None).await
}

/// Whether `user` may join `room` now, and Synapse's answer if not.
async fn join_refusal(user: &MatrixUser, room: &str) -> Option<String> {
    user.join(room).await.err().map(|error| error.to_string())
}

async fn a_room_taken_down_is_blocked_purged_and_its_media_quarantined_first(backend: Backend) -> anyhow::Result<()> {
    with_own_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let domain = testbed.config.homeserver.domain.clone();
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let visitor = testbed.synapse.register_user("visitor", false).await?;
        let outsider = testbed.synapse.register_user("outsider", false).await?;
        let room = spammer
            .create_room(json!({"name": "Bazaar", "preset": "public_chat", "room_alias_name": "bazaar"}))
            .await?;
        visitor.join(&room).await?;
        // An attachment, and an inline image Synapse's own room quarantine
        // would not find (it reads only `url` and `info.thumbnail_url`).
        let picture = spammer.upload(b"spam picture".to_vec(), "image/png", "deal.png").await?;
        let inline = spammer.upload(b"inline spam".to_vec(), "image/png", "inline.png").await?;
        let sent = vec![
            spammer.send_text(&room, "cheap watches").await?,
            spammer
                .send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "deal.png", "url": picture}))
                .await?,
            spammer
                .send(
                    &room,
                    "m.room.message",
                    json!({"msgtype": "m.text", "body": "look", "format": "org.matrix.custom.html",
                           "formatted_body": format!("look <img src=\"{inline}\">")}),
                )
                .await?,
        ];
        indexed(&store, &room, &sent).await?;
        for mxc in [&picture, &inline] {
            assert_eq!(visitor.download_status(mxc).await?, 200);
        }

        let alias = format!("#bazaar:{domain}");
        let command = format!("!room takedown {alias} --block --purge --with-media quarantine --reason \"spam room\"");
        let asked = testbed.admin.send_text(&admin_room, &command).await?;
        let planned = testbed.admin.wait_for_replies(&admin_room, &asked, &bot, 1).await?;
        let plan = planned[0]["content"]["body"].as_str().unwrap_or_default();
        for expected in [
            &format!("Would take down \"Bazaar\" ({room}) on this homeserver."),
            "local members (removed): 2 (",
            spammer.user_id.as_str(),
            "remote members (stay, on their servers): 0",
            &format!("local aliases: {alias}: deleted with the purge"),
            "media: 2 shared, per housekeep's index (0 quarantined already): each quarantined before the takedown",
            "block: yes",
            "purge: yes",
            "housekeep's index keeps this room's events and their media references",
            "other servers in the room keep it",
        ] {
            assert!(plan.contains(expected), "{expected:?} missing from the plan: {plan}");
        }
        let id = job_id(plan);
        assert_eq!(visitor.download_status(&picture).await?, 200, "a plan changes nothing");
        assert_eq!(block_state(testbed, &room).await?["block"], false);

        // A ✅ on the plan confirms it.
        let confirmed = Instant::now();
        let plan_event = planned[0]["event_id"].as_str().unwrap_or_default();
        testbed.admin.react(&admin_room, plan_event, "✅").await?;
        wait_for_job(&store, &id, JobState::Done).await?;
        let took = confirmed.elapsed();
        let replies = testbed.admin.wait_for_replies(&admin_room, &asked, &bot, 3).await?;
        let result = replies[2]["content"]["body"].as_str().unwrap_or_default();
        assert_eq!(field(result, "status"), "done", "{result}");
        assert!(field(result, "Synapse's delete").starts_with("complete ("), "{result}");
        assert!(field(result, "local members removed").starts_with("2 ("), "{result}");
        assert_eq!(field(result, "could not be removed"), "0", "{result}");
        assert_eq!(field(result, "aliases"), format!("{alias} removed"), "{result}");
        assert!(field(result, "blocked").starts_with("yes"), "{result}");
        assert!(field(result, "purged").starts_with("yes"), "{result}");
        assert_eq!(field(result, "media quarantined"), "2 of 2 (0 left alone, 0 failed)", "{result}");
        assert!(result.contains("housekeep's index keeps the room's 3 timeline events"), "{result}");
        eprintln!("figure: !room takedown --block --purge with 2 media: ✅ -> job done in {took:?}");

        // What a moderator would check through Synapse.
        let details = format!("/_synapse/admin/v1/rooms/{}", percent_encode(&room));
        let gone = testbed.admin.request(Method::GET, &details, None).await;
        assert!(gone.as_ref().is_err_and(|e| e.to_string().contains("404")), "purged: {gone:?}");
        let block = block_state(testbed, &room).await?;
        assert_eq!((&block["block"], &block["user_id"]), (&json!(true), &json!(bot)), "{block}");
        for user in [&visitor, &outsider] {
            let refusal = join_refusal(user, &room).await;
            assert!(refusal.as_deref().is_some_and(|r| r.contains("403")), "{}: {refusal:?}", user.user_id);
        }
        let resolved = format!("/_matrix/client/v3/directory/room/{}", percent_encode(&alias));
        assert!(testbed.admin.request(Method::GET, &resolved, None).await.is_err(), "the alias is gone");
        for mxc in [&picture, &inline] {
            assert_eq!(visitor.download_status(mxc).await?, 404, "{mxc} quarantined");
        }
        let visitors_rooms = visitor.request(Method::GET, "/_matrix/client/v3/joined_rooms", None).await?;
        assert!(!visitors_rooms["joined_rooms"].as_array().unwrap().contains(&json!(room)), "{visitors_rooms}");

        // The index keeps the room's rows (the plan and the result say so).
        assert!(store.room_events(&room).await?.len() >= sent.len());

        // Everything is audited: the plan, its confirmation, each media and the room.
        let audit = command_reply(testbed, &admin_room, "!audit --limit 20", 1).await?;
        for action in ["plan", "confirm", "room.media", "room.delete", "room.takedown"] {
            assert!(audit.contains(action), "{action} missing from {audit}");
        }
        store.close().await;
        Ok(())
    })
    .await
}

async fn block_unblock_a_message_and_the_admin_room_refused(backend: Backend) -> anyhow::Result<()> {
    with_own_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let domain = testbed.config.homeserver.domain.clone();
        let host = testbed.synapse.register_user("host", false).await?;
        let guest = testbed.synapse.register_user("guest", false).await?;
        let room = host.create_room(json!({"name": "Lounge", "preset": "public_chat"})).await?;

        // Block: the member stays, nobody else gets in.
        let result = command_reply(testbed, &admin_room, &format!("!room block {room} --reason raid --yes"), 3).await?;
        assert!(result.starts_with("Job ") && result.contains("(room block) done"), "{result}");
        assert!(field(&result, "blocked").starts_with("yes, by @"), "{result}");
        assert_eq!(block_state(testbed, &room).await?["block"], true);
        let refusal = join_refusal(&guest, &room).await;
        assert!(refusal.as_deref().is_some_and(|r| r.contains("403")), "{refusal:?}");
        let again = command_reply(testbed, &admin_room, &format!("!room block {room} --yes"), 1).await?;
        assert!(again.contains("is blocked already, by @") && again.contains("nothing to block"), "{again}");

        // Unblock: anyone may join again.
        let result = command_reply(testbed, &admin_room, &format!("!room unblock {room} --yes"), 3).await?;
        assert!(result.contains("(room unblock) done") && field(&result, "blocked").starts_with("no"), "{result}");
        assert_eq!(block_state(testbed, &room).await?["block"], false);
        guest.join(&room).await?;

        // A takedown with a message: the members and the alias move to a
        // room housekeep's bot makes, where the message is posted.
        let alias = format!("#lounge:{domain}");
        let path = format!("/_matrix/client/v3/directory/room/{}", percent_encode(&alias));
        host.request(Method::PUT, &path, Some(json!({"room_id": room}))).await?;
        // A takedown removes every member: --yes is never enough.
        let command = format!("!room takedown {alias} --message \"The Lounge is closed: spam.\" --yes");
        let bot = testbed.config.bot_user_id()?.to_string();
        let asked = testbed.admin.send_text(&admin_room, &command).await?;
        let plan = testbed.admin.wait_for_reply(&admin_room, &asked, &bot).await?;
        assert!(plan.contains("--yes is not enough: this cannot be undone"), "{plan}");
        command_reply(testbed, &admin_room, &format!("!confirm {}", job_id(&plan)), 1).await?;
        let replies = testbed.admin.wait_for_replies(&admin_room, &asked, &bot, 3).await?;
        let result = replies.last().and_then(|r| r["content"]["body"].as_str()).unwrap_or_default().to_owned();
        assert_eq!(field(&result, "status"), "done", "{result}");
        let notice_room = field(&result, "message posted in").to_owned();
        assert_eq!(field(&result, "aliases"), format!("{alias} now points at {notice_room}"), "{result}");
        assert!(field(&result, "blocked").starts_with("no") && field(&result, "purged").starts_with("no"), "{result}");
        for user in [&host, &guest] {
            let joined = user.request(Method::GET, "/_matrix/client/v3/joined_rooms", None).await?;
            let joined = joined["joined_rooms"].as_array().cloned().unwrap_or_default();
            assert!(joined.contains(&json!(notice_room)) && !joined.contains(&json!(room)), "{joined:?}");
        }
        let told = eventually(Duration::from_secs(10), "the message in the new room", || async {
            let events = guest.recent_events(&notice_room, 20).await?;
            Ok(events.iter().find_map(|e| e["content"]["body"].as_str().map(str::to_owned)))
        })
        .await?;
        assert_eq!(told, "The Lounge is closed: spam.");

        // The admin room is never taken down or blocked, whichever way it is named.
        for command in [
            format!("!room takedown {admin_room} --block --purge --yes"),
            format!("!room block {} --yes", testbed.config.admin.room),
        ] {
            let refused = command_reply(testbed, &admin_room, &command, 1).await?;
            assert!(refused.starts_with("Refused: ") && refused.contains("admin room"), "{refused}");
            assert!(refused.contains("Nothing was planned."), "{refused}");
        }
        assert_eq!(block_state(testbed, &admin_room).await?["block"], false);
        let audit = store.audit_entries(100, None).await?;
        let actions: Vec<&str> = audit.iter().map(|r| r.entry.action.as_str()).collect();
        assert!(actions.contains(&"room.block") && actions.contains(&"room.unblock"), "{actions:?}");
        let refusals = audit.iter().filter(|r| r.entry.outcome == "refused: the admin room").count();
        assert_eq!(refusals, 2, "{audit:?}");
        store.close().await;
        Ok(())
    })
    .await
}
