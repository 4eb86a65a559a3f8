//! An encrypted admin room (issue 35) on a real Synapse: moderators with
//! end-to-end encrypting clients (matrix-sdk-crypto's machine, fed from
//! `/sync`: `testbed::EncryptedClient`) command housekeep there, confirm
//! its plans with an encrypted ✅ and read its encrypted answers and chart;
//! after a restart housekeep is the same device and reads the same
//! moderator's messages without anyone sharing keys again; a device the
//! homeserver lost is replaced; a non-moderator is refused; a room key for
//! another room is not kept. A moderator
//! verifies the bot's device with emoji, and it stays verified across a
//! restart.
//!
//! Through Synapse, with a Synapse of its own (its experimental appservice
//! extensions on), on both backends: the device's keys live in the index's
//! database. The bot makes the admin room, encrypted (`admin.encrypted`).

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

use crate::common::{Backend, field, housekeep_binary, indexed, job_id, wait_for_job};
use housekeep::crypto::emoji_line;
use housekeep::store::{JobState, Store};
use housekeep::testbed::{EncryptedClient, Testbed, encode, eventually};
use serde_json::{Value, json};

tests! {
    sqlite: [
        moderators_work_in_an_encrypted_admin_room_across_a_restart,
    ],
    postgres: [
        moderators_work_in_an_encrypted_admin_room_across_a_restart,
    ],
}

const PATIENCE: Duration = Duration::from_secs(60);

async fn moderators_work_in_an_encrypted_admin_room_across_a_restart(backend: Backend) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_encrypted(backend, housekeep_binary()).await?;
    let outcome = AssertUnwindSafe(encrypted_admin_room(&mut testbed)).catch_unwind().await;
    if !matches!(outcome, Ok(Ok(()))) {
        eprintln!("testbed kept for its logs: {}", testbed.keep_dir().display());
    }
    match outcome {
        Ok(outcome) => outcome?,
        Err(panic) => std::panic::resume_unwind(panic),
    }
    testbed.shutdown().await
}

