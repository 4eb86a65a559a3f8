//! Policy lists on a real Synapse: a list room's rules, sent by a client as
//! state events, become plans in the admin room (and, for an `auto` list,
//! actions, checked by what Synapse serves); old rules at the first watch
//! make none; globs and hashes match; unsafe rules are refused; a restart
//! neither repeats nor skips a rule; `!policy match` explains.

use std::time::Duration;

use housekeep::grammar::percent_encode;
use housekeep::store::JobState;
use housekeep::testbed::{MatrixUser, Testbed, eventually};
use serde_json::{Value, json};

use crate::common::{Backend, command_reply, indexed, wait_for_job, with_testbed};

tests! {
    postgres: [
        a_ban_rule_becomes_a_cleanup_plan_and_an_auto_list_runs_it,
        globs_hashes_media_and_rooms_match_and_unsafe_rules_are_refused,
        a_restart_neither_repeats_nor_skips_a_rule,
        a_configured_list_runs_by_itself_and_standing_rules_wait_for_apply,
        server_rules_redacted_rules_and_a_list_in_a_hurry,
    ],
}

/// The bot's messages in `room` whose body contains `needle`, oldest first.
async fn bot_messages(testbed: &Testbed, room: &str, needle: &str) -> anyhow::Result<Vec<Value>> {
    let bot = testbed.config.bot_user_id()?.to_string();
    let mut found: Vec<Value> = testbed
        .admin
        .recent_events(room, 100)
        .await?
        .into_iter()
        .filter(|e| e["sender"] == bot && e["content"]["body"].as_str().is_some_and(|body| body.contains(needle)))
        .collect();
    found.reverse();
    Ok(found)
}

/// Waits for the bot's first message in `room` containing `needle`.
async fn bot_notice(testbed: &Testbed, room: &str, needle: &str) -> anyhow::Result<Value> {
    eventually(Duration::from_secs(30), &format!("a notice with {needle:?}"), || async {
        Ok(bot_messages(testbed, room, needle).await?.into_iter().next())
    })
    .await
}

fn body(event: &Value) -> &str {
    event["content"]["body"].as_str().unwrap_or_default()
}

/// The ID of the job a policy notice names for `label` ("Job abc123 (cleanup of @x): …").
fn job_for(notice: &str, label: &str) -> String {
    let line = notice.lines().find(|l| l.starts_with("Job ") && l.contains(label)).unwrap_or_else(|| {
        panic!("no job for {label:?} in {notice}");
    });
    line.split_whitespace().nth(1).expect("a job id").to_owned()
}

/// What most tests here start from: the bot a server admin, the admin
/// room, the index, a list keeper and a public lobby of theirs.
struct Setup {
    admin_room: String,
    store: housekeep::store::Store,
    server: String,
    keeper: MatrixUser,
    lobby: String,
}

async fn set_up(testbed: &Testbed) -> anyhow::Result<Setup> {
    testbed.make_bot_admin().await?;
    let keeper = testbed.synapse.register_user("listkeeper", false).await?;
    let lobby = keeper.create_room(json!({"preset": "public_chat"})).await?;
    Ok(Setup {
        admin_room: testbed.admin_room().await?,
        store: testbed.store().await?,
        server: testbed.config.homeserver.domain.to_string(),
        keeper,
        lobby,
    })
}

/// A new user who posts one message in `lobby`, indexed: the user and the event.
async fn poster(
    testbed: &Testbed,
    store: &housekeep::store::Store,
    lobby: &str,
    name: &str,
) -> anyhow::Result<(MatrixUser, String)> {
    let user = testbed.synapse.register_user(name, false).await?;
    user.join(lobby).await?;
    let sent = user.send_text(lobby, "spam").await?;
    indexed(store, lobby, std::slice::from_ref(&sent)).await?;
    Ok((user, sent))
}

/// The event as `user` is served it.
async fn event_as(user: &MatrixUser, room: &str, event_id: &str) -> anyhow::Result<Value> {
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", percent_encode(event_id));
    user.request(reqwest::Method::GET, &path, None).await
}

