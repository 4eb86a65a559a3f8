//! The bot's end-to-end encryption (issue 35): one device of the bot user
//! with its keys, and matrix-sdk-crypto's `OlmMachine`, fed from the
//! appservice transactions instead of `/sync` (Synapse refuses `/sync` to
//! an appservice's sender user, which the bot is).
//!
//! - The device is made with `PUT /_matrix/client/v3/devices/{id}` and the
//!   as_token (MSC4190 behaviour); every request the machine asks for (keys
//!   upload, query and claim, to-device) is sent as the bot with
//!   `?device_id=` (MSC4326 masquerading).
//! - To-device messages (MSC2409), device list changes and one-time key
//!   counts (MSC3202) come in transactions: [`Crypto::receive`].
//! - [`Crypto::decrypt`] reads an `m.room.encrypted` event;
//!   [`Crypto::encrypt`] shares the room key with every device of the
//!   room's members and encrypts the bot's message.
//!
//! - The device, its keys and the room keys moderators shared with it are
//!   kept in housekeep's database (`store`): a restart, or a standby taking
//!   over, is the same device, verified as before.
//!
//! Knows the homeserver client and the store, nothing of the bot. Its API is
//! strings and JSON; the conversions to and from ruma 0.16 (matrix-sdk-crypto's;
//! housekeep's is 0.17) are in `boundary`.

mod boundary;
mod store;
mod verify;
pub use store::{DurableStore, RoomKeyScope, forget_room_keys_outside};
pub use verify::{Flow, Progress, VerificationRequested, emoji_line};

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::BoxFuture;
use matrix_sdk_common::deserialized_responses::{VerificationLevel, VerificationState};
use matrix_sdk_crypto::store::CryptoStore;
use matrix_sdk_crypto::types::requests::AnyOutgoingRequest;
use matrix_sdk_crypto::{
    AttachmentDecryptor, AttachmentEncryptor, CollectStrategy, DecryptionSettings, EncryptionSettings,
    EncryptionSyncChanges, MediaEncryptionInfo, MegolmError, OlmMachine, TrustRequirement,
};
use rand::distr::{Distribution, Uniform};
use ruma016::api::client::sync::sync_events::DeviceLists;
use ruma016::api::client::to_device::send_event_to_device;
use ruma016::events::room::history_visibility::HistoryVisibility;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::homeserver::{HomeserverClient, HsError};
use crate::store::{CryptoRow, CryptoWrite, Store};

/// Where the transaction handler finds the machine once it runs (it starts
/// after the listener, once the bot user exists).
pub type CryptoSlot = Arc<OnceLock<Arc<Crypto>>>;

/// What one transaction brings for the machine (raw, as it came).
#[derive(Default)]
pub struct SyncChanges<'a> {
    /// `de.sorunome.msc2409.to_device`: `{type, sender, content, to_user_id, to_device_id}`.
    pub to_device: Vec<&'a RawValue>,
    /// `org.matrix.msc3202.device_lists`: `{changed, left}`.
    pub device_lists: Option<&'a RawValue>,
    /// `org.matrix.msc3202.device_one_time_keys_count`: `{user: {device: {algorithm: n}}}`.
    pub one_time_keys_count: Option<&'a RawValue>,
    /// `org.matrix.msc3202.device_unused_fallback_key_types`: `{user: {device: [algorithm]}}`.
    pub unused_fallback_key_types: Option<&'a RawValue>,
}

/// The parts of a client's `/sync` answer the machine reads.
#[derive(serde::Deserialize)]
pub struct SyncAnswer<'a> {
    #[serde(borrow)]
    pub to_device: Option<ToDeviceList<'a>>,
    #[serde(borrow)]
    pub device_lists: Option<&'a RawValue>,
    #[serde(borrow)]
    pub device_one_time_keys_count: Option<&'a RawValue>,
    #[serde(borrow)]
    pub device_unused_fallback_key_types: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
