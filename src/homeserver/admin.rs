//! Synapse's admin API (the bot must be a server admin).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HomeserverClient, HsError};

/// One media of a user's uploads, as Synapse's admin list has it.
#[derive(Debug, Clone, Deserialize)]
pub struct Upload {
    pub media_id: String,
    #[serde(default)]
    pub quarantined_by: Option<String>,
    /// Whether an admin protected it; `None` from a Synapse whose list
    /// leaves the field out (that says nothing: ask [`HomeserverClient::media_info`]).
    #[serde(default, deserialize_with = "flag::option")]
    pub safe_from_quarantine: Option<bool>,
    /// The content's hash, by which Synapse quarantines every copy.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Synapse's record of a media (the `media_info` of
/// `GET /_synapse/admin/v1/media/{server}/{id}`), the fields housekeep reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MediaInfo {
    /// Who uploaded it; none for remote media.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Who quarantined it, if it is.
    #[serde(default)]
    pub quarantined_by: Option<String>,
    /// Whether an admin protected it: Synapse keeps serving it whatever is
    /// asked. Only local media has the field; remote media cannot be protected.
    #[serde(default, deserialize_with = "flag::required")]
    pub safe_from_quarantine: bool,
    /// The content's hash, by which Synapse quarantines every copy.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Synapse's answer to a bulk quarantine: how many media rows it changed.
#[derive(Deserialize)]
struct Quarantined {
    num_quarantined: u64,
}

/// Synapse reports booleans as 1/0 on SQLite and true/false on PostgreSQL.
pub(super) mod flag {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }

    pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        option(deserializer)?.ok_or_else(|| D::Error::custom("a boolean, or 0/1, not null"))
    }

    pub fn option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
        Ok(Option::<Flag>::deserialize(deserializer)?.map(|flag| match flag {
            Flag::Bool(flag) => flag,
            Flag::Int(n) => n != 0,
        }))
    }
}

