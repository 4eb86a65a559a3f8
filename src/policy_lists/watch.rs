//! Starting and stopping to watch a list: joining it, the first read of
//! its rules (the baseline), and the read at each start that catches up
//! with what changed while housekeep was away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ruma::{OwnedServerName, RoomOrAliasId};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::outcome;
use crate::clock::now_ms;
use crate::config::{ListAction, PolicyListEntry};
use crate::jobs::{Jobs, Services};
use crate::policy::{self, ContentHash, ParsedRule, RuleType};
use crate::store::{InboxItem, InboxKind, PolicyList, StoredRule};

/// What a list's rule events are stored as: the slot, its content and
/// what the event says.
pub(super) struct Slot {
    pub stored: StoredRule,
    /// What the event says, or why it is no rule.
    pub parsed: Result<ParsedRule, policy::MalformedRule>,
}

/// A rule state event as its slot: (kind, state key) of `list`. `None`
/// for an event that is no rule event (another type, no state key).
pub(super) fn slot_of(list: &str, event: &Value) -> Option<Slot> {
    let rule_type = RuleType::from_event_type(event.get("type")?.as_str()?)?;
    let state_key = event.get("state_key")?.as_str()?;
    let content = event.get("content").cloned().unwrap_or(Value::Null);
    Some(slot_from(list, rule_type, state_key, &content, event))
}

/// The slot for `content` at (`rule_type`, `state_key`), from `event`
/// when it is the event that set it (its ID and sender).
pub(super) fn slot_from(list: &str, rule_type: RuleType, state_key: &str, content: &Value, event: &Value) -> Slot {
    let parsed = policy::parse(rule_type, state_key, content);
    let content_hash = match &parsed {
        Ok(rule) => rule.content_hash(),
        // Too big or too deep for canonical JSON: the hash of its text
        // still tells one malformed rule from the next.
        Err(_) => ContentHash::of(content).unwrap_or_else(|_| ContentHash(policy::sha256_of(&content.to_string()))),
    };
    // What cannot be a rule is not kept (it may be 64 KiB of anything).
    let kept = if parsed.is_ok() { content.to_string() } else { "{}".to_owned() };
    let text = |key: &str| event.get(key).and_then(Value::as_str).map(|s| s.chars().take(255).collect::<String>());
    Slot {
        stored: StoredRule {
            list_room_id: list.to_owned(),
            kind: rule_type.kind().to_string(),
            state_key: state_key.to_owned(),
            rule_type: rule_type.as_str().to_owned(),
            event_id: text("event_id"),
            sender: text("sender"),
            content: kept,
            content_hash: content_hash.to_string(),
            updated_at: now_ms(),
            outcome: None,
            jobs: None,
        },
        parsed,
    }
}

/// Of several rule events for one (kind, state key), the one in force: the
/// newest spelling ([`RuleType::precedence`]) among those that are rules
/// (an older spelling never replaces a newer one, as in Draupnir and
/// Meowlnir), else the newest spelling of any.
pub(super) fn in_force(slots: Vec<Slot>) -> Vec<Slot> {
    let mut best: HashMap<(String, String), Slot> = HashMap::new();
    for slot in slots {
        let key = (slot.stored.kind.clone(), slot.stored.state_key.clone());
        let rank = |s: &Slot| {
            let active = matches!(s.parsed, Ok(ParsedRule::Active(_)));
            let precedence = RuleType::from_event_type(&s.stored.rule_type).map_or(0, RuleType::precedence);
            (active, precedence)
        };
        match best.get(&key) {
            Some(current) if rank(current) >= rank(&slot) => {}
            _ => {
                best.insert(key, slot);
            }
        }
    }
    let mut slots: Vec<Slot> = best.into_values().collect();
    slots.sort_by(|a, b| (&a.stored.kind, &a.stored.state_key).cmp(&(&b.stored.kind, &b.stored.state_key)));
    slots
}

/// What watching a list found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Watched {
    pub room_id: String,
    /// The rules in force at the first read (the baseline), or `None` when
    /// it was watched already (its changes since were queued).
    pub first_read_rules: Option<usize>,
    /// Changes since the last read, queued as inbox items.
    pub queued: usize,
}