pub struct ToDeviceList<'a> {
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

impl SyncChanges<'_> {
    pub fn is_empty(&self) -> bool {
        self.to_device.is_empty()
            && self.device_lists.is_none()
            && self.one_time_keys_count.is_none()
            && self.unused_fallback_key_types.is_none()
    }
}

/// Any device may send to the bot and be read (its moderators' devices need
/// no verification: who may command is decided by the sender's user ID, as
/// in an unencrypted room); a room key that belongs to another sender is
/// refused in `decrypt`.
const DECRYPTION: DecryptionSettings =
    DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted };

/// Why an event could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The room key has not come (yet): the sender's client did not send it
    /// to this device, or it was lost.
    #[error("housekeep's device {device} has no key for this message (the sender's client did not share it with it)")]
    MissingKey { device: String },
    #[error("cannot decrypt: {0}")]
    Other(String),
}

pub struct Crypto {
    machine: OlmMachine,
    homeserver: HomeserverClient,
    /// The device's user: the bot, or a client's user in the tests.
    user: String,
    device_id: String,
    masquerade: Masquerade,
    /// One sender of the machine's requests at a time (a keys upload sent
    /// twice at once is refused by the homeserver).
    sending: tokio::sync::Mutex<()>,
    /// One room-key share at a time.
    sharing: tokio::sync::Mutex<()>,
    /// Rung when room keys arrived.
    room_keys: Notify,
    /// Rung when the machine may have requests to send.
    outgoing: Notify,
    /// Rooms known encrypted, with their `m.room.encryption` content (a
    /// room never turns plain again). A plain room's state is read before
    /// each message into it: nothing goes in the clear into a room that
    /// turned encrypted a moment ago.
    encrypted_rooms: Mutex<HashMap<String, Value>>,
    /// The last one-time key counts and fallback key types the homeserver
    /// sent: a transaction that brings the same and nothing else for this
    /// device is not handed to the machine (every transaction carries them,
    /// and the machine would write its account again each time).
    last_counts: Mutex<Option<(Value, Option<Value>)>>,
    /// Verification requests from other devices, for the one reader that
    /// takes the receiver (`verify`).
    verification_requests: (
        tokio::sync::mpsc::Sender<VerificationRequested>,
        Mutex<Option<tokio::sync::mpsc::Receiver<VerificationRequested>>>,
    ),
    /// To-device messages of this type are marked sent but not sent: a
    /// test plays a homeserver that loses them ([`Crypto::lose_to_device`]).
    losing: Mutex<Option<String>>,
    /// The flows (other user, flow ID) whose other side confirmed.
    confirmed_by_them: Mutex<std::collections::HashSet<(String, String)>>,
    /// Verification requests dropped because the reader's queue was full.
    dropped_requests: std::sync::atomic::AtomicU64,
    /// Whose room keys the store keeps.
    room_key_scope: Arc<RoomKeyScope>,
    /// Rung when to-device messages came or went: a verification may have
    /// moved (the machine moves one on when its message was sent, too).
    to_device_moved: Notify,
}

/// Whether the machine's requests name the device (`?user_id=&device_id=`),
/// as an appservice's must: its token is no device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Masquerade {
    Yes,
    No,
}

