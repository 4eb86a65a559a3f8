//! The `purge` job kind.
//!
//! How each event is redacted, least invasive first (reported per room):
//! 1. by housekeep's bot, if it has the power to redact in the room (joined
//!    through the admin API first if it is not a member);
//! 2. otherwise, for a sender on this homeserver, as the sender, with a
//!    token from Synapse's admin login API (no device is made; everyone may
//!    redact their own events), kept with the job (`tokens.rs`);
//! 3. otherwise the event is not redacted and the result says why.
//!
//! Every redaction is idempotent by construction: its transaction ID is
//! derived from job and event, and it is sent with the same token after a
//! restart, so the homeserver answers a resend with the same redaction. Before
//! redacting, the homeserver (not the index) is asked whether the event is
//! redacted already, by anyone.
//!
//! Synapse's user-redact API is not used: it redacts every event of the user
//! in a time window (their joins too) and redacts again on a rerun.
//! `delete` uses `purge_history`, which can only cut a room's history before
//! a time; the plan turns any other selection into redactions.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ruma::UserId;
use serde::{Deserialize, Serialize};

use super::args::PurgeArgs;
use super::plan::{LOCAL_ONLY, PurgeItem, PurgePlan, plan};
use super::tokens::{Tokens, revoke_all};
use crate::clock::now_ms;
use crate::homeserver::power::power_levels;
use crate::jobs::{Batch, Item, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Tally, TypedJob};
use crate::moderation::quarantine::{self, Action};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobState};

const BATCH_SIZE: i64 = 20;
const CONCURRENCY: usize = 4;
/// How often a running history purge is asked about.
const HISTORY_POLL: Duration = Duration::from_secs(1);
/// Rooms listed one by one in the tally; more are summed.
const MAX_ROOMS_REPORTED: usize = 50;
const OTHER_ROOMS: &str = "(other rooms)";

/// How events of a room were purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    RedactedByHousekeep,
    RedactedAsSender,
    Deleted,
}

