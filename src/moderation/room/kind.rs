//! The `room_takedown` and `room_block` job kinds.
//!
//! A takedown works through its items in order: the room's media first
//! (each quarantined as `!quarantine media` would, whoever uploaded it),
//! then the room, through Synapse's `DELETE /_synapse/admin/v2/rooms/{room}`:
//! one batch starts it, the next ones poll its status (the runner waits
//! between them; the slot is not held in a loop) until it is complete or
//! failed. The delete ID is in the checkpointed cursor, so a restart polls
//! the same delete instead of starting another. In the moment between
//! Synapse's answer and the checkpoint, a restart would lose it: so before
//! starting, the batch asks Synapse for deletes of the room already running
//! and waits for one of those instead (Synapse refuses a second one anyway).
//!
//! Once the delete is complete, what a moderator would check is asked of
//! Synapse: whether the room is blocked, whether it still knows the room
//! (purged), and where each local alias points now.
//!
//! **The index after a takedown.** It keeps the room's rows: a purge
//! erases events and state from Synapse's database but not the media
//! files, and the index is then the only record of which media the room
//! shared (`!quarantine room` still finds them). Forgetting the rows would
//! make that media unfindable; keeping them leaves the index holding events
//! Synapse no longer has, which every job already handles (a `!purge` of
//! them finds them gone and skips them). The plan and the result say so.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::args::{SetBlock, Takedown};
use super::plan::{
    BlockItem, BlockPlan, LOCAL_ONLY, TakedownItem, TakedownPlan, WHY_THE_INDEX_KEEPS, plan_block, plan_takedown,
    room_label,
};
use crate::homeserver::{BlockState, DeleteRoom, DeleteState, DeleteStatus};
use crate::jobs::{Batch, Item, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Tally, TypedJob};
use crate::moderation::quarantine::{self, Action};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobState};
use crate::text::line;

/// Media per batch (one checkpoint each).
const BATCH_SIZE: i64 = 64;
/// How often a running delete is asked about.
const DELETE_POLL: Duration = Duration::from_secs(1);

/// The wait before asking about a running delete again, after `polls`
/// questions: every second for the first minute, every 5 s until ten
/// minutes, then every 30 s.
fn poll_wait(polls: u32) -> Duration {
    match polls {
        0..60 => DELETE_POLL,
        60..168 => Duration::from_secs(5),
        _ => Duration::from_secs(30),
    }
}
/// Users named in a result (the rest are counted).
const USERS_NAMED: usize = 10;
/// Aliases checked after the takedown (a room has a few).
const ALIASES_CHECKED: usize = 20;

/// `!room takedown`.
#[derive(Debug, Default)]
pub struct RoomTakedownKind;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakedownCursor {
    pub after: ItemCursor,
    /// The delete Synapse runs for the room item, once started.
    pub delete_id: Option<String>,
    /// Synapse's last answer about it while it ran, for the progress message.
    pub seen: Option<Seen>,
    /// How often the running delete was asked about: a delete that stays
    /// scheduled or active (Synapse's task workers busy or down) is asked
    /// about less and less often, not every second forever.
    #[serde(default)]
    pub polls: u32,
}

/// A running delete as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub status: DeleteState,
    /// Local members removed so far.
    pub kicked: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakedownTally {
    pub media_quarantined: i64,
    /// Protected media (Synapse keeps serving it), or an mxc URI that is none.
    pub media_skipped: i64,
    pub media_failed: i64,
    /// How the delete ended, and what was checked after.
    pub outcome: Option<TakedownOutcome>,
}

impl Tally for TakedownTally {
    fn add(&mut self, other: Self) {
        self.media_quarantined += other.media_quarantined;
        self.media_skipped += other.media_skipped;
        self.media_failed += other.media_failed;
        if other.outcome.is_some() {
            self.outcome = other.outcome;
        }
    }
}

