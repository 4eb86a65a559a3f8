//! One rule change from the stream (an inbox item): the rule as the list
//! holds it now, its slot claimed, then refused, planned, or noted.

use std::time::Instant;

use ruma::{OwnedRoomOrAliasId, RoomOrAliasId};
use serde_json::Value;

use super::plans::{self, Guarded, Origin, RulePlans};
use super::targets::{self, Targets};
use super::watch::{Slot, slot_from};
use super::{count, outcome, rule_key};
use crate::command::Context;
use crate::notice::Notice;
use crate::policy::{ParsedRule, PolicyRule, RuleType, SafetyContext, refused};
use crate::store::{AuditEntry, Claim, PolicyList, StoredRule};

/// One rule is handled at a time: two changes of one slot in one
/// transaction must not race (each reads the list's current state anyway).
pub(super) static HANDLING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Matched targets named in a notice; the rest are counted.
const NAMED: usize = 10;

/// New rules one list may have planned (or refused) in any
/// [`HOLD_WINDOW`], each with a notice of its own. Past it, its new rules
/// are held as standing rules, which `!policy apply` plans ten at a time,
/// and the admin room is told once a window: a list that adds a thousand
/// rules at once must not bury the admin room in a thousand plans.
const RULES_PER_WINDOW: usize = 20;
const HOLD_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// When each list's latest rules were acted on (the last [`RULES_PER_WINDOW`]).
static ACTED: std::sync::Mutex<Option<std::collections::HashMap<String, std::collections::VecDeque<Instant>>>> =
    std::sync::Mutex::new(None);

/// Whether `list` may have one more rule acted on now; counts it if so.
fn may_act(list: &str, now: Instant) -> bool {
    let mut acted = ACTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let times = acted.get_or_insert_default().entry(list.to_owned()).or_default();
    while times.front().is_some_and(|at| now.duration_since(*at) >= HOLD_WINDOW) {
        times.pop_front();
    }
    if times.len() >= RULES_PER_WINDOW {
        return false;
    }
    times.push_back(now);
    true
}

/// Handles a rule event (or a redaction) of a watched list: what came of it
/// (the inbox row's outcome) and its audit entries.
pub async fn handle_rule_change(ctx: &Context<'_>) -> anyhow::Result<(String, Vec<AuditEntry>)> {
    let started = Instant::now();
    let services = ctx.services();
    let item = ctx.item;
    // Cheap checks first, outside the lock: anyone in a list room may
    // redact their own messages, and each redaction comes here.
    let Some((rule_type, state_key)) = slot_key(ctx, &item.event).await? else {
        return Ok(("ignored: no rule slot".to_owned(), Vec::new()));
    };
    let _one_at_a_time = HANDLING.lock().await;
    let Some(list) = services.store.policy_list(&item.room_id).await? else {
        return Ok(("ignored: not a watched list".to_owned(), Vec::new()));
    };
    if list.baseline_at.is_none() {
        // The list's first read is under way (its state may have been read
        // before this rule came): tried again once the baseline is written.
        anyhow::bail!("the policy list's first read is not done yet");
    }
    // The rule the list holds now: this event may be older than one
    // handled already, or redacted since.
    let current = services.homeserver.state_event(&list.room_id, rule_type.as_str(), &state_key).await?;
    // None: the room has no such state (never set): the same as removed.
    // An answer without content is no answer (not a removal).
    let content = match &current {
        None => serde_json::json!({}),
        Some(event) => event.get("content").cloned().ok_or_else(|| {
            anyhow::anyhow!("the homeserver's answer for the rule's state has no content (format=event unsupported?)")
        })?,
    };
    let event = current.unwrap_or(Value::Null);
    let Slot { stored, parsed } = slot_from(&list.room_id, rule_type, &state_key, &content, &event);

    if let Some(held) = services.store.policy_rule(&list.room_id, &stored.kind, &stored.state_key).await?
        && outranks(&held, rule_type)
    {
        count(services, outcome::IGNORED);
        return Ok(("ignored: an older spelling of a rule the list holds".to_owned(), Vec::new()));
    }
    let previous = match services.store.claim_policy_rule(&stored).await? {
        Claim::Handled => return Ok(("already handled".to_owned(), Vec::new())),
        Claim::Unfinished => None,
        Claim::New(previous) => previous,
    };
    let (what, jobs, actions) = match parsed {
        Err(malformed) => {
            count(services, outcome::MALFORMED);
            tracing::info!(list = list.room_id, state_key, reason = %malformed, "a malformed policy rule, ignored");
            (outcome::with(outcome::MALFORMED, malformed.code()), Vec::new(), 0)
        }
        Ok(ParsedRule::Removed(_)) => {
            count(services, outcome::REMOVED);
            let planned = previous.as_ref().filter(|p| p.jobs.as_deref().is_some_and(|j| j != "[]"));
            // A list flipping a rule on and off counts against its hold too.
            if let Some(previous) = planned.filter(|_| may_act(&list.room_id, started)) {
                let notice = removed_notice(ctx, &list, previous);
                services.tell_operators(&format!("policy-removed-{}", rule_key(&stored)), &notice).await;
            }
            tracing::info!(list = list.room_id, state_key, "a policy rule was removed");
            (outcome::REMOVED.to_owned(), Vec::new(), 0)
        }
        Ok(ParsedRule::Active(rule)) if !rule.recommendation.is_acted_on() => {
            count(services, outcome::IGNORED);
            tracing::info!(
                list = list.room_id,
                state_key,
                recommendation = rule.recommendation.as_str(),
                "a policy rule with a recommendation housekeep does not act on"
            );
            let why = format!("recommendation {}", crate::text::line(rule.recommendation.as_str()));
            (outcome::with(outcome::IGNORED, &why), Vec::new(), 0)
        }
        Ok(ParsedRule::Active(_)) if !may_act(&list.room_id, started) => {
            hold(ctx, &list, &state_key).await;
            (outcome::HELD.to_owned(), Vec::new(), 0)
        }
        Ok(ParsedRule::Active(rule)) => act(ctx, &list, &stored, &rule, started).await?,
    };
    services.store.finish_policy_rule(&stored, &what, &jobs, actions, true).await?;
    let audit = AuditEntry {
        actor: stored.sender.clone().unwrap_or_else(|| item.sender.clone()),
        room_id: Some(list.room_id.clone()),
        event_id: Some(item.event_id.clone()),
        action: "policy.rule".to_owned(),
        command: Some(format!("{} {}", stored.rule_type, crate::text::line(&stored.state_key))),
        target: Some(crate::text::line(&entity_of(&stored))),
        outcome: what.clone(),
        ..AuditEntry::default()
    };
    Ok((what, vec![audit]))
}

