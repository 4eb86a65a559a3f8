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
    /// only while they are joined.
    pub fn decide(&self, user_id: &str, admin_room_state: &[Value]) -> bool {
        let Ok(user) = UserId::parse(user_id) else { return false };
        match self.early(&user) {
            Early::Decided(decided) => decided,
            Early::NeedsState(level) => {
                is_joined(admin_room_state, &user) && at_least(&power_levels(admin_room_state), &user, level)
            }
        }
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
        let level = match self.early(&user) {
            Early::Decided(decided) => return Ok(decided),
            Early::NeedsState(level) => level,
        };
        let Some(room) = admin_room else {
            anyhow::bail!("the admin room is not known yet (start-up is still looking for it)");
        };
        let state = homeserver
            .room_state(room.as_str())
            .await
            .map_err(|error| anyhow::anyhow!("cannot read the admin room's power levels: {error}"))?;
        if !is_joined(&state, &self.bot) {
            anyhow::bail!("the bot is not in the admin room: its state there may be stale");
        }
        Ok(is_joined(&state, &user) && at_least(&power_levels(&state), &user, level))
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
            &[("@carol:hs", "join"), ("@kicked:hs", "leave"), ("@low:hs", "join"), ("@far:remote", "join")],
            json!({"@carol:hs": 50, "@kicked:hs": 100, "@low:hs": 49, "@far:remote": 100}),
        );
        let by_level = rule(Some(50), false);
        assert!(by_level.decide("@alice:hs", &[]), "allowlisted, whatever the room says");
        assert!(by_level.decide("@carol:hs", &state));
        assert!(!by_level.decide("@kicked:hs", &state), "a power level entry counts only while joined");
        assert!(!by_level.decide("@low:hs", &state));
        assert!(!by_level.decide("@far:remote", &state), "a remote server decides who its users are");
        assert!(rule(Some(50), true).decide("@far:remote", &state), "unless remote moderators are allowed");
        assert!(!rule(None, false).decide("@carol:hs", &state), "no power level rule: the allowlist only");
        assert!(!by_level.decide("not a user id", &state));
    }
}