/// What the takedown did, per Synapse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakedownOutcome {
    pub delete_id: String,
    pub status: DeleteState,
    pub kicked: i64,
    pub kicked_named: Vec<String>,
    pub failed_to_kick: i64,
    pub failed_to_kick_named: Vec<String>,
    /// The room Synapse made for `--message`, where the members and aliases went.
    pub new_room_id: Option<String>,
    /// Each planned alias and where it points now (`None`: deleted).
    pub aliases: Vec<(String, Option<String>)>,
    /// Checked after the delete: on Synapse's block list?
    pub blocked: bool,
    /// Checked after the delete: Synapse no longer knows the room.
    pub gone: bool,
}

#[async_trait]
impl Kind for RoomTakedownKind {
    const NAME: &'static str = "room_takedown";
    const LANE: Lane = Lane::Moderation;
    type Args = Takedown;
    type Plan = TakedownPlan;
    type Cursor = TakedownCursor;
    type Tally = TakedownTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, takedown: &Takedown) -> anyhow::Result<Planned<TakedownPlan>> {
        plan_takedown(ctx, takedown).await
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let items = ctx.next_items::<TakedownItem>(job.cursor.after.0, BATCH_SIZE).await?;
        let Some(first) = items.first() else {
            let mut batch = Batch::<Self>::new(job.cursor.clone());
            batch.finished = true;
            return Ok(batch);
        };
        if let TakedownItem::Room { room_id } = &first.item {
            return take_down(ctx, job, first, room_id).await;
        }
        // The media before the room, a few at a time.
        let media: Vec<(Item<TakedownItem>, String)> = items
            .into_iter()
            .map_while(|item| match &item.item {
                TakedownItem::Media { mxc } => {
                    let mxc = mxc.clone();
                    Some((item, mxc))
                }
                TakedownItem::Room { .. } => None,
            })
            .collect();
        let last = media.last().map_or(job.cursor.after.0, |(item, _)| item.seq);
        let services = ctx.services;
        let (actor, reason) = (ctx.job.actor(), job.plan.reason.as_deref());
        let outcomes: Vec<_> = futures::stream::iter(media)
            .map(|(item, mxc)| async move {
                let outcome = match quarantine::shared_outside_room(services, &mxc, &job.plan.room_id).await {
                    Ok(Some(why)) => Ok((ItemState::Skipped, why)),
                    Ok(None) => quarantine::apply(services, actor, reason, Action::Quarantine, &mxc, None).await,
                    Err(error) => Err(error),
                };
                (item, outcome)
            })
            .buffered(services.homeserver_concurrency)
            .collect()
            .await;
        let mut batch = Batch::<Self>::new(TakedownCursor { after: ItemCursor(last), ..TakedownCursor::default() });
        for (item, outcome) in outcomes {
            // An outage is the batch's error (tried again), not each item's failure.
            let (state, detail) = outcome?;
            match state {
                ItemState::Done => batch.tally.media_quarantined += 1,
                ItemState::Skipped => batch.tally.media_skipped += 1,
                ItemState::Failed => batch.tally.media_failed += 1,
                ItemState::Pending => {}
            }
            let item_json = serde_json::to_value(&item.item)?;
            batch.item(
                ctx.job,
                ItemResult { seq: item.seq, key: item.key, item: item_json, state, detail },
                "room.media",
            );
        }
        batch.finished = !ctx.has_items_after(last).await?;
        Ok(batch)
    }

    fn progress(&self, job: &TypedJob<Self>) -> Notice {
        let (record, plan, tally) = (&job.record, &job.plan, &job.tally);
        let room = room_label(&plan.room_id, plan.name.as_deref());
        let takedown = match (&job.cursor.delete_id, &job.cursor.seen) {
            (None, _) => "not started yet".to_owned(),
            (Some(id), None) => format!("Synapse's delete {id} started"),
            (Some(id), Some(seen)) => format!(
                "Synapse's delete {id} is {}, {} local members removed so far",
                seen.status.as_str(),
                seen.kicked
            ),
        };
        let mut text = format!("Job {} (room takedown) running: takedown of {room}: {takedown}.", record.id);
        if plan.media > 0 {
            let handled = tally.media_quarantined + tally.media_skipped + tally.media_failed;
            text.push_str(&format!(
                " Media first: {handled} of {} handled, {} failed.",
                plan.media, tally.media_failed
            ));
        }
        Notice::new().line(&text)
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        let (plan, tally) = (&job.plan, &job.tally);
        let room = room_label(&plan.room_id, plan.name.as_deref());
        let yes_no = |flag: bool| if flag { "yes" } else { "no" };
        let mut notice = Notice::new()
            .title(&format!("Job {} (room takedown) {}: {room}", job.record.id, state.as_str()))
            .field("status", state.as_str());
        match &tally.outcome {
            Some(outcome) => {
                let named = |n: i64, names: &[String]| match names.is_empty() {
                    true => n.to_string(),
                    false => format!("{n} ({}{})", names.join(", "), if n > names.len() as i64 { ", …" } else { "" }),
                };
                notice = notice
                    .field("Synapse's delete", &format!("{} ({})", outcome.status.as_str(), outcome.delete_id))
                    .field("local members removed", &named(outcome.kicked, &outcome.kicked_named))
                    .field("could not be removed", &named(outcome.failed_to_kick, &outcome.failed_to_kick_named));
                let aliases: Vec<String> = outcome
                    .aliases
                    .iter()
                    .map(|(alias, now)| match now {
                        None => format!("{alias} removed"),
                        Some(room) if *room == plan.room_id => format!("{alias} still points at the room"),
                        Some(room) => format!("{alias} now points at {room}"),
                    })
                    .collect();
                notice =
                    notice.field("aliases", &if aliases.is_empty() { "none".to_owned() } else { aliases.join(", ") });
                if let Some(new_room) = &outcome.new_room_id {
                    notice = notice.field("message posted in", new_room);
                }
                notice = notice
                    .field("blocked", &format!("{} (Synapse's block list, checked after)", yes_no(outcome.blocked)))
                    .field(
                        "purged",
                        &format!(
                            "{} ({})",
                            yes_no(outcome.gone),
                            if outcome.gone {
                                "Synapse no longer knows the room"
                            } else {
                                "Synapse still has the room"
                            }
                        ),
                    );
                if outcome.status == DeleteState::Failed && plan.purge && outcome.failed_to_kick > 0 {
                    notice = notice.line(
                        "Synapse purges a room only once every local member is out: remove those above, then \
                         take the room down again (Synapse cannot remove a suspended member: !unsuspend them \
                         first, and suspend them again after).",
                    );
                }
            }
            None => {
                let failed = ctx.services.store.job_items_in_state(&job.record.id, ItemState::Failed, 5).await?;
                let refused =
                    failed.iter().find(|item| item.key.starts_with("room:")).and_then(|item| item.detail.clone());
                let why = match (refused, &job.cursor.delete_id) {
                    (Some(refused), _) => refused,
                    // Cancelled (or failed) while Synapse was at it: the delete goes on without housekeep.
                    (None, Some(id)) => format!(
                        "Synapse's delete {id} was started and goes on; GET /_synapse/admin/v2/rooms/delete_status/{id} \
                         tells how it ends"
                    ),
                    (None, None) if !plan.known && !plan.block => {
                        "nothing to do: this homeserver does not know the room".to_owned()
                    }
                    (None, None) => "not started".to_owned(),
                };
                notice = notice.field("takedown", &why);
            }
        }
        if plan.media > 0 {
            notice = notice.field(
                "media quarantined",
                &format!(
                    "{} of {} ({} left alone, {} failed)",
                    tally.media_quarantined, plan.media, tally.media_skipped, tally.media_failed
                ),
            );
        }
        if plan.purge && tally.outcome.as_ref().is_some_and(|outcome| outcome.gone) {
            notice = notice.line(&format!(
                "housekeep's index keeps the room's {} timeline events (and its state) and their media references: \
                 {WHY_THE_INDEX_KEEPS}",
                plan.indexed_events
            ));
        }
        notice =
            notice.line(&format!("{}job {} lists every item and its outcome.", ctx.services.prefix, job.record.id));
        Ok(notice.line(LOCAL_ONLY))
    }
}

