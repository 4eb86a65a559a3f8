//! Event JSON -> index rows: one [`EventRow`] plus every media reference.
//!
//! Pure (no I/O, clock or globals) so the live transaction path and backfill
//! share it and it can be fuzzed. Media is looked for everywhere in `content`
//! because homeserver-side scans that only read `content.url` and
//! `info.thumbnail_url` miss encrypted attachments, stickers, avatars, `<img>`
//! in HTML and edits, which is exactly what moderators need to find.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};

pub mod html;
pub mod mxc;

pub use mxc::{MXC_PREFIX, Mxc, MxcError, parse_mxc};

/// Nesting below `content` that the generic walk follows. serde_json refuses
/// to parse JSON nested deeper than 128, so this only ever bites for values
/// built in code; it keeps the recursion's stack use bounded either way.
const MAX_DEPTH: usize = 128;

/// Longest `RejectedMxc::value` / `location` kept: enough to recognise the
/// value in a log or report, without one hostile event bloating the store.
const MAX_REPORTED_LEN: usize = 200;

/// Below this many refs a linear scan dedupes faster than hashing; above it
/// (only hostile events get there) a set keeps extraction linear.
const DEDUPE_SCAN_LIMIT: usize = 16;

const M_ROOM_MESSAGE: &str = "m.room.message";
const M_STICKER: &str = "m.sticker";
const M_ROOM_AVATAR: &str = "m.room.avatar";
const M_ROOM_MEMBER: &str = "m.room.member";
const M_ROOM_REDACTION: &str = "m.room.redaction";
const HTML_FORMAT: &str = "org.matrix.custom.html";

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

    let mut walker = Walker::new(event_type);
    if let Some(content) = content {
        walker.path.push(Seg::Key("content"));
        walker.named(Ctx::Content, content);
        walker.generic_object(Ctx::Content, content, 0);
    }

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
        media: walker.media,
        rejected: walker.rejected,
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

/// Truncates to at most [`MAX_REPORTED_LEN`] bytes without splitting a char.
fn truncate_for_report(s: &str) -> String {
    s[..s.floor_char_boundary(MAX_REPORTED_LEN)].to_owned()
}

/// Whether `formatted_body` in this (new_)content object is HTML.
fn is_html(content: &Map<String, Value>) -> bool {
    match content.get("format") {
        None | Some(Value::Null) => true,
        Some(Value::String(f)) => f == HTML_FORMAT,
        Some(_) => false,
    }
}

/// Every key [`Walker::classify`] gives a meaning to in `ctx`, in the order
/// the named pass visits them (a unit test checks the two agree).
fn named_keys(ctx: Ctx) -> &'static [&'static str] {
    match ctx {
        Ctx::Content => &["url", "info", "file", "avatar_url", "formatted_body", "m.new_content"],
        Ctx::NewContent => &["url", "info", "file", "avatar_url", "formatted_body"],
        Ctx::Info => &["thumbnail_url", "thumbnail_file"],
        Ctx::File | Ctx::ThumbnailFile => &["url"],
        Ctx::Plain => &[],
    }
}

/// Which of the spec-defined places we are in while walking `content`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    Content,
    /// `content["m.new_content"]` of an edit: same named locations as `content`.
    NewContent,
    /// `info` of (new_)content.
    Info,
    /// `file` of (new_)content: an encrypted attachment.
    File,
    /// `info.thumbnail_file`.
    ThumbnailFile,
    /// Anywhere else.
    Plain,
}

/// How a string value at some key is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Named(MediaKind),
    Html,
    Generic,
}

#[derive(Clone, Copy, Debug)]
enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

struct Walker<'v> {
    event_type: &'v str,
    /// Event types whose spec defines `url`/`avatar_url` & co. as mxc URIs:
    /// there a non-mxc string is reported. Elsewhere (widgets put an https
    /// URL in `content.url`) only values starting with `mxc://` are looked at.
    typed_media: bool,
    path: Vec<Seg<'v>>,
    media: Vec<MediaRef>,
    /// Built only past [`DEDUPE_SCAN_LIMIT`] refs.
    seen: Option<HashSet<(String, String, MediaKind)>>,
    rejected: Vec<RejectedMxc>,
}

impl<'v> Walker<'v> {
    fn new(event_type: &'v str) -> Self {
        Walker {
            event_type,
            typed_media: matches!(event_type, M_ROOM_MESSAGE | M_STICKER | M_ROOM_AVATAR | M_ROOM_MEMBER),
            path: Vec::with_capacity(8),
            media: Vec::new(),
            seen: None,
            rejected: Vec::new(),
        }
    }

