//! Who may command the bot: the configured allowlist, and/or users at or
//! above a power level in the admin room. Checked once, before dispatch.

use serde_json::Value;

use super::BotContext;

/// A user's power level in a room, from its state events. Room versions with
/// privileged creators (12 and later) give creators unbounded power.
pub fn power_level(user_id: &str, state: &[Value]) -> i64 {
    let find = |event_type: &str| {
        state.iter().find(|e| {
            e.get("type").and_then(Value::as_str) == Some(event_type)
                && e.get("state_key").and_then(Value::as_str) == Some("")
        })
    };
    if let Some(create) = find("m.room.create") {
        let version = create.pointer("/content/room_version").and_then(Value::as_str).unwrap_or("1");
        let privileged_creators = version.parse::<u32>().is_ok_and(|v| v >= 12);
        let is_creator = create.get("sender").and_then(Value::as_str) == Some(user_id)
            || create
                .pointer("/content/additional_creators")
                .and_then(Value::as_array)
                .is_some_and(|creators| creators.iter().any(|c| c.as_str() == Some(user_id)));
        if privileged_creators && is_creator {
            return i64::MAX;
        }
    }
    let Some(levels) = find("m.room.power_levels").and_then(|e| e.get("content")) else {
        // No power levels event: the creator has 100, everyone else 0 (spec).
        let creator = find("m.room.create").and_then(|e| e.get("sender")).and_then(Value::as_str);
        return if creator == Some(user_id) { 100 } else { 0 };
    };
    levels
        .get("users")
        .and_then(|users| users.get(user_id))
        .and_then(level)
        .or_else(|| levels.get("users_default").and_then(level))
        .unwrap_or(0)
}

/// A power level as rooms store it: a number, or (older rooms) a numeric string.
pub fn level(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

impl BotContext {
    /// Allowlisted, or at/above `admin.moderator_power_level` in the admin
    /// room. An unreadable admin room is an error (the caller retries), not a
    /// "no": a moderator is never refused because the homeserver hiccupped.
    pub async fn is_moderator(&self, user_id: &str) -> anyhow::Result<bool> {
        if self.moderators.iter().any(|m| m.as_str() == user_id) {
            return Ok(true);
        }
        let Some(required) = self.moderator_power_level else { return Ok(false) };
        let state = self
            .homeserver
            .room_state(self.admin_room_id.as_str())
            .await
            .map_err(|error| anyhow::anyhow!("cannot read the admin room's power levels: {error}"))?;
        Ok(power_level(user_id, &state) >= required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(version: &str, sender: &str, extra: Value) -> Value {
        let mut content = json!({"room_version": version});
        content.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"type": "m.room.create", "state_key": "", "sender": sender, "content": content})
    }

    fn levels(content: Value) -> Value {
        json!({"type": "m.room.power_levels", "state_key": "", "sender": "@c:hs", "content": content})
    }

    #[test]
    fn listed_users_default_and_string_levels() {
        let state = [
            create("10", "@c:hs", json!({})),
            levels(json!({"users": {"@c:hs": 100, "@m:hs": "50"}, "users_default": 1})),
        ];
        assert_eq!(power_level("@c:hs", &state), 100);
        assert_eq!(power_level("@m:hs", &state), 50);
        assert_eq!(power_level("@x:hs", &state), 1);
    }

    #[test]
    fn v12_creators_are_unbounded_and_unlisted() {
        let state = [
            create("12", "@c:hs", json!({"additional_creators": ["@c2:hs"]})),
            levels(json!({"users": {"@m:hs": 50}})),
        ];
        assert_eq!(power_level("@c:hs", &state), i64::MAX);
        assert_eq!(power_level("@c2:hs", &state), i64::MAX);
        assert_eq!(power_level("@m:hs", &state), 50);
        assert_eq!(power_level("@x:hs", &state), 0);
    }

    #[test]
    fn without_power_levels_only_the_creator_has_power() {
        let state = [create("10", "@c:hs", json!({}))];
        assert_eq!(power_level("@c:hs", &state), 100);
        assert_eq!(power_level("@x:hs", &state), 0);
    }
}
