//! Moderation policy lists: what a rule says, and what it matches. Pure: no
//! I/O, no store. The appservice stream, the store and `!policy` build on
//! it (issue 33).
//!
//! A policy list is a room whose state events are rules
//! ([spec](https://spec.matrix.org/latest/client-server-api/#moderation-policy-lists)):
//! the state key is the rule's name, the content `{entity, recommendation,
//! reason}`.
//!
//! ## Rule types read ([`RuleType`])
//!
//! | kind   | event types (newest spelling first)                                         |
//! |--------|-----------------------------------------------------------------------------|
//! | user   | `m.policy.rule.user`, `m.room.rule.user`, `org.matrix.mjolnir.rule.user`       |
//! | server | `m.policy.rule.server`, `m.room.rule.server`, `org.matrix.mjolnir.rule.server` |
//! | room   | `m.policy.rule.room`, `m.room.rule.room`, `org.matrix.mjolnir.rule.room`       |
//! | media  | `m.policy.rule.mxc`, `org.matrix.msc4207.mxc` ([MSC4207])                    |
//!
//! The older spellings are MSC2313's drafts and Mjolnir's first names;
//! lists still carry them. Draupnir and Meowlnir keep one rule per (kind,
//! state key) and never let an older spelling replace a newer one there
//! ([`RuleType::precedence`]): the wiring step keeps that bookkeeping.
//!
//! ## Recommendations ([`Recommendation`])
//!
//! `m.ban` (also Mjolnir's `org.matrix.mjolnir.ban`) and [MSC4204]'s
//! `m.takedown` (also `org.matrix.msc4204.takedown`, the name Draupnir and
//! Meowlnir write today). Any other name (`org.matrix.mjolnir.allow`,
//! Meowlnir's `fi.mau.meowlnir.unban`, …) is kept and shown but never acted
//! on.
//!
//! ## Entities ([`Pattern`])
//!
//! - **Literal**: no `*` or `?`.
//! - **Glob**: `*` any run of characters, `?` exactly one (spec appendix
//!   "Glob-style matching"; [`glob`] says how, and why it cannot blow up).
//!   User IDs, room IDs, aliases and mxc URIs match case-sensitively (they
//!   are case-sensitive identifiers; Draupnir's matrix-bot-sdk glob does
//!   the same). Server names match as `m.room.server_acl` globs do: ASCII
//!   case-insensitively and without the port; the name with its port is
//!   tried too. Meowlnir folds case for every kind; we don't for IDs, where
//!   a rule that matches more than it says acts on the wrong account.
//! - **Hashed** ([MSC4205]): no `entity` (or an empty one), and
//!   `hashes: {"sha256": …}` (unstable key `org.matrix.msc4205.hashes`;
//!   other algorithms are ignored). The value is the base64 of the SHA-256
//!   of the entity's UTF-8: `@yarrgh:example.com` →
//!   `VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs=`, the MSC's example:
//!   standard alphabet, *padded* (44 characters), which is what Draupnir and
//!   Meowlnir write. We read padded or unpadded, standard or URL-safe, and
//!   compare the 32 bytes. When `entity` is there too, `entity` is used (as
//!   Draupnir and Meowlnir do). Hashes are exact: a hashed entity is never a
//!   glob.
//! - **Media** ([MSC4207]): the hash is of the whole URI,
//!   `mxc://example.com/0` → `ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM=`
//!   (the MSC's example), and the rule should carry no reason. A literal
//!   mxc URI in `entity` is read too.
//!
//! ## What matches what ([`matches()`])
//!
//! A rule matches targets of its own kind; a server rule also matches every
//! user of the server, by the part of the user ID after the first `:`
//! (`@u:example.org:8448` is on `example.org`). Server rules match neither
//! rooms nor media. Room rules may name a room ID or an alias; the caller
//! tries each it knows.
//!
//! ## Removed and malformed rules ([`parse`])
//!
//! A rule event whose content is `{}` is a removal ([`RemovedRule`]);
//! redacting a rule leaves `{}` too. Anything else that is not a rule is a
//! [`MalformedRule`] with its reason: content not an object, no entity and
//! no hash, an entity or recommendation that is not a string, a bad hash,
//! too long (entity over [`rule::MAX_ENTITY_BYTES`], state key, whole
//! content over 64 KiB, nesting over 64). A `reason` that is not a string
//! is dropped, not the rule; a long one is cut. Whichever of the three an
//! event is, it replaces the rule its state key held before.
//!
//! ## Identity
//!
//! A rule event is (event type, state key, [`ContentHash`]): the SHA-256 of
//! the content's canonical JSON (keys sorted, no whitespace). Any change in
//! content, a reason included, is a new rule; the same event read twice (a
//! restart, a second state read) is the same one.
//!
//! ## Refusal ([`refused`])
//!
//! Some rules are never acted on, and the admin room is told why: a user
//! rule matching the bot, a moderator, or *every local user* (taken as:
//! it matches one of a few unremarkable local IDs like `@a:<ourserver>`,
//! so `@*:ourserver`, `*:ourserver`, `*` are refused while
//! `@spammer:ourserver` and `@spam*:ourserver` are not); a server rule
//! matching this homeserver or a moderator's server; a room rule matching
//! the admin room, a watched list, or any room at all (`!*`); a media rule
//! with a glob. Literal and hashed entities are checked like globs: a list
//! naming a moderator exactly is refused too. The moderators, the bot and
//! the server name come in as plain values ([`SafetyContext`]).
//!
//! [MSC4204]: https://github.com/matrix-org/matrix-spec-proposals/pull/4204
//! [MSC4205]: https://github.com/matrix-org/matrix-spec-proposals/pull/4205
//! [MSC4207]: https://github.com/matrix-org/matrix-spec-proposals/pull/4207