    fn url_kind(&self) -> MediaKind {
        match self.event_type {
            M_STICKER => MediaKind::Sticker,
            M_ROOM_AVATAR => MediaKind::RoomAvatar,
            _ => MediaKind::Url,
        }
    }

    /// The single source of truth for named locations: both passes use it, so
    /// the generic pass skips exactly the strings the named pass handled.
    /// Returns how a string under `key` is treated and the context for a
    /// container under `key`.
    fn classify(&self, ctx: Ctx, parent: &Map<String, Value>, key: &str) -> (Slot, Ctx) {
        use Ctx::*;
        match (ctx, key) {
            (Content | NewContent, "url") => (Slot::Named(self.url_kind()), Plain),
            (Content | NewContent, "avatar_url") if self.event_type == M_ROOM_MEMBER => {
                (Slot::Named(MediaKind::MemberAvatar), Plain)
            }
            (Content | NewContent, "formatted_body") if is_html(parent) => (Slot::Html, Plain),
            (Content | NewContent, "info") => (Slot::Generic, Info),
            (Content | NewContent, "file") => (Slot::Generic, File),
            (Content, "m.new_content") => (Slot::Generic, NewContent),
            (Info, "thumbnail_url") => (Slot::Named(MediaKind::Thumbnail), Plain),
            (Info, "thumbnail_file") => (Slot::Generic, ThumbnailFile),
            (File, "url") => (Slot::Named(MediaKind::File), Plain),
            (ThumbnailFile, "url") => (Slot::Named(MediaKind::ThumbnailFile), Plain),
            _ => (Slot::Generic, Plain),
        }
    }

    /// Pass 1: the spec-defined locations, in a fixed order (`url` first, the
    /// edit's `m.new_content` last) that does not depend on the JSON map's
    /// iteration order.
    fn named(&mut self, ctx: Ctx, obj: &'v Map<String, Value>) {
        for &wanted in named_keys(ctx) {
            let Some((key, value)) = obj.get_key_value(wanted) else {
                continue;
            };
            let (slot, child) = self.classify(ctx, obj, key);
            match value {
                Value::String(s) if slot != Slot::Generic => {
                    self.path.push(Seg::Key(key));
                    match slot {
                        Slot::Named(kind) => self.named_str(s, kind),
                        Slot::Html => self.html(s),
                        Slot::Generic => {}
                    }
                    self.path.pop();
                }
                Value::Object(inner) if child != Ctx::Plain => {
                    self.path.push(Seg::Key(key));
                    self.named(child, inner);
                    self.path.pop();
                }
                _ => {}
            }
        }
    }

    /// Pass 2: every other string in `content` that starts with `mxc://`.
    fn generic_object(&mut self, ctx: Ctx, obj: &'v Map<String, Value>, depth: usize) {
        for (key, value) in obj {
            let (slot, child) = self.classify(ctx, obj, key);
            self.path.push(Seg::Key(key));
            match value {
                Value::String(s) if slot == Slot::Generic => self.generic_str(s),
                Value::Object(_) | Value::Array(_) => self.generic_container(child, value, depth + 1),
                _ => {}
            }
            self.path.pop();
        }
    }

