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

use crate::clock::now_ms;
use crate::config::{ListAction, PolicyListEntry};
use crate::jobs::{Jobs, Services};
use crate::metrics::PolicyRuleLabel;
use crate::policy::{self, ContentHash, ParsedRule, RuleType};
use crate::store::{InboxItem, InboxKind, PolicyList, StoredRule};

/// What a list's rule events are stored as: the slot, its content and
/// what the event says.
pub(super) struct Slot {
    pub stored: StoredRule,
    /// `None`: not a rule (its reason).
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
    /// Its rules at the first read (the baseline), or `None` when it was
    /// watched already (its changes since were queued).
    pub baseline: Option<usize>,
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
    services.policy_lists.insert(&room_id);
    services
        .store
        .watch_list(&PolicyList {
            room_id: room_id.clone(),
            name: room.to_owned(),
            action: action.as_str().to_owned(),
            source: source.to_owned(),
            added_by: by.to_owned(),
            added_at: now_ms(),
            baseline_at: None,
            rules_seen: 0,
            plans_made: 0,
            actions_run: 0,
        })
        .await?;
    services.homeserver.join_via(room, &via(room)).await?;
    let state = services.homeserver.room_state(&room_id).await?;
    let slots = in_force(state.iter().filter_map(|event| slot_of(&room_id, event)).collect());
    if known.as_ref().is_some_and(|list| list.baseline_at.is_some()) {
        let queued = queue_changes(services, &room_id, &slots, &state).await?;
        return Ok(Watched { room_id, baseline: None, queued });
    }
    let rules: Vec<StoredRule> = slots
        .into_iter()
        .map(|slot| {
            let outcome = match &slot.parsed {
                Err(malformed) => format!("malformed: {}", malformed.code()),
                Ok(ParsedRule::Removed(_)) => "removed".to_owned(),
                Ok(ParsedRule::Active(_)) => "baseline".to_owned(),
            };
            StoredRule { outcome: Some(outcome), ..slot.stored }
        })
        .collect();
    services.store.set_baseline(&room_id, &rules, now_ms()).await?;
    let count = |label| services.metrics.policy_rules.get_or_create(&PolicyRuleLabel { outcome: label }).inc();
    for _ in &rules {
        count("baseline");
    }
    tracing::info!(
        room_id,
        name = room,
        rules = rules.len(),
        "watching a policy list; its current rules are the baseline"
    );
    Ok(Watched { room_id, baseline: Some(rules.len()), queued: 0 })
}

/// The servers to join a room through: the alias's or the room ID's
/// server (a room ID of room version 12 names none; then the homeserver
/// must know the room already, or be invited).
fn via(room: &str) -> Vec<OwnedServerName> {
    RoomOrAliasId::parse(room).ok().and_then(|id| id.server_name().map(ToOwned::to_owned)).into_iter().collect()
}

/// The rule events whose slot holds something else than the room now says:
/// queued as inbox items (handled as if they had just arrived).
async fn queue_changes(services: &Services, room_id: &str, slots: &[Slot], state: &[Value]) -> anyhow::Result<usize> {
    let stored: HashMap<(String, String), String> = services
        .store
        .policy_rules(Some(room_id))
        .await?
        .into_iter()
        .map(|rule| ((rule.kind, rule.state_key), rule.content_hash))
        .collect();
    let by_id: HashMap<&str, &Value> = state.iter().filter_map(|e| Some((e.get("event_id")?.as_str()?, e))).collect();
    let mut items = Vec::new();
    for slot in slots {
        let key = (slot.stored.kind.clone(), slot.stored.state_key.clone());
        if stored.get(&key) == Some(&slot.stored.content_hash) {
            continue;
        }
        let Some(event) = slot.stored.event_id.as_deref().and_then(|id| by_id.get(id)) else { continue };
        items.push(InboxItem {
            event_id: slot.stored.event_id.clone().unwrap_or_default(),
            room_id: room_id.to_owned(),
            sender: slot.stored.sender.clone().unwrap_or_default(),
            kind: InboxKind::PolicyRule,
            origin_server_ts: event.get("origin_server_ts").and_then(Value::as_i64).unwrap_or_default(),
            event: (*event).clone(),
        });
    }
    services.store.enqueue_inbox(&items).await?;
    if !items.is_empty() {
        tracing::info!(room_id, changed = items.len(), "policy list rules changed while housekeep was away; queued");
    }
    Ok(items.len())
}

/// Stops watching: no more routing, its rules forgotten. Plans made from
/// it stay as they are.
pub(super) async fn unwatch(services: &Services, room_id: &str) -> anyhow::Result<bool> {
    services.policy_lists.remove(room_id);
    services.store.unwatch_list(room_id).await
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
                if !configured {
                    let action = ListAction::parse(&list.action).unwrap_or_default();
                    let source = if list.source == "config" { "config" } else { "command" };
                    wanted.push((list.name, action, source));
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
