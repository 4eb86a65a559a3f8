//! One policy rule, read from one state event: its kind, recommendation,
//! entity pattern, reason and content hash. Whatever a remote server sends,
//! the answer is a rule, a removal, or a [`MalformedRule`] saying why: never
//! a panic, and never more work than the size caps below allow.

use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::glob::Glob;
use super::{decode_sha256, sha256_base64};

/// Longest entity kept. Matrix IDs and server names are at most 255 bytes;
/// a glob over one needs no more than a few times that.
pub const MAX_ENTITY_BYTES: usize = 1024;
/// Longest state key. Draupnir writes 44 (a base64 SHA-256), Mjolnir
/// `rule:<entity>`.
pub const MAX_STATE_KEY_BYTES: usize = 1024;
/// Longest recommendation name.
pub const MAX_RECOMMENDATION_BYTES: usize = 255;
/// A reason is cut to this many characters (then `…`).
pub const MAX_REASON_CHARS: usize = 1000;
/// The largest content (canonical JSON) read: a whole federation PDU may be
/// no larger.
pub const MAX_CONTENT_BYTES: usize = 65_536;
/// The deepest nesting read in content (a rule needs 3).
pub const MAX_CONTENT_DEPTH: usize = 64;

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    User,
    Server,
    Room,
    /// MSC4207: one piece of media, by its mxc URI.
    Media,
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleKind::User => "user",
            RuleKind::Server => "server",
            RuleKind::Room => "room",
            RuleKind::Media => "media",
        })
    }
}

/// Every event type read as a policy rule, as it is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleType {
    /// `m.policy.rule.user`
    PolicyUser,
    /// `m.policy.rule.server`
    PolicyServer,
    /// `m.policy.rule.room`
    PolicyRoom,
    /// `m.policy.rule.mxc` (MSC4207's stable name)
    PolicyMxc,
    /// `m.room.rule.user` (MSC2313's draft name, still in many lists)
    RoomRuleUser,
    /// `m.room.rule.server`
    RoomRuleServer,
    /// `m.room.rule.room`
    RoomRuleRoom,
    /// `org.matrix.mjolnir.rule.user` (Mjolnir's first name)
    MjolnirUser,
    /// `org.matrix.mjolnir.rule.server`
    MjolnirServer,
    /// `org.matrix.mjolnir.rule.room`
    MjolnirRoom,
    /// `org.matrix.msc4207.mxc` (MSC4207's unstable name)
    Msc4207Mxc,
}

impl RuleType {
    pub const ALL: [RuleType; 11] = [
        RuleType::PolicyUser,
        RuleType::PolicyServer,
        RuleType::PolicyRoom,
        RuleType::PolicyMxc,
        RuleType::RoomRuleUser,
        RuleType::RoomRuleServer,
        RuleType::RoomRuleRoom,
        RuleType::MjolnirUser,
        RuleType::MjolnirServer,
        RuleType::MjolnirRoom,
        RuleType::Msc4207Mxc,
    ];

