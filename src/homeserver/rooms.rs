//! Rooms through the Client-Server API, with ruma's request types: join,
//! leave, resolve aliases, read state and events, send and redact.

use reqwest::Method;
use ruma::api::client::{alias, membership, message, redact, room, state};
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::events::{InitialStateEvent, MessageLikeEventType};
use ruma::serde::Raw;
use ruma::{
    EventId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedTransactionId, OwnedUserId, RoomAliasId, RoomId,
    RoomOrAliasId, UserId,
};
use serde::Deserialize;
use serde_json::Value;

use super::power::ADMIN_ROOM_INVITE_LEVEL;
use super::{HomeserverClient, HsError};

/// An ID from the caller that is no ID is refused before anything is sent.
fn invalid(what: &str, id: &str, error: ruma::IdParseError) -> HsError {
    HsError::Invalid(format!("{id:?} is not a valid {what}: {error}"))
}

fn room_id(id: &str) -> Result<OwnedRoomId, HsError> {
    RoomId::parse(id).map_err(|e| invalid("room ID", id, e))
}

fn event_id(id: &str) -> Result<OwnedEventId, HsError> {
    EventId::parse(id).map_err(|e| invalid("event ID", id, e))
}

impl HomeserverClient {
    /// Joins a room by ID or alias; returns its room ID.
    pub async fn join(&self, room: &str) -> Result<OwnedRoomId, HsError> {
        let room = RoomOrAliasId::parse(room).map_err(|e| invalid("room ID or alias", room, e))?;
        let request = membership::join_room_by_id_or_alias::v3::Request::new(room);
        Ok(self.call(request).await?.room_id)
    }

    /// Joins a room by ID or alias, over federation through `via` when this
    /// homeserver is not in it yet; returns its room ID.
    pub async fn join_via(&self, room: &str, via: &[OwnedServerName]) -> Result<OwnedRoomId, HsError> {
        let room = RoomOrAliasId::parse(room).map_err(|e| invalid("room ID or alias", room, e))?;
        let mut request = membership::join_room_by_id_or_alias::v3::Request::new(room);
        request.via = via.to_vec();
        Ok(self.call(request).await?.room_id)
    }

