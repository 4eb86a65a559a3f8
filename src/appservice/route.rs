//! Which incoming events are addressed to the bot. Pure: decided in the
//! transaction handler so the inbox row commits with the index rows; what
//! the bot then does with them is the chat front-end's business.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::extract::EventRow;
use crate::policy::{RuleType, WatchedRooms};
use crate::store::{InboxItem, InboxKind};

/// The reaction keys that confirm a plan (with and without the emoji variation selector).
pub const CONFIRM_KEYS: [&str; 2] = ["✅", "✅\u{fe0f}"];

/// The admin room's ID, shared with the start-up task that finds it. It is
/// set at start from the config (a room ID) or from the last resolution of
/// the alias, and replaced when the alias resolves again, so the index runs
/// while the alias cannot be resolved. Until it is known, commands and ✅
/// from every room are routed (a command in the first transactions after
/// an upgrade or a first start must not be lost), at most
/// [`MAX_UNPLACED`] of them; the bot drops those that turn out not to be
/// from the admin room, logged and counted. Once the alias is found to
/// point at a room the bot does not trust (a squatter's), none are: the
/// real admin room is not that one, and anyone could fill the inbox.
#[derive(Debug, Clone, Default)]
pub struct AdminRoomId {
    id: Arc<RwLock<Option<Arc<str>>>>,
    untrusted: Arc<AtomicBool>,
    /// The events kept so far from rooms of unknown standing (an event
    /// counts once, however often its transaction is resent).
    unplaced: Arc<Mutex<HashSet<String>>>,
}

/// Commands and ✅ kept from any room while the admin room is not known yet.
pub const MAX_UNPLACED: usize = 1_000;

impl AdminRoomId {
    pub fn known(room_id: &str) -> Self {
        let id = Self::default();
        id.set(room_id);
        id
    }

    pub fn get(&self) -> Option<Arc<str>> {
        self.id.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set(&self, room_id: &str) {
        *self.id.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(room_id.into());
        self.untrusted.store(false, Ordering::Relaxed);
    }

    /// The alias points at a room the bot does not trust: until a room is
    /// [`set`](Self::set), commands from rooms of unknown standing are not kept.
    pub fn distrust_alias(&self) {
        self.untrusted.store(true, Ordering::Relaxed);
    }
}

/// Whether a routed item goes into the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Keep,
    /// The admin alias points at a room the bot does not trust.
    AliasUntrusted,
    /// [`MAX_UNPLACED`] items from rooms of unknown standing are kept already.
    TooManyUnplaced,
}

impl Admission {
    /// Why an item was not kept, for the log.
    pub fn why(self) -> &'static str {
        match self {
            Self::Keep => "kept",
            Self::AliasUntrusted => {
                "not kept: the admin alias points at a room the bot does not trust, so no room is taken for it"
            }
            Self::TooManyUnplaced => "not kept: the admin room is not known yet, and enough commands wait already",
        }
    }
}

/// What the transaction handler needs to route events to the bot.
#[derive(Debug, Clone)]
pub struct Routing {
    pub admin_room_id: AdminRoomId,
    pub bot_user_id: String,
    pub prefix: String,
    /// Policy lists: their rule events and redactions go to the inbox.
    pub watched_lists: WatchedRooms,
    /// End-to-end encryption is on (`e2ee.enabled`): `m.room.encrypted`
    /// events in the admin room go to the inbox, and an encrypted admin room
    /// is no trouble.
    pub decrypts: bool,
}

/// What `/health`, `!status` and the log say while the admin room is encrypted.
pub const ENCRYPTED_ADMIN_ROOM: &str = "the admin room is end-to-end encrypted, and end-to-end encryption is off \
     (e2ee.enabled: false): commands sent there are never seen. Turn it on (README: \"An encrypted admin room\"), \
     or make a new room without encryption (encryption cannot be turned off in a room; a server with \
     encryption_enabled_by_default_for_room_type encrypts new private rooms, including one \
     admin.create_if_missing makes), invite the bot, and set it as admin.room";

impl Routing {
    /// Whether the event turns on encryption in the admin room (housekeep
    /// cannot read it from then on: see [`ENCRYPTED_ADMIN_ROOM`]).
    pub fn encrypts_admin_room(&self, row: &EventRow) -> bool {
        !self.decrypts
            && row.event_type == "m.room.encryption"
            && row.state_key.as_deref() == Some("")
            && self.admin_room_id.get().is_some_and(|admin| *admin == *row.room_id)
    }