/// The room item: start Synapse's delete, or ask how it goes, or, once it
/// has ended, check what it left and record the item.
async fn take_down(
    ctx: &RunContext<'_>,
    job: &TypedJob<RoomTakedownKind>,
    item: &Item<TakedownItem>,
    room_id: &str,
) -> anyhow::Result<Batch<RoomTakedownKind>> {
    let homeserver = &ctx.services.homeserver;
    let waiting = |cursor: TakedownCursor| {
        let wait = poll_wait(cursor.polls);
        let mut batch = Batch::<RoomTakedownKind>::new(cursor);
        batch.wait = Some(wait);
        batch
    };
    let Some(delete_id) = &job.cursor.delete_id else {
        let (delete_id, how) = match start_delete(ctx, job, room_id).await? {
            Ok(started) => started,
            Err(refusal) => return finish(ctx, job, item, ItemState::Failed, refusal, None).await,
        };
        let mut batch = waiting(TakedownCursor { delete_id: Some(delete_id.clone()), ..job.cursor.clone() });
        batch.audit.push(ctx.audit("room.delete", Some(room_id.to_owned()), format!("{how}: delete {delete_id}")));
        return Ok(batch);
    };
    let Some(status) = homeserver.delete_room_status(delete_id).await? else {
        let detail = format!("Synapse has no record of delete {delete_id} (it forgets finished ones after a week)");
        return finish(ctx, job, item, ItemState::Failed, detail, None).await;
    };
    let kicked = status.shutdown_room.as_ref().map_or(0, |done| done.kicked_users.len() as i64);
    if status.status.is_running() {
        return Ok(waiting(TakedownCursor {
            seen: Some(Seen { status: status.status, kicked }),
            polls: job.cursor.polls.saturating_add(1),
            ..job.cursor.clone()
        }));
    }
    let outcome = check_after(ctx, job, status).await?;
    let (state, detail) = match outcome.status {
        DeleteState::Complete => (
            ItemState::Done,
            format!(
                "taken down: {} local members removed, {} not; blocked: {}; purged: {}",
                outcome.kicked, outcome.failed_to_kick, outcome.blocked, outcome.gone
            ),
        ),
        other => (ItemState::Failed, format!("Synapse's delete {delete_id} {} (its log says why)", other.as_str())),
    };
    finish(ctx, job, item, state, detail, Some(outcome)).await
}

