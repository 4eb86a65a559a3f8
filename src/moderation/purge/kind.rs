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
//! redacted already, by anyone: for every event of a run's first batch (this
//! job may have redacted it just before a restart), then for those the index
//! knows a redaction of (the live index sees redactions within
//! milliseconds), so most events cost one homeserver call, not two.
//!
//! Synapse's user-redact API is not used: it redacts every event of the user
//! in a time window (their joins too) and redacts again on a rerun.
//! `delete` uses `purge_history`, which can only cut a room's history before
//! a time; the plan turns any other selection into redactions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ruma::UserId;
use serde::{Deserialize, Serialize};

use super::args::PurgeArgs;
use super::plan::{LOCAL_ONLY, PurgeItem, PurgePlan, plan};
use super::tokens::{Tokens, revoke_all};
use crate::clock::now_ms;
use crate::homeserver::HsError;
use crate::homeserver::power::power_levels;
use crate::jobs::{Batch, Item, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Tally, TypedJob};
use crate::moderation::quarantine::{self, Action};
use crate::notice::Notice;
use crate::store::{EventFilter, ItemResult, ItemState, JobState};

/// Items per batch (one checkpoint each): enough to keep
/// `jobs.homeserver_concurrency` calls in flight most of the batch.
const BATCH_SIZE: i64 = 64;
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
    /// After a history cut: selected events Synapse did not delete.
    #[serde(default)]
    pub kept: i64,
    /// Per room, how many events went which way.
    pub ways: BTreeMap<String, BTreeMap<Way, i64>>,
}

impl Tally for PurgeTally {
    fn add(&mut self, other: Self) {
        self.purged += other.purged;
        self.already += other.already;
        self.media_quarantined += other.media_quarantined;
        self.failed += other.failed;
        self.kept += other.kept;
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
    /// After a `purge_history`: how far the selection has been checked
    /// against the homeserver, event by event.
    #[serde(default)]
    pub verify: Option<Verify>,
}

/// Which selected events Synapse deleted, found by asking it about each:
/// it cuts by its own order of the room, the index selected by sent time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    /// The last event checked (time, ID).
    pub after: Option<(i64, String)>,
    pub deleted: i64,
    pub kept: i64,
}

#[derive(Debug, Default)]
pub struct PurgeKind {
    /// Per job, how housekeep may redact in each room, looked up once per
    /// run (again after a refusal), not for every batch.
    ways: std::sync::Mutex<HashMap<String, HashMap<String, RoomWay>>>,
}

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
            && let PurgeItem::History { room_id, cut_event_id } = &first.item
        {
            return delete_history(ctx, job, first, room_id, cut_event_id).await;
        }
        // The first batch of a run asks the homeserver about every event
        // (this job may have redacted some just before a restart); later
        // ones only about those the index knows may be redacted already:
        // one homeserver call per event instead of two.
        let first_of_run = !self.ways.lock().expect("not poisoned").contains_key(&job.record.id);
        let events: Vec<String> = items
            .iter()
            .filter_map(|i| match &i.item {
                PurgeItem::Event { event_id, .. } => Some(event_id.clone()),
                _ => None,
            })
            .collect();
        let ask = if first_of_run {
            events.into_iter().collect()
        } else {
            ctx.services.store.maybe_redacted(&events).await?
        };
        let ways = self.room_ways(ctx, &items).await?;
        let tokens = Tokens::load(ctx.services, ctx.job).await?;
        let means = &Means { ways, tokens, ask };
        let outcomes: Vec<_> = futures::stream::iter(items)
            .map(|item| async move {
                let outcome = apply(ctx, job, &item.item, means).await;
                (item, outcome)
            })
            .buffered(ctx.services.homeserver_concurrency)
            .collect()
            .await;
        if outcomes.iter().any(|(_, outcome)| outcome.is_err()) {
            // The retry is a first batch again: it asks about every event,
            // since some may have been redacted before the error.
            self.ways.lock().expect("not poisoned").remove(&job.record.id);
        }
        let mut batch = Batch::<PurgeKind>::new(PurgeCursor { after: ItemCursor(last), ..PurgeCursor::default() });
        for (item, outcome) in outcomes {
            // An outage is the batch's error (tried again, the job paused
            // if it lasts), not a failure of every item it reached.
            let (state, detail, way) = outcome?;
            if state == ItemState::Failed && way.is_none() && detail.starts_with(REFUSED) {
                self.forget_way(&job.record.id, item.item.room());
            }
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
        let notice = Notice::new().title(&format!("Job {} (purge) {}", job.record.id, state.as_str()));
        report(ctx, job, state, notice).await
    }

    async fn ended(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<()> {
        self.ways.lock().expect("not poisoned").remove(&job.record.id);
        // Tokens first: they matter more than the bookkeeping below.
        revoke_all(ctx.services, ctx.job).await?;
        // A reported event this job redacted or deleted: its report is handled.
        let store = &ctx.services.store;
        let handled = store.mark_reports_handled_by_job(&job.record.id, job.record.actor(), now_ms()).await?;
        if handled > 0 {
            tracing::info!(job = job.record.id, handled, "event reports handled by the purge of their events");
        }
        Ok(())
    }
}

