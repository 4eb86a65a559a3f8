//! A moderator's end-to-end encrypting client, for the tests: a password
//! login (a device of its own), matrix-sdk-crypto's `OlmMachine` on a store
//! of its own (a SQLite file in the test's folder), fed from `/sync` as any
//! client's machine is. What it reads, it decrypts where it can; what it
//! sends, it encrypts (the tests' rooms are encrypted).
//!
//! It is the machine matrix-rust-sdk's `Client` runs, driven by hand instead
//! of by that crate, which would add a second HTTP stack and a C build to
//! every test build. Its key sharing goes to every device of a room's
//! members, unverified ones included: Element's "send to unverified
//! sessions" setting.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use super::{MatrixUser, encode};
use crate::crypto::{Crypto, DecryptError, DurableStore, Flow, Masquerade, Progress, SyncAnswer};
use crate::homeserver::HomeserverClient;
use crate::store::Store;

pub struct EncryptedClient {
    pub user: MatrixUser,
    pub device_id: String,
    crypto: Arc<Crypto>,
    since: Option<String>,
    /// Timeline events seen, oldest first: decrypted where they were
    /// encrypted and could be (`type` and `content` are then the
    /// plaintext's); `m.room.encrypted` where they could not.
    timeline: Vec<Value>,
    /// Encrypted events whose room key has not come (yet), with their room.
    waiting: Vec<(String, Value)>,
}