/// Starts Synapse's delete of the room, or finds one running already: its
/// ID and how it was found; or Synapse's refusal. A running one is this
/// job's own when a restart lost Synapse's answer, or when the client's
/// resend of a request whose answer was lost made Synapse refuse a second
/// delete; or someone else's (the result then says what it did).
async fn start_delete(
    ctx: &RunContext<'_>,
    job: &TypedJob<RoomTakedownKind>,
    room_id: &str,
) -> anyhow::Result<Result<(String, &'static str), String>> {
    let homeserver = &ctx.services.homeserver;
    if let Some(running) = running_delete(ctx, room_id).await? {
        return Ok(Ok((running, "a delete of the room already running, waited for")));
    }
    let delete = DeleteRoom {
        block: job.plan.block,
        purge: job.plan.purge,
        // Synapse posts a message only in a room a local user makes for it.
        new_room_user_id: job.plan.message.as_ref().map(|_| ctx.services.bot_user_id.clone()),
        message: job.plan.message.clone(),
    };
    match homeserver.delete_room(room_id, &delete).await {
        Ok(delete_id) => Ok(Ok((delete_id, "started"))),
        Err(error) => {
            let (_, refusal) = quarantine::refused_or_retry(error)?;
            Ok(match running_delete(ctx, room_id).await? {
                Some(running) => Ok((running, "started (Synapse refused a resend of the request)")),
                None => Err(format!("Synapse refused the delete: {refusal}")),
            })
        }
    }
}

/// A delete of the room Synapse is running now, if any.
async fn running_delete(ctx: &RunContext<'_>, room_id: &str) -> anyhow::Result<Option<String>> {
    let deletes = ctx.services.homeserver.room_deletes(room_id).await?;
    Ok(deletes.into_iter().find(|delete| delete.status.is_running()).map(|delete| delete.delete_id))
}