/// Watches `room` (an ID or alias): routes its events to the inbox from
/// now on, joins it, and reads its rules: the first time as the baseline,
/// later to queue what changed. The routing starts before the read, so
/// no change falls between the two (one in both is handled once).
pub(super) async fn watch(
    services: &Services,
    room: &str,
    action: ListAction,
    source: &str,
    by: &str,
) -> anyhow::Result<Watched> {
    let room_id = services.homeserver.resolve_room(room).await?.to_string();
    let known = services.store.policy_list(&room_id).await?;
    let watched = read(services, room, &room_id, known.as_ref(), action, source, by).await;
    if watched.is_err() && known.is_none() && source == "command" {
        // A list a moderator asked for that cannot be joined or read is not
        // left half-watched (routed, listed as "not read yet"): they are told.
        services.watched_lists.remove(&room_id);
        services.store.unwatch_list(&room_id).await?;
    }
    watched
}

/// [`watch`] once the room is resolved.
async fn read(
    services: &Services,
    room: &str,
    room_id: &str,
    known: Option<&PolicyList>,
    action: ListAction,
    source: &str,
    by: &str,
) -> anyhow::Result<Watched> {
    let room_id = room_id.to_owned();
    services.watched_lists.insert(&room_id);
    services.store.watch_list(&PolicyList::new(&room_id, room, action.as_str(), source, by, now_ms())).await?;
    services.homeserver.join_via(room, &via(room)).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot join {room}: {error} (a room ID of room version 12 names no server to join through: \
             watch it by an alias, or invite the bot)"
        )
    })?;
    let state = services.homeserver.room_state(&room_id).await?;
    let slots = in_force(state.iter().filter_map(|event| slot_of(&room_id, event)).collect());
    if known.is_some_and(|list| list.baseline_at.is_some()) {
        let queued = queue_changes(services, &room_id, &slots, &state).await?;
        return Ok(Watched { room_id, first_read_rules: None, queued });
    }
    let rules: Vec<StoredRule> = slots
        .into_iter()
        .map(|slot| {
            let what = match &slot.parsed {
                Err(malformed) => outcome::with(outcome::MALFORMED, malformed.code()),
                Ok(ParsedRule::Removed(_)) => outcome::REMOVED.to_owned(),
                Ok(ParsedRule::Active(_)) => outcome::BASELINE.to_owned(),
            };
            StoredRule { outcome: Some(what), ..slot.stored }
        })
        .collect();
    services.store.set_baseline(&room_id, &rules, now_ms()).await?;
    let standing = rules.iter().filter(|rule| outcome::is_standing(rule.outcome.as_deref())).count();
    for _ in 0..standing {
        super::count(services, outcome::BASELINE);
    }
    tracing::info!(
        room_id,
        name = room,
        rules = standing,
        "watching a policy list; its current rules are the baseline"
    );
    Ok(Watched { room_id, first_read_rules: Some(standing), queued: 0 })
}

/// The servers to join a room through: the alias's or the room ID's
/// server (a room ID of room version 12 names none; then the homeserver
/// must know the room already, or be invited).
fn via(room: &str) -> Vec<OwnedServerName> {
    RoomOrAliasId::parse(room).ok().and_then(|id| id.server_name().map(ToOwned::to_owned)).into_iter().collect()
}