impl Crypto {
    /// Starts the bot's device: the one the database keeps, or a new one
    /// when it keeps none (the first start with encryption on) or the
    /// homeserver no longer has it (its keys there are gone with it). Then
    /// uploads whatever keys the homeserver lacks.
    pub async fn start(
        homeserver: HomeserverClient,
        db: Store,
        bot: &str,
        display_name: &str,
    ) -> anyhow::Result<Arc<Self>> {
        let mut store = DurableStore::open(db.clone()).await?;
        let kept = store.load_account().await?.map(|account| account.device_id().to_string());
        let (device_id, new) = match kept {
            Some(device_id) if homeserver.device_exists(&device_id).await? => {
                tracing::info!(device_id, "the bot's device and keys, as the database keeps them");
                (device_id, false)
            }
            Some(device_id) => {
                let forgotten = db.forget_crypto().await?;
                tracing::warn!(
                    device_id,
                    forgotten,
                    "the homeserver no longer has the bot's device (deleted by an admin, or a stale-device \
                     clean-up): its keys are forgotten and a new device is made; moderators' clients see a new, \
                     unverified device"
                );
                store = DurableStore::open(db).await?;
                (new_device_id(), true)
            }
            None => (new_device_id(), true),
        };
        if new {
            homeserver.create_device(&device_id, display_name).await.context("cannot create the bot's device")?;
        }
        let crypto = Self::on_device(homeserver, store, bot, &device_id, Masquerade::Yes).await?;
        if let Err(error) = crypto.cross_sign_own_device().await {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot cross-sign the bot's device: clients that share room keys only with cross-signed devices \
                 leave it out; tried again at the next start"
            );
        }
        if new {
            crypto.delete_old_devices().await;
            // Public keys: what a moderator compares when verifying the device.
            let keys = crypto.machine.identity_keys();
            tracing::warn!(
                device_id,
                ed25519 = %keys.ed25519.to_base64(),
                "made a new device for the bot, kept in the database from now on; moderators' clients see a new, \
                 unverified device"
            );
        }
        Ok(crypto)
    }

    /// The machine of an existing device of `user`, on `store` (which keeps
    /// its keys, or none yet); uploads whatever keys the homeserver lacks.
    /// `homeserver` speaks as `user`: the appservice's own user with
    /// [`Masquerade::Yes`], or a user's own access token (a client's, as in
    /// the tests' moderator).
    pub async fn on_device(
        homeserver: HomeserverClient,
        store: DurableStore,
        user: &str,
        device_id: &str,
        masquerade: Masquerade,
    ) -> anyhow::Result<Arc<Self>> {
        let room_key_scope = store.scope();
        let machine = OlmMachine::with_store(&boundary::user_id(user)?, &boundary::device_id(device_id), store, None)
            .await
            .context("cannot start the crypto machine on its store")?;
        let (requests, requests_out) = tokio::sync::mpsc::channel(verify::WAITING_REQUESTS);
        let crypto = Arc::new(Self {
            machine,
            homeserver,
            user: user.to_owned(),
            device_id: device_id.to_owned(),
            masquerade,
            sending: tokio::sync::Mutex::new(()),
            sharing: tokio::sync::Mutex::new(()),
            room_keys: Notify::new(),
            outgoing: Notify::new(),
            encrypted_rooms: Mutex::new(HashMap::new()),
            last_counts: Mutex::new(None),
            verification_requests: (requests, Mutex::new(Some(requests_out))),
            room_key_scope,
            dropped_requests: Default::default(),
            confirmed_by_them: Default::default(),
            losing: Default::default(),
            to_device_moved: Notify::new(),
        });
        crypto.send_outgoing().await.context("cannot upload the device's keys")?;
        Ok(crypto)
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// From now on keeps the room keys of `room` only (and the device's own
    /// for any room): the bot reads one room, and anyone may send its device
    /// keys for any room ID. `refused` is told of each other key, with its room.
    pub fn keep_room_keys_only_for(&self, room: &str, refused: impl Fn(&str) + Send + Sync + 'static) {
        self.room_key_scope.only(room, self.machine.identity_keys().curve25519, Box::new(refused));
    }

    /// From now on, to-device messages of `event_type` are lost: marked
    /// sent, never sent (`None`: none). For tests that play a homeserver
    /// losing a message on its way; nothing in housekeep calls it.
    pub fn lose_to_device(&self, event_type: Option<&str>) {
        *self.losing.lock().unwrap_or_else(|p| p.into_inner()) = event_type.map(str::to_owned);
    }

    /// Whether the machine knows this device of this user (its keys).
    pub async fn knows_device(&self, user: &str, device_id: &str) -> anyhow::Result<bool> {
        let device = self.machine.get_device(&boundary::user_id(user)?, &boundary::device_id(device_id), None).await?;
        Ok(device.is_some())
    }

    /// Sends what the machine asks for whenever it may ask (rung by
    /// [`receive`](Self::receive)), and every 30 s; until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.send_outgoing().await {
                tracing::warn!(error = format!("{error:#}"), "cannot send the crypto machine's requests; retrying");
            }
            tokio::select! {
                _ = self.outgoing.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Hands one transaction's to-device messages, device list changes and
    /// key counts to the machine. Only what is addressed to this device is
    /// kept.
    pub async fn receive(&self, changes: &SyncChanges<'_>) -> anyhow::Result<()> {
        let mine: Vec<&RawValue> = changes.to_device.iter().copied().filter(|event| self.is_for_me(event)).collect();
        let ours = |field: Option<&RawValue>| -> Option<Value> {
            let all: Value = serde_json::from_str(field?.get()).ok()?;
            all.get(&self.user)?.get(&self.device_id).cloned()
        };
        // Synapse leaves a count of zero out (its map is `{}` for a device
        // with no keys left), and the machine refills only a count it sees.
        let counts = changes.one_time_keys_count.map(|_| ours(changes.one_time_keys_count).unwrap_or_default());
        let fallback = ours(changes.unused_fallback_key_types);
        let lists = boundary::device_lists(changes.device_lists);
        if mine.is_empty() && lists.changed.is_empty() && lists.left.is_empty() {
            let Some(counts) = &counts else { return Ok(()) };
            let now = Some((counts.clone(), fallback.clone()));
            let mut last = self.last_counts.lock().unwrap_or_else(|p| p.into_inner());
            if *last == now {
                return Ok(());
            }
            *last = now;
        }
        self.feed(&mine, &lists, counts, fallback).await
    }

    /// The same from a client's `/sync` answer (whose to-device messages
    /// are all this device's, and whose counts are its own).
    pub async fn receive_sync(&self, sync: &SyncAnswer<'_>) -> anyhow::Result<()> {
        let to_device: Vec<&RawValue> = sync.to_device.as_ref().map(|t| t.events.clone()).unwrap_or_default();
        let counts = sync.device_one_time_keys_count.as_ref().map(|raw| serde_json::from_str(raw.get())).transpose()?;
        let fallback =
            sync.device_unused_fallback_key_types.as_ref().map(|raw| serde_json::from_str(raw.get())).transpose()?;
        self.feed(&to_device, &boundary::device_lists(sync.device_lists), counts, fallback).await
    }

    async fn feed(
        &self,
        to_device: &[&RawValue],
        lists: &DeviceLists,
        counts: Option<Value>,
        fallback: Option<Value>,
    ) -> anyhow::Result<()> {
        let mut key_counts = counts.as_ref().map(boundary::key_counts).unwrap_or_default();
        if counts.is_some() {
            key_counts.entry(boundary::signed_curve25519()).or_insert_with(|| 0u32.into());
        }
        let fallback = fallback.as_ref().map(boundary::algorithms);
        let sync = EncryptionSyncChanges {
            to_device_events: boundary::to_device_events(to_device),
            changed_devices: lists,
            one_time_keys_counts: &key_counts,
            unused_fallback_keys: fallback.as_deref(),
            next_batch_token: None,
        };
        let (events, room_keys) = self.machine.receive_sync_changes(sync, &DECRYPTION).await?;
        if !to_device.is_empty() || counts.is_some() || !lists.changed.is_empty() {
            // Kinds and numbers only: never a message's content.
            let kinds: Vec<String> = to_device
                .iter()
                .filter_map(|event| serde_json::from_str::<Value>(event.get()).ok())
                .map(|event| event.get("type").and_then(Value::as_str).unwrap_or("?").to_owned())
                .collect();
            tracing::debug!(
                to_device = ?kinds,
                changed_devices = lists.changed.len(),
                one_time_keys = ?key_counts,
                fallback = ?fallback,
                processed = events.len(),
                room_keys = room_keys.len(),
                "crypto data received"
            );
        }
        if !room_keys.is_empty() {
            self.room_keys.notify_waiters();
        }
        if !to_device.is_empty() {
            self.note_confirmations(&events);
            self.pass_on_requests(&events);
            self.to_device_moved.notify_waiters();
        }
        self.outgoing.notify_one();
        Ok(())
    }

    /// Hands the machine the to-device messages kept while it was not
    /// running yet ([`keep_for_later`]), oldest first, and forgets them.
    pub async fn receive_kept(&self, db: &Store) -> anyhow::Result<usize> {
        let rows = db.crypto_rows_of(KEPT_TO_DEVICE).await?;
        for row in &rows {
            let events: Vec<Box<RawValue>> = serde_json::from_str(&row.value).unwrap_or_default();
            let to_device = events.iter().map(AsRef::as_ref).collect();
            self.receive(&SyncChanges { to_device, ..SyncChanges::default() }).await?;
            db.write_crypto(&[CryptoWrite::Delete { kind: row.kind.clone(), key: row.key.clone() }]).await?;
        }
        Ok(rows.len())
    }

    fn is_for_me(&self, event: &RawValue) -> bool {
        #[derive(serde::Deserialize)]
        struct Address<'a> {
            #[serde(borrow)]
            to_user_id: Option<&'a str>,
            #[serde(borrow)]
            to_device_id: Option<&'a str>,
        }
        serde_json::from_str::<Address>(event.get()).is_ok_and(|address| {
            address.to_user_id == Some(self.user.as_str())
                && address.to_device_id.is_none_or(|device| device == self.device_id || device == "*")
        })
    }

    /// Decrypts a room event; the result is the event as if it had been
    /// sent in the clear (`type` and `content` from the plaintext, the rest
    /// from the envelope). A missing room key is waited for up to `patience`
    /// (it may come in a transaction after the message's).
    pub async fn decrypt(&self, room_id: &str, event: &Value, patience: Duration) -> Result<Value, DecryptError> {
        let other = |error: &dyn std::fmt::Display| DecryptError::Other(error.to_string());
        let room = boundary::room_id(room_id).map_err(|e| other(&e))?;
        let raw = boundary::raw(event).map_err(|e| other(&e))?;
        let deadline = Instant::now() + patience;
        loop {
            let keys_came = self.room_keys.notified();
            match self.machine.decrypt_room_event(&raw, &room, &DECRYPTION).await {
                Ok(decrypted) => {
                    // A session someone else sent its key for: whoever
                    // re-sends a moderator's ciphertext is not the moderator.
                    if matches!(
                        decrypted.encryption_info.verification_state,
                        VerificationState::Unverified(VerificationLevel::MismatchedSender)
                    ) {
                        return Err(DecryptError::Other("its room key belongs to another sender".to_owned()));
                    }
                    let plain: Value = decrypted.event.deserialize_as_unchecked().map_err(|e| other(&e))?;
                    let mut event = event.clone();
                    event["type"] = plain.get("type").cloned().unwrap_or(Value::Null);
                    event["content"] = plain.get("content").cloned().unwrap_or_else(|| json!({}));
                    return Ok(event);
                }
                Err(MegolmError::MissingRoomKey(_)) if Instant::now() < deadline => {
                    let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), keys_came).await;
                }
                Err(MegolmError::MissingRoomKey(_)) => {
                    return Err(DecryptError::MissingKey { device: self.device_id.clone() });
                }
                Err(error) => return Err(other(&error)),
            }
        }
    }

    /// A room's `m.room.encryption` changed (it came in a transaction): it
    /// is read again before the next message into it, which is never sent
    /// in the clear into a room that turned encrypted.
    pub fn encryption_changed(&self, room_id: &str) {
        self.encrypted_rooms.lock().unwrap_or_else(|p| p.into_inner()).remove(room_id);
    }

    /// The room's `m.room.encryption` content when it is encrypted.
    pub fn room_encryption<'a>(&'a self, room_id: &'a str) -> BoxFuture<'a, Result<Option<Value>, HsError>> {
        Box::pin(async move {
            let known = self.encrypted_rooms.lock().unwrap_or_else(|p| p.into_inner()).get(room_id).cloned();
            if known.is_some() {
                return Ok(known);
            }
            let state = self.homeserver.state_event(room_id, "m.room.encryption", "").await?;
            let content = state.and_then(|event| event.get("content").cloned());
            if let Some(content) = &content {
                let mut rooms = self.encrypted_rooms.lock().unwrap_or_else(|p| p.into_inner());
                rooms.insert(room_id.to_owned(), content.clone());
            }
            Ok(content)
        })
    }

    /// Encrypts an event for a room: first shares the room key with every
    /// device of its members (joined and invited) that has none yet.
    /// Returns the `m.room.encrypted` content.
    pub fn encrypt<'a>(
        &'a self,
        room_id: &'a str,
        event_type: &'a str,
        content: &'a Value,
    ) -> BoxFuture<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            let room = boundary::room_id(room_id)?;
            let _one = self.sharing.lock().await;
            let state = self.homeserver.room_state(room_id).await?;
            let members = state
                .iter()
                .filter(|event| event.get("type").and_then(Value::as_str) == Some("m.room.member"))
                .filter(|event| {
                    matches!(event.pointer("/content/membership").and_then(Value::as_str), Some("join" | "invite"))
                })
                .filter_map(|event| event.get("state_key").and_then(Value::as_str))
                .filter_map(|member| match boundary::user_id(member) {
                    Ok(member) => Some(member),
                    Err(error) => {
                        // One odd remote ID must not silence the bot in the room.
                        tracing::warn!(
                            room_id,
                            error = format!("{error:#}"),
                            "a member the room key is not shared with"
                        );
                        None
                    }
                })
                .collect::<Vec<_>>();
            let history_visibility = state
                .iter()
                .find(|event| event.get("type").and_then(Value::as_str) == Some("m.room.history_visibility"))
                .and_then(|event| event.pointer("/content/history_visibility"))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or(HistoryVisibility::Shared);
            // `Deref::deref`, not a closure: with a closure over references the
            // compiler cannot prove this future Send (a higher-ranked lifetime).
            self.machine.update_tracked_users(members.iter().map(Deref::deref)).await?;
            // The members' device keys (a query for users not known yet).
            self.send_outgoing().await?;
            if let Some((request_id, claim)) =
                self.machine.get_missing_sessions(members.iter().map(Deref::deref)).await?
            {
                let request = AnyOutgoingRequest::KeysClaim(claim);
                self.send_one(&request_id, &request).await?;
            }
            // Every device of every joined or invited member, as their homeservers
            // list them (README: "Key sharing").
            let settings = EncryptionSettings {
                history_visibility,
                sharing_strategy: CollectStrategy::AllDevices,
                ..EncryptionSettings::default()
            };
            let shares = self.machine.share_room_key(&room, members.iter().map(Deref::deref), settings).await?;
            for share in shares {
                let request = AnyOutgoingRequest::ToDeviceRequest((*share).clone());
                self.send_one(&share.txn_id, &request).await?;
            }
            let raw = boundary::raw(content)?;
            let encrypted = self.machine.encrypt_room_event_raw(&room, event_type, &raw).await?;
            Ok(encrypted.content.deserialize_as_unchecked()?)
        })
    }

    /// Deletes the bot's earlier devices (`HK…`): clients would otherwise
    /// go on sharing room keys with keys the bot no longer has, or that
    /// leaked with an old copy of its database.
    async fn delete_old_devices(&self) {
        let old = match self.homeserver.own_devices().await {
            Ok(devices) => devices.into_iter().filter(|id| id.starts_with("HK") && *id != self.device_id),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot list the bot's earlier devices to delete them");
                return;
            }
        };
        for device_id in old {
            match self.homeserver.delete_device(&device_id).await {
                Ok(()) => tracing::info!(device_id, "deleted an earlier device of the bot"),
                Err(error) => {
                    tracing::warn!(
                        device_id,
                        error = format!("{error:#}"),
                        "cannot delete an earlier device of the bot"
                    )
                }
            }
        }
    }

    /// Cross-signs this device with an identity of its user's own, once
    /// (the identity's private keys are kept in the store): clients that
    /// share room keys only with devices their owner signed (MSC4153,
    /// Element's "exclude insecure devices") then share them with the bot.
    /// An appservice uploads its signing keys without the interactive
    /// authentication a user's client needs.
    pub async fn cross_sign_own_device(&self) -> anyhow::Result<()> {
        if self.machine.cross_signing_status().await.has_self_signing {
            return Ok(());
        }
        let requests = self.machine.bootstrap_cross_signing(false).await?;
        if let Some(upload) = &requests.upload_keys_req {
            self.send_one(upload.request_id(), upload.request()).await?;
        }
        let body = boundary::signing_keys_body(&requests.upload_signing_keys_req);
        self.post(&["keys", "device_signing", "upload"], &body).await?;
        let signatures = serde_json::to_value(&requests.upload_signatures_req.signed_keys)?;
        self.post(&["keys", "signatures", "upload"], &signatures).await?;
        tracing::info!(
            device_id = self.device_id,
            user = self.user,
            "cross-signed the device with a new identity of its user's own"
        );
        Ok(())
    }

    /// A client API URL as this device: with an appservice, naming it.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.homeserver.url(segments);
        // `user_id` too, though it is the sender's: without it Synapse 1.163
        // looks the device up with the sender as a UserID object, which its
        // database driver refuses (a 500 on every masqueraded request).
        if self.masquerade == Masquerade::Yes {
            url.query_pairs_mut().append_pair("user_id", &self.user).append_pair("device_id", &self.device_id);
        }
        url
    }

    async fn post(&self, path: &[&str], body: &Value) -> anyhow::Result<Value> {
        let segments = boundary::client_v3(path);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        Ok(self.homeserver.send_url(reqwest::Method::POST, self.url(&segments), Some(body)).await?)
    }

    /// Sends every request the machine has, until it has none (a few rounds
    /// at most: a keys upload may be followed by another).
    pub async fn send_outgoing(&self) -> anyhow::Result<()> {
        let _one = self.sending.lock().await;
        for _round in 0..5 {
            let requests = self.machine.outgoing_requests().await?;
            if requests.is_empty() {
                break;
            }
            for request in requests {
                // The round stops at the first failure: the machine asks for
                // it again, and `run` tries again later.
                self.send_one(request.request_id(), request.request()).await?;
            }
        }
        Ok(())
    }

    /// One request, as the bot's device, and its answer back to the machine.
    /// Boxed, as are `encrypt` and `room_encryption`: they run inside the
    /// sink's futures, which must be Send, and a box makes each prove it
    /// where it is written (a failure otherwise points at the sink).
    fn send_one<'a>(
        &'a self,
        request_id: &'a ruma016::TransactionId,
        request: &'a AnyOutgoingRequest,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(http) = boundary::to_http(request)? else {
                tracing::debug!("an in-room verification message: not sent (in-room verification is not built)");
                return Ok(());
            };
            if let AnyOutgoingRequest::ToDeviceRequest(to_device) = request
                && self.losing.lock().unwrap_or_else(|p| p.into_inner()).as_deref()
                    == Some(to_device.event_type.to_string().as_str())
            {
                let nothing = send_event_to_device::v3::Response::new();
                self.machine.mark_request_as_sent(request_id, &nothing).await?;
                tracing::debug!(event_type = %to_device.event_type, "lost a to-device message on purpose (a test)");
                return Ok(());
            }
            let segments: Vec<&str> = http.segments.iter().map(String::as_str).collect();
            let url = self.url(&segments);
            let answer: Value = self.homeserver.send_url(http.method.clone(), url, Some(&http.body)).await?;
            use boundary::Response;
            match boundary::response(http.kind, &answer)? {
                Response::KeysUpload(response) => self.machine.mark_request_as_sent(request_id, &response).await?,
                Response::KeysQuery(response) => self.machine.mark_request_as_sent(request_id, &response).await?,
                Response::KeysClaim(response) => self.machine.mark_request_as_sent(request_id, &response).await?,
                Response::ToDevice(response) => {
                    self.machine.mark_request_as_sent(request_id, &response).await?;
                    self.to_device_moved.notify_waiters();
                }
                Response::SignatureUpload(response) => self.machine.mark_request_as_sent(request_id, &response).await?,
            }
            tracing::debug!(kind = ?http.kind, "crypto request sent");
            Ok(())
        })
    }
}

