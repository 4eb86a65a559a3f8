//! Synapse's admin API for whole rooms: delete (shut down, block, purge)
//! with its status, and the block list. Each answer is read into a typed
//! struct; a field Synapse leaves out or mistypes is a decode error, never
//! a silent zero.

use reqwest::Method;
use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{HomeserverClient, HsError};

/// What `DELETE /_synapse/admin/v2/rooms/{room}` is asked to do. Synapse
/// always removes every local member first (join, invite, knock); the rest
/// is what these fields say. It takes who asked from the access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteRoom {
    /// Keep the room from being joined again, on this server (also by
    /// federation) for good; done first, even for a room Synapse does not know.
    pub block: bool,
    /// Erase the room from Synapse's database after the members are out
    /// (Synapse's default is `true`: always sent).
    pub purge: bool,
    /// A local user who makes a new room, moves the removed members and the
    /// room's local aliases into it, and posts `message` there. Without it
    /// Synapse posts nothing and moves nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_room_user_id: Option<OwnedUserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A delete's state, as Synapse's task scheduler has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteState {
    Scheduled,
    Active,
    Complete,
    Failed,
    Cancelled,
}

impl DeleteState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Active => "active",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether Synapse is still at it.
    pub fn is_running(self) -> bool {
        matches!(self, Self::Scheduled | Self::Active)
    }
}

/// One delete of a room (`GET /_synapse/admin/v2/rooms/delete_status/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeleteStatus {
    pub delete_id: String,
    pub status: DeleteState,
    /// What the shutdown did so far; none before it starts.
    #[serde(default)]
    pub shutdown_room: Option<ShutdownResult>,
}

/// What a shutdown did: written by Synapse as it goes, so a running delete
/// shows the members removed so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownResult {
    pub kicked_users: Vec<OwnedUserId>,
    pub failed_to_kick_users: Vec<OwnedUserId>,
    /// The aliases moved to the new room (only with `new_room_user_id`).
    /// As strings: Synapse accepts aliases ruma would not parse (over 255
    /// bytes in UTF-8), and one such alias must not make the answer unreadable.
    pub local_aliases: Vec<String>,
    pub new_room_id: Option<OwnedRoomId>,
}

/// Whether a room is on Synapse's block list, and who put it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    pub block: bool,
    /// Who blocked it (absent when it is not blocked).
    #[serde(default)]
    pub user_id: Option<String>,
}