impl EncryptedClient {
    /// Logs `user_id` in with a new device and uploads its keys.
    pub async fn login(base: &str, user_id: &str, password: &str, dir: &Path) -> anyhow::Result<Self> {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            "initial_device_display_name": "housekeep test client",
        });
        let response = super::http().post(format!("{base}/_matrix/client/v3/login")).json(&body).send().await?;
        let answer: Value = response.error_for_status()?.json().await?;
        let token = answer["access_token"].as_str().context("no access_token")?;
        let device_id = answer["device_id"].as_str().context("no device_id")?.to_owned();
        let path = dir.join(format!("client-{device_id}.db"));
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()), Some(1)).await?;
        store.migrate().await?;
        let homeserver = HomeserverClient::new(base.parse()?, token.to_owned())?;
        let crypto =
            Crypto::on_device(homeserver, DurableStore::open(store).await?, user_id, &device_id, Masquerade::No)
                .await?;
        let mut client = Self {
            user: MatrixUser::new(base, user_id, token),
            device_id,
            crypto,
            since: None,
            timeline: Vec::new(),
            waiting: Vec::new(),
        };
        client.sync().await?;
        Ok(client)
    }

    /// One `/sync` round (a long poll of up to a second): the machine reads
    /// its to-device messages and key counts, then the timelines are read,
    /// and whatever waited for a room key is tried again.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        let path = match &self.since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&since={}", encode(since)),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let answer = self.user.request(Method::GET, &path, None).await?;
        let text = answer.to_string();
        let crypto_part: SyncAnswer<'_> = serde_json::from_str(&text)?;
        self.crypto.receive_sync(&crypto_part).await?;
        self.crypto.send_outgoing().await?;
        let rooms = answer.pointer("/rooms/join").and_then(Value::as_object).cloned().unwrap_or_default();
        for (room, joined) in rooms {
            let events = joined.pointer("/timeline/events").and_then(Value::as_array).cloned().unwrap_or_default();
            for mut event in events {
                event["room_id"] = json!(room);
                if event["type"] == "m.room.encrypted" {
                    self.waiting.push((room.clone(), event));
                } else {
                    self.timeline.push(event);
                }
            }
        }
        let waiting = std::mem::take(&mut self.waiting);
        for (room, event) in waiting {
            match self.crypto.decrypt(&room, &event, Duration::ZERO).await {
                Ok(plain) => self.timeline.push(plain),
                Err(DecryptError::MissingKey { .. }) => self.waiting.push((room, event)),
                // Sent before this device existed (a Megolm session is
                // shared from its current index on), or broken: kept as
                // it came, encrypted.
                Err(DecryptError::Other(_)) => self.timeline.push(event),
            }
        }
        self.since = answer["next_batch"].as_str().map(str::to_owned);
        Ok(())
    }

    /// Sends an event encrypted (sharing the room key first where needed);
    /// its event ID.
    pub async fn send(&mut self, room: &str, event_type: &str, content: Value) -> anyhow::Result<String> {
        self.sync().await?;
        let encrypted = self.crypto.encrypt(room, event_type, &content).await?;
        self.user.send(room, "m.room.encrypted", encrypted).await
    }

    pub async fn send_text(&mut self, room: &str, body: &str) -> anyhow::Result<String> {
        self.send(room, "m.room.message", json!({"msgtype": "m.text", "body": body})).await
    }

    /// Reacts to an event (`m.annotation`), encrypted as Element does.
    pub async fn react(&mut self, room: &str, event_id: &str, key: &str) -> anyhow::Result<String> {
        let content = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}});
        self.send(room, "m.reaction", content).await
    }

    /// Waits (syncing) until `sender`'s first message in reply to
    /// `event_id` is there and decrypted; that message.
    pub async fn wait_for_reply(&mut self, event_id: &str, sender: &str, limit: Duration) -> anyhow::Result<Value> {
        self.wait_for(limit, &format!("{sender}'s reply to {event_id}"), |event| {
            event["sender"] == sender
                && event.pointer("/content/m.relates_to/m.in_reply_to/event_id").and_then(Value::as_str)
                    == Some(event_id)
        })
        .await
    }

    /// Waits (syncing) until this client knows `user`'s device `device_id`,
    /// as a client learns of a new device from `/sync`'s device lists.
    pub async fn wait_for_device(&mut self, user: &str, device_id: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !self.crypto.knows_device(user, device_id).await? {
            anyhow::ensure!(Instant::now() < deadline, "{user}'s device {device_id} unknown after {limit:?}");
            self.sync().await?;
        }
        Ok(())
    }

    /// Waits (syncing) until a timeline event matches; that event.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(event) = self.timeline.iter().find(|event| matches(event)) {
                return Ok(event.clone());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no {what} within {limit:?}; {} encrypted events are still waiting for their room key",
                self.waiting.len()
            );
            self.sync().await?;
        }
    }

    /// Gives this client's user a cross-signing identity (as a client does
    /// at its first login), so that verifying someone signs their identity.
    pub async fn cross_sign(&mut self) -> anyhow::Result<()> {
        self.crypto.cross_sign_own_device().await
    }

    /// Asks `user`'s device `device` to verify with emoji, as "Verify" on a
    /// device in a client does, and starts comparing once it accepted; the
    /// flow and the seven emoji this client shows.
    pub async fn verify_with_emoji(
        &mut self,
        user: &str,
        device: &str,
        limit: Duration,
    ) -> anyhow::Result<(Flow, Vec<(String, String)>)> {
        let flow = self.crypto.request_verification(user, device).await?;
        self.wait_for_verification(&flow, limit, |p| *p == Progress::Ready).await?;
        self.crypto.start_sas(&flow).await?;
        let emoji = self.wait_for_verification(&flow, limit, |p| matches!(p, Progress::Emoji(_))).await?;
        let Progress::Emoji(emoji) = emoji else { unreachable!("waited for the emoji") };
        Ok((flow, emoji))
    }

    /// Loses this client's to-device messages of `event_type` from now on
    /// (`None`: none), as a homeserver may on their way to an appservice.
    pub fn lose_to_device(&self, event_type: Option<&str>) {
        self.crypto.lose_to_device(event_type);
    }

    /// "They match": then waits (syncing) until the other side said so too.
    pub async fn confirm_emoji(&mut self, flow: &Flow, limit: Duration) -> anyhow::Result<()> {
        self.crypto.confirm_sas(flow).await?;
        self.wait_for_verification(flow, limit, |p| *p == Progress::Done).await.map(|_| ())
    }

    /// Waits (syncing) until a verification's progress passes `until`; an
    /// error when it was cancelled first (its reason) or `limit` passed.
    pub async fn wait_for_verification(
        &mut self,
        flow: &Flow,
        limit: Duration,
        until: impl Fn(&Progress) -> bool,
    ) -> anyhow::Result<Progress> {
        let deadline = Instant::now() + limit;
        loop {
            match flow.progress() {
                progress if until(&progress) => return Ok(progress),
                Progress::Cancelled(reason) => anyhow::bail!("the verification was cancelled: {reason}"),
                _ => {}
            }
            anyhow::ensure!(Instant::now() < deadline, "the verification stalled for {limit:?}");
            self.sync().await?;
        }
    }

    /// Whether this client trusts `user`'s device `device`, and `user`'s
    /// identity, as the homeserver lists their keys now.
    pub async fn trusts(&mut self, user: &str, device: &str) -> anyhow::Result<(bool, bool)> {
        self.crypto.query_keys_again().await?;
        Ok((self.crypto.is_verified(user, device).await?, self.crypto.is_identity_verified(user).await?))
    }

    /// An encrypted attachment's bytes (a message's `file`): the ciphertext
    /// downloaded and decrypted, its hash checked.
    pub async fn download_file(&self, file: &Value) -> anyhow::Result<Vec<u8>> {
        let url = file["url"].as_str().context("an encrypted file without url")?;
        let ciphertext = self.user.download(url).await?;
        crate::crypto::decrypt_attachment(&ciphertext, file)
    }

    /// The timeline events seen so far, decrypted where they could be.
    pub fn timeline(&self) -> &[Value] {
        &self.timeline
    }

    /// Encrypted events seen whose room key has not come.
    pub fn undecrypted(&self) -> usize {
        self.waiting.len()
    }
}
