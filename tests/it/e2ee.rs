//! An encrypted admin room (issue 35) on a real Synapse: a moderator with a
//! real end-to-end encrypting client (matrix-rust-sdk, memory stores) sends
//! `!status`; housekeep reads it and answers encrypted.
//!
//! Through Synapse, with a Synapse of its own (its experimental appservice
//! extensions on), once, on SQLite: the crypto machine keeps nothing in the
//! database yet.

use std::time::Duration;

use crate::common::{Backend, housekeep_binary};
use housekeep::testbed::{Testbed, encode, eventually};
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde_json::Value;

tests! {
    sqlite: [
        a_moderator_commands_in_an_encrypted_admin_room_and_reads_the_encrypted_answer,
    ],
}

async fn a_moderator_commands_in_an_encrypted_admin_room_and_reads_the_encrypted_answer(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_encrypted(backend, housekeep_binary()).await?;
    let outcome = commands_and_answers(&testbed).await;
    if outcome.is_err() {
        eprintln!("testbed kept for its logs: {}", testbed.keep_dir().display());
    }
    outcome?;
    testbed.shutdown().await
}

async fn commands_and_answers(testbed: &Testbed) -> anyhow::Result<()> {
    let room = testbed.admin_room().await?;
    let bot = testbed.config.bot_user_id()?.to_string();
    let member_path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(&room), encode(&bot));
    eventually(Duration::from_secs(60), "the bot to join the encrypted admin room", || async {
        let member = testbed.admin.request(reqwest::Method::GET, &member_path, None).await.ok();
        Ok(member.filter(|m| m["membership"] == "join").map(|_| ()))
    })
    .await?;

    // The moderator's client: a device of the server admin (a moderator in
    // the config), with keys, syncing in the background.
    let client = Client::builder().homeserver_url(&testbed.synapse.url).build().await?;
    client.matrix_auth().login_username("admin", "admin-password").initial_device_display_name("moderator").await?;
    client.sync_once(SyncSettings::default()).await?;
    let syncing = {
        let client = client.clone();
        tokio::spawn(async move { client.sync(SyncSettings::default()).await })
    };
    let room_id = OwnedRoomId::try_from(room.as_str())?;
    let joined = client.get_room(&room_id).ok_or_else(|| anyhow::anyhow!("the moderator's client has no {room}"))?;
    assert!(joined.latest_encryption_state().await?.is_encrypted(), "the admin room is encrypted");

    let sent = joined.send(RoomMessageEventContent::text_plain("!status")).await?;
    assert!(sent.encryption_info.is_some(), "the client sent the command encrypted");
    let command: OwnedEventId = sent.response.event_id;

    // What the server holds: the bot's answer, encrypted, in reply to the
    // command (Megolm keeps `m.relates_to` in the clear), and nothing of the
    // bot's in the clear.
    let reply = eventually(Duration::from_secs(90), "the bot's reply to the encrypted !status", || async {
        let events = testbed.admin.recent_events(&room, 50).await?;
        let from_bot: Vec<&Value> = events.iter().filter(|e| e["sender"] == bot.as_str()).collect();
        for event in &from_bot {
            assert_ne!(event["type"], "m.room.message", "the bot wrote in the clear: {event}");
        }
        Ok(from_bot
            .into_iter()
            .find(|e| {
                e.pointer("/content/m.relates_to/m.in_reply_to/event_id").and_then(Value::as_str)
                    == Some(command.as_str())
            })
            .cloned())
    })
    .await?;
    assert_eq!(reply["type"], "m.room.encrypted", "{reply}");
    assert_eq!(reply["content"]["algorithm"], "m.megolm.v1.aes-sha2", "{reply}");
    assert!(reply["content"].get("body").is_none(), "{reply}");

    // The moderator's client decrypts it: the !status answer.
    let reply_id = OwnedEventId::try_from(reply["event_id"].as_str().unwrap_or_default())?;
    let decrypted = eventually(Duration::from_secs(30), "the client to decrypt the reply", || async {
        let event = joined.event(&reply_id, None).await?;
        Ok(event.encryption_info().is_some().then_some(event))
    })
    .await?;
    let plain: Value = decrypted.raw().deserialize_as_unchecked()?;
    assert_eq!(plain["type"], "m.room.message", "{plain}");
    assert_eq!(plain["content"]["msgtype"], "m.notice", "{plain}");
    let body = plain["content"]["body"].as_str().unwrap_or_default();
    assert!(body.contains("housekeep status"), "{body}");
    assert!(body.contains("index") && body.contains("database: sqlite"), "{body}");
    assert_eq!(
        plain.pointer("/content/m.relates_to/m.in_reply_to/event_id").and_then(Value::as_str),
        Some(command.as_str()),
        "{plain}"
    );
    // The bot's device, as the client knows it (it shared the room key with it).
    let bot_id = OwnedUserId::try_from(bot.as_str())?;
    let devices = client.encryption().get_user_devices(&bot_id).await?;
    let bot_devices: Vec<String> = devices.devices().map(|d| d.device_id().to_string()).collect();
    assert!(bot_devices.iter().any(|d| d.starts_with("HK")), "the bot's device: {bot_devices:?}");
    let log = testbed.housekeep.log()?;
    assert!(log.contains("decrypted an admin-room event"), "housekeep read the command itself");
    syncing.abort();
    Ok(())
}