/// What a moderator would check once the delete has ended, asked of Synapse.
async fn check_after(
    ctx: &RunContext<'_>,
    job: &TypedJob<RoomTakedownKind>,
    status: DeleteStatus,
) -> anyhow::Result<TakedownOutcome> {
    let homeserver = &ctx.services.homeserver;
    let room_id = job.plan.room_id.as_str();
    let done = status.shutdown_room.unwrap_or_default();
    let names = |users: &[ruma::OwnedUserId]| users.iter().take(USERS_NAMED).map(ToString::to_string).collect();
    let mut aliases = Vec::new();
    for alias in job.plan.aliases.iter().take(ALIASES_CHECKED) {
        let now = match homeserver.resolve_room(alias).await {
            Ok(room) => Some(room.to_string()),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => None,
            Err(error) => return Err(error.into()),
        };
        aliases.push((alias.clone(), now));
    }
    Ok(TakedownOutcome {
        delete_id: status.delete_id,
        status: status.status,
        kicked: done.kicked_users.len() as i64,
        kicked_named: names(&done.kicked_users),
        failed_to_kick: done.failed_to_kick_users.len() as i64,
        failed_to_kick_named: names(&done.failed_to_kick_users),
        new_room_id: done.new_room_id.map(|room| room.to_string()),
        aliases,
        blocked: homeserver.room_block(room_id).await?.block,
        gone: homeserver.room_details(room_id).await?.is_none(),
    })
}

/// Records the room item (the job's last) and ends the job.
async fn finish(
    ctx: &RunContext<'_>,
    job: &TypedJob<RoomTakedownKind>,
    item: &Item<TakedownItem>,
    state: ItemState,
    detail: String,
    outcome: Option<TakedownOutcome>,
) -> anyhow::Result<Batch<RoomTakedownKind>> {
    let mut batch =
        Batch::<RoomTakedownKind>::new(TakedownCursor { after: ItemCursor(item.seq), ..job.cursor.clone() });
    batch.tally.outcome = outcome;
    let item_json = serde_json::to_value(&item.item)?;
    let result = ItemResult { seq: item.seq, key: item.key.clone(), item: item_json, state, detail };
    batch.item(ctx.job, result, "room.takedown");
    batch.finished = !ctx.has_items_after(item.seq).await?;
    Ok(batch)
}

/// `!room block` and `!room unblock`.
#[derive(Debug, Default)]
pub struct RoomBlockKind;

/// The room's block state after the job, per Synapse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTally {
    pub after: Option<BlockState>,
}

impl Tally for BlockTally {
    fn add(&mut self, other: Self) {
        if other.after.is_some() {
            self.after = other.after;
        }
    }
}