/// A ban rule's content.
fn ban(entity: &str, reason: &str) -> Value {
    json!({"entity": entity, "recommendation": "m.ban", "reason": reason})
}

/// A user's account as Synapse's admin API shows it.
async fn account(testbed: &Testbed, user: &str) -> anyhow::Result<Value> {
    testbed.admin.request(reqwest::Method::GET, &format!("/_synapse/admin/v2/users/{user}"), None).await
}

async fn a_ban_rule_becomes_a_cleanup_plan_and_an_auto_list_runs_it(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let server = testbed.config.homeserver.domain.to_string();
        let keeper = testbed.synapse.register_user("listkeeper", false).await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let old = testbed.synapse.register_user("oldtimer", false).await?;
        let lobby = alice.create_room(json!({"preset": "public_chat"})).await?;
        spammer.join(&lobby).await?;
        old.join(&lobby).await?;
        let picture = spammer.upload(b"spam picture".to_vec(), "image/png", "deal.png").await?;
        let mut spam = Vec::new();
        for i in 0..3 {
            spam.push(spammer.send_text(&lobby, &format!("cheap watches {i}")).await?);
        }
        spam.push(
            spammer
                .send(&lobby, "m.room.message", json!({"msgtype": "m.image", "body": "deal.png", "url": picture}))
                .await?,
        );
        let kept = alice.send_text(&lobby, "not spam").await?;
        let old_message = old.send_text(&lobby, "an old sin").await?;
        indexed(&store, &lobby, &[spam.clone(), vec![kept.clone(), old_message.clone()]].concat()).await?;

        // A standing rule: the first watch takes it as the baseline, no plan.
        let list = keeper.create_room(json!({"preset": "public_chat", "name": "bans"})).await?;
        keeper.send_state(&list, "m.policy.rule.user", "old", ban(&old.user_id, "long ago")).await?;
        let watched = command_reply(testbed, &admin_room, &format!("!policy watch {list}"), 1).await?;
        assert!(watched.contains("The 1 rules it holds now made no plans"), "{watched}");

        let rule = keeper.send_state(&list, "m.policy.rule.user", "spam1", ban(&spammer.user_id, "spam wave")).await?;
        let notice = bot_notice(testbed, &admin_room, &format!("cleanup of {}", spammer.user_id)).await?;
        let text = body(&notice);
        for expected in ["Policy list", "user rule for", "reason: spam wave", "(literal)", "planned", "suspend now"] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        let rule_ts = event_as(&keeper, &list, &rule).await?["origin_server_ts"].as_i64().unwrap_or_default();
        let posted_ms = notice["origin_server_ts"].as_i64().unwrap_or_default() - rule_ts;
        println!("rule sent → plan posted: {posted_ms} ms");
        let id = job_for(text, "cleanup of");
        let event_id = notice["event_id"].as_str().expect("an event id");
        testbed.admin.react(&admin_room, event_id, "✅").await?;
        wait_for_job(&store, &id, JobState::Done).await?;
        for event in &spam {
            assert_eq!(event_as(&alice, &lobby, event).await?["content"], json!({}), "{event} still readable");
        }
        assert_eq!(event_as(&alice, &lobby, &kept).await?["content"]["body"], "not spam");
        assert_eq!(alice.download_status(&picture).await?, 404, "the spam picture is still served");
        assert_eq!(account(testbed, &spammer.user_id).await?["suspended"], json!(true));
        // The baseline rule made nothing, then or now.
        assert!(bot_messages(testbed, &admin_room, &old.user_id).await?.is_empty());
        assert_eq!(event_as(&alice, &lobby, &old_message).await?["content"]["body"], "an old sin");

        let matched = command_reply(testbed, &admin_room, &format!("!policy match {}", spammer.user_id), 1).await?;
        for expected in ["m.policy.rule.user spam1", "by literal", "reason: spam wave"] {
            assert!(matched.contains(expected), "{expected:?} missing from {matched}");
        }
        let by_server = command_reply(testbed, &admin_room, &format!("!policy match {server}"), 1).await?;
        assert!(by_server.contains("No rule of a watched list matches"), "{by_server}");

        // Removing the rule undoes nothing; it says what would.
        keeper.send_state(&list, "m.policy.rule.user", "spam1", json!({})).await?;
        let removed = bot_notice(testbed, &admin_room, "removed its user rule").await?;
        assert!(body(&removed).contains(&format!("!unsuspend {}", spammer.user_id)), "{}", body(&removed));
        assert_eq!(account(testbed, &spammer.user_id).await?["suspended"], json!(true));

        // An auto list runs its plans within the threshold, without a ✅.
        let second = testbed.synapse.register_user("spammer2", false).await?;
        second.join(&lobby).await?;
        let mut more = Vec::new();
        for i in 0..2 {
            more.push(second.send_text(&lobby, &format!("buy now {i}")).await?);
        }
        indexed(&store, &lobby, &more).await?;
        let auto = keeper.create_room(json!({"preset": "public_chat", "name": "auto bans"})).await?;
        let watched = command_reply(testbed, &admin_room, &format!("!policy watch {auto} --auto"), 1).await?;
        assert!(watched.contains("action auto"), "{watched}");
        keeper.send_state(&auto, "org.matrix.mjolnir.rule.user", "s2", ban(&second.user_id, "more spam")).await?;
        let notice = bot_notice(testbed, &admin_room, &format!("cleanup of {}", second.user_id)).await?;
        assert!(body(&notice).contains("run now"), "{}", body(&notice));
        wait_for_job(&store, &job_for(body(&notice), "cleanup of"), JobState::Done).await?;
        for event in &more {
            assert_eq!(event_as(&alice, &lobby, event).await?["content"], json!({}), "{event} still readable");
        }

        let lists = command_reply(testbed, &admin_room, "!policy lists", 1).await?;
        assert!(lists.contains("action auto, 1 rules, 1 new rules seen, 1 plans made, 1 run by itself"), "{lists}");
        assert!(lists.contains("action plan, 1 rules, 2 new rules seen, 1 plans made, 0 run by itself"), "{lists}");
        let audit = command_reply(testbed, &admin_room, "!audit --limit 100", 1).await?;
        for expected in ["policy.watch", "policy.rule"] {
            assert!(audit.contains(expected), "{expected:?} missing from {audit}");
        }
        Ok(())
    })
    .await
}

