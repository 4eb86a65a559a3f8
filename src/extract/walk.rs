//! The walk through an event's `content` that finds every media reference:
//! the places the spec names first (with their kinds), then every other
//! string anywhere below, bounded in depth and deduplicated.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::*;

/// Nesting below `content` that the generic walk follows. serde_json refuses
/// to parse JSON nested deeper than 128, so this only ever bites for values
/// built in code; it keeps the recursion's stack use bounded either way.
const MAX_DEPTH: usize = 128;

/// Below this many refs a linear scan dedupes faster than hashing; above it
/// (only hostile events get there) a set keeps extraction linear.
const DEDUPE_SCAN_LIMIT: usize = 16;

const HTML_FORMAT: &str = "org.matrix.custom.html";

/// The media references and the rejected mxc-looking values of `content`
/// (none without it), for an event of `event_type`.
pub(super) fn walk_content(
    event_type: &str,
    content: Option<&Map<String, Value>>,
) -> (Vec<MediaRef>, Vec<RejectedMxc>) {
    let mut walker = Walker::new(event_type);
    if let Some(content) = content {
        walker.path.push(Seg::Key("content"));
        walker.named(Ctx::Content, content);
        walker.generic_object(Ctx::Content, content, 0);
    }
    (walker.media, walker.rejected)
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
}