/// A list is past its hold: the rule waits as a standing one, and the
/// admin room is told (once a window: the notice's key names the window).
async fn hold(ctx: &Context<'_>, list: &PolicyList, state_key: &str) {
    let services = ctx.services();
    count(services, outcome::HELD);
    tracing::warn!(
        list = list.room_id,
        state_key,
        "a policy list sent more than {RULES_PER_WINDOW} rules in {HOLD_WINDOW:?}: this one is held for !policy apply"
    );
    let prefix = ctx.prefix();
    let name = crate::text::line(&list.name);
    let notice = Notice::new().line(&format!(
        "Policy list {name} sent more than {RULES_PER_WINDOW} new rules within {}: the rest are held, not planned. \
         {prefix}policy apply {name} plans them ten at a time; {prefix}policy match shows what a rule matches.",
        humantime::format_duration(HOLD_WINDOW),
    ));
    let window = crate::clock::now_ms() / HOLD_WINDOW.as_millis() as i64;
    let key = format!("policy-held-{}-{window}", crate::notice::hashed_key(&list.room_id, 32));
    services.tell_operators(&key, &notice).await;
}

/// The (type, state key) an inbox item is about: a rule event's own, or,
/// for a redaction, the slot of the rule event it redacts.
async fn slot_key(ctx: &Context<'_>, event: &Value) -> anyhow::Result<Option<(RuleType, String)>> {
    let text = |key: &str| event.get(key).and_then(Value::as_str);
    if text("type") == Some("m.room.redaction") {
        let redacts = text("redacts").or_else(|| event.pointer("/content/redacts").and_then(Value::as_str));
        let Some(redacts) = redacts else { return Ok(None) };
        let Some(slot) = ctx.services().store.policy_rule_by_event(redacts).await? else { return Ok(None) };
        return Ok(RuleType::from_event_type(&slot.rule_type).map(|t| (t, slot.state_key)));
    }
    let rule_type = text("type").and_then(RuleType::from_event_type);
    Ok(rule_type.zip(text("state_key").map(str::to_owned)))
}

/// Whether the slot holds a rule in a newer spelling than `rule_type`
/// (an older spelling never replaces it).
fn outranks(held: &StoredRule, rule_type: RuleType) -> bool {
    let held_type = RuleType::from_event_type(&held.rule_type);
    held_type.is_some_and(|held_type| held_type.precedence() > rule_type.precedence())
        && held.outcome.is_some()
        && outcome::is_rule(held.outcome.as_deref())
}

/// The entity a slot's content names, as written (for the audit log).
fn entity_of(stored: &StoredRule) -> String {
    let content: Value = serde_json::from_str(&stored.content).unwrap_or(Value::Null);
    content.get("entity").and_then(Value::as_str).map_or_else(|| "(hashed or none)".to_owned(), str::to_owned)
}