#[async_trait]
impl Kind for RoomBlockKind {
    const NAME: &'static str = "room_block";
    const LANE: Lane = Lane::Moderation;
    type Args = SetBlock;
    type Plan = BlockPlan;
    type Cursor = ItemCursor;
    type Tally = BlockTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, set: &SetBlock) -> anyhow::Result<Planned<BlockPlan>> {
        plan_block(ctx, set).await
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let items = ctx.next_items::<BlockItem>(job.cursor.0, 1).await?;
        let Some(item) = items.into_iter().next() else {
            let mut batch = Batch::<Self>::new(job.cursor);
            batch.finished = true;
            return Ok(batch);
        };
        let homeserver = &ctx.services.homeserver;
        let BlockItem { room_id, block } = &item.item;
        let mut batch = Batch::<Self>::new(ItemCursor(item.seq));
        let (state, detail) = match homeserver.set_room_block(room_id, *block).await {
            Ok(()) => {
                // PUT and GET are idempotent: a batch redone after a crash is harmless.
                let after = homeserver.room_block(room_id).await?;
                let state = if after.block == *block { ItemState::Done } else { ItemState::Failed };
                let detail = match &after.user_id {
                    Some(by) => format!("Synapse says: blocked, by {by}"),
                    None if after.block => "Synapse says: blocked".to_owned(),
                    None => "Synapse says: not blocked".to_owned(),
                };
                batch.tally.after = Some(after);
                (state, detail)
            }
            Err(error) => quarantine::refused_or_retry(error)?,
        };
        let action = if *block { "room.block" } else { "room.unblock" };
        let item_json = serde_json::to_value(&item.item)?;
        batch.item(ctx.job, ItemResult { seq: item.seq, key: item.key, item: item_json, state, detail }, action);
        batch.finished = !ctx.has_items_after(item.seq).await?;
        Ok(batch)
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        let plan = &job.plan;
        let verb = if plan.block { "block" } else { "unblock" };
        let room = room_label(&plan.room_id, plan.name.as_deref());
        let mut notice = Notice::new()
            .title(&format!("Job {} (room {verb}) {}: {room}", job.record.id, state.as_str()))
            .field("status", state.as_str());
        notice = match &job.tally.after {
            Some(after) => {
                let by = after.user_id.as_deref().map(|by| format!(", by {}", line(by))).unwrap_or_default();
                notice.field(
                    "blocked",
                    &format!("{}{by} (Synapse's block list, checked after)", if after.block { "yes" } else { "no" }),
                )
            }
            None => {
                let failed = ctx.services.store.job_items_in_state(&job.record.id, ItemState::Failed, 1).await?;
                let why =
                    failed.first().and_then(|item| item.detail.clone()).unwrap_or_else(|| "not reached".to_owned());
                notice.field("failed", &why)
            }
        };
        Ok(notice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_that_stays_running_is_asked_about_less_and_less_often() {
        assert_eq!(poll_wait(0), DELETE_POLL);
        assert_eq!(poll_wait(59), DELETE_POLL);
        assert_eq!(poll_wait(60), Duration::from_secs(5));
        // Ten minutes in: 60 × 1 s + 108 × 5 s.
        assert_eq!(poll_wait(168), Duration::from_secs(30));
        assert_eq!(poll_wait(u32::MAX), Duration::from_secs(30));
        let old: TakedownCursor = serde_json::from_value(serde_json::json!({"after": 3, "delete_id": "d"})).unwrap();
        assert_eq!(old.polls, 0, "a cursor stored before the count reads as no questions yet");
    }

    fn outcome(kicked: i64) -> TakedownOutcome {
        TakedownOutcome {
            delete_id: "d".into(),
            status: DeleteState::Complete,
            kicked,
            kicked_named: vec![],
            failed_to_kick: 0,
            failed_to_kick_named: vec![],
            new_room_id: None,
            aliases: vec![("#a:hs".into(), None)],
            blocked: true,
            gone: true,
        }
    }

    #[test]
    fn media_counts_add_up_and_the_takedown_outcome_is_kept() {
        let mut total = TakedownTally::default();
        total.add(TakedownTally { media_quarantined: 3, media_skipped: 1, ..TakedownTally::default() });
        total.add(TakedownTally {
            media_quarantined: 2,
            media_failed: 1,
            outcome: Some(outcome(4)),
            ..Default::default()
        });
        total.add(TakedownTally::default());
        assert_eq!((total.media_quarantined, total.media_skipped, total.media_failed), (5, 1, 1));
        assert_eq!(total.outcome, Some(outcome(4)), "a later batch without one does not erase it");
        let json = serde_json::to_value(&total).unwrap();
        assert_eq!(serde_json::from_value::<TakedownTally>(json).unwrap(), total);
    }

    #[test]
    fn a_cursor_keeps_the_delete_across_restarts() {
        let cursor = TakedownCursor {
            after: ItemCursor(7),
            delete_id: Some("abc".into()),
            seen: Some(Seen { status: DeleteState::Active, kicked: 2 }),
            polls: 12,
        };
        let json = serde_json::to_value(&cursor).unwrap();
        assert_eq!(json["delete_id"], "abc");
        assert_eq!(serde_json::from_value::<TakedownCursor>(json).unwrap(), cursor);
        assert_eq!(TakedownCursor::default().after, ItemCursor(-1), "before the first item");
    }
}