async fn globs_hashes_media_and_rooms_match_and_unsafe_rules_are_refused(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        testbed.make_bot_admin().await?;
        let admin_room = testbed.admin_room().await?;
        let store = testbed.store().await?;
        let server = testbed.config.homeserver.domain.to_string();
        let keeper = testbed.synapse.register_user("listkeeper", false).await?;
        let alice = testbed.synapse.register_user("alice", false).await?;
        let lobby = alice.create_room(json!({"preset": "public_chat"})).await?;
        let mut users = Vec::new();
        let mut sent = Vec::new();
        for name in ["glob-a", "glob-b", "hidden", "globber"] {
            let user = testbed.synapse.register_user(name, false).await?;
            user.join(&lobby).await?;
            sent.push(user.send_text(&lobby, &format!("hello from {name}")).await?);
            users.push(user);
        }
        let picture = alice.upload(b"a picture someone listed".to_vec(), "image/png", "p.png").await?;
        sent.push(
            alice
                .send(&lobby, "m.room.message", json!({"msgtype": "m.image", "body": "p.png", "url": picture}))
                .await?,
        );
        let spam_room = users[3].create_room(json!({"preset": "public_chat", "name": "spam room"})).await?;
        let in_spam_room = users[3].send_text(&spam_room, "welcome to spam").await?;
        indexed(&store, &lobby, &sent).await?;
        indexed(&store, &spam_room, &[in_spam_room]).await?;

        let list = keeper.create_room(json!({"preset": "public_chat"})).await?;
        command_reply(testbed, &admin_room, &format!("!policy watch {list}"), 1).await?;

        // A glob: each user it matches, and only them (not …globber).
        let glob = users[0].user_id.replace("glob-a", "glob-?");
        keeper.send_state(&list, "m.policy.rule.user", "g", ban(&glob, "globbed")).await?;
        let notice = bot_notice(testbed, &admin_room, &format!("rule for {glob}")).await?;
        let text = body(&notice);
        for expected in [format!("cleanup of {}", users[0].user_id), format!("cleanup of {}", users[1].user_id)] {
            assert!(text.contains(&expected), "{expected:?} missing from {text}");
        }
        assert!(text.contains("(glob)") && !text.contains(&users[3].user_id), "{text}");

        // MSC4205: the entity hashed, not sent.
        let hidden = &users[2].user_id;
        let hash = housekeep::policy::sha256_base64(&housekeep::policy::sha256_of(hidden));
        let hashed = json!({"recommendation": "m.ban", "hashes": {"sha256": hash}, "reason": "hashed"});
        keeper.send_state(&list, "m.policy.rule.user", "h", hashed).await?;
        let notice = bot_notice(testbed, &admin_room, &format!("cleanup of {hidden}")).await?;
        assert!(body(&notice).contains("(sha256 hash)"), "{}", body(&notice));

        // MSC4207: a hashed mxc URI, resolved by the index's hash of each URI.
        let media_hash = housekeep::policy::sha256_base64(&housekeep::policy::sha256_of(&picture));
        let media_rule = json!({"recommendation": "m.ban", "hashes": {"sha256": media_hash}});
        keeper.send_state(&list, "org.matrix.msc4207.mxc", "m", media_rule).await?;
        let notice = bot_notice(testbed, &admin_room, &format!("quarantine of {picture}")).await?;
        let id = job_for(body(&notice), "quarantine of");
        testbed.admin.react(&admin_room, notice["event_id"].as_str().unwrap(), "✅").await?;
        wait_for_job(&store, &id, JobState::Done).await?;
        assert_eq!(alice.download_status(&picture).await?, 404, "the listed picture is still served");

        // A room rule: the takedown plan, which always waits (it cannot be undone).
        keeper.send_state(&list, "m.policy.rule.room", "r", ban(&spam_room, "spam room")).await?;
        let notice = bot_notice(testbed, &admin_room, &format!("takedown of {spam_room}")).await?;
        assert!(body(&notice).contains("planned"), "{}", body(&notice));

        // Unsafe rules are refused, and said so.
        keeper.send_state(&list, "m.policy.rule.user", "all", ban(&format!("@*:{server}"), "everyone")).await?;
        let refused = bot_notice(testbed, &admin_room, "would match every user of this homeserver").await?;
        assert!(body(&refused).contains("Nothing was planned"), "{}", body(&refused));
        keeper.send_state(&list, "m.policy.rule.server", "us", ban(&server, "us")).await?;
        bot_notice(testbed, &admin_room, &format!("it matches this homeserver ({server})")).await?;
        let moderator = testbed.admin.user_id.clone();
        keeper.send_state(&list, "m.policy.rule.user", "mod", ban(&moderator, "a moderator")).await?;
        bot_notice(testbed, &admin_room, &format!("it matches moderator {moderator}")).await?;

        // Nothing to act on: logged and audited, not posted.
        keeper.send_state(&list, "m.policy.rule.user", "none", ban(&format!("@nobody:{server}"), "absent")).await?;
        keeper.send_state(&list, "m.policy.rule.user", "bad", json!({"entity": 5, "recommendation": "m.ban"})).await?;
        let allow = json!({"entity": users[3].user_id, "recommendation": "org.matrix.mjolnir.allow"});
        keeper.send_state(&list, "m.policy.rule.user", "allow", allow).await?;
        eventually(Duration::from_secs(30), "the three rules audited", || async {
            let audit = command_reply(testbed, &admin_room, "!audit --limit 200", 1).await?;
            let all = ["matched nothing", "malformed", "ignored: recommendation org.matrix.mjolnir.allow"];
            Ok(all.iter().all(|outcome| audit.contains(outcome)).then_some(()))
        })
        .await?;
        assert!(bot_messages(testbed, &admin_room, "@nobody:").await?.is_empty());

        let matched = command_reply(testbed, &admin_room, &format!("!policy match {hidden}"), 1).await?;
        assert!(matched.contains("by sha256 hash"), "{matched}");
        let matched = command_reply(testbed, &admin_room, &format!("!policy match {}", users[0].user_id), 1).await?;
        assert!(matched.contains("by glob"), "{matched}");
        Ok(())
    })
    .await
}

