//! `housekeep demo --encrypted`: housekeep with end-to-end encryption on.
//! The bot makes the admin room encrypted, @alice talks to it from an
//! encrypting client (`EncryptedClient`), verifies its device with emoji,
//! and the demo prints what she reads beside what the homeserver holds:
//! only ciphertext.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::demo::step;
use super::{EncryptedClient, Housekeep, join_when_invited, start_encrypted_synapse};
use crate::store::Store;

const PATIENCE: Duration = Duration::from_secs(60);

pub(super) async fn run(dir: &Path, database_url: &str, keep_running: bool) -> anyhow::Result<()> {
    step("starting Synapse with its appservice extensions for encryption (to-device messages, device lists)");
    let (synapse, config_path, config) = start_encrypted_synapse(dir, database_url, |text| text).await?;
    println!("  Synapse {} at {} (log: {}/synapse/homeserver.log)", super::SYNAPSE_VERSION, synapse.url, dir.display());
    println!("  homeserver.yaml has:\n{}", indent(super::E2EE_CONFIG));
    println!("  housekeep's config has e2ee.enabled: true and admin.encrypted: true");
    let alice = synapse.register_user("alice", true).await?;
    let bob = synapse.register_user("bob", false).await?;

    step("starting housekeep: its device, and the encrypted admin room it makes");
    let base_url = format!("http://127.0.0.1:{}", config.appservice.port);
    let mut housekeep = Housekeep::spawn(&std::env::current_exe()?, &config_path, &base_url).await?;
    housekeep.wait_ready().await?;
    let admin_room = join_when_invited(&alice, &config.admin.room).await?;
    let bot = config.bot_user_id()?.to_string();
    for line in housekeep.log()?.lines().filter(|l| l.contains("device")) {
        println!("  log: {}", line.split_once("  ").map_or(line, |(_, rest)| rest).trim());
    }
    println!("  @alice accepted the bot's invite into {} ({admin_room})", config.admin.room);

    step("@alice's client (its own device and keys) commands the bot, encrypted");
    let mut client = EncryptedClient::login(&synapse.url, &alice.user_id, "alice-password", dir).await?;
    let status = say(&mut client, &admin_room, &bot, "!status").await?;
    let held = alice.recent_events(&admin_room, 50).await?;
    if let Some(event) = held.iter().find(|e| e["event_id"] == status["event_id"]) {
        println!(
            "  what Synapse holds of that reply: type {}, algorithm {}, no body: {}",
            event["type"],
            event["content"]["algorithm"],
            event["content"].get("body").is_none()
        );
    }

    step("@alice verifies the bot's device with emoji, as \"Verify\" on a device does in a client");
    client.cross_sign().await?;
    let query = json!({"device_keys": {bot.as_str(): []}});
    let keys = alice.request(reqwest::Method::POST, "/_matrix/client/v3/keys/query", Some(query)).await?;
    let device = keys["device_keys"][bot.as_str()].as_object().and_then(|devices| devices.keys().next().cloned());
    let device = device.ok_or_else(|| anyhow::anyhow!("the bot has no device"))?;
    client.wait_for_device(&bot, &device, PATIENCE).await?;
    let (flow, emoji) = client.verify_with_emoji(&bot, &device, PATIENCE).await?;
    println!("  @alice's client shows: {}", crate::crypto::emoji_line(&emoji));
    let shown = client
        .wait_for(PATIENCE, "the bot's emoji", |event| {
            event["sender"] == bot.as_str() && body(event).contains("is verifying housekeep's device")
        })
        .await?;
    print_body(&shown);
    client.react(&admin_room, shown["event_id"].as_str().unwrap_or_default(), "✅").await?;
    client.confirm_emoji(&flow, PATIENCE).await?;
    println!("  @alice: \"They match\" in her client, and ✅ on the bot's message");
    let (device_trusted, identity_trusted) = client.trusts(&bot, &device).await?;
    println!("  @alice's client trusts the bot's device: {device_trusted}; its identity: {identity_trusted}");

    step("a purge: its dry run, then its plan confirmed with an encrypted ✅");
    let bot_path = format!("/_synapse/admin/v2/users/{}", super::encode(&bot));
    alice.request(reqwest::Method::PUT, &bot_path, Some(json!({"admin": true}))).await?;
    println!("  the bot is made a server admin (README: \"Bot as server admin\"), which a purge needs");
    let spam_room = alice.create_room(json!({"name": "Spam", "preset": "public_chat"})).await?;
    bob.join(&spam_room).await?;
    for n in 1..=3 {
        bob.send_text(&spam_room, &format!("spam {n}")).await?;
    }
    let store = Store::connect(database_url, Some(1)).await?;
    super::eventually(Duration::from_secs(30), "bob's messages in the index", || async {
        Ok((store.room_events(&spam_room).await?.len() >= 3).then_some(()))
    })
    .await?;
    let purge = format!("!purge {spam_room} --user {}", bob.user_id);
    say(&mut client, &admin_room, &bot, &format!("{purge} --dry-run")).await?;
    let plan = say(&mut client, &admin_room, &bot, &purge).await?;
    let plan_id = plan["event_id"].as_str().unwrap_or_default().to_owned();
    client.react(&admin_room, &plan_id, "✅").await?;
    println!("  @alice: ✅ on the plan");
    let result = client
        .wait_for(PATIENCE, "the purge's result", |event| {
            event["sender"] == bot.as_str() && body(event).contains("purged_count")
        })
        .await?;
    print_body(&result);

    step("!stats: the chart comes as an encrypted image");
    say(&mut client, &admin_room, &bot, "!stats --days 1").await?;
    let chart = client
        .wait_for(PATIENCE, "the chart", |event| {
            event["sender"] == bot.as_str() && event["content"]["msgtype"] == "m.image"
        })
        .await?;
    let png = client.download_file(&chart["content"]["file"]).await?;
    let chart_path = dir.join("stats-chart.png");
    std::fs::write(&chart_path, &png)?;
    println!("  [encrypted m.image, {} bytes decrypted] saved to {}", png.len(), chart_path.display());

    step("a restart: the same device, its keys from the database; @alice's client shares nothing again");
    housekeep.restart().await?;
    say(&mut client, &admin_room, &bot, "!status").await?;
    let (device_trusted, _) = client.trusts(&bot, &device).await?;
    println!("  @alice's client still trusts the bot's device: {device_trusted}");
    let kept: Vec<String> = store.crypto_rows().await?.into_iter().map(|row| row.kind).collect();
    let mut kinds = kept.clone();
    kinds.dedup();
    println!("  rows in crypto_store: {} ({})", kept.len(), kinds.join(", "));
    store.close().await;

    if keep_running {
        step("running until Ctrl-C");
        println!("  log in to {} as alice / alice-password with an encrypting client (Element)", synapse.url);
        tokio::signal::ctrl_c().await?;
    }
    housekeep.stop().await?;
    synapse.stop().await?;
    step("done");
    Ok(())
}

/// Sends `command` encrypted as @alice and prints it with the bot's reply,
/// decrypted; that reply.
async fn say(client: &mut EncryptedClient, room: &str, bot: &str, command: &str) -> anyhow::Result<Value> {
    let event_id = client.send_text(room, command).await?;
    let reply = client.wait_for_reply(&event_id, bot, PATIENCE).await?;
    println!("  @alice: {command}");
    print_body(&reply);
    Ok(reply)
}

fn body(event: &Value) -> &str {
    event.pointer("/content/body").and_then(Value::as_str).unwrap_or_default()
}

fn print_body(event: &Value) {
    for line in body(event).lines() {
        println!("    {line}");
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}")).collect::<Vec<_>>().join("\n")
}
