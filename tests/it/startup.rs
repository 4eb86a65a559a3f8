//! Start-up against a real Synapse: a misconfigured deployment is explained
//! in the log, in words an operator can act on.

use std::time::Duration;

use crate::common::{Backend, with_own_testbed, with_testbed};
use housekeep::testbed::eventually;

async fn a_wrong_hs_token_is_explained_in_the_log() {
    with_testbed(Backend::Sqlite, async |testbed| {
        let log = testbed.dir.path().join("housekeep.log");
        // The handshake runs after the listener answers /health.
        eventually(Duration::from_secs(20), "the ping in the log", || async {
            let text = std::fs::read_to_string(&log)?;
            Ok(text.contains("homeserver reached housekeep (appservice ping)").then_some(()))
        })
        .await?;

        // The operator regenerated the token in the config but not in Synapse's registration.
        let config = std::fs::read_to_string(&testbed.config_path)?;
        let token = &testbed.config.appservice.hs_token;
        std::fs::write(&testbed.config_path, config.replace(token.as_str(), "not-the-registered-token"))?;
        testbed.housekeep.restart().await?;
        let advice = eventually(Duration::from_secs(20), "the ping failure in the log", || async {
            let text = std::fs::read_to_string(&log)?;
            Ok(text.lines().find(|l| l.contains("appservice ping failed")).map(str::to_owned))
        })
        .await?;
        assert!(advice.contains("the registration file and appservice.hs_token differ"), "{advice}");

        std::fs::write(&testbed.config_path, config)?;
        testbed.housekeep.restart().await?;
        Ok(())
    })
    .await
    .unwrap();
}

tests! {
    both: [
        a_second_housekeep_on_the_same_database_never_runs_beside_the_first,
    ],
    plain: [
        a_wrong_hs_token_is_explained_in_the_log,
        a_missing_admin_room_holds_up_commands_not_the_index,
        the_bot_creates_a_missing_admin_room_and_invites_the_moderators,
        a_homeserver_that_is_down_holds_up_commands_not_the_index,
        an_admin_alias_claimed_by_someone_else_is_not_trusted,
        an_admin_room_the_bot_made_is_locked_down_before_commands_are_taken,
    ],
}

async fn a_second_housekeep_on_the_same_database_never_runs_beside_the_first(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        // A rolling deploy or a copy started by hand: same config, same database.
        let second = tokio::process::Command::new(crate::common::housekeep_binary())
            .arg("run")
            .arg("-c")
            .arg(&testbed.config_path)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output();
        let second = tokio::time::timeout(Duration::from_secs(30), second).await??;
        let log = String::from_utf8_lossy(&second.stderr);
        assert!(!second.status.success(), "the second copy must not run: {log}");
        match backend {
            Backend::Sqlite => assert!(log.contains("another housekeep is running against this database"), "{log}"),
            // PostgreSQL: it would wait as a standby, but the first has its port.
            Backend::Postgres => assert!(log.contains("a standby needs an address of its own"), "{log}"),
        }
        // The first one still answers.
        let admin_room = testbed.admin_room().await?;
        let asked = testbed.admin.send_text(&admin_room, "!help").await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let help = testbed.admin.wait_for_reply(&admin_room, &asked, &bot).await?;
        assert!(help.contains("!purge"), "{help}");
        // Once it stops, the database is free again.
        testbed.housekeep.kill_9().await?;
        testbed.housekeep.restart().await?;
        Ok(())
    })
    .await
}

/// `/health`'s body: `OK`, then a line per thing start-up waits for.
async fn health(testbed: &housekeep::testbed::Testbed) -> anyhow::Result<String> {
    let (status, body) = testbed.housekeep.health().await?;
    anyhow::ensure!(status == 200, "/health answered {status}: {body}");
    Ok(body)
}

/// Whether housekeep indexed an event (read from its database).
async fn indexed(testbed: &housekeep::testbed::Testbed, room: &str, event_id: &str) -> anyhow::Result<bool> {
    let store = testbed.store().await?;
    let found = store.room_events(room).await?.iter().any(|event| event.event_id == event_id);
    store.close().await;
    Ok(found)
}