    /// Cheap test on the already-extracted row: could this event concern the bot?
    pub fn may_concern_bot(&self, row: &EventRow) -> bool {
        self.is_policy_change(row)
            || (self.admin_room_id.get().is_none_or(|admin| *admin == *row.room_id)
                && row.sender != self.bot_user_id
                && (matches!(row.event_type.as_str(), "m.room.message" | "m.reaction")
                    || (self.decrypts && row.event_type == "m.room.encrypted")))
            || (row.event_type == "m.room.member" && row.state_key.as_deref() == Some(self.bot_user_id.as_str()))
    }

    /// A rule set, changed or removed in a watched policy list (a rule
    /// state event, or a redaction, which may remove one).
    fn is_policy_change(&self, row: &EventRow) -> bool {
        let rule_or_redaction = (row.state_key.is_some() && RuleType::from_event_type(&row.event_type).is_some())
            || row.event_type == "m.room.redaction";
        rule_or_redaction && self.watched_lists.contains(&row.room_id)
    }

    /// Whether `item` (from [`route`](Self::route)) is kept: always once the
    /// admin room is known (only its items are routed then) and for
    /// invites; otherwise see [`AdminRoomId`].
    pub fn admit(&self, item: &InboxItem) -> Admission {
        if matches!(item.kind, InboxKind::Invite | InboxKind::PolicyRule) || self.admin_room_id.get().is_some() {
            Admission::Keep
        } else if self.admin_room_id.untrusted.load(Ordering::Relaxed) {
            Admission::AliasUntrusted
        } else {
            let mut unplaced = self.admin_room_id.unplaced.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if unplaced.contains(&item.event_id) || unplaced.len() < MAX_UNPLACED {
                unplaced.insert(item.event_id.clone());
                Admission::Keep
            } else {
                Admission::TooManyUnplaced
            }
        }
    }

    /// The inbox item for an event, if it is a command, a confirming
    /// reaction, or an invite of the bot.
    pub fn route(&self, row: &EventRow, event: Value) -> Option<InboxItem> {
        if !self.may_concern_bot(row) {
            return None;
        }
        let content = event.get("content")?;
        let kind = match row.event_type.as_str() {
            _ if self.is_policy_change(row) => InboxKind::PolicyRule,
            "m.room.message" | "m.reaction" => message_kind(&row.event_type, content, &self.prefix)?,
            "m.room.encrypted" => InboxKind::Encrypted,
            "m.room.member" => {
                (content.get("membership").and_then(Value::as_str) == Some("invite")).then_some(InboxKind::Invite)?
            }
            _ => return None,
        };
        Some(InboxItem {
            event_id: row.event_id.clone(),
            room_id: row.room_id.clone(),
            sender: row.sender.clone(),
            kind,
            origin_server_ts: row.origin_server_ts,
            event,
        })
    }
}