/// The rule events whose slot holds something else than the room now says,
/// or whose handling never finished (given up after failures, or cut
/// short): queued as inbox items, handled as if they had just arrived.
async fn queue_changes(services: &Services, room_id: &str, slots: &[Slot], state: &[Value]) -> anyhow::Result<usize> {
    let stored: HashMap<(String, String), (String, bool)> = services
        .store
        .policy_rules(Some(room_id))
        .await?
        .into_iter()
        .map(|rule| ((rule.kind, rule.state_key), (rule.content_hash, rule.outcome.is_some())))
        .collect();
    let by_id: HashMap<&str, &Value> = state.iter().filter_map(|e| Some((e.get("event_id")?.as_str()?, e))).collect();
    let mut items = Vec::new();
    for slot in slots {
        let key = (slot.stored.kind.clone(), slot.stored.state_key.clone());
        let unfinished = match stored.get(&key) {
            Some((hash, true)) if *hash == slot.stored.content_hash => continue,
            Some((hash, false)) => *hash == slot.stored.content_hash,
            _ => false,
        };
        let Some(event) = slot.stored.event_id.as_deref().and_then(|id| by_id.get(id)) else { continue };
        let event_id = slot.stored.event_id.clone().unwrap_or_default();
        items.push(InboxItem {
            // An unfinished rule's event is in the inbox already (given up):
            // it comes again under a key of this start's.
            event_id: if unfinished { format!("{event_id}#again-{}", now_ms()) } else { event_id },
            room_id: room_id.to_owned(),
            sender: slot.stored.sender.clone().unwrap_or_default(),
            kind: InboxKind::PolicyRule,
            origin_server_ts: event.get("origin_server_ts").and_then(Value::as_i64).unwrap_or_default(),
            event: (*event).clone(),
        });
    }
    services.store.enqueue_inbox(&items).await?;
    if !items.is_empty() {
        tracing::info!(
            room_id,
            queued = items.len(),
            "policy list rules changed (or unfinished) since the last start; queued"
        );
    }
    Ok(items.len())
}

/// Stops watching: no more routing, its rules forgotten, the room left
/// (unless it is the admin room). Plans made from it stay as they are.
pub(super) async fn unwatch(services: &Services, room_id: &str) -> anyhow::Result<bool> {
    services.watched_lists.remove(room_id);
    let watched = services.store.unwatch_list(room_id).await?;
    let admin_room = services.operators.as_ref().map(|(_, to)| to.room_id.as_str());
    if watched
        && admin_room != Some(room_id)
        && let Err(error) = services.homeserver.leave(room_id, "housekeep no longer watches this policy list").await
    {
        tracing::info!(room_id, %error, "cannot leave a policy list no longer watched");
    }
    Ok(watched)
}

/// How long a list that cannot be joined or read waits before the next try.
const RETRY: [Duration; 4] =
    [Duration::from_secs(5), Duration::from_secs(30), Duration::from_secs(300), Duration::from_secs(1800)];

/// At start: every configured list, and every list watched before, is
/// (re)watched; one that fails is retried in the background with backoff,
/// logged each time. A configured list's action follows the config.
pub(super) async fn start(
    jobs: Arc<Jobs>,
    configured: Vec<PolicyListEntry>,
    inbox_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let services = jobs.services();
    let mut wanted: Vec<(String, ListAction, &'static str)> =
        configured.iter().map(|entry| (entry.room().to_owned(), entry.action(), "config")).collect();
    match services.store.policy_lists().await {
        Ok(lists) => {
            for list in lists {
                let configured = wanted.iter().any(|(room, ..)| *room == list.name || *room == list.room_id);
                if !configured && list.source == "config" {
                    // Taken out of the config: no longer watched.
                    match unwatch(services, &list.room_id).await {
                        Ok(_) => tracing::info!(
                            list = list.room_id,
                            name = list.name,
                            "policy list no longer in the config; unwatched"
                        ),
                        Err(error) => tracing::warn!(
                            list = list.room_id,
                            error = format!("{error:#}"),
                            "cannot unwatch a list taken out of the config"
                        ),
                    }
                } else if !configured {
                    // By its room ID: an alias may point elsewhere by now.
                    let action = ListAction::parse(&list.action).unwrap_or_default();
                    wanted.push((list.room_id, action, "command"));
                }
            }
        }
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot read the watched policy lists"),
    }
    let mut tries = tokio::task::JoinSet::new();
    for (room, action, source) in wanted {
        let (services, wake, shutdown) = (services.clone(), inbox_wake.clone(), shutdown.clone());
        tries.spawn(async move {
            for attempt in 0.. {
                match watch(&services, &room, action, source, "housekeep (start-up)").await {
                    Ok(watched) => {
                        if watched.queued > 0 {
                            wake.notify_one();
                        }
                        return;
                    }
                    Err(error) => {
                        let wait = RETRY[attempt.min(RETRY.len() - 1)];
                        tracing::warn!(
                            room,
                            error = format!("{error:#}"),
                            ?wait,
                            "cannot watch a policy list (join and read its state); retrying"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
            }
        });
    }
    while tries.join_next().await.is_some() {}
}
