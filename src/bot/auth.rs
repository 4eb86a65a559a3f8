//! Who may command the bot: the shared rule ([`crate::moderators`]),
//! checked once, before dispatch.

use super::Bot;

impl Bot {
    /// Allowlisted, or joined to the admin room at/above
    /// `admin.moderator_power_level` there. An unreadable admin room is an
    /// error (the caller retries), not a "no".
    pub async fn is_moderator(&self, user_id: &str) -> anyhow::Result<bool> {
        self.moderators.check(user_id, &self.services().homeserver, Some(&self.admin_room_id)).await
    }
}