async fn a_restart_neither_repeats_nor_skips_a_rule(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let Setup { admin_room, store, keeper, lobby, .. } = set_up(testbed).await?;
        let mut spammers = Vec::new();
        for name in ["before", "while-down", "after"] {
            spammers.push(poster(testbed, &store, &lobby, name).await?.0.user_id);
        }
        let list = keeper.create_room(json!({"preset": "public_chat"})).await?;
        command_reply(testbed, &admin_room, &format!("!policy watch {list}"), 1).await?;
        keeper.send_state(&list, "m.policy.rule.user", "a", ban(&spammers[0], "one")).await?;
        bot_notice(testbed, &admin_room, &format!("cleanup of {}", spammers[0])).await?;

        testbed.housekeep.kill_9().await?;
        keeper.send_state(&list, "m.policy.rule.user", "b", ban(&spammers[1], "two")).await?;
        testbed.housekeep.restart().await?;
        bot_notice(testbed, &admin_room, &format!("cleanup of {}", spammers[1])).await?;
        keeper.send_state(&list, "m.policy.rule.user", "c", ban(&spammers[2], "three")).await?;
        bot_notice(testbed, &admin_room, &format!("cleanup of {}", spammers[2])).await?;
        // By then every earlier notice is posted: each rule's once.
        for spammer in &spammers {
            let notices = bot_messages(testbed, &admin_room, &format!("cleanup of {spammer}")).await?;
            assert_eq!(notices.len(), 1, "{spammer}: {notices:?}");
        }
        let lists = command_reply(testbed, &admin_room, "!policy lists", 1).await?;
        assert!(lists.contains("3 new rules seen, 3 plans made"), "{lists}");
        Ok(())
    })
    .await
}