    /// The rule type an event type names, if any.
    pub fn from_event_type(event_type: &str) -> Option<RuleType> {
        RuleType::ALL.into_iter().find(|t| t.as_str() == event_type)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleType::PolicyUser => "m.policy.rule.user",
            RuleType::PolicyServer => "m.policy.rule.server",
            RuleType::PolicyRoom => "m.policy.rule.room",
            RuleType::PolicyMxc => "m.policy.rule.mxc",
            RuleType::RoomRuleUser => "m.room.rule.user",
            RuleType::RoomRuleServer => "m.room.rule.server",
            RuleType::RoomRuleRoom => "m.room.rule.room",
            RuleType::MjolnirUser => "org.matrix.mjolnir.rule.user",
            RuleType::MjolnirServer => "org.matrix.mjolnir.rule.server",
            RuleType::MjolnirRoom => "org.matrix.mjolnir.rule.room",
            RuleType::Msc4207Mxc => "org.matrix.msc4207.mxc",
        }
    }

    pub fn kind(self) -> RuleKind {
        match self {
            RuleType::PolicyUser | RuleType::RoomRuleUser | RuleType::MjolnirUser => RuleKind::User,
            RuleType::PolicyServer | RuleType::RoomRuleServer | RuleType::MjolnirServer => RuleKind::Server,
            RuleType::PolicyRoom | RuleType::RoomRuleRoom | RuleType::MjolnirRoom => RuleKind::Room,
            RuleType::PolicyMxc | RuleType::Msc4207Mxc => RuleKind::Media,
        }
    }

    /// Newer spellings first: 2 for `m.policy.rule.*`, 1 for
    /// `m.room.rule.*`, 0 for the unstable names. Draupnir and Meowlnir keep
    /// one rule per (kind, state key) and never let an event of an older
    /// spelling replace a rule of a newer one there (lists carry the old
    /// types alongside, or are cleaned up type by type).
    pub fn precedence(self) -> u8 {
        match self {
            RuleType::PolicyUser | RuleType::PolicyServer | RuleType::PolicyRoom | RuleType::PolicyMxc => 2,
            RuleType::RoomRuleUser | RuleType::RoomRuleServer | RuleType::RoomRuleRoom => 1,
            RuleType::MjolnirUser | RuleType::MjolnirServer | RuleType::MjolnirRoom | RuleType::Msc4207Mxc => 0,
        }
    }
}

impl fmt::Display for RuleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rule asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recommendation {
    /// `m.ban` (or Mjolnir's `org.matrix.mjolnir.ban`).
    Ban,
    /// MSC4204: `m.takedown` (or `org.matrix.msc4204.takedown`).
    Takedown,
    /// Any other name (`org.matrix.mjolnir.allow`, `fi.mau.meowlnir.unban`,
    /// …): kept to be shown, never acted on.
    Other(String),
}

impl Recommendation {
    pub fn from_name(name: &str) -> Recommendation {
        match name {
            "m.ban" | "org.matrix.mjolnir.ban" => Recommendation::Ban,
            "m.takedown" | "org.matrix.msc4204.takedown" => Recommendation::Takedown,
            other => Recommendation::Other(other.to_owned()),
        }
    }

    /// Whether housekeep acts on it (ban and takedown; not `Other`).
    pub fn is_acted_on(&self) -> bool {
        !matches!(self, Recommendation::Other(_))
    }

    /// The stable name (or the name as sent, for `Other`).
    pub fn as_str(&self) -> &str {
        match self {
            Recommendation::Ban => "m.ban",
            Recommendation::Takedown => "m.takedown",
            Recommendation::Other(name) => name,
        }
    }
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The entity a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// No `*` or `?`: the entity itself.
    Literal(String),
    /// `*` and `?` as the spec's glob-style matching.
    Glob(Glob),
    /// MSC4205: the SHA-256 of the entity (the entity itself not sent).
    Sha256([u8; 32]),
}

impl Pattern {
    /// An `entity` string as a pattern: a glob when it has `*` or `?`.
    pub fn from_entity(entity: &str) -> Pattern {
        if Glob::is_glob(entity) { Pattern::Glob(Glob::new(entity)) } else { Pattern::Literal(entity.to_owned()) }
    }
}

impl fmt::Display for Pattern {
    /// The entity as written, or `sha256:<base64>` for a hashed one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Literal(entity) => f.write_str(entity),
            Pattern::Glob(glob) => f.write_str(glob.as_str()),
            Pattern::Sha256(hash) => write!(f, "sha256:{}", sha256_base64(hash)),
        }
    }
}