    /// One current state event of a room, whole (with its `event_id` and
    /// `sender`); `None` when the room has none of that type and key.
    pub async fn state_event(&self, room: &str, event_type: &str, state_key: &str) -> Result<Option<Value>, HsError> {
        let mut request =
            state::get_state_event_for_key::v3::Request::new(room_id(room)?, event_type.into(), state_key.to_owned());
        request.format = state::get_state_event_for_key::v3::StateEventFormat::Event;
        match self.call(request).await {
            Ok(response) => Ok(Some(serde_json::from_str(response.event_or_content.get()).map_err(decode)?)),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Leaves a room, or declines an invite to it.
    pub async fn leave(&self, room: &str, reason: &str) -> Result<(), HsError> {
        let mut request = membership::leave_room::v3::Request::new(room_id(room)?);
        request.reason = Some(reason.to_owned());
        self.call(request).await?;
        Ok(())
    }

    /// `#alias:server` → room ID; a room ID is returned as it is.
    pub async fn resolve_room(&self, room: &str) -> Result<OwnedRoomId, HsError> {
        if room.starts_with('!') {
            return room_id(room);
        }
        let alias = RoomAliasId::parse(room).map_err(|e| invalid("room alias", room, e))?;
        Ok(self.call(alias::get_alias::v3::Request::new(alias)).await?.room_id)
    }

    /// Creates a private room under `#alias_localpart:<this server>`, named
    /// `name`; end-to-end encrypted (Megolm) from its start when `encrypted`.
    pub async fn create_private_room(
        &self,
        alias_localpart: &str,
        name: &str,
        topic: &str,
        encrypted: bool,
    ) -> Result<OwnedRoomId, HsError> {
        let mut request = room::create_room::v3::Request::new();
        if encrypted {
            let encryption = RoomEncryptionEventContent::with_recommended_defaults();
            request.initial_state = vec![InitialStateEvent::with_empty_state_key(encryption).to_raw_any()];
        }
        request.room_alias_name = Some(alias_localpart.to_owned());
        request.name = Some(name.to_owned());
        request.topic = Some(topic.to_owned());
        request.preset = Some(room::create_room::v3::RoomPreset::PrivateChat);
        Ok(self.call(request).await?.room_id)
    }

    /// Makes a new admin room safe: moderators at power level 50 (they may
    /// invite, kick and redact; the bot, its creator, can still demote one
    /// removed from the config), inviting needs 50 (the private_chat preset
    /// lets every member invite, and members read plans and the bot's answers),
    /// no guests. Power levels are read and written back rather than set at
    /// creation: the creator must be listed in older room versions and must
    /// not be in 12.
    pub async fn lock_down_admin_room(&self, room: &str, moderators: &[OwnedUserId]) -> Result<(), HsError> {
        let room = room_id(room)?;
        let levels_path = ["_matrix", "client", "v3", "rooms", room.as_str(), "state", "m.room.power_levels", ""];
        let mut levels: Value = self.send::<(), _>(Method::GET, &levels_path, None).await?;
        let Some(users) = levels.get_mut("users").and_then(Value::as_object_mut) else {
            return Err(HsError::Invalid(format!("{room}'s power levels have no users map")));
        };
        for moderator in moderators {
            users.entry(moderator.to_string()).or_insert(ADMIN_ROOM_INVITE_LEVEL.into());
        }
        levels["invite"] = ADMIN_ROOM_INVITE_LEVEL.into();
        self.send::<_, Value>(Method::PUT, &levels_path, Some(&levels)).await?;
        let guests_path = ["_matrix", "client", "v3", "rooms", room.as_str(), "state", "m.room.guest_access", ""];
        self.send::<_, Value>(Method::PUT, &guests_path, Some(&serde_json::json!({"guest_access": "forbidden"})))
            .await?;
        Ok(())
    }

    /// Invites a user into a room.
    pub async fn invite(&self, room: &str, user_id: &UserId) -> Result<(), HsError> {
        use membership::invite_user::v3::{InvitationRecipient, InviteUserId, Request};
        let recipient = InvitationRecipient::from(InviteUserId::new(user_id.to_owned()));
        self.call(Request::new(room_id(room)?, recipient)).await?;
        Ok(())
    }

    /// Every current state event of a room, as full events (with `sender`).
    pub async fn room_state(&self, room: &str) -> Result<Vec<Value>, HsError> {
        let response = self.call(state::get_state_events::v3::Request::new(room_id(room)?)).await?;
        response.room_state.iter().map(|raw| raw.deserialize_as::<Value>().map_err(decode)).collect()
    }

    /// Sends a room event. The same `txn_id` sent again is deduplicated by
    /// the homeserver, which makes a retry after a crash harmless.
    pub async fn send_event(
        &self,
        room: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
    ) -> Result<String, HsError> {
        let content = Raw::from_json(serde_json::value::to_raw_value(content).map_err(decode)?);
        let request = message::send_message_event::v3::Request::new_raw(
            room_id(room)?,
            OwnedTransactionId::from(txn_id),
            MessageLikeEventType::from(event_type),
            content,
        );
        Ok(self.call(request).await?.event_id.to_string())
    }

    /// Sends an `m.room.message` built with ruma's content types; `txn_id`
    /// as for [`Self::send_event`].
    pub async fn send_message(
        &self,
        room: &str,
        txn_id: &str,
        content: &RoomMessageEventContent,
    ) -> Result<String, HsError> {
        let request =
            message::send_message_event::v3::Request::new(room_id(room)?, OwnedTransactionId::from(txn_id), content)
                .map_err(decode)?;
        Ok(self.call(request).await?.event_id.to_string())
    }

    /// Redacts one event. `txn_id` makes a resend a no-op at the homeserver
    /// (for the same access token).
    pub async fn redact(&self, room: &str, event: &str, txn_id: &str, reason: Option<&str>) -> Result<String, HsError> {
        let mut request =
            redact::redact_event::v3::Request::new(room_id(room)?, event_id(event)?, OwnedTransactionId::from(txn_id));
        request.reason = reason.map(str::to_owned);
        Ok(self.call(request).await?.event_id.to_string())
    }

    /// Whether an event is redacted, as this client's user sees it.
    pub async fn is_redacted(&self, room: &str, event: &str) -> Result<bool, HsError> {
        let response = self.call(room::get_room_event::v3::Request::new(room_id(room)?, event_id(event)?)).await?;
        #[derive(Deserialize)]
        struct Unsigned {
            #[serde(default)]
            redacted_because: Option<serde::de::IgnoredAny>,
        }
        let unsigned: Option<Unsigned> = response.event.get_field("unsigned").map_err(decode)?;
        Ok(unsigned.is_some_and(|unsigned| unsigned.redacted_because.is_some()))
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

fn decode(error: serde_json::Error) -> HsError {
    HsError::Decode(error.to_string())
}