async fn a_configured_list_runs_by_itself_and_standing_rules_wait_for_apply(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let Setup { admin_room, store, server, keeper, lobby } = set_up(testbed).await?;
        let mut spammers = Vec::new();
        let mut spam = Vec::new();
        for name in ["standing", "fresh"] {
            let (user, sent) = poster(testbed, &store, &lobby, name).await?;
            spammers.push(user.user_id);
            spam.push(sent);
        }
        // A list named by its alias in the config, auto, holding one rule already.
        let localpart = keeper.user_id.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned();
        let alias_name = format!("{localpart}-bans");
        let alias = format!("#{alias_name}:{server}");
        let list = keeper.create_room(json!({"preset": "public_chat", "room_alias_name": alias_name})).await?;
        keeper.send_state(&list, "m.policy.rule.user", "standing", ban(&spammers[0], "standing")).await?;
        testbed
            .reconfigure(|text| {
                text.replace("  lists: []\n", &format!("  lists:\n    - room: \"{alias}\"\n      action: auto\n"))
            })
            .await?;
        eventually(Duration::from_secs(30), "the configured list watched", || async {
            let lists = command_reply(testbed, &admin_room, "!policy lists", 1).await?;
            Ok(lists.contains(&format!("{alias} ({list}): action auto, 1 rules")).then_some(()))
        })
        .await?;

        keeper.send_state(&list, "m.policy.rule.user", "fresh", ban(&spammers[1], "fresh")).await?;
        let notice = bot_notice(testbed, &admin_room, &format!("cleanup of {}", spammers[1])).await?;
        wait_for_job(&store, &job_for(body(&notice), "cleanup of"), JobState::Done).await?;
        assert_eq!(event_as(&keeper, &lobby, &spam[1]).await?["content"], json!({}));
        // The standing rule waited: nothing of it until a moderator applies it.
        assert!(bot_messages(testbed, &admin_room, &format!("cleanup of {}", spammers[0])).await?.is_empty());
        assert_eq!(event_as(&keeper, &lobby, &spam[0]).await?["content"]["body"], "spam");
        let applied = command_reply(testbed, &admin_room, &format!("!policy apply {alias}"), 1).await?;
        assert!(applied.contains("1 of") && applied.contains("1 planned"), "{applied}");
        let notice = bot_notice(testbed, &admin_room, &format!("cleanup of {}", spammers[0])).await?;
        wait_for_job(&store, &job_for(body(&notice), "cleanup of"), JobState::Done).await?;
        assert_eq!(event_as(&keeper, &lobby, &spam[0]).await?["content"], json!({}));
        let again = command_reply(testbed, &admin_room, &format!("!policy apply {alias}"), 1).await?;
        assert!(again.contains("0 of") && again.contains("0 planned"), "applied once: {again}");

        let unwatched = command_reply(testbed, &admin_room, &format!("!policy unwatch {alias}"), 1).await?;
        assert!(unwatched.contains("It is in the config's policy.lists"), "{unwatched}");
        let lists = command_reply(testbed, &admin_room, "!policy lists", 1).await?;
        assert!(lists.contains("No policy lists are watched"), "{lists}");
        Ok(())
    })
    .await
}

