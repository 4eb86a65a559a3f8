//! The crypto machine's store, kept in housekeep's own database (SQLite or
//! PostgreSQL, wherever the index is: a standby that takes over is the same
//! device with the same keys).
//!
//! matrix-sdk-crypto's `MemoryStore` answers every read; each write goes to
//! the database first (one commit per change set, see `store::crypto`) and
//! then to memory. At start, [`DurableStore::open`] reads the rows back into
//! memory. The bot has one device and talks with a handful of moderators, so
//! all of it fits in memory many times over.
//!
//! Kept: the account (the device's identity keys), the cross-signing
//! identity, Olm sessions, Megolm sessions both ways, the devices and
//! identities of the users the machine tracks (and whether their lists are
//! out of date), the Olm message hashes that tell a replay from a broken
//! session, room settings and the machine's custom values. Not kept,
//! because the bot does not use them:
//! key backups, secret requests and the secrets inbox, withheld-key notes,
//! room key bundles and dehydrated devices (they live in memory for the
//! life of the process).
//!
//! The values are the device's private keys: nothing here logs one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use matrix_sdk_common::cross_process_lock::CrossProcessLockGeneration;
use matrix_sdk_crypto::olm::{
    Account, InboundGroupSession, OlmMessageHash, OutboundGroupSession, PickledAccount, PickledCrossSigningIdentity,
    PickledInboundGroupSession, PickledOutboundGroupSession, PickledSession, PrivateCrossSigningIdentity,
    SenderDataType, Session,
};
use matrix_sdk_crypto::store::types::{
    BackupKeys, Changes, DehydratedDeviceKey, PendingChanges, RoomKeyCounts, RoomKeyWithheldEntry,
    RoomPendingKeyBundleDetails, RoomSettings, StoredRoomKeyBundleData, TrackedUser,
};
use matrix_sdk_crypto::store::{CryptoStore, CryptoStoreError, MemoryStore};
use matrix_sdk_crypto::vodozemac::Curve25519PublicKey;
use matrix_sdk_crypto::{DeviceData, GossipRequest, SecretInfo, UserIdentityData};
use ruma016::events::secret::request::SecretName;
use ruma016::{DeviceId, OwnedDeviceId, RoomId, TransactionId, UserId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::store::{CryptoRow, CryptoWrite, Store};

/// The kinds of row, one a kind of thing kept.
mod kind {
    pub const ACCOUNT: &str = "account";
    pub const IDENTITY: &str = "cross_signing_identity";
    pub const SESSION: &str = "olm_session";
    pub const INBOUND: &str = "megolm_inbound";
    pub const OUTBOUND: &str = "megolm_outbound";
    pub const DEVICE: &str = "device";
    pub const USER_IDENTITY: &str = "user_identity";
    pub const TRACKED: &str = "tracked_user";
    pub const OLM_HASH: &str = "olm_hash";
    pub const ROOM_SETTINGS: &str = "room_settings";
    pub const CUSTOM: &str = "custom_value";
}

/// A database error, as the crypto machine takes them.
#[derive(Debug, thiserror::Error)]
#[error("the crypto store's database: {0:#}")]
pub struct DurableError(anyhow::Error);

impl From<DurableError> for CryptoStoreError {
    fn from(error: DurableError) -> Self {
        CryptoStoreError::backend(error)
    }
}

impl From<anyhow::Error> for DurableError {
    fn from(error: anyhow::Error) -> Self {
        Self(error)
    }
}

type Result<T> = std::result::Result<T, DurableError>;

/// What the memory store answers, which cannot fail.
fn sure<T>(answer: std::result::Result<T, Infallible>) -> Result<T> {
    let Ok(value) = answer;
    Ok(value)
}

pub struct DurableStore {
    memory: MemoryStore,
    db: Store,
    scope: Arc<RoomKeyScope>,
}

/// Whose Megolm sessions (room keys) the store keeps: every room's until
/// [`RoomKeyScope::only`] names one; then that room's, and the device's
/// own sessions for any room. Anyone can send the bot's device room keys
/// for any room ID; the bot reads one room, so the others would only grow
/// its database and its memory.
#[derive(Default)]
pub struct RoomKeyScope(OnceLock<Scope>);

struct Scope {
    room: String,
    /// The device's own Curve25519 key: its own sessions are always kept.
    own_key: Curve25519PublicKey,
    /// Told of each session refused, with its room.
    refused: Box<dyn Fn(&str) + Send + Sync>,
}

impl RoomKeyScope {
    /// From now on, keep only `room`'s sessions and the device's own;
    /// `refused` is told of each other one (once set, it stays).
    pub fn only(&self, room: &str, own_key: Curve25519PublicKey, refused: Box<dyn Fn(&str) + Send + Sync>) {
        let _ = self.0.set(Scope { room: room.to_owned(), own_key, refused });
    }

    /// Drops the sessions the scope does not keep, telling of each.
    fn keep(&self, sessions: &mut Vec<InboundGroupSession>) {
        let Some(scope) = self.0.get() else { return };
        sessions.retain(|session| {
            let kept = session.room_id().as_str() == scope.room || session.sender_key() == scope.own_key;
            if !kept {
                (scope.refused)(session.room_id().as_str());
            }
            kept
        });
    }

    /// Drops what else a remote device may send about other rooms: notes
    /// that a room key is withheld, and room key bundles (history shared
    /// on invite, which the bot does not use).
    fn keep_notes(&self, changes: &mut Changes) {
        changes.received_room_key_bundles.clear();
        let Some(scope) = self.0.get() else { return };
        changes.withheld_session_info.retain(|room, _| room.as_str() == scope.room);
    }
}

/// Forgets the room keys kept for rooms other than `room` (written before
/// the scope was set, or by an older housekeep); how many.
pub async fn forget_room_keys_outside(db: &Store, room: &str) -> anyhow::Result<usize> {
    let prefix = format!("{room}|");
    let outside: Vec<CryptoWrite> = db
        .crypto_rows_of(kind::INBOUND)
        .await?
        .into_iter()
        .filter(|row| !row.key.starts_with(&prefix))
        .map(|row| CryptoWrite::Delete { kind: row.kind, key: row.key })
        .collect();
    db.write_crypto(&outside).await?;
    Ok(outside.len())
}

/// Says which database, never what is in it.
impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore").field("backend", &self.db.backend()).finish_non_exhaustive()
    }
}