/// A typo in `admin.room` (an alias that does not exist) does not stop the
/// index: housekeep starts, indexes what arrives, says on `/health` and in
/// its log what it waits for, and takes commands once the room exists.
async fn a_missing_admin_room_holds_up_commands_not_the_index() {
    with_own_testbed(Backend::Sqlite, async |testbed| {
        let old_admin_room = testbed.admin_room().await?;
        testbed
            .reconfigure(|text| {
                text.replace("#housekeep-admin:localhost", "#housekeep-admni:localhost")
                    .replace("create_if_missing: true", "create_if_missing: false")
            })
            .await?;
        let waiting = eventually(Duration::from_secs(20), "/health to name the missing room", || async {
            let body = health(testbed).await?;
            Ok(body.contains("waiting for admin_room").then_some(body))
        })
        .await?;
        assert!(waiting.starts_with("OK\nwaiting for"), "{waiting}");
        assert!(waiting.contains("the alias #housekeep-admni:localhost does not exist"), "{waiting}");
        assert!(waiting.contains("admin.create_if_missing: true"), "{waiting}");
        let metrics = testbed.housekeep.metrics().await?;
        assert!(metrics.contains("housekeep_waiting_for{what=\"admin_room\"} 1"), "{metrics}");

        // The index runs: a message in a room the bot is in is indexed.
        let message = testbed.admin.send_text(&old_admin_room, "indexed while the admin room is missing").await?;
        eventually(Duration::from_secs(20), "the message in the index", || async {
            Ok(indexed(testbed, &old_admin_room, &message).await?.then_some(()))
        })
        .await?;

        // The operator creates the room; housekeep finds it on its next try and answers there.
        let room = housekeep::testbed::create_admin_room(&testbed.admin, &testbed.config).await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        eventually(Duration::from_secs(60), "/health without waits", || async {
            Ok((health(testbed).await? == "OK").then_some(()))
        })
        .await?;
        let asked = testbed.admin.send_text(&room, "!status").await?;
        let status = testbed.admin.wait_for_reply(&room, &asked, &bot).await?;
        assert!(status.contains("waiting for: nothing"), "{status}");
        let metrics = testbed.housekeep.metrics().await?;
        assert!(metrics.contains("housekeep_waiting_for{what=\"admin_room\"} 0"), "{metrics}");
        Ok(())
    })
    .await
    .unwrap();
}