    fn generic_container(&mut self, ctx: Ctx, value: &'v Value, depth: usize) {
        if depth > MAX_DEPTH {
            tracing::debug!(depth, "content nested too deeply; not walking further");
            return;
        }
        match value {
            Value::Object(obj) => self.generic_object(ctx, obj, depth),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    match item {
                        Value::String(s) => self.generic_str(s),
                        Value::Object(_) | Value::Array(_) => self.generic_container(Ctx::Plain, item, depth + 1),
                        _ => {}
                    }
                    self.path.pop();
                }
            }
            _ => {}
        }
    }

    fn named_str(&mut self, s: &str, kind: MediaKind) {
        // Empty means "none" (e.g. a member without an avatar), not an error.
        if s.is_empty() || (!self.typed_media && !s.starts_with(MXC_PREFIX)) {
            return;
        }
        match parse_mxc(s) {
            Ok(m) => self.push_media(m, kind),
            Err(e) => self.reject(None, s, e),
        }
    }

    fn generic_str(&mut self, s: &str) {
        if s.starts_with(MXC_PREFIX) {
            match parse_mxc(s) {
                Ok(m) => self.push_media(m, MediaKind::Other),
                Err(e) => self.reject(None, s, e),
            }
        }
    }

    fn html(&mut self, body: &str) {
        for hit in html::find_mxc_attributes(body) {
            let kind = if hit.is_img_src() { MediaKind::HtmlImg } else { MediaKind::Other };
            match parse_mxc(&hit.value) {
                Ok(m) => self.push_media(m, kind),
                Err(e) => {
                    let suffix = format!(" <{} {}>", hit.tag, hit.attribute);
                    self.reject(Some(&suffix), &hit.value, e);
                }
            }
        }
    }

    fn push_media(&mut self, m: Mxc<'_>, kind: MediaKind) {
        let duplicate = match &self.seen {
            Some(seen) => seen.contains(&(m.server_name.to_owned(), m.media_id.to_owned(), kind)),
            None => {
                self.media.iter().any(|r| r.kind == kind && r.media_id == m.media_id && r.server_name == m.server_name)
            }
        };
        if duplicate {
            return;
        }
        let r = MediaRef { server_name: m.server_name.to_owned(), media_id: m.media_id.to_owned(), kind };
        match &mut self.seen {
            Some(seen) => {
                seen.insert((r.server_name.clone(), r.media_id.clone(), kind));
            }
            None if self.media.len() >= DEDUPE_SCAN_LIMIT => {
                let mut seen: HashSet<_> =
                    self.media.iter().map(|r| (r.server_name.clone(), r.media_id.clone(), r.kind)).collect();
                seen.insert((r.server_name.clone(), r.media_id.clone(), kind));
                self.seen = Some(seen);
            }
            None => {}
        }
        self.media.push(r);
    }

    fn reject(&mut self, suffix: Option<&str>, value: &str, reason: MxcError) {
        let mut location = self.location();
        if let Some(suffix) = suffix {
            location.push_str(suffix);
        }
        self.rejected.push(RejectedMxc {
            location: truncate_for_report(&location),
            value: truncate_for_report(value),
            reason,
        });
    }

    /// Renders the current path: `content.info.url`, `content["m.new_content"]`, `content.list[2]`.
    fn location(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Key(k) => {
                    out.push('[');
                    // Serializing a &str cannot fail; fall back to Debug just in case.
                    out.push_str(&serde_json::to_string(k).unwrap_or_else(|_| format!("{k:?}")));
                    out.push(']');
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/events/", $name, ".json"))
        };
    }

    fn extract_str(json: &str) -> Result<Extracted, ExtractError> {
        let value: Value = serde_json::from_str(json).expect("test JSON parses");
        extract_value(&value)
    }

    fn ok(json: &str) -> Extracted {
        extract_str(json).unwrap_or_else(|e| panic!("extraction failed: {e}"))
    }

    fn refs(x: &Extracted) -> Vec<(&str, &str, MediaKind)> {
        x.media.iter().map(|r| (r.server_name.as_str(), r.media_id.as_str(), r.kind)).collect()
    }

    fn rejections(x: &Extracted) -> Vec<(&str, &str, MxcError)> {
        x.rejected.iter().map(|r| (r.location.as_str(), r.value.as_str(), r.reason)).collect()
    }

    /// An event around `content`, for the rule tests.
    fn event(event_type: &str, content: Value) -> Value {
        json!({
            "type": event_type,
            "event_id": "$ev",
            "room_id": "!room:example.org",
            "sender": "@alice:example.org",
            "origin_server_ts": 1,
            "content": content,
        })
    }

    fn ok_value(v: &Value) -> Extracted {
        extract_value(v).unwrap_or_else(|e| panic!("extraction failed: {e}"))
    }

    use MediaKind::*;

    // ----- one test per kind, over fixtures -----

    #[test]
    fn image_url_and_thumbnail() {
        let x = ok(fixture!("m_image"));
        assert_eq!(
            refs(&x),
            [("example.org", "JWEIFJgwEIhweiWJE", Url), ("example.org", "FHyPlCeYUSFFxlgbQYZmoEoe", Thumbnail),]
        );
        assert!(x.rejected.is_empty());
        assert_eq!(
            x.event,
            EventRow {
                event_id: "$4hrK1gO6dLmQfD3tYpX-8fLk2v1nZ9aQwErTyUiOpAs".into(),
                room_id: "!jEsUZKDJdhlrceRyVU:example.org".into(),
                sender: "@alice:example.org".into(),
                origin_server_ts: 1_732_358_400_000,
                event_type: "m.room.message".into(),
                state_key: None,
                redacts: None,
            }
        );
    }

    #[test]
    fn encrypted_file_and_thumbnail_file() {
        let x = ok(fixture!("m_file_encrypted"));
        assert_eq!(
            refs(&x),
            [("example.org", "ThumbEncAbCdEf", ThumbnailFile), ("example.org", "FileEncXyZ123", File),]
        );
        assert!(x.rejected.is_empty());
    }

    #[test]
    fn sticker_keeps_one_row_per_kind_for_the_same_mxc() {
        let x = ok(fixture!("m_sticker"));
        assert_eq!(
            refs(&x),
            [
                ("matrix.org", "sDhsyVPuDsGqcMhGGBYFcBTv", Sticker),
                ("matrix.org", "sDhsyVPuDsGqcMhGGBYFcBTv", Thumbnail),
            ]
        );
    }

    #[test]
    fn room_avatar_state_event() {
        let x = ok(fixture!("m_room_avatar"));
        assert_eq!(
            refs(&x),
            [("example.org", "RoomAvatarFull", RoomAvatar), ("example.org", "RoomAvatarThumb", Thumbnail),]
        );
        assert_eq!(x.event.state_key.as_deref(), Some(""));
    }

    #[test]
    fn member_avatar_and_unsigned_is_not_walked() {
        let x = ok(fixture!("m_room_member"));
        assert_eq!(refs(&x), [("remote.example:8448", "CarolAvatar_v2", MemberAvatar)]);
        assert_eq!(x.event.state_key.as_deref(), Some("@carol:remote.example"));
    }

    #[test]
    fn html_img_and_other_attribute() {
        let x = ok(fixture!("m_text_html_img"));
        assert_eq!(refs(&x), [("example.org", "PartyParrot", HtmlImg), ("example.org", "LinkedFile", Other),]);
        assert!(x.rejected.is_empty());
    }

    #[test]
    fn edit_with_new_content_dedupes_per_kind() {
        let x = ok(fixture!("m_text_edit"));
        assert_eq!(
            refs(&x),
            [
                ("example.org", "EditedCat", Url),
                ("example.org", "EditedCatThumb", Thumbnail),
                ("example.org", "NewThumbOnly", Thumbnail),
                ("example.org", "InlineInEdit", HtmlImg),
            ]
        );
    }

    #[test]
    fn custom_event_nested_mxc_is_other() {
        let x = ok(fixture!("custom_nested_mxc"));
        assert_eq!(
            refs(&x),
            [("example.org", "Cover", Other), ("example.org", "Beach", Other), ("cdn.example.net", "Mountain", Other),]
        );
        // A custom event's https `url` is its own business, not a rejected mxc.
        assert!(x.rejected.is_empty());
    }

    #[test]
    fn redaction_v11_content_redacts() {
        let x = ok(fixture!("m_room_redaction_v11"));
        assert_eq!(x.event.redacts.as_deref(), Some("$tArGeT0123456789abcdefghijklmnopqrstuvwxyzA"));
        assert!(x.media.is_empty());
    }

    #[test]
    fn redaction_legacy_top_level_redacts() {
        let x = ok(fixture!("m_room_redaction_legacy"));
        assert_eq!(x.event.redacts.as_deref(), Some("$tArGeTlegacy0123456789abcdefghijklmnopqrst"));
    }

    #[test]
    fn redaction_top_level_wins_and_only_redactions_have_redacts() {
        let mut v = event("m.room.redaction", json!({"redacts": "$fromcontent"}));
        v["redacts"] = json!("$toplevel");
        assert_eq!(ok_value(&v).event.redacts.as_deref(), Some("$toplevel"));
        let mut v = event("m.room.message", json!({"redacts": "$x"}));
        v["redacts"] = json!("$y");
        assert_eq!(ok_value(&v).event.redacts, None);
        let v = event("m.room.redaction", json!({}));
        assert_eq!(ok_value(&v).event.redacts, None);
    }

    #[test]
    fn room_v12_ids_are_accepted() {
        let x = ok(fixture!("room_v12_message"));
        assert_eq!(x.event.room_id.len(), 44);
        assert_eq!(x.event.room_id, "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM");
        assert!(x.media.is_empty());
    }

    #[test]
    fn all_fixtures_are_deterministic() {
        for json in [
            fixture!("m_image"),
            fixture!("m_file_encrypted"),
            fixture!("m_sticker"),
            fixture!("m_room_avatar"),
            fixture!("m_room_member"),
            fixture!("m_text_html_img"),
            fixture!("m_text_edit"),
            fixture!("custom_nested_mxc"),
            fixture!("m_room_redaction_v11"),
            fixture!("m_room_redaction_legacy"),
            fixture!("room_v12_message"),
        ] {
            let a = ok(json);
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(a, ok_value(&v));
            assert_eq!(a, ok(json));
        }
    }

    // ----- named-location rules -----

    #[test]
    fn rejections_at_named_locations() {
        let x = ok_value(&event(
            "m.room.message",
            json!({
                "msgtype": "m.image",
                "body": "x",
                "url": "https://example.org/cat.png",
                "info": {
                    "thumbnail_url": "mxc://example.org/abc?width=10",
                    "thumbnail_file": {"url": "mxc://exa mple.org/x"}
                },
                "file": {"url": "mxc://example.org"},
                "m.new_content": {"url": "mxc://example.org/a/b"}
            }),
        ));
        assert!(x.media.is_empty(), "{:?}", x.media);
        assert_eq!(
            rejections(&x),
            [
                ("content.url", "https://example.org/cat.png", MxcError::NotMxc),
                ("content.info.thumbnail_url", "mxc://example.org/abc?width=10", MxcError::BadMediaId),
                ("content.info.thumbnail_file.url", "mxc://exa mple.org/x", MxcError::BadServerName),
                ("content.file.url", "mxc://example.org", MxcError::MissingMediaId),
                ("content[\"m.new_content\"].url", "mxc://example.org/a/b", MxcError::BadMediaId),
            ]
        );
    }

    #[test]
    fn member_without_avatar_is_normal() {
        for content in [
            json!({"membership": "join"}),
            json!({"membership": "join", "avatar_url": null}),
            json!({"membership": "join", "avatar_url": ""}),
        ] {
            let x = ok_value(&event("m.room.member", content));
            assert!(x.media.is_empty() && x.rejected.is_empty(), "{x:?}");
        }
        let x =
            ok_value(&event("m.room.member", json!({"membership": "join", "avatar_url": "http://example.org/a.png"})));
        assert_eq!(rejections(&x), [("content.avatar_url", "http://example.org/a.png", MxcError::NotMxc)]);
    }

    #[test]
    fn avatar_url_outside_member_events_is_generic() {
        let x = ok_value(&event(
            "org.example.profile",
            json!({"avatar_url": "mxc://example.org/Av", "other": "https://x"}),
        ));
        assert_eq!(refs(&x), [("example.org", "Av", Other)]);
    }

    #[test]
    fn non_strings_in_named_locations_are_walked_not_rejected() {
        let x = ok_value(&event(
            "m.room.message",
            json!({
                "url": {"nested": "mxc://example.org/InUrlObject"},
                "info": "mxc://example.org/InfoIsAString",
                "file": 7,
                "avatar_url": "mxc://example.org/NotAMember"
            }),
        ));
        assert_eq!(
            refs(&x),
            [
                ("example.org", "NotAMember", Other),
                ("example.org", "InfoIsAString", Other),
                ("example.org", "InUrlObject", Other),
            ]
        );
        assert!(x.rejected.is_empty());
    }

    #[test]
    fn generic_walk_does_not_double_count_named_paths() {
        let x = ok_value(&event(
            "m.room.message",
            json!({
                "url": "mxc://example.org/Same",
                "info": {"thumbnail_url": "mxc://example.org/Same"},
                "extra": ["mxc://example.org/Same", {"deep": "mxc://example.org/Same"}]
            }),
        ));
        // One row per kind: the named ones, plus one `Other` for the copies
        // found at other paths (deduped among themselves).
        assert_eq!(
            refs(&x),
            [("example.org", "Same", Url), ("example.org", "Same", Thumbnail), ("example.org", "Same", Other),]
        );
    }

    #[test]
    fn generic_rejections_carry_their_path() {
        let x = ok_value(&event(
            "org.example.thing",
            json!({
                "list": [1, "mxc://example.org/ok", ["mxc://bad host/x"]],
                "a.b": {"c": "mxc://example.org/with space"},
                "not": "https://example.org/ignored",
                "url": "mxc://x.org/y#frag"
            }),
        ));
        assert_eq!(refs(&x), [("example.org", "ok", Other)]);
        assert_eq!(
            rejections(&x),
            [
                ("content.url", "mxc://x.org/y#frag", MxcError::BadMediaId),
                ("content[\"a.b\"].c", "mxc://example.org/with space", MxcError::BadMediaId),
                ("content.list[2][0]", "mxc://bad host/x", MxcError::BadServerName),
            ]
        );
    }

    #[test]
    fn html_rules() {
        // `format` absent counts as HTML.
        let x = ok_value(&event(
            "m.room.message",
            json!({"formatted_body": "<img src=\"mxc://example.org/A\"><img src=\"mxc://example.org/bad?x\"><img src=\" mxc://example.org/ws\">"}),
        ));
        assert_eq!(refs(&x), [("example.org", "A", HtmlImg)]);
        assert_eq!(
            rejections(&x),
            [
                ("content.formatted_body <img src>", "mxc://example.org/bad?x", MxcError::BadMediaId),
                ("content.formatted_body <img src>", " mxc://example.org/ws", MxcError::NotMxc),
            ]
        );
        // Another format is not HTML: the string is only looked at by the generic rule.
        let x = ok_value(&event(
            "m.room.message",
            json!({"format": "org.example.markdown", "formatted_body": "<img src=\"mxc://example.org/A\">"}),
        ));
        assert!(x.media.is_empty() && x.rejected.is_empty());
        // An HTML body is handled by HTML rules only, even if it starts with mxc://.
        let x = ok_value(&event(
            "m.room.message",
            json!({"format": "org.matrix.custom.html", "formatted_body": "mxc://example.org/Text"}),
        ));
        assert!(x.media.is_empty() && x.rejected.is_empty());
        // Malformed HTML still yields the img the tokenizer saw.
        let x = ok_value(&event(
            "m.room.message",
            json!({"formatted_body": "<b><i><img src=mxc://example.org/B></b><table><tr><img src='mxc://example.org/C'"}),
        ));
        assert_eq!(refs(&x)[0], ("example.org", "B", HtmlImg));
    }

    #[test]
    fn rejected_values_and_locations_are_truncated_on_char_boundaries() {
        // 19 ASCII bytes, then 2-byte chars: byte 200 falls inside a char.
        let long_value = format!("mxc://example.org/x{}", "é".repeat(300));
        let long_key = "ü".repeat(300);
        let x = ok_value(&event("m.room.message", json!({"url": long_value, long_key: "mxc://example.org/bad/x"})));
        assert_eq!(x.rejected.len(), 2);
        for r in &x.rejected {
            assert!(r.value.len() <= 200 && r.location.len() <= 200, "{r:?}");
        }
        assert!(long_value.starts_with(&x.rejected[0].value));
        assert_eq!(x.rejected[0].value.len(), 199);
    }

    #[test]
    fn many_refs_dedupe_through_the_set() {
        let items: Vec<Value> = (0..100).map(|i| json!(format!("mxc://example.org/m{}", i % 40))).collect();
        let x = ok_value(&event("org.example.bulk", json!({"items": items})));
        assert_eq!(x.media.len(), 40);
        assert_eq!(x.media[39].media_id, "m39");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut v = json!("mxc://example.org/Deep");
        for _ in 0..1000 {
            v = json!([v]);
        }
        let x = ok_value(&event("org.example.deep", json!({"deep": v, "shallow": "mxc://example.org/Shallow"})));
        assert_eq!(refs(&x), [("example.org", "Shallow", Other)]);
    }

    #[test]
    fn named_keys_cover_classify() {
        let w = Walker::new(M_ROOM_MEMBER);
        let parent = Map::new();
        let mut candidates: Vec<&str> = vec!["body", "msgtype", "m.relates_to", "key", "x"];
        for ctx in [Ctx::Content, Ctx::NewContent, Ctx::Info, Ctx::File, Ctx::ThumbnailFile, Ctx::Plain] {
            candidates.extend(named_keys(ctx));
        }
        for ctx in [Ctx::Content, Ctx::NewContent, Ctx::Info, Ctx::File, Ctx::ThumbnailFile, Ctx::Plain] {
            for key in &candidates {
                let named = w.classify(ctx, &parent, key) != (Slot::Generic, Ctx::Plain);
                assert_eq!(named, named_keys(ctx).contains(key), "{ctx:?} {key}");
            }
        }
    }

    // ----- event row rules -----

    #[test]
    fn required_fields_are_named_in_errors() {
        let base = event("m.room.message", json!({}));
        for field in ["event_id", "room_id", "sender", "origin_server_ts", "type"] {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(extract_value(&v), Err(ExtractError::MissingField(field)));
            let mut v = base.clone();
            v[field] = json!(["wrong"]);
            assert!(
                matches!(extract_value(&v), Err(ExtractError::WrongType { field: f, .. }) if f == field),
                "{field}"
            );
            assert!(extract_value(&v).unwrap_err().to_string().contains(field));
        }
        for field in ["event_id", "room_id", "sender", "type"] {
            let mut v = base.clone();
            v[field] = json!("");
            assert!(matches!(extract_value(&v), Err(ExtractError::WrongType { field: f, .. }) if f == field));
        }
    }

    #[test]
    fn origin_server_ts_must_be_an_i64_integer() {
        let with_ts = |ts: &str| {
            extract_str(&format!(
                r#"{{"type":"m.room.message","event_id":"$e","room_id":"!r","sender":"@s:x","origin_server_ts":{ts}}}"#
            ))
        };
        assert_eq!(with_ts("-5").unwrap().event.origin_server_ts, -5);
        assert_eq!(with_ts("9223372036854775807").unwrap().event.origin_server_ts, i64::MAX);
        for bad in ["1.5", "1.0", "1e3", "\"1732358400000\"", "9223372036854775808", "null", "true"] {
            assert!(matches!(with_ts(bad), Err(ExtractError::WrongType { field: "origin_server_ts", .. })), "{bad}");
        }
    }

    #[test]
    fn state_key_rules() {
        let mut v = event("m.room.topic", json!({"topic": "t"}));
        v["state_key"] = json!("");
        assert_eq!(ok_value(&v).event.state_key.as_deref(), Some(""));
        v["state_key"] = Value::Null;
        assert_eq!(ok_value(&v).event.state_key, None);
        v["state_key"] = json!(5);
        assert_eq!(
            extract_value(&v),
            Err(ExtractError::WrongType { field: "state_key", expected: "a string of at most 255 bytes without NUL" })
        );
    }

    /// PostgreSQL cannot store NUL in text: such an event is refused alone
    /// (counted and logged by the caller) instead of failing every retry of
    /// its transaction.
    #[test]
    fn nul_in_ids_is_refused_and_a_nul_redacts_ignored() {
        let base = event("m.room.message", json!({}));
        for field in ["event_id", "room_id", "sender", "type", "state_key"] {
            let mut v = base.clone();
            v[field] = json!("a\u{0}b");
            assert!(
                matches!(extract_value(&v), Err(ExtractError::WrongType { field: f, .. }) if f == field),
                "{field}"
            );
        }
        let mut redaction = event("m.room.redaction", json!({"redacts": "$x\u{0}"}));
        redaction["redacts"] = json!("$y\u{0}");
        assert_eq!(ok_value(&redaction).event.redacts, None);
    }

    #[test]
    fn content_missing_or_not_an_object_is_fine() {
        let mut v = event("m.room.message", json!(null));
        assert!(ok_value(&v).media.is_empty());
        v["content"] = json!("mxc://example.org/NotInAnObject");
        assert!(ok_value(&v).media.is_empty());
        v["content"] = json!(["mxc://example.org/NotInAnObject"]);
        assert!(ok_value(&v).media.is_empty());
        v.as_object_mut().unwrap().remove("content");
        assert!(ok_value(&v).media.is_empty());
    }

    #[test]
    fn not_an_object() {
        assert_eq!(extract_str("[]"), Err(ExtractError::NotAnObject));
        assert_eq!(extract_str("\"$x\""), Err(ExtractError::NotAnObject));
        assert_eq!(extract_value(&Value::Null), Err(ExtractError::NotAnObject));
    }

    #[test]
    fn media_kind_strings() {
        let strs: Vec<&str> = MediaKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            strs,
            [
                "url",
                "thumbnail",
                "file",
                "thumbnail_file",
                "sticker",
                "room_avatar",
                "member_avatar",
                "html_img",
                "other"
            ]
        );
        for k in MediaKind::ALL {
            assert_eq!(MediaKind::parse(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(MediaKind::parse("avatar"), None);
    }

    // ----- property tests -----

    fn html_snippet() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("<p>".to_owned()),
                Just("</p>".to_owned()),
                Just("<!--".to_owned()),
                Just("<script>".to_owned()),
                "<img src=\"mxc://[a-z.:]{0,10}/[A-Za-z0-9_&#;:/ -]{0,10}\">",
                "<img src='mxc://example.org/[A-Za-z0-9_-]{1,8}'/>",
                "<a href=mxc://[a-z]{1,5}\\.org/[a-z]{0,5}>",
                "<[a-z]{1,5}( [a-z]{1,4}=\"?mxc://[a-z.]{0,6}/[a-z]{0,4}\"?)?",
                "[<>\"'=&#;/a-z ]{0,12}",
                ".{0,8}",
            ],
            0..10,
        )
        .prop_map(|parts| parts.concat())
    }

    fn leaf_string() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,20}",
            "mxc://[a-zA-Z0-9.:\\[\\]_%/?# -]{0,24}",
            "mxc://[a-z]{1,8}\\.org(:[0-9]{1,5})?/[A-Za-z0-9_-]{1,12}",
            Just("org.matrix.custom.html".to_owned()),
            html_snippet(),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "url",
                "info",
                "thumbnail_url",
                "file",
                "thumbnail_file",
                "avatar_url",
                "formatted_body",
                "format",
                "m.new_content",
                "redacts",
                "body",
            ])
            .prop_map(str::to_owned),
            ".{0,8}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            leaf_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8).prop_map(|kvs| Value::Object(kvs.into_iter().collect())),
            ]
        })
    }

    /// Mostly well-formed events (so content gets walked), sometimes broken ones.
    fn event_value() -> impl Strategy<Value = Value> {
        let event_type = prop_oneof![
            prop::sample::select(vec![
                M_ROOM_MESSAGE,
                M_STICKER,
                M_ROOM_AVATAR,
                M_ROOM_MEMBER,
                M_ROOM_REDACTION,
                "org.example.custom",
            ])
            .prop_map(Value::from),
            json_value(),
        ];
        let field = |good: Value| prop_oneof![4 => Just(good), 1 => json_value()];
        (
            field(json!("$e")),
            field(json!("!r")),
            field(json!("@s:x")),
            field(json!(1)),
            event_type,
            prop::option::of(json_value()),
            json_value(),
            prop::option::of(json_value()),
        )
            .prop_map(|(event_id, room_id, sender, ts, ty, state_key, content, redacts)| {
                let mut m = Map::new();
                m.insert("event_id".into(), event_id);
                m.insert("room_id".into(), room_id);
                m.insert("sender".into(), sender);
                m.insert("origin_server_ts".into(), ts);
                m.insert("type".into(), ty);
                if let Some(s) = state_key {
                    m.insert("state_key".into(), s);
                }
                m.insert("content".into(), content);
                if let Some(r) = redacts {
                    m.insert("redacts".into(), r);
                }
                Value::Object(m)
            })
    }

    fn check_invariants(x: &Extracted) -> Result<(), TestCaseError> {
        let mut seen = HashSet::new();
        for r in &x.media {
            let uri = r.mxc_uri();
            let m = parse_mxc(&uri).map_err(|e| TestCaseError::fail(format!("{uri}: {e}")))?;
            prop_assert_eq!(m.server_name, r.server_name.as_str());
            prop_assert_eq!(m.media_id, r.media_id.as_str());
            prop_assert!(seen.insert((&r.server_name, &r.media_id, r.kind)), "duplicate {:?}", r);
        }
        for r in &x.rejected {
            prop_assert!(r.value.len() <= MAX_REPORTED_LEN && r.location.len() <= MAX_REPORTED_LEN);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_events_index_what_they_hold_or_say_why_not(v in event_value()) {
            match extract_value(&v) {
                Ok(x) => {
                    prop_assert_eq!(Some(x.event.event_id.as_str()), v["event_id"].as_str());
                    prop_assert_eq!(Some(x.event.room_id.as_str()), v["room_id"].as_str());
                    prop_assert_eq!(Some(x.event.sender.as_str()), v["sender"].as_str());
                    prop_assert_eq!(Some(x.event.event_type.as_str()), v["type"].as_str());
                    prop_assert_eq!(Some(x.event.origin_server_ts), v["origin_server_ts"].as_i64());
                    prop_assert_eq!(x.event.state_key.as_deref(), v["state_key"].as_str());
                    check_invariants(&x)?;
                }
                Err(error) => {
                    let unstorable = |s: &str| s.len() > MAX_ID_LEN || s.contains('\0');
                    let bad_field = ["event_id", "room_id", "sender", "type"]
                        .iter()
                        .any(|f| v[f].as_str().is_none_or(|s| s.is_empty() || unstorable(s)))
                        || !v["origin_server_ts"].is_i64()
                        || v.get("state_key").is_some_and(|k| !k.is_null() && k.as_str().is_none_or(unstorable))
                        || !v.is_object();
                    prop_assert!(bad_field, "{} refused a well-formed event: {}", error, v);
                }
            }
        }

        #[test]
        fn arbitrary_json_never_panics(v in json_value()) {
            if let Ok(x) = extract_value(&v) {
                check_invariants(&x)?;
            }
        }

        #[test]
        fn content_with_html_never_panics(body in html_snippet(), format in prop::option::of(leaf_string())) {
            let mut content = json!({"msgtype": "m.text", "body": "b", "formatted_body": body});
            if let Some(f) = format {
                content["format"] = json!(f);
            }
            let x = extract_value(&event(M_ROOM_MESSAGE, content)).unwrap();
            check_invariants(&x)?;
        }
    }
}