fn put(kind: &str, key: String, value: &impl Serialize) -> anyhow::Result<CryptoWrite> {
    let value = serde_json::to_string(value).with_context(|| format!("cannot write a {kind}"))?;
    Ok(CryptoWrite::Put(CryptoRow { kind: kind.to_owned(), key, value }))
}

fn read<T: DeserializeOwned>(row: &CryptoRow) -> anyhow::Result<T> {
    // The key, not the value: it names the thing, the value may be a secret.
    serde_json::from_str(&row.value).with_context(|| format!("cannot read the stored {} {:?}", row.kind, row.key))
}

impl DurableStore {
    /// The store with what the database keeps (nothing, before the bot's
    /// first device or after a lost one was forgotten).
    pub async fn open(db: Store) -> anyhow::Result<Self> {
        let memory = MemoryStore::new();
        let rows = db.crypto_rows().await.context("cannot read the crypto store")?;
        let of = |wanted: &'static str| rows.iter().filter(move |row| row.kind == wanted);
        let scope = Arc::default();
        let Some(account) = of(kind::ACCOUNT).next() else {
            return Ok(Self { memory, db, scope });
        };
        let account = Account::from_pickle(read::<PickledAccount>(account)?).context("cannot unpickle the account")?;
        let our_keys = account.device_keys();
        let device_id = account.device_id().to_owned();
        let identity_keys = account.static_data().identity_keys.clone();
        sure(memory.save_pending_changes(PendingChanges { account: Some(account) }).await)?;

        let mut changes = Changes::default();
        if let Some(row) = of(kind::IDENTITY).next() {
            let pickle: PickledCrossSigningIdentity = read(row)?;
            changes.private_identity = Some(
                PrivateCrossSigningIdentity::from_pickle(pickle).context("cannot unpickle the cross-signing keys")?,
            );
        }
        for row in of(kind::SESSION) {
            let session = Session::from_pickle(our_keys.clone(), read::<PickledSession>(row)?)
                .with_context(|| format!("cannot unpickle the Olm session {:?}", row.key))?;
            changes.sessions.push(session);
        }
        for row in of(kind::INBOUND) {
            let session = InboundGroupSession::from_pickle(read::<PickledInboundGroupSession>(row)?)
                .with_context(|| format!("cannot unpickle the Megolm session {:?}", row.key))?;
            changes.inbound_group_sessions.push(session);
        }
        for row in of(kind::OUTBOUND) {
            let pickle: PickledOutboundGroupSession = read(row)?;
            let session = OutboundGroupSession::from_pickle(device_id.clone(), identity_keys.clone(), pickle)
                .with_context(|| format!("cannot unpickle the outbound Megolm session of {:?}", row.key))?;
            changes.outbound_group_sessions.push(session);
        }
        for row in of(kind::DEVICE) {
            changes.devices.new.push(read::<DeviceData>(row)?);
        }
        for row in of(kind::USER_IDENTITY) {
            changes.identities.new.push(read::<UserIdentityData>(row)?);
        }
        for row in of(kind::OLM_HASH) {
            changes.message_hashes.push(read::<OlmMessageHash>(row)?);
        }
        for row in of(kind::ROOM_SETTINGS) {
            let room = ruma016::OwnedRoomId::try_from(row.key.as_str()).context("a stored room ID")?;
            changes.room_settings.insert(room, read::<RoomSettings>(row)?);
        }
        sure(memory.save_changes(changes).await)?;

        let tracked: Vec<(ruma016::OwnedUserId, bool)> = of(kind::TRACKED)
            .map(|row| Ok((ruma016::OwnedUserId::try_from(row.key.as_str())?, read::<bool>(row)?)))
            .collect::<anyhow::Result<_>>()?;
        let tracked: Vec<(&UserId, bool)> = tracked.iter().map(|(user, dirty)| (&**user, *dirty)).collect();
        sure(memory.save_tracked_users(&tracked).await)?;
        for row in of(kind::CUSTOM) {
            let bytes: String = read(row)?;
            let bytes = hex::decode(bytes).context("a stored custom value")?;
            sure(memory.set_custom_value(&row.key, bytes).await)?;
        }
        Ok(Self { memory, db, scope })
    }