impl Way {
    fn as_str(self) -> &'static str {
        match self {
            Self::RedactedByHousekeep => "redacted by housekeep",
            Self::RedactedAsSender => "redacted as the sender (admin login)",
            Self::Deleted => "deleted from this homeserver (purge_history)",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeTally {
    /// Events redacted or deleted by this job.
    pub purged: i64,
    /// Events found redacted already (by someone, or by this job before a restart).
    pub already: i64,
    pub media_quarantined: i64,
    pub failed: i64,
    /// Per room, how many events went which way.
    pub ways: BTreeMap<String, BTreeMap<Way, i64>>,
}

impl Tally for PurgeTally {
    fn add(&mut self, other: Self) {
        self.purged += other.purged;
        self.already += other.already;
        self.media_quarantined += other.media_quarantined;
        self.failed += other.failed;
        for (room, ways) in other.ways {
            let room = if self.ways.contains_key(&room) || self.ways.len() < MAX_ROOMS_REPORTED {
                room
            } else {
                OTHER_ROOMS.to_owned()
            };
            let entry = self.ways.entry(room).or_default();
            for (way, n) in ways {
                *entry.entry(way).or_default() += n;
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeCursor {
    pub after: ItemCursor,
    /// A `purge_history` started for the next item, being waited for.
    pub purge_id: Option<String>,
}

#[derive(Debug, Default)]
pub struct PurgeKind;

#[async_trait]
impl Kind for PurgeKind {
    const NAME: &'static str = "purge";
    const LANE: Lane = Lane::Moderation;
    type Args = PurgeArgs;
    type Plan = PurgePlan;
    type Cursor = PurgeCursor;
    type Tally = PurgeTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, args: &PurgeArgs) -> anyhow::Result<Planned<PurgePlan>> {
        plan(ctx, args).await
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let items = ctx.next_items::<PurgeItem>(job.cursor.after.0, BATCH_SIZE).await?;
        let Some(last) = items.last().map(|i| i.seq) else {
            let mut batch = Batch::<PurgeKind>::new(job.cursor.clone());
            batch.finished = true;
            return Ok(batch);
        };
        if let Some(first) = items.first()
            && let PurgeItem::History { room_id, before } = &first.item
        {
            return delete_history(ctx, job, first, room_id, *before).await;
        }
        let ways = room_ways(ctx, &items).await?;
        let tokens = Tokens::load(ctx.services, ctx.job).await?;
        let (ways, tokens) = (&ways, &tokens);
        let outcomes: Vec<_> = futures::stream::iter(items)
            .map(|item| async move {
                let outcome = apply(ctx, job, &item.item, ways, tokens).await;
                (item, outcome)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut batch = Batch::<PurgeKind>::new(PurgeCursor { after: ItemCursor(last), purge_id: None });
        for (item, (state, detail, way)) in outcomes {
            let action = match (&item.item, state) {
                (PurgeItem::Media { .. }, ItemState::Done) => {
                    batch.tally.media_quarantined += 1;
                    "purge.media"
                }
                (PurgeItem::Media { .. }, _) => "purge.media",
                (PurgeItem::Event { room_id, .. }, _) => {
                    match (state, way) {
                        (ItemState::Done, Some(way)) => {
                            batch.tally.purged += 1;
                            *batch.tally.ways.entry(room_id.clone()).or_default().entry(way).or_default() += 1;
                        }
                        (ItemState::Skipped, _) => batch.tally.already += 1,
                        _ => {}
                    }
                    "purge.event"
                }
                (PurgeItem::History { .. }, _) => "purge.history",
            };
            if state == ItemState::Failed {
                batch.tally.failed += 1;
            }
            let item_json = serde_json::to_value(&item.item)?;
            batch.item(ctx.job, ItemResult { seq: item.seq, key: item.key, item: item_json, state, detail }, action);
        }
        batch.finished = !ctx.has_items_after(last).await?;
        Ok(batch)
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        let tally = &job.tally;
        let mut notice = Notice::new()
            .title(&format!("Job {} (purge) {}", job.record.id, state.as_str()))
            .field("purged_count", &tally.purged.to_string())
            .field("method", job.plan.method.as_str())
            .field("status", state.as_str())
            .field("already redacted (by someone, or by this job before a restart)", &tally.already.to_string())
            .field("failed", &tally.failed.to_string());
        if job.plan.media > 0 {
            notice = notice.field("media quarantined", &tally.media_quarantined.to_string());
        }
        let per_room: Vec<String> = tally
            .ways
            .iter()
            .map(|(room, ways)| {
                let ways: Vec<String> = ways.iter().map(|(way, n)| format!("{n} {}", way.as_str())).collect();
                format!("{room}: {}", ways.join(", "))
            })
            .collect();
        let failed = ctx.services.store.job_items_in_state(&job.record.id, ItemState::Failed, 10).await?;
        let problems = failed.iter().map(|i| format!("{}: {}", i.key, i.detail.as_deref().unwrap_or("")));
        notice = notice.line("By room:").list(per_room).list(problems);
        if tally.failed > 10 {
            notice = notice.line(&format!("{}job {} lists every failure.", ctx.services.prefix, job.record.id));
        }
        Ok(notice.line(LOCAL_ONLY))
    }

    async fn ended(&self, ctx: &RunContext<'_>, _job: &TypedJob<Self>) -> anyhow::Result<()> {
        revoke_all(ctx.services, ctx.job).await
    }
}

/// How housekeep may redact in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RoomWay {
    /// The bot has the power (and is a member now).
    Bot,
    /// The bot lacks the power: redact as each local sender.
    AsSender { required: i64 },
    /// The bot could have redacted but could not get in.
    CannotJoin,
}

/// The way in each room of this batch's events: one state read per room.
async fn room_ways(ctx: &RunContext<'_>, items: &[Item<PurgeItem>]) -> anyhow::Result<HashMap<String, RoomWay>> {
    let homeserver = &ctx.services.homeserver;
    let bot = &ctx.services.bot_user_id;
    let mut ways = HashMap::new();
    for item in items {
        let PurgeItem::Event { room_id, .. } = &item.item else { continue };
        if ways.contains_key(room_id) {
            continue;
        }
        let state = homeserver.admin_room_state(room_id).await?;
        let levels = power_levels(&state);
        let joined = state.iter().any(|e| {
            e["type"] == "m.room.member" && e["state_key"] == bot.as_str() && e["content"]["membership"] == "join"
        });
        let way = if !levels.user_can_redact_event_of_other(bot) {
            let required = i64::from(levels.redact)
                .max(i64::from(levels.for_message(ruma::events::MessageLikeEventType::RoomRedaction)));
            RoomWay::AsSender { required }
        } else if joined {
            RoomWay::Bot
        } else {
            match homeserver.admin_join(room_id, bot.as_str()).await {
                Ok(()) => RoomWay::Bot,
                Err(error) => {
                    tracing::info!(room_id, %error, "cannot join the room through the admin API; redacting as the senders");
                    RoomWay::CannotJoin
                }
            }
        };
        ways.insert(room_id.clone(), way);
    }
    Ok(ways)
}

/// One item's outcome; never fails the batch.
async fn apply(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    item: &PurgeItem,
    ways: &HashMap<String, RoomWay>,
    tokens: &Tokens<'_>,
) -> (ItemState, String, Option<Way>) {
    match item {
        PurgeItem::Event { room_id, event_id, sender } => {
            match redact(ctx, job, room_id, event_id, sender, ways, tokens).await {
                Ok(outcome) => outcome,
                Err(error) => (ItemState::Failed, format!("{error:#}"), None),
            }
        }
        PurgeItem::Media { mxc } => {
            let reason = job.plan.reason.as_deref();
            let (state, detail) =
                quarantine::apply(ctx.services, ctx.job.actor(), reason, Action::Quarantine, mxc).await;
            (state, detail, None)
        }
        PurgeItem::History { .. } => (ItemState::Failed, "a history cut comes first in its job".to_owned(), None),
    }
}

async fn redact(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    room_id: &str,
    event_id: &str,
    sender: &str,
    ways: &HashMap<String, RoomWay>,
    tokens: &Tokens<'_>,
) -> anyhow::Result<(ItemState, String, Option<Way>)> {
    let services = ctx.services;
    let local = UserId::parse(sender).is_ok_and(|user| user.server_name().as_str() == services.server_name());
    let (client, way) = match ways.get(room_id) {
        Some(RoomWay::Bot) => (services.homeserver.clone(), Way::RedactedByHousekeep),
        Some(RoomWay::AsSender { .. } | RoomWay::CannotJoin) if local => {
            (tokens.client_for(sender).await?, Way::RedactedAsSender)
        }
        Some(RoomWay::AsSender { required }) => {
            let why = format!("housekeep needs to be a member with power level {required} to redact here");
            return Ok((ItemState::Failed, format!("{why}, and the sender is on another server"), None));
        }
        Some(RoomWay::CannotJoin) => {
            let why = "housekeep could not join this room, and the sender is on another server";
            return Ok((ItemState::Failed, why.to_owned(), None));
        }
        None => anyhow::bail!("no way planned for room {room_id}"),
    };
    // Redacted already, by anyone: the homeserver knows, the index may not.
    if client.is_redacted(room_id, event_id).await? {
        services.store.mark_event_redacted(event_id, now_ms()).await?;
        return Ok((ItemState::Skipped, "already redacted".to_owned(), None));
    }
    let txn_id = format!("housekeep-purge-{}-{}", job.record.id, event_id.trim_start_matches('$'));
    client.redact(room_id, event_id, &txn_id, job.plan.reason.as_deref()).await?;
    services.store.mark_event_redacted(event_id, now_ms()).await?;
    Ok((ItemState::Done, way.as_str().to_owned(), Some(way)))
}

/// A whole room's history before a time, through `purge_history`: started
/// by one batch, polled by the next ones (the slot is not held in a loop).
async fn delete_history(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    item: &Item<PurgeItem>,
    room_id: &str,
    before: i64,
) -> anyhow::Result<Batch<PurgeKind>> {
    let homeserver = &ctx.services.homeserver;
    let Some(purge_id) = &job.cursor.purge_id else {
        let purge_id = homeserver.purge_history(room_id, before).await?;
        let mut batch = Batch::<PurgeKind>::new(PurgeCursor { after: job.cursor.after, purge_id: Some(purge_id) });
        batch.wait = Some(HISTORY_POLL);
        return Ok(batch);
    };
    let (state, detail, forgotten) = match homeserver.purge_history_status(purge_id).await?.as_str() {
        "complete" => {
            let forgotten = ctx.services.store.forget_events_before(room_id, before).await? as i64;
            (ItemState::Done, format!("deleted {forgotten} events from this homeserver (purge_history)"), forgotten)
        }
        "failed" => (ItemState::Failed, "Synapse's purge_history failed".to_owned(), 0),
        _ => {
            let mut batch = Batch::<PurgeKind>::new(job.cursor.clone());
            batch.wait = Some(HISTORY_POLL);
            return Ok(batch);
        }
    };
    let mut batch = Batch::<PurgeKind>::new(PurgeCursor { after: ItemCursor(item.seq), purge_id: None });
    if state == ItemState::Done {
        batch.tally.purged += forgotten;
        batch.tally.ways.entry(room_id.to_owned()).or_default().insert(Way::Deleted, forgotten);
    } else {
        batch.tally.failed += 1;
    }
    let item_json = serde_json::to_value(&item.item)?;
    let result = ItemResult { seq: item.seq, key: item.key.clone(), item: item_json, state, detail };
    batch.item(ctx.job, result, "purge.history");
    batch.finished = !ctx.has_items_after(item.seq).await?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_up_and_stay_bounded() {
        let mut total = PurgeTally::default();
        for room in 0..(MAX_ROOMS_REPORTED + 5) {
            let mut batch = PurgeTally { purged: 2, ..PurgeTally::default() };
            batch.ways.entry(format!("!r{room}")).or_default().insert(Way::RedactedByHousekeep, 2);
            total.add(batch);
        }
        assert_eq!(total.purged, 2 * (MAX_ROOMS_REPORTED as i64 + 5));
        assert_eq!(total.ways.len(), MAX_ROOMS_REPORTED + 1, "the rest summed under one line");
        assert_eq!(total.ways[OTHER_ROOMS][&Way::RedactedByHousekeep], 10);
        let json = serde_json::to_value(&total).unwrap();
        assert_eq!(serde_json::from_value::<PurgeTally>(json).unwrap(), total);
    }
}