/// SHA-256 of a rule's canonical content (object keys sorted, no
/// whitespace): with the event type and state key, what makes a rule event
/// new. Any change of content (entity, recommendation, reason, a field we
/// do not read) is a new rule.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of `content`, or why it is too big or deep to read.
    pub fn of(content: &Value) -> Result<ContentHash, MalformedRule> {
        let mut canonical = Vec::new();
        write_canonical(content, 0, &mut canonical)?;
        if canonical.len() > MAX_CONTENT_BYTES {
            return Err(MalformedRule::TooLarge);
        }
        Ok(ContentHash(Sha256::digest(&canonical).into()))
    }

    /// Lowercase hex, as `Display` writes it (for the store).
    pub fn from_hex(hex: &str) -> Option<ContentHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(ContentHash(bytes))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// A rule in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub rule_type: RuleType,
    pub state_key: String,
    pub recommendation: Recommendation,
    pub entity: Pattern,
    /// The `reason`, when it is a non-blank string; cut to
    /// [`MAX_REASON_CHARS`] characters.
    pub reason: Option<String>,
    pub content_hash: ContentHash,
}

impl PolicyRule {
    pub fn kind(&self) -> RuleKind {
        self.rule_type.kind()
    }
}

/// A rule event with empty content: the rule at its state key is gone
/// (the list removed it, or redacted it: redaction leaves `{}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedRule {
    pub rule_type: RuleType,
    pub state_key: String,
    pub content_hash: ContentHash,
}

/// What one rule event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedRule {
    Active(PolicyRule),
    Removed(RemovedRule),
}

/// Which event this was: (type, state key, content hash). An event seen
/// again with the same identity (a restart, a second read of the state)
/// needs no second look.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleIdentity {
    pub rule_type: RuleType,
    pub state_key: String,
    pub content_hash: ContentHash,
}

impl ParsedRule {
    pub fn rule_type(&self) -> RuleType {
        match self {
            ParsedRule::Active(rule) => rule.rule_type,
            ParsedRule::Removed(removed) => removed.rule_type,
        }
    }

    pub fn state_key(&self) -> &str {
        match self {
            ParsedRule::Active(rule) => &rule.state_key,
            ParsedRule::Removed(removed) => &removed.state_key,
        }
    }

    pub fn content_hash(&self) -> ContentHash {
        match self {
            ParsedRule::Active(rule) => rule.content_hash,
            ParsedRule::Removed(removed) => removed.content_hash,
        }
    }

    pub fn identity(&self) -> RuleIdentity {
        RuleIdentity {
            rule_type: self.rule_type(),
            state_key: self.state_key().to_owned(),
            content_hash: self.content_hash(),
        }
    }
}