    /// Whose room keys it keeps (shared with whoever names the room).
    pub fn scope(&self) -> Arc<RoomKeyScope> {
        self.scope.clone()
    }

    /// The rows of one change set.
    async fn writes(changes: &Changes) -> anyhow::Result<Vec<CryptoWrite>> {
        let mut writes = Vec::new();
        if let Some(identity) = &changes.private_identity {
            writes.push(put(kind::IDENTITY, String::new(), &identity.pickle().await)?);
        }
        for session in &changes.sessions {
            let key = format!("{}|{}", session.sender_key.to_base64(), session.session_id());
            writes.push(put(kind::SESSION, key, &session.pickle().await)?);
        }
        writes.extend(Self::inbound_writes(&changes.inbound_group_sessions).await?);
        for session in &changes.outbound_group_sessions {
            writes.push(put(kind::OUTBOUND, session.room_id().to_string(), &session.pickle().await)?);
        }
        for device in changes.devices.new.iter().chain(&changes.devices.changed) {
            writes.push(put(kind::DEVICE, device_key(device.user_id(), device.device_id()), device)?);
        }
        for device in &changes.devices.deleted {
            let key = device_key(device.user_id(), device.device_id());
            writes.push(CryptoWrite::Delete { kind: kind::DEVICE.to_owned(), key });
        }
        for identity in changes.identities.new.iter().chain(&changes.identities.changed) {
            writes.push(put(kind::USER_IDENTITY, identity.user_id().to_string(), identity)?);
        }
        for hash in &changes.message_hashes {
            writes.push(put(kind::OLM_HASH, format!("{}|{}", hash.sender_key, hash.hash), hash)?);
        }
        for (room, settings) in &changes.room_settings {
            writes.push(put(kind::ROOM_SETTINGS, room.to_string(), settings)?);
        }
        Ok(writes)
    }