/// A rule to act on: refused, matched nothing, or planned and posted.
pub(super) async fn act(
    ctx: &Context<'_>,
    list: &PolicyList,
    stored: &StoredRule,
    rule: &PolicyRule,
    started: Instant,
) -> anyhow::Result<(String, Vec<String>, i64)> {
    let services = ctx.services();
    let guarded = guarded(ctx).await?;
    if let Some(why) = refusal(ctx, &guarded, rule) {
        count(services, outcome::REFUSED);
        tracing::warn!(list = list.room_id, state_key = rule.state_key, %why, "a policy rule refused");
        let notice = describe(Notice::new(), list, stored, rule)
            .line(&format!("Refused: {why}. Nothing was planned; housekeep never acts on such a rule."));
        services.tell_operators(&format!("policy-{}", rule_key(stored)), &notice).await;
        return Ok((outcome::with(outcome::REFUSED, &why.to_string()), Vec::new(), 0));
    }
    let Targets { matched, cut_off } = targets::find(services, rule).await?;
    if matched.is_empty() {
        count(services, "matched_nothing");
        tracing::info!(
            list = list.room_id, state_key = rule.state_key, entity = %rule.entity,
            "a policy rule matches nothing on this homeserver; not posted"
        );
        return Ok((outcome::MATCHED_NOTHING.to_owned(), Vec::new(), 0));
    }
    let origin = Origin { ctx, list, slot: stored, rule, guarded: &guarded };
    let RulePlans { jobs, mut notes, refused } = plans::plan(&origin, &matched).await?;
    if refused {
        count(services, outcome::REFUSED);
        let why = notes.first().cloned().unwrap_or_default();
        tracing::warn!(list = list.room_id, state_key = rule.state_key, why, "a policy rule refused");
        let notice = describe(Notice::new(), list, stored, rule).line(&crate::text::line(&why));
        services.tell_operators(&format!("policy-{}", rule_key(stored)), &notice).await;
        return Ok((outcome::with(outcome::REFUSED, &why), Vec::new(), 0));
    }
    if cut_off {
        notes.push(format!(
            "More than {} matched (or the index holds more than {} senders or rooms to compare a hash with): \
             only these were planned; {}policy match shows what matches.",
            targets::MAX_TARGETS,
            targets::MAX_SCANNED,
            ctx.prefix(),
        ));
    }
    if jobs.is_empty() {
        count(services, "matched_nothing");
        tracing::info!(list = list.room_id, state_key = rule.state_key, notes = ?notes, "a policy rule's plans are empty");
        return Ok((outcome::with(outcome::MATCHED_NOTHING, "nothing to do"), Vec::new(), 0));
    }
    count(services, outcome::PLANNED);
    let mut notice = describe(Notice::new(), list, stored, rule);
    let named: Vec<String> = matched.iter().take(NAMED).map(ToString::to_string).collect();
    let more = matched.len().saturating_sub(NAMED);
    notice = notice.field(
        "matched",
        &format!(
            "{}{}",
            crate::text::line(&named.join(", ")),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
    );
    for planned in &jobs {
        notice = notice.line(&format!(
            "Job {} ({}): {}{}",
            planned.job.id,
            crate::text::line(&planned.label),
            planned.job.state.as_str(),
            if planned.waits_despite_auto {
                " (waits: above admin.confirm_threshold, or cannot be undone)"
            } else {
                ""
            }
        ));
    }
    for note in &notes {
        notice = notice.line(&crate::text::line(note));
    }
    if let Some(first) = jobs.first() {
        notice = notice.append(first.summary.clone());
    }
    let waiting: Vec<&str> =
        jobs.iter().filter(|p| p.job.state == crate::store::JobState::Planned).map(|p| p.job.id.as_str()).collect();
    let prefix = ctx.prefix();
    if !waiting.is_empty() {
        notice = notice.line(&format!(
            "Nothing of {} happens until a moderator reacts ✅ to this message (confirms them all) or sends \
             {prefix}confirm <job>, within {}. {prefix}cancel <job> drops one.",
            waiting.join(", "),
            humantime::format_duration(std::time::Duration::from_secs(ctx.rules.confirm_expiry.as_secs())),
        ));
    }
    let running = jobs.iter().filter(|p| p.job.state == crate::store::JobState::Confirmed).count() as i64;
    if running > 0 {
        notice = notice.line(&format!(
            "The list is action: auto, so {running} job(s) run now. {prefix}job <job> shows progress; \
             {prefix}cancel <job> stops one."
        ));
    }
    let Some((sink, admin_room)) = &services.operators else { anyhow::bail!("no admin room to post plans in") };
    let plan_event = sink.post(admin_room, &format!("policy-{}", rule_key(stored)), &notice).await?;
    for planned in &jobs {
        services.store.set_plan_event(&planned.job.id, &plan_event).await?;
    }
    ctx.jobs.wake();
    tracing::info!(
        list = list.room_id,
        state_key = rule.state_key,
        jobs = jobs.len(),
        running,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "a policy rule was planned and posted"
    );
    Ok((outcome::PLANNED.to_owned(), jobs.into_iter().map(|p| p.job.id).collect(), running))
}

async fn guarded(ctx: &Context<'_>) -> anyhow::Result<Guarded> {
    let services = ctx.services();
    let sanctions = ctx.jobs.kind::<crate::moderation::sanction::SanctionKind>()?;
    let protected = &sanctions.protected;
    let state = services.homeserver.room_state(protected.admin_room.as_str()).await?;
    let mut rooms: Vec<OwnedRoomOrAliasId> = vec![protected.admin_room.clone().into()];
    for list in services.store.policy_lists().await? {
        for name in [&list.room_id, &list.name] {
            if let Ok(room) = RoomOrAliasId::parse(name) {
                rooms.push(room);
            }
        }
    }
    Ok(Guarded { moderators: protected.moderators.listed(&state), rooms })
}

/// Whether housekeep refuses the rule ([`crate::policy::refused`]) for
/// this homeserver's moderators, bot, admin room and watched lists.
fn refusal(ctx: &Context<'_>, guarded: &Guarded, rule: &PolicyRule) -> Option<crate::policy::Refusal> {
    let services = ctx.services();
    let safety = SafetyContext {
        server_name: services.bot_user_id.server_name(),
        bot: &services.bot_user_id,
        moderators: &guarded.moderators,
        protected_rooms: &guarded.rooms,
    };
    refused(rule, &safety)
}

/// The list, the rule and its reason, for a notice.
fn describe(notice: Notice, list: &PolicyList, stored: &StoredRule, rule: &PolicyRule) -> Notice {
    let mut notice = notice
        .title(&format!(
            "Policy list {}: {} rule for {} ({})",
            crate::text::line(&list.name),
            rule.kind(),
            crate::text::line(&rule.entity.to_string()),
            crate::text::line(rule.recommendation.as_str()),
        ))
        .field("rule", &format!("{} {}", stored.rule_type, crate::text::line(&stored.state_key)));
    if let Some(reason) = &rule.reason {
        notice = notice.field("reason", &crate::text::line(reason));
    }
    if let Some(sender) = &stored.sender {
        notice = notice.field("set by", &crate::text::line(sender));
    }
    notice
}

/// A removed rule whose plans were made: what would undo them, never done
/// by itself.
fn removed_notice(ctx: &Context<'_>, list: &PolicyList, previous: &StoredRule) -> Notice {
    let prefix = ctx.prefix();
    let entity = entity_of(previous);
    let jobs: Vec<String> = serde_json::from_str(previous.jobs.as_deref().unwrap_or("[]")).unwrap_or_default();
    let undo = match previous.kind.as_str() {
        "user" if entity.starts_with('@') && !entity.contains(['*', '?']) => {
            format!("{prefix}unsuspend {entity} (or {prefix}unlock) and {prefix}unquarantine user {entity}")
        }
        "media" if entity.starts_with("mxc://") => format!("{prefix}unquarantine media {entity}"),
        "room" => format!("{prefix}room unblock <room> (a purged room cannot come back)"),
        _ => format!("{prefix}unsuspend / {prefix}unquarantine for each account or media the jobs acted on"),
    };
    Notice::new()
        .title(&format!(
            "Policy list {} removed its {} rule for {}",
            crate::text::line(&list.name),
            previous.kind,
            crate::text::line(&entity)
        ))
        .field("rule", &format!("{} {}", previous.rule_type, crate::text::line(&previous.state_key)))
        .field("jobs made for it", &jobs.join(", "))
        .line(&format!(
            "Nothing is undone by itself. {prefix}job <job> shows what each did; to undo: {}.",
            crate::text::line(&undo)
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_has_twenty_rules_acted_on_in_ten_minutes_then_its_rules_are_held() {
        let start = Instant::now();
        for n in 0..RULES_PER_WINDOW as u64 {
            assert!(may_act("!flood:test", start + std::time::Duration::from_secs(n)), "rule {n}");
        }
        assert!(!may_act("!flood:test", start + std::time::Duration::from_secs(60)), "the 21st within the window");
        assert!(may_act("!other:test", start + std::time::Duration::from_secs(60)), "counted per list");
        assert!(may_act("!flood:test", start + HOLD_WINDOW), "the first one is ten minutes old");
    }
}