/// The row kind of to-device messages kept for the machine while it is not
/// running yet (at each start, the listener serves before the device is
/// checked with the homeserver).
const KEPT_TO_DEVICE: &str = "to_device_for_later";

/// At most this many transactions' to-device messages are kept for later:
/// anyone can send the bot to-device messages while it starts.
const MAX_KEPT_TO_DEVICE: i64 = 1_000;

/// Keeps a transaction's to-device messages for the machine that is not
/// running yet (Synapse never sends them again); whether they were kept
/// (not when [`MAX_KEPT_TO_DEVICE`] transactions already wait).
pub async fn keep_for_later(db: &Store, txn_id: &str, to_device: &[&RawValue]) -> anyhow::Result<bool> {
    if db.count_crypto_rows(KEPT_TO_DEVICE).await? >= MAX_KEPT_TO_DEVICE {
        return Ok(false);
    }
    let key = format!("{:020}-{txn_id}", crate::clock::now_ms());
    let value = serde_json::to_string(to_device)?;
    db.write_crypto(&[CryptoWrite::Put(CryptoRow { kind: KEPT_TO_DEVICE.to_owned(), key, value })]).await?;
    Ok(true)
}

/// Encrypts a file for an encrypted room (AES-CTR with a fresh key, as
/// every client does): the ciphertext to upload, and the `file` object
/// (`key`, `iv`, `hashes`, `v`) a message carries for it, without its `url`.
pub fn encrypt_attachment(plain: &[u8]) -> anyhow::Result<(Vec<u8>, Value)> {
    let mut reader = plain;
    let mut encryptor = AttachmentEncryptor::new(&mut reader);
    let mut ciphertext = Vec::with_capacity(plain.len());
    std::io::Read::read_to_end(&mut encryptor, &mut ciphertext)?;
    let info = encryptor.finish();
    Ok((ciphertext, serde_json::to_value(&info)?))
}

/// Decrypts a file a message's `file` object describes (the hash checked).
pub fn decrypt_attachment(ciphertext: &[u8], file: &Value) -> anyhow::Result<Vec<u8>> {
    let info: MediaEncryptionInfo = serde_json::from_value(file.clone()).context("not an encrypted file's info")?;
    let mut reader = ciphertext;
    let mut decryptor = AttachmentDecryptor::new(&mut reader, info).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut plain = Vec::with_capacity(ciphertext.len());
    std::io::Read::read_to_end(&mut decryptor, &mut plain)?;
    Ok(plain)
}

/// `HK` and 8 random capitals, as the design note has it.
fn new_device_id() -> String {
    let capitals = Uniform::new_inclusive(b'A', b'Z').expect("a valid range");
    let mut rng = rand::rng();
    let letters: String = (0..8).map(|_| capitals.sample(&mut rng) as char).collect();
    format!("HK{letters}")
}
