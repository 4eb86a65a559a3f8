//! Event JSON -> index rows: one [`EventRow`] plus every media reference.
//!
//! Pure (no I/O, clock or globals) so the live transaction path and backfill
//! share it and it can be fuzzed. Media is looked for everywhere in `content`
//! because homeserver-side scans that only read `content.url` and
//! `info.thumbnail_url` miss encrypted attachments, stickers, avatars, `<img>`
//! in HTML and edits, which is exactly what moderators need to find.

use std::fmt;

use serde_json::{Map, Value};

pub mod html;
pub mod mxc;
mod walk;

pub use mxc::{MXC_PREFIX, Mxc, MxcError, parse_mxc};

/// Longest `RejectedMxc::value` / `location` kept: enough to recognise the
/// value in a log or report, without one hostile event bloating the store.
const MAX_REPORTED_LEN: usize = 200;

const M_ROOM_MESSAGE: &str = "m.room.message";
const M_STICKER: &str = "m.sticker";
const M_ROOM_AVATAR: &str = "m.room.avatar";
const M_ROOM_MEMBER: &str = "m.room.member";
const M_ROOM_REDACTION: &str = "m.room.redaction";

/// The `events` table row for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub origin_server_ts: i64,
    pub event_type: String,
    pub state_key: Option<String>,
    /// For m.room.redaction: the redacted event id (top-level `redacts`, or `content.redacts` in room v11+).
    pub redacts: Option<String>,
}

/// Where in an event a media reference was found (the `media_refs.kind` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    /// `content.url` of an attachment message (m.image, m.file, m.video, m.audio, ...).
    Url,
    /// `content.info.thumbnail_url`.
    Thumbnail,
    /// `content.file.url`: an encrypted attachment.
    File,
    /// `content.info.thumbnail_file.url`: an encrypted attachment's thumbnail.
    ThumbnailFile,
    /// `content.url` of an m.sticker event.
    Sticker,
    /// `content.url` of an m.room.avatar state event.
    RoomAvatar,
    /// `content.avatar_url` of an m.room.member state event.
    MemberAvatar,
    /// `<img src>` in an HTML `formatted_body`.
    HtmlImg,
    /// Any other mxc URI: other HTML attributes, custom fields, unknown event types.
    Other,
}

impl MediaKind {
    pub const ALL: [MediaKind; 9] = [
        MediaKind::Url,
        MediaKind::Thumbnail,
        MediaKind::File,
        MediaKind::ThumbnailFile,
        MediaKind::Sticker,
        MediaKind::RoomAvatar,
        MediaKind::MemberAvatar,
        MediaKind::HtmlImg,
        MediaKind::Other,
    ];

    /// The stored form; stable, since it is written to the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Url => "url",
            MediaKind::Thumbnail => "thumbnail",
            MediaKind::File => "file",
            MediaKind::ThumbnailFile => "thumbnail_file",
            MediaKind::Sticker => "sticker",
            MediaKind::RoomAvatar => "room_avatar",
            MediaKind::MemberAvatar => "member_avatar",
            MediaKind::HtmlImg => "html_img",
            MediaKind::Other => "other",
        }
    }

    /// Inverse of [`MediaKind::as_str`], for reading rows back.
    pub fn parse(s: &str) -> Option<MediaKind> {
        MediaKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated media reference; `mxc://{server_name}/{media_id}` re-parses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRef {
    pub server_name: String,
    pub media_id: String,
    pub kind: MediaKind,
}

impl MediaRef {
    pub fn mxc_uri(&self) -> String {
        format!("{MXC_PREFIX}{}/{}", self.server_name, self.media_id)
    }
}

/// A value that claimed to be (or had to be) an mxc URI but failed strict parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedMxc {
    /// Path in the event, e.g. `content.info.thumbnail_url`,
    /// `content["m.new_content"].url`, `content.formatted_body <img src>`.
    pub location: String,
    /// The offending value, truncated to at most 200 bytes on a char boundary.
    pub value: String,
    pub reason: MxcError,
}

/// Everything the index stores for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub event: EventRow,
    /// One per (server_name, media_id, kind), in order of discovery.
    pub media: Vec<MediaRef>,
    pub rejected: Vec<RejectedMxc>,
}

/// Why an event could not be indexed at all.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExtractError {
    #[error("event is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event has no `{0}` field")]
    MissingField(&'static str),
    #[error("event field `{field}` must be {expected}")]
    WrongType { field: &'static str, expected: &'static str },
}

/// Extracts the index rows from one event, parsed once by the caller (the
/// transaction handler keeps the value for the bot's inbox; backfill gets
/// events already parsed).
pub fn extract_value(event: &Value) -> Result<Extracted, ExtractError> {
    let obj = event.as_object().ok_or(ExtractError::NotAnObject)?;
    let event_id = required_str(obj, "event_id")?;
    let room_id = required_str(obj, "room_id")?;
    let sender = required_str(obj, "sender")?;
    let origin_server_ts = match obj.get("origin_server_ts") {
        None => return Err(ExtractError::MissingField("origin_server_ts")),
        Some(v) => v
            .as_i64()
            .ok_or(ExtractError::WrongType { field: "origin_server_ts", expected: "an integer in the i64 range" })?,
    };
    let event_type = required_str(obj, "type")?;
    let state_key = match obj.get("state_key") {
        // A JSON null is treated as absent: it carries no state key either way.
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if storable(s) => Some(s.clone()),
        Some(_) => {
            return Err(ExtractError::WrongType {
                field: "state_key",
                expected: "a string of at most 255 bytes without NUL",
            });
        }
    };
    let content = obj.get("content").and_then(Value::as_object);
    let redacts = if event_type == M_ROOM_REDACTION {
        // Top level first: before room v11 it is authoritative (and
        // `content.redacts` is arbitrary client data); from v11 on servers
        // copy `content.redacts` there for compatibility.
        obj.get("redacts")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && storable(s))
            .or_else(|| {
                content.and_then(|c| c.get("redacts")).and_then(Value::as_str).filter(|s| !s.is_empty() && storable(s))
            })
            .map(str::to_owned)
    } else {
        None
    };

    let (media, rejected) = walk::walk_content(event_type, content);

    Ok(Extracted {
        event: EventRow {
            event_id: event_id.to_owned(),
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            origin_server_ts,
            event_type: event_type.to_owned(),
            state_key,
            redacts,
        },
        media,
        rejected,
    })
}

/// Room and event ids are deliberately not validated beyond this: room v12
/// ids have no `:server` part, and the index should not guess future formats.
fn required_str<'v>(obj: &'v Map<String, Value>, field: &'static str) -> Result<&'v str, ExtractError> {
    match obj.get(field) {
        None => Err(ExtractError::MissingField(field)),
        Some(Value::String(s)) if !s.is_empty() && storable(s) => Ok(s),
        Some(_) => Err(ExtractError::WrongType { field, expected: ID_EXPECTED }),
    }
}

/// The longest ID, type or state key the spec allows (and Synapse accepts).
pub const MAX_ID_LEN: usize = 255;
const ID_EXPECTED: &str = "a non-empty string of at most 255 bytes without NUL";

/// Whether the index can store `s` as a key: PostgreSQL cannot store NUL in
/// text, nor index an entry over ~2.7 kB, and one row it refuses would fail
/// every retry of its transaction.
pub fn storable(s: &str) -> bool {
    s.len() <= MAX_ID_LEN && !s.contains('\0')
}

#[cfg(test)]
mod tests;