async fn server_rules_redacted_rules_and_a_list_in_a_hurry(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        let Setup { admin_room, store, server, keeper, lobby } = set_up(testbed).await?;
        let (spammer, _) = poster(testbed, &store, &lobby, "spammer").await?;
        // Two senders of another server, as federation would bring them.
        let remote: Vec<Value> = (0..2)
            .map(|n| {
                json!({"event_id": format!("$remote{n}"), "room_id": lobby, "sender": format!("@bot{n}:Spam.Example"),
                    "origin_server_ts": 1, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "spam"}})
            })
            .collect();
        testbed.push_transaction("remote-spam", remote).await?;
        let list = keeper.create_room(json!({"preset": "public_chat"})).await?;
        command_reply(testbed, &admin_room, &format!("!policy watch {list}"), 1).await?;

        // A server rule: every sender of that server the index knows, in one purge.
        keeper.send_state(&list, "m.policy.rule.server", "s", ban("*.example", "spam server")).await?;
        let notice = bot_notice(testbed, &admin_room, "server rule for *.example").await?;
        for expected in ["purge of 2 users", "@bot0:Spam.Example (glob, by server)", "planned"] {
            assert!(body(&notice).contains(expected), "{expected:?} missing from {}", body(&notice));
        }

        // Redacting a rule removes it: the notice says what would undo its plan.
        let rule = keeper.send_state(&list, "m.policy.rule.user", "u", ban(&spammer.user_id, "spam")).await?;
        bot_notice(testbed, &admin_room, &format!("cleanup of {}", spammer.user_id)).await?;
        keeper.redact(&list, &rule, "listed by mistake").await?;
        let removed = bot_notice(testbed, &admin_room, "removed its user rule").await?;
        assert!(body(&removed).contains(&format!("!unsuspend {}", spammer.user_id)), "{}", body(&removed));

        // Past 20 rules in ten minutes (the two above and the removal count),
        // a list's rules are held for !policy apply: here the last two.
        for n in 0..19 {
            let entity = format!("@absent{n}:{server}");
            keeper.send_state(&list, "m.policy.rule.user", &format!("a{n}"), ban(&entity, "absent")).await?;
        }
        let held = bot_notice(testbed, &admin_room, "sent more than 20 new rules").await?;
        assert!(body(&held).contains("!policy apply"), "{}", body(&held));
        let applied = command_reply(testbed, &admin_room, &format!("!policy apply {list}"), 1).await?;
        assert!(applied.contains("2 of") && applied.contains("0 planned"), "the two held: {applied}");
        Ok(())
    })
    .await
}