/// What a message or reaction in the admin room is to the bot: a command
/// (text starting with the prefix and a letter; not an edit, not a notice)
/// or a confirming ✅; `None` for anything else. Also what a decrypted
/// event is (`bot::handle`).
pub fn message_kind(event_type: &str, content: &Value, prefix: &str) -> Option<InboxKind> {
    match event_type {
        "m.room.message" => {
            let is_edit = content.pointer("/m.relates_to/rel_type").and_then(Value::as_str) == Some("m.replace");
            let msgtype = content.get("msgtype").and_then(Value::as_str);
            let body = content.get("body").and_then(Value::as_str)?;
            let is_command = !is_edit
                && msgtype != Some("m.notice")
                && body
                    .trim_start()
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
            is_command.then_some(InboxKind::Command)
        }
        "m.reaction" => {
            let relates = content.get("m.relates_to")?;
            let annotation = relates.get("rel_type").and_then(Value::as_str) == Some("m.annotation");
            let key = relates.get("key").and_then(Value::as_str)?;
            (annotation && CONFIRM_KEYS.contains(&key)).then_some(InboxKind::Reaction)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract_value;
    use serde_json::json;

    fn routing() -> Routing {
        Routing {
            admin_room_id: AdminRoomId::known("!admin"),
            bot_user_id: "@bot:hs".into(),
            prefix: "!".into(),
            watched_lists: WatchedRooms::default(),
            decrypts: false,
        }
    }

    fn route(event: Value) -> Option<InboxKind> {
        let row = extract_value(&event).unwrap().event;
        routing().route(&row, event).map(|item| item.kind)
    }

    #[test]
    fn rule_events_and_redactions_of_watched_lists_go_to_the_inbox_and_nothing_else_of_them() {
        let routing = routing();
        routing.watched_lists.insert("!list");
        let rule = |room: &str, state_key: Option<&str>| {
            let mut e = event(
                room,
                "@keeper:elsewhere",
                "m.policy.rule.user",
                json!({"entity": "@x:y", "recommendation": "m.ban"}),
            );
            if let Some(key) = state_key {
                e["state_key"] = json!(key);
            }
            e
        };
        let kind = |e: Value| {
            let row = extract_value(&e).unwrap().event;
            routing.route(&row, e).map(|item| item.kind)
        };
        assert_eq!(kind(rule("!list", Some("r1"))), Some(InboxKind::PolicyRule));
        assert_eq!(kind(rule("!list", None)), None, "a rule type without a state key is no rule");
        assert_eq!(kind(rule("!elsewhere", Some("r1"))), None, "not a watched list");
        let redaction = json!({"event_id": "$red", "room_id": "!list", "sender": "@anyone:hs", "origin_server_ts": 1,
            "type": "m.room.redaction", "redacts": "$rule", "content": {}});
        assert_eq!(kind(redaction), Some(InboxKind::PolicyRule));
        let chat = event("!list", "@anyone:hs", "m.room.message", json!({"msgtype": "m.text", "body": "!purge"}));
        assert_eq!(kind(chat), None, "a command in a list room is no command");
        let item = routing.route(&extract_value(&rule("!list", Some("r1"))).unwrap().event, rule("!list", Some("r1")));
        assert_eq!(routing.admit(&item.unwrap()), Admission::Keep);
    }

    #[test]
    fn before_the_admin_room_is_known_commands_from_every_room_are_kept() {
        let routing = Routing { admin_room_id: AdminRoomId::default(), ..routing() };
        let command = event("!admin", "@mod:hs", "m.room.message", json!({"msgtype": "m.text", "body": "!status"}));
        let row = extract_value(&command).unwrap().event;
        let elsewhere = event("!other", "@mod:hs", "m.room.message", json!({"msgtype": "m.text", "body": "!status"}));
        let elsewhere_row = extract_value(&elsewhere).unwrap().event;
        assert_eq!(routing.route(&row, command.clone()).map(|item| item.kind), Some(InboxKind::Command));
        assert_eq!(routing.route(&elsewhere_row, elsewhere.clone()).map(|item| item.kind), Some(InboxKind::Command));
        let mut invite = event("!anywhere", "@mod:hs", "m.room.member", json!({"membership": "invite"}));
        invite["state_key"] = json!("@bot:hs");
        let invite_row = extract_value(&invite).unwrap().event;
        assert_eq!(routing.route(&invite_row, invite).map(|item| item.kind), Some(InboxKind::Invite));
        // Found later (the shared handle): only the admin room's from then on.
        routing.admin_room_id.set("!admin");
        assert_eq!(routing.route(&row, command).map(|item| item.kind), Some(InboxKind::Command));
        assert!(routing.route(&elsewhere_row, elsewhere).is_none());
    }

    #[test]
    fn while_the_admin_room_is_unknown_a_bounded_number_of_commands_is_kept() {
        let routing = Routing { admin_room_id: AdminRoomId::default(), ..routing() };
        let command = event("!anywhere", "@x:hs", "m.room.message", json!({"msgtype": "m.text", "body": "!status"}));
        let row = extract_value(&command).unwrap().event;
        let item = routing.route(&row, command).unwrap();
        let numbered = |n: usize| InboxItem { event_id: format!("$e{n}"), ..item.clone() };
        let admitted: Vec<Admission> = (0..MAX_UNPLACED + 2).map(|n| routing.admit(&numbered(n))).collect();
        assert!(admitted[..MAX_UNPLACED].iter().all(|a| *a == Admission::Keep));
        assert_eq!(admitted[MAX_UNPLACED..], [Admission::TooManyUnplaced; 2]);
        assert_eq!(routing.admit(&numbered(0)), Admission::Keep, "a resent transaction's event counts once");

        let mut invite = event("!anywhere", "@x:hs", "m.room.member", json!({"membership": "invite"}));
        invite["state_key"] = json!("@bot:hs");
        let invite_row = extract_value(&invite).unwrap().event;
        let invite = routing.route(&invite_row, invite).unwrap();
        assert_eq!(routing.admit(&invite), Admission::Keep, "invites are answered by the bot's own rules");

        routing.admin_room_id.distrust_alias();
        assert_eq!(routing.admit(&item), Admission::AliasUntrusted);
        assert_eq!(routing.admit(&invite), Admission::Keep);
        routing.admin_room_id.set("!admin");
        assert_eq!(routing.admit(&item), Admission::Keep, "a known room: route() has picked its items already");
    }

    fn event(room: &str, sender: &str, event_type: &str, content: Value) -> Value {
        json!({"event_id": "$e", "room_id": room, "sender": sender, "origin_server_ts": 1, "type": event_type, "content": content})
    }

    #[test]
    fn commands_in_the_admin_room_only() {
        let text = |body: &str| json!({"msgtype": "m.text", "body": body});
        assert_eq!(route(event("!admin", "@mod:hs", "m.room.message", text("!status"))), Some(InboxKind::Command));
        assert_eq!(
            route(event("!admin", "@mod:hs", "m.room.message", text("  !help purge"))),
            Some(InboxKind::Command)
        );
        assert_eq!(
            route(event("!other", "@mod:hs", "m.room.message", text("!status"))),
            None,
            "other rooms are ignored"
        );
        assert_eq!(route(event("!admin", "@bot:hs", "m.room.message", text("!status"))), None, "own messages");
        assert_eq!(route(event("!admin", "@mod:hs", "m.room.message", text("hello !status"))), None);
        assert_eq!(route(event("!admin", "@mod:hs", "m.room.message", text("! status"))), None);
        assert_eq!(route(event("!admin", "@mod:hs", "m.room.message", text("!!"))), None);
        let notice = json!({"msgtype": "m.notice", "body": "!status"});
        assert_eq!(route(event("!admin", "@mod:hs", "m.room.message", notice)), None, "notices");
        let edit = json!({"msgtype": "m.text", "body": "* !status", "m.new_content": {"body": "!status"},
                          "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}});
        assert_eq!(route(event("!admin", "@mod:hs", "m.room.message", edit)), None, "edits");
    }

    #[test]
    fn encrypted_events_in_the_admin_room_go_to_the_inbox_only_when_the_bot_decrypts() {
        let encrypted = |room: &str, sender: &str| {
            let content = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "session_id": "s"});
            event(room, sender, "m.room.encrypted", content)
        };
        let kind = |routing: &Routing, e: Value| {
            let row = extract_value(&e).unwrap().event;
            routing.route(&row, e).map(|item| item.kind)
        };
        assert_eq!(kind(&routing(), encrypted("!admin", "@mod:hs")), None, "e2ee off: as before");
        let decrypting = Routing { decrypts: true, ..routing() };
        assert_eq!(kind(&decrypting, encrypted("!admin", "@mod:hs")), Some(InboxKind::Encrypted));
        assert_eq!(kind(&decrypting, encrypted("!other", "@mod:hs")), None, "other rooms");
        assert_eq!(kind(&decrypting, encrypted("!admin", "@bot:hs")), None, "its own");
        let encryption = json!({"event_id": "$e", "room_id": "!admin", "sender": "@mod:hs", "origin_server_ts": 1,
            "type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}});
        let row = extract_value(&encryption).unwrap().event;
        assert!(routing().encrypts_admin_room(&row));
        assert!(!decrypting.encrypts_admin_room(&row), "no trouble when the bot decrypts");
    }

    #[test]
    fn confirming_reactions_and_invites() {
        let reaction =
            |key: &str| json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$plan", "key": key}});
        assert_eq!(route(event("!admin", "@mod:hs", "m.reaction", reaction("✅"))), Some(InboxKind::Reaction));
        assert_eq!(route(event("!admin", "@mod:hs", "m.reaction", reaction("✅\u{fe0f}"))), Some(InboxKind::Reaction));
        assert_eq!(route(event("!admin", "@mod:hs", "m.reaction", reaction("👍"))), None);
        assert_eq!(route(event("!other", "@mod:hs", "m.reaction", reaction("✅"))), None);

        let mut invite = event("!anywhere", "@mod:hs", "m.room.member", json!({"membership": "invite"}));
        invite["state_key"] = json!("@bot:hs");
        assert_eq!(route(invite.clone()), Some(InboxKind::Invite));
        invite["state_key"] = json!("@someone:hs");
        assert_eq!(route(invite.clone()), None);
        invite["state_key"] = json!("@bot:hs");
        invite["content"]["membership"] = json!("join");
        assert_eq!(route(invite), None);
    }
}