    async fn inbound_writes(sessions: &[InboundGroupSession]) -> anyhow::Result<Vec<CryptoWrite>> {
        let mut writes = Vec::with_capacity(sessions.len());
        for session in sessions {
            let key = format!("{}|{}", session.room_id(), session.session_id());
            writes.push(put(kind::INBOUND, key, &session.pickle().await)?);
        }
        Ok(writes)
    }
}

fn device_key(user: &UserId, device: &DeviceId) -> String {
    // A user ID ends with its server name, which has no `|`.
    format!("{user}|{device}")
}

#[async_trait::async_trait]
impl CryptoStore for DurableStore {
    type Error = DurableError;

    async fn load_account(&self) -> Result<Option<Account>> {
        sure(self.memory.load_account().await)
    }

    async fn load_identity(&self) -> Result<Option<PrivateCrossSigningIdentity>> {
        sure(self.memory.load_identity().await)
    }

    async fn save_changes(&self, mut changes: Changes) -> Result<()> {
        self.scope.keep(&mut changes.inbound_group_sessions);
        self.scope.keep_notes(&mut changes);
        let writes = Self::writes(&changes).await?;
        self.db.write_crypto(&writes).await?;
        sure(self.memory.save_changes(changes).await)
    }

    async fn save_pending_changes(&self, changes: PendingChanges) -> Result<()> {
        if let Some(account) = &changes.account {
            self.db.write_crypto(&[put(kind::ACCOUNT, String::new(), &account.pickle())?]).await?;
        }
        sure(self.memory.save_pending_changes(changes).await)
    }

    async fn save_inbound_group_sessions(
        &self,
        mut sessions: Vec<InboundGroupSession>,
        backed_up_to_version: Option<&str>,
    ) -> Result<()> {
        self.scope.keep(&mut sessions);
        self.db.write_crypto(&Self::inbound_writes(&sessions).await?).await?;
        sure(self.memory.save_inbound_group_sessions(sessions, backed_up_to_version).await)
    }

    async fn get_sessions(&self, sender_key: &str) -> Result<Option<Vec<Session>>> {
        sure(self.memory.get_sessions(sender_key).await)
    }

