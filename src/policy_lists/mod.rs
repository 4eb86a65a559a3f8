//! Policy lists drive the cleanup: housekeep watches the ban lists
//! moderators already share (`m.policy.rule.*` state in a room, as
//! Draupnir, Mjolnir and Meowlnir read and write them) and turns each new
//! rule into the plan that cleans up after what it bans: a user rule into
//! `!cleanup` of each matching user, a server rule into a purge of what
//! its users sent, a room rule into a room takedown, a media rule into a
//! quarantine. `crate::policy` says what a rule is and matches; this module
//! wires it to the stream, the index, the runner and the admin room.
//!
//! - **Watching** (`watch.rs`): `policy.lists` and `!policy watch` join the
//!   list room (over federation for a remote one) and read its state once.
//!   The rules it holds then are the *baseline*: recorded, no plans (unless
//!   `!policy apply`). Later starts read the state again and queue any
//!   rule that changed while housekeep was away.
//! - **A new or changed rule** (`rule.rs`) arrives on the appservice
//!   stream: the transaction handler routes rule events and redactions of
//!   watched rooms into the bot's inbox (committed with the index, so a
//!   rule is never lost), and the inbox worker hands them here. The rule
//!   as the room holds it *now* is read back (so events handled out of
//!   order cannot leave an older rule in force), its slot (list, kind,
//!   state key) records it with its content hash before anything is
//!   planned, and its outcome after, so a rule is handled once across
//!   crashes and restarts, and a crash in between plans it again under the
//!   same job keys (no second job).
//! - **Matching** (`targets.rs`): the index's senders and rooms, by glob
//!   (SQL `LIKE` narrows, the rule's own matcher decides), by hash (MSC4205:
//!   each known ID hashed) or literally; media by their URI hash.
//! - **Plans** (`plans.rs`): the jobs of the moderation kinds, posted as
//!   one notice in the admin room; one ✅ confirms them all. A list with
//!   `action: auto` confirms them itself when they are within
//!   `admin.confirm_threshold` and can be undone (a room takedown and a
//!   deactivation never can).
//! - **`!policy`** (`command.rs`): watch, unwatch, lists, apply, match.

mod command;
mod plans;
mod rule;
mod targets;
mod watch;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::PolicyListEntry;
use crate::jobs::Jobs;
use crate::policy::WatchedRooms;
use crate::store::Store;

pub use command::PolicyArgs;
pub use rule::handle_rule_change;

/// What came of a slot's rule, as `policy_rules.outcome` stores it (some
/// with a detail after `: `); `NULL` while it is being handled.
pub mod outcome {
    /// There when the list was first read: no plans unless `!policy apply`.
    pub const BASELINE: &str = "baseline";
    /// Came while the list was past its hold (`rule.rs`): no plans unless
    /// `!policy apply`.
    pub const HELD: &str = "held";
    pub const PLANNED: &str = "planned";
    pub const MATCHED_NOTHING: &str = "matched nothing";
    /// `refused: <why>`.
    pub const REFUSED: &str = "refused";
    /// `malformed: <code>`.
    pub const MALFORMED: &str = "malformed";
    pub const REMOVED: &str = "removed";
    /// `ignored: <why>` (a recommendation housekeep does not act on).
    pub const IGNORED: &str = "ignored";

    /// `kind: detail`.
    pub fn with(kind: &str, detail: &str) -> String {
        format!("{kind}: {detail}")
    }

    /// A rule that waits for `!policy apply`.
    pub fn is_standing(outcome: Option<&str>) -> bool {
        matches!(outcome, Some(BASELINE | HELD))
    }

    /// The slot holds a rule (not a removal, not something malformed).
    pub fn is_rule(outcome: Option<&str>) -> bool {
        !outcome.is_some_and(|o| o == REMOVED || o.starts_with(MALFORMED))
    }
}

/// A stored slot's rule, if it holds one.
fn parsed(stored: &crate::store::StoredRule) -> Option<crate::policy::PolicyRule> {
    let content: serde_json::Value = serde_json::from_str(&stored.content).ok()?;
    let rule_type = crate::policy::RuleType::from_event_type(&stored.rule_type)?;
    match crate::policy::parse(rule_type, &stored.state_key, &content) {
        Ok(crate::policy::ParsedRule::Active(rule)) => Some(rule),
        _ => None,
    }
}

/// Counts a rule's outcome in `housekeep_policy_rules_total`.
fn count(services: &crate::jobs::Services, outcome: &'static str) {
    let label = crate::metrics::PolicyRuleLabel { outcome };
    services.metrics.policy_rules.get_or_create(&label).inc();
}

/// What names one rule event of a slot: its jobs' keys and its notices'.
/// The event ID is in it, so the same content set again later (after a
/// removal) is a new rule with new jobs, and a second removal a new notice;
/// a rule handled again after a crash is the same event, so the same key.
fn rule_key(rule: &crate::store::StoredRule) -> String {
    let slot = format!(
        "{}\n{}\n{}\n{}\n{}",
        rule.list_room_id,
        rule.kind,
        rule.state_key,
        rule.content_hash,
        rule.event_id.as_deref().unwrap_or_default()
    );
    crate::notice::hashed_key(&slot, 32)
}

/// The lists watched so far, for the transaction handler's routing.
pub async fn watched_rooms(store: &Store) -> anyhow::Result<WatchedRooms> {
    let rooms = WatchedRooms::default();
    for list in store.policy_lists().await? {
        rooms.insert(&list.room_id);
    }
    Ok(rooms)
}

/// At start: watches the configured lists (each retried in the background
/// until it can be joined and read), and reads every list watched before
/// again, queueing what changed while housekeep was away.
pub async fn start(
    jobs: Arc<Jobs>,
    configured: Vec<PolicyListEntry>,
    inbox_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    watch::start(jobs, configured, inbox_wake, shutdown).await
}
