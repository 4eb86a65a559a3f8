//! Account sanctions on a real Synapse: each is applied and lifted through
//! the admin room, and checked through Synapse as its user meets it (the
//! suspended user cannot send, the locked one cannot log in, what the
//! shadow-banned one sends reaches nobody, the deactivated one is gone);
//! remote users, moderators, server admins and the bot are refused. On
//! PostgreSQL, with a tenant of the shared Synapse.

use std::time::Duration;

use crate::common::{Backend, command_reply, first_reply, job_id, wait_for_job, with_testbed};
use housekeep::store::JobState;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::json;

tests! {
    postgres: [
        each_sanction_is_applied_and_lifted_as_synapse_shows,
        remote_users_moderators_admins_and_the_bot_are_refused,
    ],
}

/// Logs in with the password the testbed registered the user with.
async fn password_login(testbed: &Testbed, user: &MatrixUser) -> anyhow::Result<reqwest::StatusCode> {
    let localpart = user.user_id.trim_start_matches('@').split(':').next().unwrap_or_default();
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": format!("{localpart}-password"),
    });
    let url = format!("{}/_matrix/client/v3/login", testbed.synapse.url);
    Ok(housekeep::testbed::http().post(url).json(&body).send().await?.status())
}

/// Runs a sanction command with `--yes` and returns its result.
async fn sanction(testbed: &Testbed, room: &str, command: &str) -> anyhow::Result<String> {
    let result = command_reply(testbed, room, &format!("{command} --yes --reason \"test\""), 3).await?;
    assert!(result.contains("(sanction) done"), "{command}: {result}");
    Ok(result)
}

async fn each_sanction_is_applied_and_lifted_as_synapse_shows(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let room = alice.create_room(json!({"preset": "public_chat"})).await?;
        spammer.join(&room).await?;
        let who = &spammer.user_id;

        // Suspended: cannot send; lifted: can again.
        let result = sanction(testbed, &admin_room, &format!("!suspend {who}")).await?;
        assert!(
            result.contains("now suspended") && result.contains(&format!("!unsuspend {who} undoes it")),
            "{result}"
        );
        let refused = spammer.send_text(&room, "buy now").await.expect_err("a suspended user cannot send");
        assert!(refused.to_string().contains("M_USER_SUSPENDED"), "{refused}");
        let again = command_reply(testbed, &admin_room, &format!("!suspend {who} --yes"), 1).await?;
        assert!(again.contains("is suspended already") && again.contains("Nothing to do."), "{again}");
        sanction(testbed, &admin_room, &format!("!unsuspend {who}")).await?;
        spammer.send_text(&room, "hello again").await?;

        // Locked: neither the token nor a password login works.
        sanction(testbed, &admin_room, &format!("!lock {who}")).await?;
        let refused = spammer.send_text(&room, "buy now").await.expect_err("a locked user's token is refused");
        assert!(refused.to_string().contains("M_USER_LOCKED"), "{refused}");
        assert_eq!(password_login(testbed, &spammer).await?, reqwest::StatusCode::UNAUTHORIZED);
        sanction(testbed, &admin_room, &format!("!unlock {who}")).await?;
        assert_eq!(password_login(testbed, &spammer).await?, reqwest::StatusCode::OK);

        // Shadow-banned: sending "works", and nobody receives it.
        sanction(testbed, &admin_room, &format!("!shadowban {who}")).await?;
        let hidden = spammer.send_text(&room, "shadow spam").await?;
        let marker = alice.send_text(&room, "after the shadow spam").await?;
        let seen = alice.room_event_ids(&room).await?;
        assert!(seen.contains(&marker) && !seen.contains(&hidden), "alice must not see the shadow-banned message");
        sanction(testbed, &admin_room, &format!("!unshadowban {who}")).await?;
        let visible = spammer.send_text(&room, "visible again").await?;
        eventually(Duration::from_secs(10), "the message after the shadow-ban is lifted", || async {
            Ok(alice.room_event_ids(&room).await?.contains(&visible).then_some(()))
        })
        .await?;

        // Deactivated: no --yes, a plan confirmed; then the account is gone.
        let refused = command_reply(testbed, &admin_room, &format!("!deactivate {who} --yes"), 1).await?;
        assert!(refused.contains("it cannot be undone") && refused.contains("Usage: !deactivate"), "{refused}");
        let plan = first_reply(testbed, &admin_room, &format!("!deactivate {who} --erase")).await?;
        assert!(plan.contains("This cannot be undone") && plan.contains("planned"), "{plan}");
        assert!(plan.contains("rooms: in 1 rooms, administers none"), "{plan}");
        let id = job_id(&plan);
        let store = testbed.store().await?;
        let confirmed = command_reply(testbed, &admin_room, &format!("!confirm {id}"), 1).await?;
        assert!(confirmed.contains(&id), "{confirmed}");
        wait_for_job(&store, &id, JobState::Done).await?;
        let account =
            testbed.admin.request(reqwest::Method::GET, &format!("/_synapse/admin/v2/users/{who}"), None).await?;
        assert_eq!(account["deactivated"], true, "{account}");
        assert_eq!(password_login(testbed, &spammer).await?, reqwest::StatusCode::FORBIDDEN);

        let audit = command_reply(testbed, &admin_room, "!audit --limit 100", 1).await?;
        for action in ["sanction.suspend", "sanction.unsuspend", "sanction.lock", "sanction.unlock"] {
            assert!(audit.contains(action), "{action} missing from {audit}");
        }
        assert!(audit.contains("sanction.shadowban") && audit.contains("sanction.deactivate"), "{audit}");
        Ok(())
    })
    .await
}