/// With `admin.create_if_missing` (the default) and no room under the
/// alias, the bot creates it, makes the moderators its admins and invites them.
async fn the_bot_creates_a_missing_admin_room_and_invites_the_moderators() {
    with_own_testbed(Backend::Postgres, async |testbed| {
        // The operator names a new room, regenerates the registration (which
        // reserves that alias for the bot) and restarts Synapse with it.
        let text = std::fs::read_to_string(&testbed.config_path)?;
        std::fs::write(&testbed.config_path, text.replace("#housekeep-admin:localhost", "#made-by-the-bot:localhost"))?;
        let generated = tokio::process::Command::new(crate::common::housekeep_binary())
            .arg("generate-registration")
            .arg("-c")
            .arg(&testbed.config_path)
            .arg("-o")
            .arg(testbed.dir.path().join("registration.yaml"))
            .output()
            .await?;
        assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
        testbed.synapse.halt().await?;
        testbed.synapse.resume().await?;
        testbed.config = housekeep::config::Config::load(&testbed.config_path)?;
        testbed.housekeep.restart().await?;
        let room = eventually(Duration::from_secs(30), "the room under the alias", || async {
            Ok(testbed.admin_room().await.ok())
        })
        .await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        // Invited: joining works (the room is private).
        eventually(Duration::from_secs(20), "the moderator's invite", || async {
            Ok(testbed.admin.join(&room).await.ok())
        })
        .await?;
        let levels = testbed
            .admin
            .request(reqwest::Method::GET, &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels"), None)
            .await?;
        assert_eq!(levels["users"]["@admin:localhost"], 50, "moderators, below the bot: {levels}");
        assert_eq!(levels["invite"], 50, "members cannot invite others in: {levels}");
        let asked = testbed.admin.send_text(&room, "!help").await?;
        let help = testbed.admin.wait_for_reply(&room, &asked, &bot).await?;
        assert!(help.contains("!purge"), "{help}");
        Ok(())
    })
    .await
    .unwrap();
}

/// With the homeserver down, housekeep still starts and indexes what it is
/// sent; once the homeserver is back, it finishes starting by itself. The
/// admin room's ID from the last run is used meanwhile.
async fn a_homeserver_that_is_down_holds_up_commands_not_the_index() {
    with_own_testbed(Backend::Postgres, async |testbed| {
        let admin_room = testbed.admin_room().await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        // Resolved once: remembered for the next start.
        let asked = testbed.admin.send_text(&admin_room, "!help").await?;
        testbed.admin.wait_for_reply(&admin_room, &asked, &bot).await?;

        testbed.synapse.halt().await?;
        testbed.housekeep.restart().await?;
        let waiting = eventually(Duration::from_secs(20), "/health to name the homeserver", || async {
            let body = health(testbed).await?;
            Ok(body.contains("waiting for homeserver").then_some(body))
        })
        .await?;
        assert!(waiting.starts_with("OK\nwaiting for"), "{waiting}");
        // The index takes what it is sent (a transaction from a homeserver
        // that came back, say); a command in the admin room is kept for later.
        let room = "!elsewhere:localhost";
        let message = serde_json::json!({
            "event_id": "$while-down", "room_id": room, "sender": "@someone:localhost",
            "origin_server_ts": 1_700_000_000_000_i64, "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "hello"},
        });
        let command = serde_json::json!({
            "event_id": "$help-while-down", "room_id": admin_room, "sender": "@admin:localhost",
            "origin_server_ts": housekeep::clock::now_ms(), "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "!status"},
        });
        testbed.push_transaction("while-down", vec![message, command]).await?;
        assert!(indexed(testbed, room, "$while-down").await?, "committed before the 200");

        testbed.synapse.resume().await?;
        eventually(Duration::from_secs(90), "/health without waits", || async {
            Ok((health(testbed).await? == "OK").then_some(()))
        })
        .await?;
        // The command sent while the homeserver was down is answered.
        let status = testbed.admin.wait_for_reply(&admin_room, "$help-while-down", &bot).await?;
        assert!(status.contains("housekeep status"), "{status}");
        Ok(())
    })
    .await
    .unwrap();
}

/// Anyone on the homeserver can claim a free alias. A room under the admin
/// alias that neither the bot nor a moderator created is not taken as the
/// admin room: `/health` says whose it is, and nobody's commands run there,
/// not even once the real admin room is back.
async fn an_admin_alias_claimed_by_someone_else_is_not_trusted() {
    with_own_testbed(Backend::Sqlite, async |testbed| {
        let real_admin_room = testbed.admin_room().await?;
        let mallory = testbed.synapse.register_user("mallory", false).await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        // Public, so the bot can look inside without an invite: an invite
        // would race the running bot, which rejects invites from strangers.
        let squatted = mallory
            .create_room(serde_json::json!({
                "name": "housekeep admin", "room_alias_name": "claimed-first", "preset": "public_chat",
            }))
            .await?;
        testbed.reconfigure(|text| text.replace("#housekeep-admin:localhost", "#claimed-first:localhost")).await?;
        let waiting = eventually(Duration::from_secs(20), "/health to refuse the room", || async {
            let body = health(testbed).await?;
            Ok(body.contains("waiting for admin_room").then_some(body))
        })
        .await?;
        assert!(
            waiting.contains("created by @mallory:localhost, who is neither the bot nor in admin.moderators"),
            "{waiting}"
        );
        // Mallory's command in her room is not taken as a command to the
        // bot, nor kept for later: with the alias distrusted no room is the
        // admin room, and anyone could fill the inbox (the index has it all
        // the same, in the same database transaction as any inbox row).
        let asked = mallory.send_text(&squatted, "!status").await?;
        eventually(Duration::from_secs(20), "Mallory's command in the index", || async {
            Ok(indexed(testbed, &squatted, &asked).await?.then_some(()))
        })
        .await?;
        let store = testbed.store().await?;
        assert_eq!(inbox_outcome(&store, &asked).await?, None, "not queued");
        assert!(store.remembered_alias("#claimed-first:localhost").await?.is_none(), "not remembered");
        let metrics = testbed.housekeep.metrics().await?;
        assert!(metrics.contains("housekeep_rejected_inputs_total{reason=\"admin_room_unknown\"} 1"), "{metrics}");
        assert!(
            testbed
                .housekeep
                .log()?
                .contains("command not kept: the admin alias points at a room the bot does not trust")
        );

        // The operator points admin.room back at the real room; the bot starts.
        testbed.reconfigure(|text| text.replace("#claimed-first:localhost", "#housekeep-admin:localhost")).await?;
        let barrier = testbed.admin.send_text(&real_admin_room, "!status").await?;
        testbed.admin.wait_for_reply(&real_admin_room, &barrier, &bot).await?;
        let replies = mallory.recent_events(&squatted, 50).await?;
        assert!(
            replies.iter().all(|e| e["sender"] != bot.as_str() || e["type"] != "m.room.message"),
            "the bot said nothing there: {replies:?}"
        );
        assert!(store.remembered_alias("#claimed-first:localhost").await?.is_none(), "not remembered");

        // The real alias is deleted and Mallory claims it for a room of hers:
        // the room it pointed at last (trusted then) stays the admin room.
        let alias_path = "/_matrix/client/v3/directory/room/%23housekeep-admin%3Alocalhost";
        testbed.admin.request(reqwest::Method::DELETE, alias_path, None).await?;
        mallory
            .create_room(serde_json::json!({
                "name": "housekeep admin", "room_alias_name": "housekeep-admin", "preset": "private_chat",
                "invite": [bot.as_str()],
            }))
            .await?;
        testbed.housekeep.restart().await?;
        let asked = testbed.admin.send_text(&real_admin_room, "!status").await?;
        testbed.admin.wait_for_reply(&real_admin_room, &asked, &bot).await?;
        let log = testbed.housekeep.log()?;
        assert!(log.contains("using the room the alias pointed at last, which was trusted"), "{log}");
        store.close().await;
        Ok(())
    })
    .await
    .unwrap();
}

/// An inbox row's outcome: `None` if there is no row, `Some(None)` while it
/// is not handled yet.
async fn inbox_outcome(store: &housekeep::store::Store, event_id: &str) -> anyhow::Result<Option<Option<String>>> {
    let row: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT handled_at, outcome FROM bot_inbox WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(store.pool())
            .await?;
    Ok(row.map(|(handled_at, outcome)| handled_at.and(outcome)))
}

/// A room the bot made is taken as the admin room only once inviting needs
/// a moderator and guests are kept out: the lock-down is retried until it
/// holds, and `/health` says why commands wait meanwhile.
async fn an_admin_room_the_bot_made_is_locked_down_before_commands_are_taken() {
    with_own_testbed(Backend::Sqlite, async |testbed| {
        let bot = testbed.bot()?;
        let bot_id = testbed.config.bot_user_id()?.to_string();
        let admin_id = testbed.admin.user_id.clone();
        // What a crash between creating the room and locking it down leaves
        // (made here by the test, acting as the bot): anyone in it may
        // invite, and guests may join. On top, the bot has lost its power
        // there, so the homeserver refuses the lock-down.
        let room = bot
            .create_room(serde_json::json!({
                "name": "housekeep admin", "preset": "private_chat", "room_version": "10", "invite": [admin_id.as_str()],
                "initial_state": [{"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}],
            }))
            .await?;
        testbed.admin.join(&room).await?;
        // The alias (an appservice may make only its own).
        let alias_path = "/_matrix/client/v3/directory/room/%23left-open%3Alocalhost";
        testbed.admin.request(reqwest::Method::PUT, alias_path, Some(serde_json::json!({"room_id": room}))).await?;
        let levels_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels");
        let mut levels = bot.request(reqwest::Method::GET, &levels_path, None).await?;
        levels["users"][admin_id.as_str()] = 100.into();
        levels["users"][bot_id.as_str()] = 0.into();
        bot.request(reqwest::Method::PUT, &levels_path, Some(levels.clone())).await?;

        testbed.reconfigure(|text| text.replace("#housekeep-admin:localhost", "#left-open:localhost")).await?;
        let waiting = eventually(Duration::from_secs(20), "/health to name the open room", || async {
            let body = health(testbed).await?;
            Ok(body.contains("is not locked down yet").then_some(body))
        })
        .await?;
        assert!(waiting.contains("setting that failed (the homeserver said M_FORBIDDEN"), "{waiting}");
        let asked = testbed.admin.send_text(&room, "!help").await?;

        // A moderator gives the bot its power back: the next try holds, and
        // the command that waited is answered.
        levels["users"][bot_id.as_str()] = 100.into();
        testbed.admin.request(reqwest::Method::PUT, &levels_path, Some(levels)).await?;
        let help = testbed.admin.wait_for_reply(&room, &asked, &bot_id).await?;
        assert!(help.contains("!purge"), "{help}");
        let levels = testbed.admin.request(reqwest::Method::GET, &levels_path, None).await?;
        assert_eq!(levels["invite"], 50, "members cannot invite others in: {levels}");
        assert_eq!(levels["users"][admin_id.as_str()], 100, "a moderator's higher level is kept: {levels}");
        let guests_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.guest_access");
        let guests = testbed.admin.request(reqwest::Method::GET, &guests_path, None).await?;
        assert_eq!(guests["guest_access"], "forbidden", "{guests}");
        assert_eq!(health(testbed).await?, "OK");
        Ok(())
    })
    .await
    .unwrap();
}
