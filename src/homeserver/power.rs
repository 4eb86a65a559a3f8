//! Power levels from a room's state events, by ruma's rules (which know that
//! from room version 12 on, a room's creators outrank every level).

use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource};
use ruma::room_version_rules::AuthorizationRules;
use ruma::{Int, OwnedUserId, RoomVersionId, UserId};
use serde_json::Value;

/// The state event of `event_type` with the empty state key.
pub fn state_event<'a>(state: &'a [Value], event_type: &str) -> Option<&'a Value> {
    state.iter().find(|e| {
        e.get("type").and_then(Value::as_str) == Some(event_type)
            && e.get("state_key").and_then(Value::as_str) == Some("")
    })
}

/// The room's power levels, from its current state (full events, as
/// `GET /rooms/{id}/state` returns them).
pub fn power_levels(state: &[Value]) -> RoomPowerLevels {
    let (rules, creators) = rules_and_creators(state);
    let source = state_event(state, "m.room.power_levels")
        .and_then(|e| e.get("content"))
        .and_then(|content| serde_json::from_value::<RoomPowerLevelsEventContent>(content.clone()).ok())
        .map_or(RoomPowerLevelsSource::None, RoomPowerLevelsSource::Original);
    RoomPowerLevels::new(source, &rules, creators)
}

/// Who created the room: the sender of its `m.room.create`, and from room
/// version 12 on its `additional_creators` (before 12 that field means
/// nothing, so whoever made the room could write anyone into it).
pub fn creators(state: &[Value]) -> Vec<OwnedUserId> {
    rules_and_creators(state).1
}

fn rules_and_creators(state: &[Value]) -> (AuthorizationRules, Vec<OwnedUserId>) {
    let create = state_event(state, "m.room.create");
    let version = create.and_then(|c| c.pointer("/content/room_version")).and_then(Value::as_str).unwrap_or("1");
    // An unknown (future) version is read by the newest rules housekeep
    // knows without privileged creators: it may then think it lacks power it
    // has, never the other way round.
    let rules = RoomVersionId::try_from(version)
        .ok()
        .and_then(|v| v.rules())
        .map(|rules| rules.authorization)
        .unwrap_or(AuthorizationRules::V11);
    let mut creators: Vec<OwnedUserId> = Vec::new();
    if let Some(create) = create {
        if let Some(sender) = create.get("sender").and_then(Value::as_str).and_then(|s| UserId::parse(s).ok()) {
            creators.push(sender);
        }
        if rules.additional_room_creators
            && let Some(more) = create.pointer("/content/additional_creators").and_then(Value::as_array)
        {
            creators.extend(more.iter().filter_map(Value::as_str).filter_map(|s| UserId::parse(s).ok()));
        }
    }
    (rules, creators)
}

/// Whether `user_id` is joined to the room, by its current state: a kicked,
/// banned or departed user keeps their power level entry, and no power.
pub fn is_joined(state: &[Value], user_id: &UserId) -> bool {
    membership(state, user_id) == Some("join")
}

/// `user_id`'s membership in the room (`join`, `invite`, `leave`, `ban`,
/// `knock`) by its current state; `None` if the room never had them.
pub fn membership<'a>(state: &'a [Value], user_id: &UserId) -> Option<&'a str> {
    state.iter().find_map(|event| {
        (event.get("type").and_then(Value::as_str) == Some("m.room.member")
            && event.get("state_key").and_then(Value::as_str) == Some(user_id.as_str()))
        .then(|| event.pointer("/content/membership").and_then(Value::as_str))
        .flatten()
    })
}

/// Whether `user_id` is at or above `level`.
pub fn at_least(levels: &RoomPowerLevels, user_id: &UserId, level: i64) -> bool {
    levels.for_user(user_id) >= Int::new_saturating(level)
}

/// The power level a locked-down admin room asks for to invite (and gives
/// its moderators): its members read every plan, so only moderators let
/// anyone in.
pub const ADMIN_ROOM_INVITE_LEVEL: i64 = 50;