async fn remote_users_moderators_admins_and_the_bot_are_refused(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let remote = command_reply(testbed, &admin_room, "!suspend @spammer:elsewhere.example --yes", 1).await?;
        assert!(remote.contains("account sanctions act on this homeserver's accounts only"), "{remote}");
        assert!(remote.contains("!purge --all-rooms --user @spammer:elsewhere.example"), "{remote}");
        assert!(remote.contains("policy list"), "{remote}");

        // The testbed's moderator is a server admin and a moderator.
        let moderator = testbed.admin.user_id.clone();
        let refused = command_reply(testbed, &admin_room, &format!("!lock {moderator} --yes"), 1).await?;
        assert!(refused.starts_with(&format!("Refused: {moderator} is a server admin and a moderator.")), "{refused}");
        assert!(refused.contains("--force"), "{refused}");
        let bot = testbed.config.bot_user_id()?.to_string();
        let refused = command_reply(testbed, &admin_room, &format!("!shadowban {bot} --yes"), 1).await?;
        assert!(refused.contains("housekeep's own bot"), "{refused}");

        // With --force the plan is made, and says who they are.
        let plan = command_reply(testbed, &admin_room, &format!("!lock {moderator} --force --dry-run"), 1).await?;
        assert!(plan.contains("--force:") && plan.contains("server admin"), "{plan}");
        assert!(plan.contains("Dry run: nothing will be done."), "{plan}");
        let account =
            testbed.admin.request(reqwest::Method::GET, &format!("/_synapse/admin/v2/users/{moderator}"), None).await?;
        assert_eq!(account["locked"], false, "a dry run changes nothing");

        // Lifting is never refused: unlocking a moderator is harmless.
        let lift = command_reply(testbed, &admin_room, &format!("!unlock {moderator} --yes"), 1).await?;
        assert!(lift.contains("is unlocked already"), "{lift}");

        let audit = command_reply(testbed, &admin_room, "!audit --limit 10", 1).await?;
        assert!(
            audit.contains("!suspend @spammer:elsewhere.example --yes → refused: a user of another server"),
            "{audit}"
        );
        assert!(audit.contains(&format!("→ refused: {moderator} is a server admin and a moderator")), "{audit}");
        Ok(())
    })
    .await
}
