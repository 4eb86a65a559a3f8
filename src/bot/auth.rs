//! Who may command the bot: the configured allowlist, and/or users at or
//! above a power level in the admin room. Checked once, before dispatch.
//! Moderators are users of this homeserver unless the config allows remote
//! ones: a remote server decides who its users are.

use ruma::UserId;

use super::Bot;
use crate::homeserver::power::{at_least, is_joined, power_levels};

impl Bot {
    /// Allowlisted, or joined to the admin room at/above
    /// `admin.moderator_power_level` there (a kicked or banned user keeps
    /// their power level entry: it counts only while they are in the room).
    /// An unreadable admin room is an error (the caller retries), not a
    /// "no": a moderator is never refused because the homeserver hiccupped.
    pub async fn is_moderator(&self, user_id: &str) -> anyhow::Result<bool> {
        let Ok(user) = UserId::parse(user_id) else { return Ok(false) };
        if !self.allow_remote_moderators && user.server_name() != self.services().bot_user_id.server_name() {
            return Ok(false);
        }
        if self.moderators.iter().any(|m| m == &user) {
            return Ok(true);
        }
        let Some(required) = self.moderator_power_level else { return Ok(false) };
        let state = self
            .services()
            .homeserver
            .room_state(self.admin_room_id.as_str())
            .await
            .map_err(|error| anyhow::anyhow!("cannot read the admin room's power levels: {error}"))?;
        Ok(is_joined(&state, &user) && at_least(&power_levels(&state), &user, required))
    }
}
