//! Rooms as the bot: join, leave, resolve aliases, read state, send events.

use reqwest::Method;
use ruma::{OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HomeserverClient, HsError};

impl HomeserverClient {
    /// Joins a room by ID or alias; returns its room ID.
    pub async fn join(&self, room: &str) -> Result<OwnedRoomId, HsError> {
        #[derive(Deserialize)]
        struct Joined {
            room_id: OwnedRoomId,
        }
        let joined: Joined =
            self.send(Method::POST, &["_matrix", "client", "v3", "join", room], Some(&json!({}))).await?;
        Ok(joined.room_id)
    }

    /// Leaves a room, or declines an invite to it.
    pub async fn leave(&self, room_id: &str, reason: &str) -> Result<(), HsError> {
        let body = json!({ "reason": reason });
        self.send::<_, Value>(Method::POST, &["_matrix", "client", "v3", "rooms", room_id, "leave"], Some(&body))
            .await?;
        Ok(())
    }

    /// `#alias:server` → room ID; a room ID is returned as it is.
    pub async fn resolve_room(&self, room: &str) -> Result<OwnedRoomId, HsError> {
        if room.starts_with('!') {
            return OwnedRoomId::try_from(room).map_err(|e| HsError::Decode(format!("{room}: {e}")));
        }
        #[derive(Deserialize)]
        struct Resolved {
            room_id: OwnedRoomId,
        }
        let resolved: Resolved =
            self.send::<(), _>(Method::GET, &["_matrix", "client", "v3", "directory", "room", room], None).await?;
        Ok(resolved.room_id)
    }

    /// Every current state event of a room, as full events (with `sender`).
    pub async fn room_state(&self, room_id: &str) -> Result<Vec<Value>, HsError> {
        self.send::<(), _>(Method::GET, &["_matrix", "client", "v3", "rooms", room_id, "state"], None).await
    }

    /// Sends a room event. The same `txn_id` sent again is deduplicated by
    /// the homeserver, which makes a retry after a crash harmless.
    pub async fn send_event(
        &self,
        room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
    ) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Sent {
            event_id: String,
        }
        let segments = ["_matrix", "client", "v3", "rooms", room_id, "send", event_type, txn_id];
        let sent: Sent = self.send(Method::PUT, &segments, Some(content)).await?;
        Ok(sent.event_id)
    }

    /// Whether a user is a server admin (Synapse admin API). `Ok(false)` when
    /// the bot itself lacks the rights to ask.
    pub async fn is_server_admin(&self, user_id: &OwnedUserId) -> Result<bool, HsError> {
        #[derive(Deserialize)]
        struct Admin {
            admin: bool,
        }
        let segments = ["_synapse", "admin", "v1", "users", user_id.as_str(), "admin"];
        match self.send::<(), Admin>(Method::GET, &segments, None).await {
            Ok(answer) => Ok(answer.admin),
            Err(HsError::Matrix { status, .. }) if status == reqwest::StatusCode::FORBIDDEN => Ok(false),
            Err(error) => Err(error),
        }
    }
}