/// What a purge did, after the result's title: counts, ways per room, the
/// first failures.
pub(crate) async fn report(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    state: JobState,
    notice: Notice,
) -> anyhow::Result<Notice> {
    let tally = &job.tally;
    let mut notice = notice
        .field("purged_count", &tally.purged.to_string())
        .field("method", job.plan.method.as_str())
        .field("status", state.as_str())
        .field("already redacted (by someone, or by this job before a restart)", &tally.already.to_string())
        .field("failed", &tally.failed.to_string());
    if job.plan.media > 0 {
        notice = notice.field("media quarantined", &tally.media_quarantined.to_string());
    }
    if tally.kept > 0 {
        notice = notice.field(KEPT, &tally.kept.to_string());
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
    let store = &ctx.services.store;
    let left_alone = store.job_items_in_state_with_prefix(&job.record.id, ItemState::Skipped, "mxc://", 5).await?;
    if !left_alone.is_empty() {
        let why = left_alone.iter().map(|i| format!("{}: {}", i.key, i.detail.as_deref().unwrap_or("")));
        notice = notice.line("Media left alone:").list(why);
    }
    if tally.failed > 10 {
        notice = notice.line(&format!("{}job {} lists every failure.", ctx.services.prefix, job.record.id));
    }
    Ok(notice.line(LOCAL_ONLY))
}

/// An item's detail when the homeserver refused a redaction: the room's way
/// is looked up again for the next batch (the power levels may have changed).
const REFUSED: &str = "refused: ";

impl PurgeKind {
    /// The way in each room of this batch's events: one state read per
    /// room and run of the job.
    async fn room_ways(
        &self,
        ctx: &RunContext<'_>,
        items: &[Item<PurgeItem>],
    ) -> anyhow::Result<HashMap<String, RoomWay>> {
        let job_id = &ctx.job.id;
        let mut ways = self.ways.lock().expect("not poisoned").get(job_id).cloned().unwrap_or_default();
        let mut new_rooms: Vec<String> = items
            .iter()
            .filter_map(|item| item.item.room())
            .filter(|room_id| !ways.contains_key(*room_id))
            .map(str::to_owned)
            .collect();
        new_rooms.sort_unstable();
        new_rooms.dedup();
        // A user's events spread over many rooms: their state reads and the
        // bot's joins go side by side (about 50 ms a room one by one).
        let found: Vec<_> = futures::stream::iter(new_rooms)
            .map(|room_id: String| async move {
                let way = room_way(ctx, &room_id).await;
                (room_id, way)
            })
            .buffered(ctx.services.homeserver_concurrency.max(1))
            .collect()
            .await;
        for (room_id, way) in found {
            ways.insert(room_id, way?);
        }
        self.ways.lock().expect("not poisoned").insert(job_id.clone(), ways.clone());
        Ok(ways)
    }

    fn forget_way(&self, job_id: &str, room_id: Option<&str>) {
        if let (Some(rooms), Some(room_id)) = (self.ways.lock().expect("not poisoned").get_mut(job_id), room_id) {
            rooms.remove(room_id);
        }
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
    /// The homeserver would not show the room (it may have been deleted):
    /// its events fail, the rest of the job goes on.
    Unknown(String),
}

/// One room's way, from its state. An outage is an error (the batch is
/// tried again); a refusal fails only this room's events.
async fn room_way(ctx: &RunContext<'_>, room_id: &str) -> anyhow::Result<RoomWay> {
    let homeserver = &ctx.services.homeserver;
    let bot = &ctx.services.bot_user_id;
    let state = match homeserver.admin_room_state(room_id).await {
        Ok(state) => state,
        Err(error) if error.is_retryable() => return Err(error.into()),
        Err(error) => return Ok(RoomWay::Unknown(format!("cannot read the room's state: {error}"))),
    };
    let levels = power_levels(&state);
    let joined = state.iter().any(|e| {
        e["type"] == "m.room.member" && e["state_key"] == bot.as_str() && e["content"]["membership"] == "join"
    });
    Ok(if !levels.user_can_redact_event_of_other(bot) {
        let required = i64::from(levels.redact)
            .max(i64::from(levels.for_message(ruma::events::MessageLikeEventType::RoomRedaction)));
        RoomWay::AsSender { required }
    } else if joined {
        RoomWay::Bot
    } else {
        match homeserver.admin_join(room_id, bot.as_str()).await {
            Ok(()) => RoomWay::Bot,
            Err(error) if error.is_retryable() => return Err(error.into()),
            Err(error) => {
                tracing::info!(room_id, %error, "cannot join the room through the admin API; redacting as the senders");
                RoomWay::CannotJoin
            }
        }
    })
}

/// What a batch settles before its items: each room's way, the senders'
/// tokens, and which events to ask the homeserver about first.
struct Means<'a> {
    ways: HashMap<String, RoomWay>,
    tokens: Tokens<'a>,
    ask: HashSet<String>,
}

/// One item's outcome. A refusal by the homeserver is the item's outcome;
/// an outage (the client's retries spent) is an error.
async fn apply(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    item: &PurgeItem,
    means: &Means<'_>,
) -> anyhow::Result<(ItemState, String, Option<Way>)> {
    match item {
        PurgeItem::Event { room_id, event_id, sender } => {
            match redact(ctx, job, room_id, event_id, sender, means).await {
                Ok(outcome) => Ok(outcome),
                Err(error) => match error.downcast_ref::<HsError>() {
                    Some(hs) if hs.is_retryable() => Err(error),
                    Some(_) => Ok((ItemState::Failed, format!("{REFUSED}{error:#}"), None)),
                    None => Ok((ItemState::Failed, format!("{error:#}"), None)),
                },
            }
        }
        PurgeItem::Media { mxc, owners } => {
            let reason = job.plan.reason.as_deref();
            let owners = owners.as_deref();
            let (state, detail) =
                quarantine::apply(ctx.services, ctx.job.actor(), reason, Action::Quarantine, mxc, owners).await?;
            Ok((state, detail, None))
        }
        PurgeItem::History { .. } => Ok((ItemState::Failed, "a history cut comes first in its job".to_owned(), None)),
    }
}

async fn redact(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    room_id: &str,
    event_id: &str,
    sender: &str,
    means: &Means<'_>,
) -> anyhow::Result<(ItemState, String, Option<Way>)> {
    let services = ctx.services;
    let ask = means.ask.contains(event_id);
    let local = is_local(sender, services.server_name());
    let (client, way) = match means.ways.get(room_id) {
        Some(RoomWay::Unknown(why)) => return Ok((ItemState::Failed, why.clone(), None)),
        Some(RoomWay::Bot) => (services.homeserver.clone(), Way::RedactedByHousekeep),
        Some(RoomWay::AsSender { .. } | RoomWay::CannotJoin) if local => {
            (means.tokens.client_for(sender).await?, Way::RedactedAsSender)
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
    // Redacted already, by anyone: the homeserver knows for sure. Asked
    // through the admin API: the bot, just joined, may not be allowed to
    // see the room's earlier history.
    let served = if ask { services.homeserver.served_redacted(room_id, event_id).await? } else { Some(false) };
    match served {
        Some(true) => {
            services.store.mark_event_redacted(event_id, now_ms()).await?;
            return Ok((ItemState::Skipped, "already redacted".to_owned(), None));
        }
        Some(false) => {}
        None => return Ok((ItemState::Skipped, GONE.to_owned(), None)),
    }
    let txn_id = format!("housekeep-purge-{}-{}", job.record.id, event_id.trim_start_matches('$'));
    if let Err(error) = client.redact(room_id, event_id, &txn_id, job.plan.reason.as_deref()).await {
        if !ask
            && error.errcode() == Some("M_NOT_FOUND")
            && services.homeserver.served_redacted(room_id, event_id).await?.is_none()
        {
            return Ok((ItemState::Skipped, GONE.to_owned(), None));
        }
        return Err(error.into());
    }
    services.store.mark_event_redacted(event_id, now_ms()).await?;
    Ok((ItemState::Done, way.as_str().to_owned(), Some(way)))
}

/// An item's detail when the event is gone from the homeserver.
const GONE: &str = "the homeserver no longer has this event";

/// Whether `sender` is a user of the homeserver named `server_name`, by the
/// whole server name (which may carry a port: `example.org:8448`).
fn is_local(sender: &str, server_name: &str) -> bool {
    UserId::parse(sender).is_ok_and(|user| user.server_name().as_str() == server_name)
}

/// How the result names what a history cut left.
const KEPT: &str = "selected events Synapse kept (it cuts by the room's order, and their sent time says \
     otherwise, or one is the room's newest): they stay in the index";
/// Events checked against the homeserver per batch after a history cut.
const VERIFY_PAGE: i64 = 200;

/// A room's history before an event, through `purge_history`: started by
/// one batch, polled by the next ones (the slot is not held in a loop),
/// then the selection is checked a page per batch: the index forgets only
/// the events the homeserver no longer has.
async fn delete_history(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    item: &Item<PurgeItem>,
    room_id: &str,
    cut_event_id: &str,
) -> anyhow::Result<Batch<PurgeKind>> {
    let homeserver = &ctx.services.homeserver;
    let waiting = |cursor: PurgeCursor, wait: Duration| {
        let mut batch = Batch::<PurgeKind>::new(cursor);
        batch.wait = Some(wait);
        Ok(batch)
    };
    if let Some(verify) = &job.cursor.verify {
        return verify_deleted(ctx, job, item, room_id, verify).await;
    }
    let Some(purge_id) = &job.cursor.purge_id else {
        let purge_id = homeserver.purge_history(room_id, cut_event_id).await?;
        return waiting(PurgeCursor { purge_id: Some(purge_id), ..job.cursor.clone() }, HISTORY_POLL);
    };
    match homeserver.purge_history_status(purge_id).await?.as_str() {
        "complete" => waiting(
            PurgeCursor { after: job.cursor.after, purge_id: None, verify: Some(Verify::default()) },
            Duration::ZERO,
        ),
        "failed" => {
            let mut batch =
                Batch::<PurgeKind>::new(PurgeCursor { after: ItemCursor(item.seq), ..PurgeCursor::default() });
            batch.tally.failed += 1;
            let detail = "Synapse's purge_history failed (its log says why)".to_owned();
            finish_history_item(ctx, &mut batch, item, ItemState::Failed, detail).await?;
            Ok(batch)
        }
        _ => waiting(job.cursor.clone(), HISTORY_POLL),
    }
}

async fn verify_deleted(
    ctx: &RunContext<'_>,
    job: &TypedJob<PurgeKind>,
    item: &Item<PurgeItem>,
    room_id: &str,
    verify: &Verify,
) -> anyhow::Result<Batch<PurgeKind>> {
    let services = ctx.services;
    let before = job.plan.history_cut.as_ref().map(|cut| cut.before);
    let filter =
        EventFilter { room_id: Some(room_id.to_owned()), before, include_redacted: true, ..EventFilter::default() };
    let page = services.store.selected_events_page(&filter, verify.after.as_ref(), VERIFY_PAGE).await?;
    let ids: Vec<String> = page.iter().map(|e| e.event_id.clone()).collect();
    let answers: Vec<_> = futures::stream::iter(ids)
        .map(|event_id| async move { services.homeserver.admin_event(room_id, &event_id).await })
        .buffered(services.homeserver_concurrency)
        .collect()
        .await;
    let mut gone = Vec::new();
    for (event, answer) in page.iter().zip(answers) {
        if answer?.is_none() {
            gone.push(event.event_id.clone());
        }
    }
    let forgotten = services.store.forget_events(&gone).await? as i64;
    let mut verify = Verify {
        after: page.last().map(|e| (e.origin_server_ts, e.event_id.clone())).or(verify.after.clone()),
        deleted: verify.deleted + forgotten,
        kept: verify.kept + (page.len() - gone.len()) as i64,
    };
    let mut batch = Batch::<PurgeKind>::new(job.cursor.clone());
    batch.tally.purged += forgotten;
    batch.tally.kept += (page.len() - gone.len()) as i64;
    if forgotten > 0 {
        batch.tally.ways.entry(room_id.to_owned()).or_default().insert(Way::Deleted, forgotten);
    }
    if page.len() as i64 == VERIFY_PAGE {
        batch.cursor.verify = Some(std::mem::take(&mut verify));
        return Ok(batch);
    }
    let mut detail = format!("deleted {} events from this homeserver (purge_history)", verify.deleted);
    if verify.kept > 0 {
        detail.push_str(&format!("; {KEPT}: {}", verify.kept));
    }
    batch.cursor = PurgeCursor { after: ItemCursor(item.seq), ..PurgeCursor::default() };
    finish_history_item(ctx, &mut batch, item, ItemState::Done, detail).await?;
    Ok(batch)
}

async fn finish_history_item(
    ctx: &RunContext<'_>,
    batch: &mut Batch<PurgeKind>,
    item: &Item<PurgeItem>,
    state: ItemState,
    detail: String,
) -> anyhow::Result<()> {
    let item_json = serde_json::to_value(&item.item)?;
    let result = ItemResult { seq: item.seq, key: item.key.clone(), item: item_json, state, detail };
    batch.item(ctx.job, result, "purge.history");
    batch.finished = !ctx.has_items_after(item.seq).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_senders_are_told_by_the_whole_server_name() {
        assert!(is_local("@spam:example.org", "example.org"));
        assert!(is_local("@spam:example.org:8448", "example.org:8448"));
        // The last ':' is not the server name's start: a port is part of it.
        assert!(!is_local("@spam:example.org:8448", "8448"));
        assert!(!is_local("@spam:example.org:8448", "example.org"));
        assert!(!is_local("@spam:evil.example", "example.org"));
        assert!(!is_local("not a user id", "example.org"));
    }

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