async fn encrypted_admin_room(testbed: &mut Testbed) -> anyhow::Result<()> {
    let room = testbed.admin_room().await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    joined(testbed, &room, &bot).await?;
    // The bot made the room (admin.create_if_missing), encrypted (admin.encrypted: true).
    let state =
        |event_type: &str| format!("/_matrix/client/v3/rooms/{}/state/{event_type}/?format=event", encode(&room));
    let create = testbed.admin.request(reqwest::Method::GET, &state("m.room.create"), None).await?;
    assert_eq!(create["sender"], bot.as_str(), "{create}");
    let encryption = testbed.admin.request(reqwest::Method::GET, &state("m.room.encryption"), None).await?;
    assert_eq!(encryption["content"]["algorithm"], "m.megolm.v1.aes-sha2", "{encryption}");
    testbed.make_bot_admin().await?;
    let store = testbed.store().await?;
    let dir = testbed.dir.path().to_owned();
    let mut moderator =
        EncryptedClient::login(&testbed.synapse.url, &testbed.admin.user_id, "admin-password", &dir).await?;

    // !status: asked and answered encrypted; nothing of the bot's in the clear.
    let status = moderator.send_text(&room, "!status").await?;
    let reply = moderator.wait_for_reply(&status, &bot, PATIENCE).await?;
    assert_eq!(reply["type"], "m.room.message", "{reply}");
    assert_eq!(reply["content"]["msgtype"], "m.notice", "{reply}");
    assert!(body(&reply).contains("housekeep status"), "{reply}");
    let on_server = testbed.admin.recent_events(&room, 100).await?;
    let in_clear: Vec<&Value> =
        on_server.iter().filter(|e| e["sender"] == bot.as_str() && e["type"] == "m.room.message").collect();
    assert!(in_clear.is_empty(), "the bot wrote in the clear: {in_clear:?}");
    let sent = on_server.iter().find(|e| e["event_id"] == reply["event_id"]).expect("the reply is on the server");
    assert_eq!(sent["type"], "m.room.encrypted", "{sent}");
    assert!(sent["content"].get("body").is_none(), "{sent}");

    // The moderator verifies the bot's device with emoji ("Verify" on its
    // device): the bot shows its seven in the room; they match the client's,
    // so the moderator says so in the client and with ✅. Then the client
    // trusts the device and the bot's identity (it signed its master key).
    moderator.cross_sign().await?;
    let bot_device = bot_keys(testbed, &bot).await?.devices[0].0.clone();
    moderator.wait_for_device(&bot, &bot_device, PATIENCE).await?;
    assert_eq!(moderator.trusts(&bot, &bot_device).await?, (false, false), "not verified yet");
    let (flow, emoji) = moderator.verify_with_emoji(&bot, &bot_device, PATIENCE).await?;
    let shown = moderator
        .wait_for(PATIENCE, "the bot's emoji", |event| {
            event["sender"] == bot.as_str() && body(event).contains("is verifying housekeep's device")
        })
        .await?;
    assert!(body(&shown).contains(&emoji_line(&emoji)), "the client's emoji {emoji:?} in {shown}");
    moderator.react(&room, shown["event_id"].as_str().unwrap_or_default(), "✅").await?;
    // The client's final "done" is lost on its way, as Synapse may lose a
    // to-device message that crosses the bot's own: the bot finishes
    // without it.
    moderator.lose_to_device(Some("m.key.verification.done"));
    moderator.confirm_emoji(&flow, PATIENCE).await?;
    moderator.lose_to_device(None);
    assert_eq!(moderator.trusts(&bot, &bot_device).await?, (true, true), "verified");
    moderator
        .wait_for(PATIENCE, "the bot's word that it is verified", |event| {
            event["sender"] == bot.as_str() && body(event).contains("✅ Verified")
        })
        .await?;
    assert!(testbed.housekeep.log()?.contains("finishing a verification without the client's final"));

    // A purge: its dry run, then its plan confirmed with an encrypted ✅.
    let spammer = testbed.synapse.register_user("spammer", false).await?;
    let spam_room = testbed.admin.create_room(json!({"name": "spam", "preset": "public_chat"})).await?;
    spammer.join(&spam_room).await?;
    let mut spam = Vec::new();
    for n in 0..3 {
        spam.push(spammer.send_text(&spam_room, &format!("spam {n}")).await?);
    }
    indexed(&store, &spam_room, &spam).await?;
    let purge = format!("!purge {spam_room} --user {}", spammer.user_id);
    let dry = moderator.send_text(&room, &format!("{purge} --dry-run")).await?;
    let dry = moderator.wait_for_reply(&dry, &bot, PATIENCE).await?;
    assert!(body(&dry).contains("Would redact 3 events in 1 rooms"), "{dry}");
    let command = moderator.send_text(&room, &purge).await?;
    let plan = moderator.wait_for_reply(&command, &bot, PATIENCE).await?;
    assert!(body(&plan).contains("✅"), "{plan}");
    let job = job_id(body(&plan));
    let plan_id = plan["event_id"].as_str().unwrap_or_default().to_owned();
    moderator.react(&room, &plan_id, "✅").await?;
    wait_for_job(&store, &job, JobState::Done).await?;
    let result = moderator
        .wait_for(PATIENCE, "the purge's result", |event| {
            event["sender"] == bot.as_str() && body(event).contains("purged_count")
        })
        .await?;
    assert_eq!(field(body(&result), "purged_count"), "3", "{result}");
    assert_eq!(store.job(&job).await?.and_then(|j| j.confirmed_by), Some(testbed.admin.user_id.clone()));

    // !stats: its chart comes as an encrypted image (`file`, no `url`).
    let stats = moderator.send_text(&room, "!stats --days 2").await?;
    let summary = moderator.wait_for_reply(&stats, &bot, PATIENCE).await?;
    assert!(body(&summary).contains("From housekeep's index"), "{summary}");
    let chart = moderator
        .wait_for(PATIENCE, "the chart", |event| {
            event["sender"] == bot.as_str() && event["content"]["msgtype"] == "m.image"
        })
        .await?;
    assert!(chart["content"].get("url").is_none(), "no image in the clear: {chart}");
    let png = moderator.download_file(&chart["content"]["file"]).await?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG: {} bytes", png.len());
    assert_eq!(chart["content"]["info"]["size"], png.len(), "{chart}");

    // A room key for another room (a moderator invites the bot elsewhere,
    // encrypted, and writes there) is not kept: the bot reads one room.
    let encrypted =
        json!([{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]);
    let elsewhere = testbed.admin.create_room(json!({"name": "elsewhere", "initial_state": encrypted})).await?;
    testbed.admin.invite(&elsewhere, &bot).await?;
    joined(testbed, &elsewhere, &bot).await?;
    moderator.send_text(&elsewhere, "a key the bot does not need").await?;
    eventually(PATIENCE, "the other room's key refused", || async {
        let metrics = testbed.housekeep.metrics().await?;
        Ok(metrics.contains("{reason=\"room_key_outside_admin_room\"} 1").then_some(()))
    })
    .await?;
    let kept = room_keys_kept(&store).await?;
    assert!(kept.iter().all(|key| !key.starts_with(&elsewhere)), "{kept:?}");
    assert!(kept.iter().any(|key| key.starts_with(&room)), "{kept:?}");

    // What the database keeps: the device's account and the moderator's room key.
    let kinds = kept_kinds(&store).await?;
    assert!(kinds.iter().any(|k| k == "account") && kinds.iter().any(|k| k == "megolm_inbound"), "{kinds:?}");
    let room_keys = room_keys_kept(&store).await?;
    // One device, cross-signed by the bot's own identity (clients that
    // share keys only with devices their owner signed share with it).
    let keys_before = bot_keys(testbed, &bot).await?;
    assert_eq!(keys_before.devices.len(), 1, "one device of the bot: {keys_before:?}");
    assert!(keys_before.master.is_some(), "{keys_before:?}");
    assert_eq!(keys_before.cross_signed, vec![keys_before.devices[0].0.clone()], "{keys_before:?}");

    // A restart: the same device with the same keys, and the moderator's
    // client, which shared its room key once, is read without sharing again.
    testbed.housekeep.restart().await?;
    testbed.housekeep.wait_ready().await?;
    assert_eq!(bot_keys(testbed, &bot).await?, keys_before, "the same device and keys after a restart");
    assert_eq!(moderator.trusts(&bot, &bot_device).await?, (true, true), "still verified after a restart");
    let again = moderator.send_text(&room, "!status").await?;
    let reply = moderator.wait_for_reply(&again, &bot, PATIENCE).await?;
    assert!(body(&reply).contains("housekeep status"), "{reply}");
    assert_eq!(room_keys_kept(&store).await?, room_keys, "read with the room key kept before the restart");

    // A device the homeserver lost (an admin deleted it): the next start
    // makes a new one, deletes no one else's, and works with the same client.
    let old_device = keys_before.devices[0].0.clone();
    let path = format!("/_synapse/admin/v2/users/{}/devices/{}", encode(&bot), encode(&old_device));
    testbed.admin.request(reqwest::Method::DELETE, &path, None).await?;
    testbed.housekeep.restart().await?;
    // Synapse drops to-device messages while it takes housekeep for down (its
    // catch-up carries none; README): the room key for the new device is
    // sent once Synapse delivers transactions again, which an indexed event shows.
    testbed.housekeep.wait_ready().await?;
    let probe = testbed.admin.send_text(&spam_room, "after the restart").await?;
    indexed(&store, &spam_room, &[probe]).await?;
    let keys_after = eventually(PATIENCE, "the bot's new device, cross-signed", || async {
        let keys = bot_keys(testbed, &bot).await?;
        Ok((!keys.cross_signed.is_empty()).then_some(keys))
    })
    .await?;
    assert_eq!(keys_after.devices.len(), 1, "{keys_after:?}");
    assert_ne!(keys_after.devices[0].0, old_device, "a new device: {keys_after:?}");
    assert_eq!(keys_after.cross_signed, vec![keys_after.devices[0].0.clone()], "{keys_after:?}");
    assert!(testbed.housekeep.log()?.contains("the homeserver no longer has the bot's device"));
    moderator.wait_for_device(&bot, &keys_after.devices[0].0, PATIENCE).await?;
    let after_loss = moderator.send_text(&room, "!status").await?;
    let reply = moderator.wait_for_reply(&after_loss, &bot, PATIENCE).await?;
    assert!(body(&reply).contains("housekeep status"), "{reply}");
    // Its keys went with the old device: a new identity, to verify again (README).
    assert_eq!(moderator.trusts(&bot, &keys_after.devices[0].0).await?, (false, false));

    // A non-moderator in the room is refused, encrypted, as before.
    let mallory = testbed.synapse.register_user("mallory", false).await?;
    testbed.admin.invite(&room, &mallory.user_id).await?;
    mallory.join(&room).await?;
    let mut mallory = EncryptedClient::login(&testbed.synapse.url, &mallory.user_id, "mallory-password", &dir).await?;
    let refused = mallory.send_text(&room, "!status").await?;
    let refusal = mallory.wait_for_reply(&refused, &bot, PATIENCE).await?;
    assert!(body(&refusal).contains("is not a housekeep moderator"), "{refusal}");
    // And cannot verify the bot's device: the bot cancels the request.
    let refused = mallory.verify_with_emoji(&bot, &keys_after.devices[0].0, PATIENCE).await;
    let refused = format!("{:#}", refused.expect_err("a non-moderator's verification is refused"));
    assert!(refused.contains("cancelled"), "{refused}");
    store.close().await;
    Ok(())
}

fn body(event: &Value) -> &str {
    event.pointer("/content/body").and_then(Value::as_str).unwrap_or_default()
}

async fn joined(testbed: &Testbed, room: &str, user: &str) -> anyhow::Result<()> {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(room), encode(user));
    eventually(PATIENCE, "the bot to join the encrypted admin room", || async {
        let member = testbed.admin.request(reqwest::Method::GET, &path, None).await.ok();
        Ok(member.filter(|m| m["membership"] == "join").map(|_| ()))
    })
    .await
}