impl HomeserverClient {
    /// Starts deleting a room (`DELETE /_synapse/admin/v2/rooms/{room}`);
    /// returns the delete ID to poll. Synapse refuses (400) while another
    /// delete of the room is running.
    pub async fn delete_room(&self, room_id: &str, delete: &DeleteRoom) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Started {
            delete_id: String,
        }
        let segments = ["_synapse", "admin", "v2", "rooms", room_id];
        let started: Started = self.send(Method::DELETE, &segments, Some(delete)).await?;
        Ok(started.delete_id)
    }

    /// A delete's state; `None` when Synapse has no such delete (its
    /// scheduler forgets finished tasks after a week).
    pub async fn delete_room_status(&self, delete_id: &str) -> Result<Option<DeleteStatus>, HsError> {
        let segments = ["_synapse", "admin", "v2", "rooms", "delete_status", delete_id];
        match self.send::<(), DeleteStatus>(Method::GET, &segments, None).await {
            Ok(status) => Ok(Some(status)),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every delete of a room Synapse remembers
    /// (`GET /_synapse/admin/v2/rooms/{room}/delete_status`).
    pub async fn room_deletes(&self, room_id: &str) -> Result<Vec<DeleteStatus>, HsError> {
        #[derive(Deserialize)]
        struct Results {
            results: Vec<DeleteStatus>,
        }
        let segments = ["_synapse", "admin", "v2", "rooms", room_id, "delete_status"];
        match self.send::<(), Results>(Method::GET, &segments, None).await {
            Ok(answer) => Ok(answer.results),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Whether a room is blocked (`GET /_synapse/admin/v1/rooms/{room}/block`),
    /// known to Synapse or not.
    pub async fn room_block(&self, room_id: &str) -> Result<BlockState, HsError> {
        self.send::<(), _>(Method::GET, &["_synapse", "admin", "v1", "rooms", room_id, "block"], None).await
    }

    /// Blocks or unblocks a room (`PUT /_synapse/admin/v1/rooms/{room}/block`);
    /// either is idempotent.
    pub async fn set_room_block(&self, room_id: &str, block: bool) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "rooms", room_id, "block"];
        self.send::<_, Value>(Method::PUT, &segments, Some(&serde_json::json!({ "block": block }))).await?;
        Ok(())
    }

    /// The users joined to a room, local and remote
    /// (`GET /_synapse/admin/v1/rooms/{room}/members`); `None` if Synapse
    /// does not know the room.
    pub async fn room_members(&self, room_id: &str) -> Result<Option<Vec<OwnedUserId>>, HsError> {
        #[derive(Deserialize)]
        struct Members {
            members: Vec<OwnedUserId>,
        }
        let segments = ["_synapse", "admin", "v1", "rooms", room_id, "members"];
        match self.send::<(), Members>(Method::GET, &segments, None).await {
            Ok(answer) => Ok(Some(answer.members)),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The local aliases of a room (`GET /_matrix/client/v3/rooms/{room}/aliases`):
    /// a server admin may ask about any room, member or not.
    /// As strings, for the reason [`ShutdownResult::local_aliases`] gives.
    pub async fn room_aliases(&self, room_id: &RoomId) -> Result<Vec<String>, HsError> {
        #[derive(serde::Deserialize)]
        struct Aliases {
            aliases: Vec<String>,
        }
        let segments = ["_matrix", "client", "v3", "rooms", room_id.as_str(), "aliases"];
        Ok(self.send::<(), Aliases>(reqwest::Method::GET, &segments, None).await?.aliases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_delete_asks_for_exactly_what_was_planned() {
        let plain = DeleteRoom { block: false, purge: false, new_room_user_id: None, message: None };
        assert_eq!(serde_json::to_value(&plain).unwrap(), json!({"block": false, "purge": false}));
        let told = DeleteRoom {
            block: true,
            purge: true,
            new_room_user_id: Some("@housekeep:hs".try_into().unwrap()),
            message: Some("closed".into()),
        };
        assert_eq!(
            serde_json::to_value(&told).unwrap(),
            json!({"block": true, "purge": true, "new_room_user_id": "@housekeep:hs", "message": "closed"})
        );
    }

    #[test]
    fn statuses_read_as_synapse_writes_them() {
        let running: DeleteStatus = serde_json::from_value(
            json!({"delete_id": "d", "room_id": "!r:hs", "status": "scheduled", "shutdown_room": null}),
        )
        .unwrap();
        assert!(running.status.is_running() && running.shutdown_room.is_none());
        let done: DeleteStatus = serde_json::from_value(json!({
            "delete_id": "d", "room_id": "!r:hs", "status": "complete",
            "shutdown_room": {"kicked_users": ["@a:hs"], "failed_to_kick_users": [],
                              "local_aliases": ["#x:hs"], "new_room_id": null},
        }))
        .unwrap();
        let result = done.shutdown_room.unwrap();
        assert_eq!(result.kicked_users.len(), 1);
        assert_eq!(result.local_aliases[0], "#x:hs");
        assert!(!done.status.is_running());
        let odd = serde_json::from_value::<DeleteStatus>(json!({"delete_id": "d", "status": "paused"}));
        assert!(odd.is_err(), "a state housekeep does not know is an error, not a guess");
        let block: BlockState = serde_json::from_value(json!({"block": false})).unwrap();
        assert_eq!(block, BlockState { block: false, user_id: None });
    }
}