impl HomeserverClient {
    /// Quarantines one media (`POST /_synapse/admin/v1/media/quarantine/{server}/{id}`).
    /// Synapse quarantines by content hash: identical bytes elsewhere go too.
    pub async fn quarantine_media(&self, server_name: &str, media_id: &str) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "media", "quarantine", server_name, media_id];
        self.send::<_, Value>(Method::POST, &segments, Some(&json!({}))).await?;
        Ok(())
    }

    pub async fn unquarantine_media(&self, server_name: &str, media_id: &str) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "media", "unquarantine", server_name, media_id];
        self.send::<_, Value>(Method::POST, &segments, Some(&json!({}))).await?;
        Ok(())
    }

    /// Quarantines every media Synapse finds in a room's events
    /// (`POST /_synapse/admin/v1/room/{room}/media/quarantine`): its own
    /// scan reads `content.url` and `content.info.thumbnail_url` of
    /// unencrypted events, leaves protected media alone and, like the
    /// per-media call, takes identical files by hash. Returns how many
    /// media rows it changed.
    pub async fn quarantine_room_media(&self, room_id: &str) -> Result<u64, HsError> {
        let segments = ["_synapse", "admin", "v1", "room", room_id, "media", "quarantine"];
        let answer: Quarantined = self.send(Method::POST, &segments, Some(&json!({}))).await?;
        Ok(answer.num_quarantined)
    }

    /// The media Synapse's room quarantine takes
    /// (`GET /_synapse/admin/v1/room/{room}/media`): the same scan, as mxc URIs.
    pub async fn room_media(&self, room_id: &str) -> Result<Vec<String>, HsError> {
        #[derive(Deserialize)]
        struct RoomMedia {
            local: Vec<String>,
            remote: Vec<String>,
        }
        let segments = ["_synapse", "admin", "v1", "room", room_id, "media"];
        let media: RoomMedia = self.send::<(), _>(Method::GET, &segments, None).await?;
        Ok(media.local.into_iter().chain(media.remote).collect())
    }

    /// Quarantines every local upload of a local user
    /// (`POST /_synapse/admin/v1/user/{user}/media/quarantine`), protected
    /// media excepted. Returns how many media rows it changed.
    pub async fn quarantine_user_media(&self, user_id: &str) -> Result<u64, HsError> {
        let segments = ["_synapse", "admin", "v1", "user", user_id, "media", "quarantine"];
        let answer: Quarantined = self.send(Method::POST, &segments, Some(&json!({}))).await?;
        Ok(answer.num_quarantined)
    }

    /// Synapse's record of a media (who uploaded it, whether it is
    /// quarantined or protected); `None` when it has none.
    pub async fn media_info(&self, server_name: &str, media_id: &str) -> Result<Option<MediaInfo>, HsError> {
        #[derive(Deserialize)]
        struct Answer {
            media_info: MediaInfo,
        }
        let segments = ["_synapse", "admin", "v1", "media", server_name, media_id];
        match self.send::<(), Answer>(Method::GET, &segments, None).await {
            Ok(answer) => Ok(Some(answer.media_info)),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One page of the media a local user uploaded
    /// (`GET /_synapse/admin/v1/users/{user}/media`): their IDs, and where
    /// the next page starts, if there is one.
    pub async fn user_uploads_page(&self, user_id: &str, from: u64) -> Result<(Vec<Upload>, Option<u64>), HsError> {
        #[derive(Deserialize)]
        struct Page {
            media: Vec<Upload>,
            next_token: Option<u64>,
        }
        let mut url = self.url(&["_synapse", "admin", "v1", "users", user_id, "media"]);
        url.query_pairs_mut().append_pair("from", &from.to_string()).append_pair("limit", "500");
        let page: Page = self.send_url::<(), _>(Method::GET, url, None).await?;
        // A token that does not move forward would page forever.
        let next = page.next_token.filter(|next| *next > from);
        Ok((page.media, next))
    }

    /// An event as the homeserver serves it, whether or not the bot is in
    /// the room (`GET /_synapse/admin/v1/rooms/{room}/context/{event}`):
    /// redacted events come back redacted, with `unsigned.redacted_because`.
    /// `None` if the homeserver does not know it. (The fetch_event admin API
    /// returns events unredacted, so it cannot tell.)
    pub async fn admin_event(&self, room_id: &str, event_id: &str) -> Result<Option<Value>, HsError> {
        #[derive(Deserialize)]
        struct Context {
            event: Value,
        }
        let mut url = self.url(&["_synapse", "admin", "v1", "rooms", room_id, "context", event_id]);
        url.query_pairs_mut().append_pair("limit", "0");
        match self.send_url::<(), Context>(Method::GET, url, None).await {
            Ok(context) => Ok(Some(context.event)),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether the homeserver serves an event redacted (with
    /// `unsigned.redacted_because`), asked through the admin API, which
    /// ignores history visibility. A bot that is not a server admin asks as
    /// itself (only rooms it may read). `None`: the homeserver does not know
    /// the event.
    pub async fn served_redacted(&self, room_id: &str, event_id: &str) -> Result<Option<bool>, HsError> {
        match self.admin_event(room_id, event_id).await {
            Ok(event) => Ok(event.map(|event| event.pointer("/unsigned/redacted_because").is_some())),
            Err(HsError::Matrix { status, .. }) if status == reqwest::StatusCode::FORBIDDEN => {
                self.is_redacted(room_id, event_id).await.map(Some)
            }
            Err(error) => Err(error),
        }
    }
}

/// One room of Synapse's admin room list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedRoom {
    pub room_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub canonical_alias: Option<String>,
    #[serde(default)]
    pub joined_members: i64,
}

/// A page of a room's history, newest first.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesPage {
    pub chunk: Vec<Value>,
    /// Where the next (older) page starts; absent at the room's beginning.
    #[serde(default)]
    pub end: Option<String>,
}

impl HomeserverClient {
    /// One page of every room the homeserver knows
    /// (`GET /_synapse/admin/v1/rooms`), and where the next page starts.
    pub async fn admin_rooms_page(&self, from: u64, limit: u32) -> Result<(Vec<ListedRoom>, Option<u64>), HsError> {
        #[derive(Deserialize)]
        struct Page {
            rooms: Vec<ListedRoom>,
            next_batch: Option<u64>,
        }
        let mut url = self.url(&["_synapse", "admin", "v1", "rooms"]);
        url.query_pairs_mut()
            .append_pair("from", &from.to_string())
            .append_pair("limit", &limit.to_string())
            .append_pair("order_by", "name");
        let page: Page = self.send_url::<(), _>(Method::GET, url, None).await?;
        // A token that does not move forward would page forever.
        Ok((page.rooms, page.next_batch.filter(|next| *next > from)))
    }

    /// Rooms whose name, alias or ID contains `term`, most members first
    /// (`GET /_synapse/admin/v1/rooms?search_term=`).
    pub async fn admin_search_rooms(&self, term: &str, limit: u32) -> Result<Vec<ListedRoom>, HsError> {
        #[derive(Deserialize)]
        struct Page {
            rooms: Vec<ListedRoom>,
        }
        let mut url = self.url(&["_synapse", "admin", "v1", "rooms"]);
        url.query_pairs_mut()
            .append_pair("search_term", term)
            .append_pair("limit", &limit.to_string())
            .append_pair("order_by", "joined_members");
        let page: Page = self.send_url::<(), _>(Method::GET, url, None).await?;
        Ok(page.rooms)
    }

    /// A room's name, alias and size (Synapse's Room Details API,
    /// `GET /_synapse/admin/v1/rooms/{room}`);
    /// `None` if the homeserver does not know it.
    pub async fn room_details(&self, room_id: &str) -> Result<Option<ListedRoom>, HsError> {
        match self.send::<(), ListedRoom>(Method::GET, &["_synapse", "admin", "v1", "rooms", room_id], None).await {
            Ok(room) => Ok(Some(room)),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One page of a room's history, going back from `from` (the newest
    /// event when `None`), whatever the bot's membership
    /// (`GET /_synapse/admin/v1/rooms/{room}/messages?dir=b`).
    pub async fn admin_room_messages(
        &self,
        room_id: &str,
        from: Option<&str>,
        limit: u32,
    ) -> Result<MessagesPage, HsError> {
        let mut url = self.url(&["_synapse", "admin", "v1", "rooms", room_id, "messages"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("dir", "b").append_pair("limit", &limit.to_string());
            if let Some(from) = from {
                query.append_pair("from", from);
            }
        }
        self.send_url::<(), _>(Method::GET, url, None).await
    }
}

impl HomeserverClient {
    /// An access token for a local user (`POST /_synapse/admin/v1/users/{id}/login`),
    /// valid for `valid_for`; it creates no device.
    pub async fn login_as(&self, user_id: &str, valid_for: std::time::Duration) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
        }
        let until = crate::clock::now_ms() + valid_for.as_millis() as i64;
        let segments = ["_synapse", "admin", "v1", "users", user_id, "login"];
        let token: Token = self.send(Method::POST, &segments, Some(&json!({ "valid_until_ms": until }))).await?;
        Ok(token.access_token)
    }

    /// Joins a local user to a room through the admin API (the bot, here).
    pub async fn admin_join(&self, room_id: &str, user_id: &str) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "join", room_id];
        self.send::<_, Value>(Method::POST, &segments, Some(&json!({ "user_id": user_id }))).await?;
        Ok(())
    }

    /// A room's current state as full events, whether or not the bot is in it.
    pub async fn admin_room_state(&self, room_id: &str) -> Result<Vec<Value>, HsError> {
        #[derive(Deserialize)]
        struct State {
            state: Vec<Value>,
        }
        let state: State =
            self.send::<(), _>(Method::GET, &["_synapse", "admin", "v1", "rooms", room_id, "state"], None).await?;
        Ok(state.state)
    }

    /// Starts deleting what came before `up_to_event_id` in the room's order
    /// (local events too; the event itself and the state stay); returns the
    /// purge ID to poll.
    pub async fn purge_history(&self, room_id: &str, up_to_event_id: &str) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Started {
            purge_id: String,
        }
        let body = json!({ "purge_up_to_event_id": up_to_event_id, "delete_local_events": true });
        let started: Started =
            self.send(Method::POST, &["_synapse", "admin", "v1", "purge_history", room_id], Some(&body)).await?;
        Ok(started.purge_id)
    }

    /// `active`, `complete` or `failed`.
    pub async fn purge_history_status(&self, purge_id: &str) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Status {
            status: String,
        }
        let segments = ["_synapse", "admin", "v1", "purge_history_status", purge_id];
        let status: Status = self.send::<(), _>(Method::GET, &segments, None).await?;
        Ok(status.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_booleans_or_numbers() {
        let info: MediaInfo =
            serde_json::from_value(json!({"user_id": "@a:hs", "safe_from_quarantine": 1, "quarantined_by": null}))
                .unwrap();
        assert_eq!(
            info,
            MediaInfo { user_id: Some("@a:hs".into()), quarantined_by: None, safe_from_quarantine: true, sha256: None }
        );
        let info: MediaInfo = serde_json::from_value(json!({"safe_from_quarantine": false})).unwrap();
        assert!(!info.safe_from_quarantine && info.user_id.is_none());
        assert!(!serde_json::from_value::<MediaInfo>(json!({})).unwrap().safe_from_quarantine, "remote media");
        let upload: Upload = serde_json::from_value(json!({"media_id": "m", "safe_from_quarantine": 0})).unwrap();
        assert_eq!(upload.safe_from_quarantine, Some(false));
        let upload: Upload = serde_json::from_value(json!({"media_id": "m"})).unwrap();
        assert_eq!(upload.safe_from_quarantine, None, "an older Synapse says nothing");
        assert!(serde_json::from_value::<Upload>(json!({"media_id": "m", "safe_from_quarantine": "yes"})).is_err());
    }
}