/// Why a rule event is not a rule. The caller counts these and ignores the
/// event (which still replaces whatever rule its state key held).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedRule {
    #[error("the content is {0}, not a JSON object")]
    NotAnObject(&'static str),
    #[error("the content is larger than {MAX_CONTENT_BYTES} bytes")]
    TooLarge,
    #[error("the content is nested deeper than {MAX_CONTENT_DEPTH} levels")]
    TooDeep,
    #[error("the state key is longer than {MAX_STATE_KEY_BYTES} bytes")]
    StateKeyTooLong,
    #[error("no entity and no hashes")]
    MissingEntity,
    #[error("the entity is {0}, not a string")]
    EntityNotString(&'static str),
    #[error("the entity is longer than {MAX_ENTITY_BYTES} bytes")]
    EntityTooLong,
    #[error("hashes is {0}, not an object")]
    HashesNotObject(&'static str),
    #[error("hashes has no sha256 (the only hash read)")]
    NoSha256,
    #[error("hashes.sha256 is not the base64 of 32 bytes")]
    BadSha256,
    #[error("no recommendation")]
    MissingRecommendation,
    #[error("the recommendation is {0}, not a string")]
    RecommendationNotString(&'static str),
    #[error("the recommendation is empty")]
    EmptyRecommendation,
    #[error("the recommendation is longer than {MAX_RECOMMENDATION_BYTES} bytes")]
    RecommendationTooLong,
}

impl MalformedRule {
    /// A short stable name, for counting by reason (metrics labels).
    pub fn code(&self) -> &'static str {
        match self {
            MalformedRule::NotAnObject(_) => "not_an_object",
            MalformedRule::TooLarge => "too_large",
            MalformedRule::TooDeep => "too_deep",
            MalformedRule::StateKeyTooLong => "state_key_too_long",
            MalformedRule::MissingEntity => "missing_entity",
            MalformedRule::EntityNotString(_) => "entity_not_string",
            MalformedRule::EntityTooLong => "entity_too_long",
            MalformedRule::HashesNotObject(_) => "hashes_not_object",
            MalformedRule::NoSha256 => "no_sha256",
            MalformedRule::BadSha256 => "bad_sha256",
            MalformedRule::MissingRecommendation => "missing_recommendation",
            MalformedRule::RecommendationNotString(_) => "recommendation_not_string",
            MalformedRule::EmptyRecommendation => "empty_recommendation",
            MalformedRule::RecommendationTooLong => "recommendation_too_long",
        }
    }
}

/// Reads the rule a state event of `rule_type` at `state_key` carries.
pub fn parse(rule_type: RuleType, state_key: &str, content: &Value) -> Result<ParsedRule, MalformedRule> {
    let Value::Object(fields) = content else { return Err(MalformedRule::NotAnObject(json_kind(content))) };
    if state_key.len() > MAX_STATE_KEY_BYTES {
        return Err(MalformedRule::StateKeyTooLong);
    }
    let content_hash = ContentHash::of(content)?;
    let state_key = state_key.to_owned();
    if fields.is_empty() {
        return Ok(ParsedRule::Removed(RemovedRule { rule_type, state_key, content_hash }));
    }
    let entity = entity(fields)?;
    let recommendation = recommendation(fields)?;
    let reason = fields.get("reason").and_then(Value::as_str).filter(|r| !r.trim().is_empty()).map(capped_reason);
    Ok(ParsedRule::Active(PolicyRule { rule_type, state_key, recommendation, entity, reason, content_hash }))
}

/// [`parse`] for a whole event (`type`, `state_key`, `content`): `None` when
/// it is not a policy rule type or not a state event.
pub fn parse_event(event: &Value) -> Option<Result<ParsedRule, MalformedRule>> {
    let rule_type = RuleType::from_event_type(event.get("type")?.as_str()?)?;
    let state_key = event.get("state_key")?.as_str()?;
    Some(parse(rule_type, state_key, event.get("content").unwrap_or(&Value::Null)))
}

/// `entity` when it is a non-empty string; otherwise (absent, `null` or
/// `""`) the MSC4205 hash. `entity` wins when both are there, as in
/// Draupnir and Meowlnir.
fn entity(fields: &Map<String, Value>) -> Result<Pattern, MalformedRule> {
    match fields.get("entity") {
        Some(Value::String(entity)) if entity.len() > MAX_ENTITY_BYTES => Err(MalformedRule::EntityTooLong),
        Some(Value::String(entity)) if !entity.is_empty() => Ok(Pattern::from_entity(entity)),
        None | Some(Value::Null) | Some(Value::String(_)) => hashed_entity(fields),
        Some(other) => Err(MalformedRule::EntityNotString(json_kind(other))),
    }
}

/// MSC4205's `hashes` (or its unstable `org.matrix.msc4205.hashes`).
fn hashed_entity(fields: &Map<String, Value>) -> Result<Pattern, MalformedRule> {
    let present = |key| fields.get(key).filter(|v| !v.is_null());
    let hashes = present("hashes").or_else(|| present("org.matrix.msc4205.hashes"));
    match hashes {
        None => Err(MalformedRule::MissingEntity),
        Some(Value::Object(hashes)) => match hashes.get("sha256") {
            None | Some(Value::Null) => Err(MalformedRule::NoSha256),
            Some(Value::String(encoded)) => decode_sha256(encoded).map(Pattern::Sha256).ok_or(MalformedRule::BadSha256),
            Some(_) => Err(MalformedRule::BadSha256),
        },
        Some(other) => Err(MalformedRule::HashesNotObject(json_kind(other))),
    }
}

fn recommendation(fields: &Map<String, Value>) -> Result<Recommendation, MalformedRule> {
    match fields.get("recommendation") {
        None | Some(Value::Null) => Err(MalformedRule::MissingRecommendation),
        Some(Value::String(name)) if name.is_empty() => Err(MalformedRule::EmptyRecommendation),
        Some(Value::String(name)) if name.len() > MAX_RECOMMENDATION_BYTES => Err(MalformedRule::RecommendationTooLong),
        Some(Value::String(name)) => Ok(Recommendation::from_name(name)),
        Some(other) => Err(MalformedRule::RecommendationNotString(json_kind(other))),
    }
}

fn capped_reason(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        None => reason.to_owned(),
        Some((cut, _)) => format!("{}…", &reason[..cut]),
    }
}

/// "a number", "an array", … for the error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Canonical JSON: object keys in code point order, no whitespace, strings
/// escaped minimally. Written by hand so the result does not depend on
/// serde_json's `preserve_order` feature (another crate may turn it on),
/// and so it stops at the size and depth caps.
fn write_canonical(value: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), MalformedRule> {
    if depth > MAX_CONTENT_DEPTH {
        return Err(MalformedRule::TooDeep);
    }
    if out.len() > MAX_CONTENT_BYTES {
        return Err(MalformedRule::TooLarge);
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, depth + 1, out)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, depth + 1, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if u32::from(c) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes()),
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn active(rule_type: RuleType, content: Value) -> PolicyRule {
        match parse(rule_type, "rule:1", &content) {
            Ok(ParsedRule::Active(rule)) => rule,
            other => panic!("{content} as {rule_type}: {other:?}"),
        }
    }

    fn malformed(content: Value) -> MalformedRule {
        match parse(RuleType::PolicyUser, "rule:1", &content) {
            Err(error) => error,
            Ok(parsed) => panic!("{content} parsed: {parsed:?}"),
        }
    }

    #[test]
    fn every_type_name_is_read_with_its_kind() {
        for (name, kind, precedence) in [
            ("m.policy.rule.user", RuleKind::User, 2),
            ("m.policy.rule.server", RuleKind::Server, 2),
            ("m.policy.rule.room", RuleKind::Room, 2),
            ("m.policy.rule.mxc", RuleKind::Media, 2),
            ("m.room.rule.user", RuleKind::User, 1),
            ("m.room.rule.server", RuleKind::Server, 1),
            ("m.room.rule.room", RuleKind::Room, 1),
            ("org.matrix.mjolnir.rule.user", RuleKind::User, 0),
            ("org.matrix.mjolnir.rule.server", RuleKind::Server, 0),
            ("org.matrix.mjolnir.rule.room", RuleKind::Room, 0),
            ("org.matrix.msc4207.mxc", RuleKind::Media, 0),
        ] {
            let rule_type = RuleType::from_event_type(name).unwrap_or_else(|| panic!("{name} not read"));
            assert_eq!(rule_type.as_str(), name);
            assert_eq!(rule_type.kind(), kind, "{name}");
            assert_eq!(rule_type.precedence(), precedence, "{name}");
            let rule = active(rule_type, json!({"entity": "x", "recommendation": "m.ban", "reason": "r"}));
            assert_eq!(rule.kind(), kind);
        }
        for name in
            ["m.policy.rule", "m.policy.rule.USER", "m.policy.rule.mxc.extra", "m.room.rule.mxc", "m.room.member"]
        {
            assert_eq!(RuleType::from_event_type(name), None, "{name}");
        }
    }

    #[test]
    fn every_recommendation_name() {
        for (name, expected) in [
            ("m.ban", Recommendation::Ban),
            ("org.matrix.mjolnir.ban", Recommendation::Ban),
            ("m.takedown", Recommendation::Takedown),
            ("org.matrix.msc4204.takedown", Recommendation::Takedown),
            ("org.matrix.mjolnir.allow", Recommendation::Other("org.matrix.mjolnir.allow".into())),
            ("fi.mau.meowlnir.unban", Recommendation::Other("fi.mau.meowlnir.unban".into())),
            ("M.BAN", Recommendation::Other("M.BAN".into())),
        ] {
            let rule = active(RuleType::PolicyUser, json!({"entity": "@a:hs", "recommendation": name}));
            assert_eq!(rule.recommendation, expected, "{name}");
            assert_eq!(rule.recommendation.is_acted_on(), !matches!(expected, Recommendation::Other(_)));
        }
    }

    #[test]
    fn entities_are_literals_globs_or_hashes() {
        let literal = active(RuleType::PolicyUser, json!({"entity": "@spam:example.org", "recommendation": "m.ban"}));
        assert_eq!(literal.entity, Pattern::Literal("@spam:example.org".into()));
        let glob = active(RuleType::PolicyServer, json!({"entity": "*.example.org", "recommendation": "m.ban"}));
        assert_eq!(glob.entity, Pattern::Glob(Glob::new("*.example.org")));
        let one = active(RuleType::PolicyUser, json!({"entity": "@spam?:example.org", "recommendation": "m.ban"}));
        assert!(matches!(one.entity, Pattern::Glob(_)));
    }

    /// MSC4205's own example: `@yarrgh:example.com`, padded standard base64.
    #[test]
    fn hashed_entities_in_every_accepted_form() {
        let expected = Pattern::Sha256(super::super::sha256_of("@yarrgh:example.com"));
        for hashes in [
            json!({"hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs="}}),
            json!({"hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs"}}),
            json!({"org.matrix.msc4205.hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs="}}),
            // Other algorithms beside sha256 are left alone:
            json!({"hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs", "sha512": "x"}}),
            json!({"entity": "", "hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs="}}),
            json!({"entity": null, "hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs="}}),
            json!({"hashes": null, "org.matrix.msc4205.hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs="}}),
        ] {
            let mut content = hashes.clone();
            content["recommendation"] = json!("m.takedown");
            let rule = active(RuleType::PolicyUser, content);
            assert_eq!(rule.entity, expected, "{hashes}");
            assert_eq!(rule.recommendation, Recommendation::Takedown);
        }
        // MSC4207's: the whole mxc URI, `+` in it (standard) or `-` (URL-safe).
        let media = Pattern::Sha256(super::super::sha256_of("mxc://example.com/0"));
        for sha256 in ["ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM=", "ZDSM130dcJ578ANfiJxoN5Nle2-c5uEkDuHHduxj6AM"] {
            let rule =
                active(RuleType::PolicyMxc, json!({"hashes": {"sha256": sha256}, "recommendation": "m.takedown"}));
            assert_eq!(rule.entity, media, "{sha256}");
            assert_eq!(rule.reason, None);
        }
    }

    #[test]
    fn entity_wins_over_hashes() {
        let rule = active(
            RuleType::PolicyUser,
            json!({"entity": "@a:hs", "hashes": {"sha256": "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs="}, "recommendation": "m.ban"}),
        );
        assert_eq!(rule.entity, Pattern::Literal("@a:hs".into()));
    }

    #[test]
    fn empty_content_is_a_removed_rule() {
        let parsed = parse(RuleType::MjolnirServer, "rule:evil.example", &json!({})).expect("a removal");
        let ParsedRule::Removed(removed) = &parsed else { panic!("{parsed:?}") };
        assert_eq!(removed.rule_type, RuleType::MjolnirServer);
        assert_eq!(removed.state_key, "rule:evil.example");
        assert_eq!(parsed.content_hash(), ContentHash::of(&json!({})).expect("hashable"));
    }

    #[test]
    fn malformed_content_says_why() {
        let long = "x".repeat(MAX_ENTITY_BYTES + 1);
        let sha = "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs=";
        for (content, expected) in [
            (json!(null), MalformedRule::NotAnObject("null")),
            (json!("m.ban"), MalformedRule::NotAnObject("a string")),
            (json!([{"entity": "@a:hs"}]), MalformedRule::NotAnObject("an array")),
            (json!({"recommendation": "m.ban"}), MalformedRule::MissingEntity),
            (json!({"entity": "", "recommendation": "m.ban"}), MalformedRule::MissingEntity),
            (json!({"entity": 5, "recommendation": "m.ban"}), MalformedRule::EntityNotString("a number")),
            (json!({"entity": ["@a:hs"], "recommendation": "m.ban"}), MalformedRule::EntityNotString("an array")),
            (json!({"entity": {"a": 1}, "recommendation": "m.ban"}), MalformedRule::EntityNotString("an object")),
            (json!({"entity": true, "recommendation": "m.ban"}), MalformedRule::EntityNotString("a boolean")),
            (json!({"entity": long, "recommendation": "m.ban"}), MalformedRule::EntityTooLong),
            (json!({"hashes": "abc", "recommendation": "m.ban"}), MalformedRule::HashesNotObject("a string")),
            (json!({"hashes": {}, "recommendation": "m.ban"}), MalformedRule::NoSha256),
            (json!({"hashes": {"sha1": "abc"}, "recommendation": "m.ban"}), MalformedRule::NoSha256),
            (json!({"hashes": {"sha256": 5}, "recommendation": "m.ban"}), MalformedRule::BadSha256),
            (json!({"hashes": {"sha256": "not base64!"}, "recommendation": "m.ban"}), MalformedRule::BadSha256),
            (json!({"hashes": {"sha256": "c2hvcnQ="}, "recommendation": "m.ban"}), MalformedRule::BadSha256),
            (json!({"hashes": {"sha256": "A".repeat(10_000)}, "recommendation": "m.ban"}), MalformedRule::BadSha256),
            (json!({"hashes": {"sha256": sha}}), MalformedRule::MissingRecommendation),
            (json!({"entity": "@a:hs"}), MalformedRule::MissingRecommendation),
            (json!({"entity": "@a:hs", "recommendation": null}), MalformedRule::MissingRecommendation),
            (json!({"entity": "@a:hs", "recommendation": ""}), MalformedRule::EmptyRecommendation),
            (json!({"entity": "@a:hs", "recommendation": 1}), MalformedRule::RecommendationNotString("a number")),
            (json!({"entity": "@a:hs", "recommendation": "m".repeat(256)}), MalformedRule::RecommendationTooLong),
            (json!({"unrelated": true}), MalformedRule::MissingEntity),
            (
                json!({"entity": "@a:hs", "recommendation": "m.ban", "junk": "x".repeat(70_000)}),
                MalformedRule::TooLarge,
            ),
        ] {
            assert_eq!(malformed(content.clone()), expected, "{content}");
            assert!(!expected.to_string().is_empty() && !expected.code().is_empty());
        }
    }

    #[test]
    fn deep_junk_is_refused_not_recursed_into() {
        let mut junk = json!(0);
        for _ in 0..MAX_CONTENT_DEPTH * 3 {
            junk = json!([junk]);
        }
        let content = json!({"entity": "@a:hs", "recommendation": "m.ban", "junk": junk});
        assert_eq!(malformed(content), MalformedRule::TooDeep);
    }

    #[test]
    fn a_long_state_key_is_malformed() {
        let key = "k".repeat(MAX_STATE_KEY_BYTES + 1);
        let result = parse(RuleType::PolicyUser, &key, &json!({"entity": "@a:hs", "recommendation": "m.ban"}));
        assert_eq!(result, Err(MalformedRule::StateKeyTooLong));
    }

    #[test]
    fn reasons_are_optional_and_capped() {
        let rule = |reason: Value| {
            active(RuleType::PolicyUser, json!({"entity": "@a:hs", "recommendation": "m.ban", "reason": reason})).reason
        };
        assert_eq!(rule(json!("spam")), Some("spam".into()));
        assert_eq!(rule(json!("")), None);
        assert_eq!(rule(json!("  ")), None);
        assert_eq!(rule(json!(42)), None, "a reason that is not a string is dropped, not the rule");
        assert_eq!(rule(json!({"nested": "x"})), None);
        let long = "é".repeat(MAX_REASON_CHARS + 10);
        let capped = rule(json!(long)).expect("a reason");
        assert_eq!(capped.chars().count(), MAX_REASON_CHARS + 1);
        assert!(capped.ends_with('…'));
        let exact = "r".repeat(MAX_REASON_CHARS);
        assert_eq!(rule(json!(exact.clone())), Some(exact));
    }

    #[test]
    fn content_hash_ignores_key_order_and_spacing_but_not_content() {
        let a: Value =
            serde_json::from_str(r#"{"entity":"@a:hs","recommendation":"m.ban","reason":"spam"}"#).expect("json");
        let b: Value =
            serde_json::from_str("{ \"reason\" : \"spam\",\n \"recommendation\": \"m.ban\", \"entity\": \"@a:hs\" }")
                .expect("json");
        assert_eq!(ContentHash::of(&a), ContentHash::of(&b));
        let c = json!({"entity": "@a:hs", "recommendation": "m.ban", "reason": "spam!"});
        assert_ne!(ContentHash::of(&a), ContentHash::of(&c), "a changed reason is a changed rule");
        let nested_a: Value = serde_json::from_str(r#"{"x":{"b":1,"a":[1,{"d":2,"c":3}]}}"#).expect("json");
        let nested_b: Value = serde_json::from_str(r#"{"x":{"a":[1,{"c":3,"d":2}],"b":1}}"#).expect("json");
        assert_eq!(ContentHash::of(&nested_a), ContentHash::of(&nested_b));
    }

    #[test]
    fn canonical_json_is_what_the_spec_would_write() {
        let mut out = Vec::new();
        let value = json!({"b": "é\"\\\n\u{1}", "a": [true, null, 1, -2.5], "c": {}});
        write_canonical(&value, 0, &mut out).expect("small");
        assert_eq!(String::from_utf8(out).expect("utf-8"), r#"{"a":[true,null,1,-2.5],"b":"é\"\\\n\u0001","c":{}}"#);
    }

    #[test]
    fn content_hash_reads_back_from_hex() {
        let hash = ContentHash::of(&json!({"entity": "@a:hs"})).expect("hashable");
        assert_eq!(ContentHash::from_hex(&hash.to_string()), Some(hash));
        assert_eq!(ContentHash::from_hex("zz"), None);
    }

    #[test]
    fn whole_events_are_read_or_skipped() {
        let event = json!({
            "type": "m.policy.rule.user", "state_key": "rule:@spam:hs", "sender": "@mod:hs",
            "content": {"entity": "@spam:hs", "recommendation": "m.ban", "reason": "spam"},
        });
        let parsed = parse_event(&event).expect("a rule event").expect("a rule");
        let identity = parsed.identity();
        assert_eq!((identity.rule_type, identity.state_key.as_str()), (RuleType::PolicyUser, "rule:@spam:hs"));
        assert_eq!(parse_event(&json!({"type": "m.room.message", "content": {}})), None);
        assert_eq!(parse_event(&json!({"type": "m.policy.rule.user", "content": {}})), None, "not a state event");
        assert_eq!(parse_event(&json!({"type": 5, "state_key": ""})), None);
        assert_eq!(
            parse_event(&json!({"type": "m.policy.rule.user", "state_key": ""})),
            Some(Err(MalformedRule::NotAnObject("null")))
        );
    }
}