pub mod glob;
pub mod matcher;
pub mod rule;
#[cfg(test)]
pub(crate) mod tests;

use ruma::serde::Base64;
use ruma::serde::base64::UrlSafe;
use sha2::{Digest, Sha256};

pub use matcher::{Match, MatchedBy, Refusal, SafetyContext, Target, matches, refused};
pub use rule::{
    ContentHash, MalformedRule, ParsedRule, Pattern, PolicyRule, Recommendation, RemovedRule, RuleIdentity, RuleKind,
    RuleType, parse, parse_event,
};

/// The SHA-256 of an entity (a user ID, a server name, a room ID, a whole
/// mxc URI) as MSC4205 hashes it: of its UTF-8, as it is.
pub fn sha256_of(entity: &str) -> [u8; 32] {
    Sha256::digest(entity.as_bytes()).into()
}

/// An entity hash as MSC4205 writes it: standard base64, padded.
pub fn sha256_base64(hash: &[u8; 32]) -> String {
    // 32 bytes are 43 characters and one `=` of padding.
    Base64::<ruma::serde::base64::Standard, _>::new(hash).encode() + "="
}

/// An entity hash as lists send it: standard or URL-safe base64, padded or
/// not; `None` unless it is 32 bytes.
pub fn decode_sha256(encoded: &str) -> Option<[u8; 32]> {
    // 44 characters padded; anything much longer is not worth decoding.
    if encoded.len() > 64 {
        return None;
    }
    let bytes = Base64::<ruma::serde::base64::Standard>::parse(encoded)
        .map(Base64::into_inner)
        .or_else(|_| Base64::<UrlSafe>::parse(encoded).map(Base64::into_inner))
        .ok()?;
    bytes.try_into().ok()
}

/// The rooms watched as policy lists, shared by the transaction handler
/// (which routes their rule events to the bot's inbox) and whatever starts
/// or stops watching one.
#[derive(Debug, Clone, Default)]
pub struct WatchedRooms(std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>);

impl WatchedRooms {
    pub fn contains(&self, room_id: &str) -> bool {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(room_id)
    }

    pub fn insert(&self, room_id: &str) {
        self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(room_id.to_owned());
    }

    pub fn remove(&self, room_id: &str) {
        self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(room_id);
    }

    /// The rooms, sorted.
    pub fn rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> =
            self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect();
        rooms.sort_unstable();
        rooms
    }
}