    async fn get_inbound_group_session(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<InboundGroupSession>> {
        sure(self.memory.get_inbound_group_session(room_id, session_id).await)
    }

    async fn get_withheld_info(&self, room_id: &RoomId, session_id: &str) -> Result<Option<RoomKeyWithheldEntry>> {
        sure(self.memory.get_withheld_info(room_id, session_id).await)
    }

    async fn get_withheld_sessions_by_room_id(&self, room_id: &RoomId) -> Result<Vec<RoomKeyWithheldEntry>> {
        sure(self.memory.get_withheld_sessions_by_room_id(room_id).await)
    }

    async fn get_inbound_group_sessions(&self) -> Result<Vec<InboundGroupSession>> {
        sure(self.memory.get_inbound_group_sessions().await)
    }

    async fn inbound_group_session_counts(&self, backup_version: Option<&str>) -> Result<RoomKeyCounts> {
        sure(self.memory.inbound_group_session_counts(backup_version).await)
    }

    async fn get_inbound_group_sessions_by_room_id(&self, room_id: &RoomId) -> Result<Vec<InboundGroupSession>> {
        sure(self.memory.get_inbound_group_sessions_by_room_id(room_id).await)
    }

    async fn get_inbound_group_sessions_for_device_batch(
        &self,
        curve_key: Curve25519PublicKey,
        sender_data_type: SenderDataType,
        after_session_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>> {
        sure(
            self.memory
                .get_inbound_group_sessions_for_device_batch(curve_key, sender_data_type, after_session_id, limit)
                .await,
        )
    }

    async fn inbound_group_sessions_for_backup(
        &self,
        backup_version: &str,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>> {
        sure(self.memory.inbound_group_sessions_for_backup(backup_version, limit).await)
    }

    async fn mark_inbound_group_sessions_as_backed_up(
        &self,
        backup_version: &str,
        room_and_session_ids: &[(&RoomId, &str)],
    ) -> Result<()> {
        sure(self.memory.mark_inbound_group_sessions_as_backed_up(backup_version, room_and_session_ids).await)
    }

    async fn reset_backup_state(&self) -> Result<()> {
        sure(self.memory.reset_backup_state().await)
    }

    async fn load_backup_keys(&self) -> Result<BackupKeys> {
        sure(self.memory.load_backup_keys().await)
    }

    async fn load_dehydrated_device_pickle_key(&self) -> Result<Option<DehydratedDeviceKey>> {
        sure(self.memory.load_dehydrated_device_pickle_key().await)
    }

    async fn delete_dehydrated_device_pickle_key(&self) -> Result<()> {
        sure(self.memory.delete_dehydrated_device_pickle_key().await)
    }

    async fn get_outbound_group_session(&self, room_id: &RoomId) -> Result<Option<OutboundGroupSession>> {
        sure(self.memory.get_outbound_group_session(room_id).await)
    }

    async fn load_tracked_users(&self) -> Result<Vec<TrackedUser>> {
        sure(self.memory.load_tracked_users().await)
    }

    async fn save_tracked_users(&self, users: &[(&UserId, bool)]) -> Result<()> {
        let writes = users
            .iter()
            .map(|(user, dirty)| put(kind::TRACKED, user.to_string(), dirty))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.db.write_crypto(&writes).await?;
        sure(self.memory.save_tracked_users(users).await)
    }

    async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceData>> {
        sure(self.memory.get_device(user_id, device_id).await)
    }

    async fn get_user_devices(&self, user_id: &UserId) -> Result<HashMap<OwnedDeviceId, DeviceData>> {
        sure(self.memory.get_user_devices(user_id).await)
    }

    async fn get_own_device(&self) -> Result<DeviceData> {
        sure(self.memory.get_own_device().await)
    }

    async fn get_user_identity(&self, user_id: &UserId) -> Result<Option<UserIdentityData>> {
        sure(self.memory.get_user_identity(user_id).await)
    }

    async fn is_message_known(&self, message_hash: &OlmMessageHash) -> Result<bool> {
        sure(self.memory.is_message_known(message_hash).await)
    }

    async fn get_outgoing_secret_requests(&self, request_id: &TransactionId) -> Result<Option<GossipRequest>> {
        sure(self.memory.get_outgoing_secret_requests(request_id).await)
    }

    async fn get_secret_request_by_info(&self, secret_info: &SecretInfo) -> Result<Option<GossipRequest>> {
        sure(self.memory.get_secret_request_by_info(secret_info).await)
    }

    async fn get_unsent_secret_requests(&self) -> Result<Vec<GossipRequest>> {
        sure(self.memory.get_unsent_secret_requests().await)
    }

    async fn delete_outgoing_secret_requests(&self, request_id: &TransactionId) -> Result<()> {
        sure(self.memory.delete_outgoing_secret_requests(request_id).await)
    }

    async fn get_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<Vec<Zeroizing<String>>> {
        sure(self.memory.get_secrets_from_inbox(secret_name).await)
    }

    async fn delete_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<()> {
        sure(self.memory.delete_secrets_from_inbox(secret_name).await)
    }

    async fn get_room_settings(&self, room_id: &RoomId) -> Result<Option<RoomSettings>> {
        sure(self.memory.get_room_settings(room_id).await)
    }

    async fn get_received_room_key_bundle_data(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<StoredRoomKeyBundleData>> {
        sure(self.memory.get_received_room_key_bundle_data(room_id, user_id).await)
    }

    async fn get_pending_key_bundle_details_for_room(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomPendingKeyBundleDetails>> {
        sure(self.memory.get_pending_key_bundle_details_for_room(room_id).await)
    }

    async fn get_all_rooms_pending_key_bundles(&self) -> Result<Vec<RoomPendingKeyBundleDetails>> {
        sure(self.memory.get_all_rooms_pending_key_bundles().await)
    }

    async fn has_downloaded_all_room_keys(&self, room_id: &RoomId) -> Result<bool> {
        sure(self.memory.has_downloaded_all_room_keys(room_id).await)
    }

    async fn get_custom_value(&self, key: &str) -> Result<Option<Vec<u8>>> {
        sure(self.memory.get_custom_value(key).await)
    }

    async fn set_custom_value(&self, key: &str, value: Vec<u8>) -> Result<()> {
        self.db.write_crypto(&[put(kind::CUSTOM, key.to_owned(), &hex::encode(&value))?]).await?;
        sure(self.memory.set_custom_value(key, value).await)
    }

    async fn remove_custom_value(&self, key: &str) -> Result<()> {
        self.db.write_crypto(&[CryptoWrite::Delete { kind: kind::CUSTOM.to_owned(), key: key.to_owned() }]).await?;
        sure(self.memory.remove_custom_value(key).await)
    }

    /// Leases guard one process's machine against another's in the same
    /// store: housekeep's instance lock already makes one process the only one.
    async fn try_take_leased_lock(
        &self,
        lease_duration_ms: u32,
        key: &str,
        holder: &str,
    ) -> Result<Option<CrossProcessLockGeneration>> {
        sure(self.memory.try_take_leased_lock(lease_duration_ms, key, holder).await)
    }

    async fn next_batch_token(&self) -> Result<Option<String>> {
        sure(self.memory.next_batch_token().await)
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    async fn reopen(&self) -> Result<()> {
        Ok(())
    }

    async fn get_size(&self) -> Result<Option<usize>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk_crypto::OlmMachine;

    use super::*;

    /// One in-memory SQLite database (one connection), migrated.
    async fn database() -> Store {
        let store = Store::connect("sqlite::memory:", Some(1)).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    async fn machine(db: &Store) -> OlmMachine {
        let store = DurableStore::open(db.clone()).await.unwrap();
        let user = ruma016::user_id!("@housekeep:example.org");
        OlmMachine::with_store(user, ruma016::device_id!("HKTESTING"), store, None).await.unwrap()
    }

    #[tokio::test]
    async fn a_machine_opened_again_on_its_database_is_the_same_device_with_what_it_knew() {
        let db = database().await;
        let first = machine(&db).await;
        let keys = first.identity_keys();
        let moderator = ruma016::user_id!("@mod:example.org");
        first.update_tracked_users([moderator]).await.unwrap();
        first.store().set_custom_value("a", b"\x00\xffvalue".to_vec()).await.unwrap();
        drop(first);

        let kinds: Vec<String> = db.crypto_rows().await.unwrap().into_iter().map(|row| row.kind).collect();
        assert!(kinds.contains(&kind::ACCOUNT.to_owned()) && kinds.contains(&kind::TRACKED.to_owned()), "{kinds:?}");
        let again = machine(&db).await;
        assert_eq!(again.identity_keys(), keys, "the same keys");
        assert!(again.tracked_users().await.unwrap().contains(moderator));
        let value = again.store().get_custom_value("a").await.unwrap();
        assert_eq!(value.as_deref(), Some(&b"\x00\xffvalue"[..]));

        // Forgotten, it is a new device with new keys.
        db.forget_crypto().await.unwrap();
        drop(again);
        assert_ne!(machine(&db).await.identity_keys(), keys);
    }

    #[tokio::test]
    async fn nothing_of_a_kept_value_shows_in_debug_output() {
        let row = CryptoRow { kind: "account".into(), key: String::new(), value: "secret-pickle".into() };
        let shown = format!("{:?} {:?}", row, CryptoWrite::Put(row.clone()));
        assert!(!shown.contains("secret-pickle"), "{shown}");
        let store = DurableStore::open(database().await).await.unwrap();
        assert!(!format!("{store:?}").contains("pickle"));
    }
}
