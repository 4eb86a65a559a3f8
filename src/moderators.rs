//! Who is a moderator: the configured allowlist, and/or users joined to the
//! admin room at or above a power level there. One rule for both
//! front-ends: the bot checks it before every command, the dashboard again
//! while a session lasts (`web::recheck`).
//!
//! Moderators are users of this homeserver unless the config allows remote
//! ones: a remote server decides who its users are.

use std::sync::{Arc, OnceLock};

use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use crate::homeserver::HomeserverClient;
use crate::homeserver::power::{at_least, is_joined, power_levels};

/// The rule as the config states it (`admin.*`).
#[derive(Clone, Debug)]
pub struct ModeratorRule {
    /// `admin.moderators`: moderators wherever they are.
    pub allowlist: Vec<OwnedUserId>,
    /// `admin.moderator_power_level`: joined members at or above it count too.
    pub power_level: Option<i64>,
    /// `admin.allow_remote_moderators`.
    pub allow_remote: bool,
    /// This homeserver's name.
    pub server_name: OwnedServerName,
    /// The bot: the admin room's state counts only while it shows the bot
    /// joined (a room the bot was removed from still answers, with the
    /// state as it was when the bot left).
    pub bot: OwnedUserId,
}

/// What the rule says before the admin room's state is read, if it can.
enum Early {
    Decided(bool),
    /// At or above this power level while joined, by the admin room's state.
    NeedsState(i64),
}

impl ModeratorRule {
    fn early(&self, user: &UserId) -> Early {
        if !self.allow_remote && user.server_name() != self.server_name {
            return Early::Decided(false);
        }
        if self.allowlist.iter().any(|m| m == user) {
            return Early::Decided(true);
        }
        match self.power_level {
            Some(level) => Early::NeedsState(level),
            None => Early::Decided(false),
        }
    }

    /// Whether `user_id` is a moderator, given the admin room's state.
    /// A kicked or banned user keeps their power level entry: it counts
    /// only while they are joined. A state that does not show the bot
    /// joined is an error, not an answer: a room the bot was removed from
    /// still answers, with its state as it was when the bot left.
    pub fn decide(&self, user_id: &str, admin_room_state: &[Value]) -> anyhow::Result<bool> {
        let Ok(user) = UserId::parse(user_id) else { return Ok(false) };
        match self.early(&user) {
            Early::Decided(decided) => Ok(decided),
            Early::NeedsState(_) if !is_joined(admin_room_state, &self.bot) => {
                anyhow::bail!("the bot is not in the admin room: its state there may be stale")
            }
            Early::NeedsState(level) => {
                Ok(is_joined(admin_room_state, &user) && at_least(&power_levels(admin_room_state), &user, level))
            }
        }
    }

    /// Everyone the rule makes a moderator, given the admin room's state:
    /// the allowlist and the joined members at or above the power level.
    pub fn listed(&self, admin_room_state: &[Value]) -> Vec<OwnedUserId> {
        let mut listed = self.allowlist.clone();
        if self.power_level.is_some() {
            let members = admin_room_state.iter().filter_map(|event| {
                (event.get("type").and_then(Value::as_str) == Some("m.room.member"))
                    .then(|| event.get("state_key").and_then(Value::as_str))
                    .flatten()
            });
            for member in members {
                if self.decide(member, admin_room_state).unwrap_or(false)
                    && let Ok(user) = UserId::parse(member)
                {
                    listed.push(user);
                }
            }
        }
        listed.sort_unstable();
        listed.dedup();
        listed
    }

    /// Whether `user_id` is a moderator, reading the admin room's state
    /// from the homeserver only when the allowlist does not decide. An
    /// unreadable admin room is an error (the caller retries, or keeps
    /// what it knew), not a "no": a moderator is never refused, nor
    /// signed out, because the homeserver hiccupped.
    pub async fn check(
        &self,
        user_id: &str,
        homeserver: &HomeserverClient,
        admin_room: Option<&RoomId>,
    ) -> anyhow::Result<bool> {
        let Ok(user) = UserId::parse(user_id) else { return Ok(false) };
        if let Early::Decided(decided) = self.early(&user) {
            return Ok(decided);
        }
        let Some(room) = admin_room else {
            anyhow::bail!("the admin room is not known yet (start-up is still looking for it)");
        };
        let state = homeserver
            .room_state(room.as_str())
            .await
            .map_err(|error| anyhow::anyhow!("cannot read the admin room's power levels: {error}"))?;
        self.decide(user_id, &state)
    }
}

/// The admin room, once start-up has found and trusted it. The dashboard
/// starts before that (it needs no homeserver to serve pages), so it holds
/// this and reads it when it re-checks a session.
#[derive(Clone, Debug, Default)]
pub struct AdminRoom(Arc<OnceLock<OwnedRoomId>>);

impl AdminRoom {
    /// Records the room start-up settled on; the first one stays.
    pub fn set(&self, room_id: OwnedRoomId) {
        let _ = self.0.set(room_id);
    }

    pub fn get(&self) -> Option<&RoomId> {
        self.0.get().map(|room_id| &**room_id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(power_level: Option<i64>, allow_remote: bool) -> ModeratorRule {
        ModeratorRule {
            allowlist: vec![UserId::parse("@alice:hs").unwrap()],
            power_level,
            allow_remote,
            server_name: "hs".try_into().unwrap(),
            bot: UserId::parse("@bot:hs").unwrap(),
        }
    }

    fn state(members: &[(&str, &str)], levels: serde_json::Value) -> Vec<Value> {
        let mut state = vec![json!({"type": "m.room.power_levels", "state_key": "", "content": {"users": levels}})];
        for (user, membership) in members {
            state.push(json!({"type": "m.room.member", "state_key": user, "content": {"membership": membership}}));
        }
        state
    }

    #[test]
    fn the_allowlist_or_a_joined_member_at_the_power_level() {
        let state = state(
            &[
                ("@bot:hs", "join"),
                ("@carol:hs", "join"),
                ("@kicked:hs", "leave"),
                ("@low:hs", "join"),
                ("@far:remote", "join"),
            ],
            json!({"@carol:hs": 50, "@kicked:hs": 100, "@low:hs": 49, "@far:remote": 100}),
        );
        let by_level = rule(Some(50), false);
        let decide = |rule: &ModeratorRule, user: &str, state: &[Value]| rule.decide(user, state).unwrap();
        assert!(decide(&by_level, "@alice:hs", &[]), "allowlisted, whatever the room says");
        assert!(decide(&by_level, "@carol:hs", &state));
        assert!(!decide(&by_level, "@kicked:hs", &state), "a power level entry counts only while joined");
        assert!(!decide(&by_level, "@low:hs", &state));
        assert!(!decide(&by_level, "@far:remote", &state), "a remote server decides who its users are");
        assert!(decide(&rule(Some(50), true), "@far:remote", &state), "unless remote moderators are allowed");
        assert!(!decide(&rule(None, false), "@carol:hs", &state), "no power level rule: the allowlist only");
        assert!(!decide(&by_level, "not a user id", &state));
    }

    #[test]
    fn a_room_the_bot_has_left_decides_nothing() {
        let stale = state(&[("@bot:hs", "leave"), ("@carol:hs", "join")], json!({"@carol:hs": 50}));
        let by_level = rule(Some(50), false);
        assert!(by_level.decide("@carol:hs", &stale).is_err(), "its state is as it was when the bot left");
        assert!(by_level.decide("@alice:hs", &stale).unwrap(), "the allowlist needs no room");
    }
}