/// Whether a room is as [`lock_down_admin_room`](crate::homeserver::HomeserverClient::lock_down_admin_room)
/// leaves it: inviting needs [`ADMIN_ROOM_INVITE_LEVEL`], and guests may not
/// join (no `m.room.guest_access` event means forbidden).
pub fn is_locked_down(state: &[Value]) -> bool {
    let guests = state_event(state, "m.room.guest_access")
        .and_then(|e| e.pointer("/content/guest_access"))
        .and_then(Value::as_str);
    power_levels(state).invite >= Int::new_saturating(ADMIN_ROOM_INVITE_LEVEL)
        && guests.is_none_or(|g| g == "forbidden")
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

    fn user(id: &str) -> OwnedUserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn listed_users_default_and_string_levels() {
        let state = [
            create("10", "@c:hs", json!({})),
            levels(json!({"users": {"@c:hs": 100, "@m:hs": 50}, "users_default": 1, "redact": 60})),
        ];
        let pl = power_levels(&state);
        assert!(at_least(&pl, &user("@c:hs"), 100));
        assert!(at_least(&pl, &user("@m:hs"), 50) && !at_least(&pl, &user("@m:hs"), 51));
        assert!(at_least(&pl, &user("@x:hs"), 1) && !at_least(&pl, &user("@x:hs"), 2));
        assert!(!pl.user_can_redact_event_of_other(&user("@m:hs")));
        assert!(pl.user_can_redact_event_of_other(&user("@c:hs")));
        let old = [create("1", "@c:hs", json!({})), levels(json!({"users": {"@m:hs": "50"}}))];
        assert!(at_least(&power_levels(&old), &user("@m:hs"), 50), "older rooms store levels as strings");
    }

    #[test]
    fn v12_creators_are_unbounded_and_unlisted() {
        let state = [
            create("12", "@c:hs", json!({"additional_creators": ["@c2:hs"]})),
            levels(json!({"users": {"@m:hs": 50}})),
        ];
        let pl = power_levels(&state);
        assert!(at_least(&pl, &user("@c:hs"), i64::MAX));
        assert!(at_least(&pl, &user("@c2:hs"), i64::MAX));
        assert!(at_least(&pl, &user("@m:hs"), 50) && !at_least(&pl, &user("@m:hs"), 51));
        assert!(!at_least(&pl, &user("@x:hs"), 1));
        let v10 = [create("10", "@c:hs", json!({"additional_creators": ["@c2:hs"]})), levels(json!({}))];
        assert!(!at_least(&power_levels(&v10), &user("@c2:hs"), 1), "no additional creators before v12");
    }

    #[test]
    fn additional_creators_count_from_v12_only() {
        let named = json!({"additional_creators": ["@c2:hs", "not an id"]});
        assert_eq!(creators(&[create("12", "@c:hs", named.clone())]), [user("@c:hs"), user("@c2:hs")]);
        assert_eq!(creators(&[create("11", "@c:hs", named)]), [user("@c:hs")], "a meaningless field before 12");
        assert!(creators(&[levels(json!({}))]).is_empty(), "no create event, no creators");
    }

    #[test]
    fn locked_down_means_inviting_takes_a_moderator_and_no_guests() {
        let guests = |access: &str| json!({"type": "m.room.guest_access", "state_key": "", "sender": "@c:hs", "content": {"guest_access": access}});
        let created = create("10", "@c:hs", json!({}));
        let locked = levels(json!({"users": {"@c:hs": 100}, "invite": 50}));
        assert!(is_locked_down(&[created.clone(), locked.clone()]), "no guest_access event: forbidden");
        assert!(is_locked_down(&[created.clone(), locked.clone(), guests("forbidden")]));
        assert!(!is_locked_down(&[created.clone(), locked.clone(), guests("can_join")]));
        let open = levels(json!({"users": {"@c:hs": 100}}));
        assert!(!is_locked_down(&[created.clone(), open]), "the private_chat preset lets every member invite");
        assert!(!is_locked_down(&[created.clone(), levels(json!({"invite": "49"}))]));
        assert!(!is_locked_down(&[created]), "no power levels: anyone may invite");
    }

    #[test]
    fn without_power_levels_only_the_creator_has_power() {
        let pl = power_levels(&[create("10", "@c:hs", json!({}))]);
        assert!(at_least(&pl, &user("@c:hs"), 100));
        assert!(!at_least(&pl, &user("@x:hs"), 1));
    }
}