/// What the homeserver lists of the bot's keys.
#[derive(Debug, PartialEq)]
struct BotKeys {
    /// Its devices with their ed25519 keys.
    devices: Vec<(String, String)>,
    /// Its cross-signing master key.
    master: Option<String>,
    /// Its devices that its self-signing key signed.
    cross_signed: Vec<String>,
}

async fn bot_keys(testbed: &Testbed, bot: &str) -> anyhow::Result<BotKeys> {
    let body = json!({"device_keys": {bot: []}});
    let answer = testbed.admin.request(reqwest::Method::POST, "/_matrix/client/v3/keys/query", Some(body)).await?;
    let first_key = |field: &str| -> Option<String> {
        let keys = answer.get(field)?.get(bot)?.get("keys")?.as_object()?;
        keys.keys().next().cloned()
    };
    let self_signing = first_key("self_signing_keys");
    let devices = answer.get("device_keys").and_then(|d| d.get(bot)).and_then(Value::as_object);
    let mut keys = BotKeys { devices: Vec::new(), master: first_key("master_keys"), cross_signed: Vec::new() };
    for (id, device) in devices.into_iter().flatten() {
        let ed25519 = device.pointer(&format!("/keys/ed25519:{id}")).and_then(Value::as_str);
        keys.devices.push((id.clone(), ed25519.unwrap_or_default().to_owned()));
        let signatures = device.get("signatures").and_then(|s| s.get(bot));
        if self_signing.as_ref().is_some_and(|key| signatures.and_then(|s| s.get(key)).is_some()) {
            keys.cross_signed.push(id.clone());
        }
    }
    keys.devices.sort();
    Ok(keys)
}

async fn kept_kinds(store: &Store) -> anyhow::Result<Vec<String>> {
    let mut kinds: Vec<String> = store.crypto_rows().await?.into_iter().map(|row| row.kind).collect();
    kinds.dedup();
    Ok(kinds)
}

/// The Megolm sessions the bot's device keeps.
async fn room_keys_kept(store: &Store) -> anyhow::Result<Vec<String>> {
    let rows = store.crypto_rows().await?.into_iter().filter(|row| row.kind == "megolm_inbound");
    Ok(rows.map(|row| row.key).collect())
}
