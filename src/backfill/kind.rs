//! The `backfill` job kind: each room's history, newest first, through
//! Synapse's admin messages API, a chunk at a time; each chunk's media
//! downloaded and hashed before the chunk's checkpoint commits.
//!
//! A room's walk ends at its creation (the walk met its `m.room.create`),
//! where the homeserver's history of it starts (a room joined over
//! federation mid-history: not complete, read again next time), at
//! `--since`, at the page limit, or — unless `--full` — at a page made only
//! of events the index already holds, when the index is known to hold the
//! room's history below it (a backfill read it down to its creation before).
//! Live events alone are no such boundary: they say nothing about what came
//! before them. A gap repair (a transaction the homeserver never delivered)
//! reads past live events until it found what was missing.
//!
//! Up to `backfill.parallel_rooms` rooms are walked side by side: a batch
//! reads one chunk of each at once, so a server of many small rooms is not
//! read one round trip at a time, and the homeserver never has more than
//! that many of this job's room reads in flight.
//!
//! Every walk's pagination token is in the job's cursor, committed with each
//! batch: after a restart each walk goes on from its last chunk, and a
//! finished room is not read again. A room is done when its walk ends:
//! downloads that failed stay in the media queue, retried by the media
//! worker (with backoff, up to `media.max_attempts`), so one room of dead
//! links never holds up the other rooms; a room the homeserver refuses is
//! failed and its place goes to the next room.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{BackfillItem, BackfillPlan, BackfillRequest, BackfillSettings, plan};
use crate::clock::format_ms;
use crate::extract::extract_value;
use crate::jobs::{Batch, Item, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Tally, TypedJob};
use crate::media::{FetchCounts, MediaFetcher};
use crate::metrics::{RejectReason, WalkLabel};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobItem, JobState, Source};

/// Events asked for per page at most (Synapse's most), whatever the
/// settings say: a page of 1,000 events of up to 64 KiB is already 64 MiB.
const MAX_PAGE_EVENTS: u32 = 1000;
/// Recent pagination tokens kept to notice a walk that loops.
const RECENT_TOKENS: usize = 16;
/// Events a gap repair reads at most per room (in pages of
/// `backfill.page_events`, so that smaller pages do not make it shorter).
const GAP_REPAIR_EVENTS: u32 = 20_000;

/// Running totals of a backfill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillTally {
    pub rooms_done: i64,
    pub rooms_failed: i64,
    pub events: i64,
    pub events_new: i64,
    pub pages: i64,
    pub media_fetched: i64,
    pub media_failed: i64,
    pub media_abandoned: i64,
    pub media_unavailable: i64,
    pub media_stalled: i64,
}

impl Tally for BackfillTally {
    fn add(&mut self, o: Self) {
        self.rooms_done += o.rooms_done;
        self.rooms_failed += o.rooms_failed;
        self.events += o.events;
        self.events_new += o.events_new;
        self.pages += o.pages;
        self.media_fetched += o.media_fetched;
        self.media_failed += o.media_failed;
        self.media_abandoned += o.media_abandoned;
        self.media_unavailable += o.media_unavailable;
        self.media_stalled += o.media_stalled;
    }
}

impl BackfillTally {
    fn media(&mut self, counts: FetchCounts) {
        self.media_fetched += counts.fetched;
        self.media_failed += counts.failed;
        self.media_abandoned += counts.abandoned;
        self.media_unavailable += counts.unavailable;
        self.media_stalled += counts.stalled;
    }
}

/// Where the walk through one room stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomWalk {
    pub seq: i64,
    /// The next (older) page starts here; `None`: at the newest event.
    pub from: Option<String>,
    pub pages: u32,
    pub events: i64,
    pub recent_tokens: Vec<String>,
    /// Set by earlier versions, which waited for a read room's media here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<WalkEnd>,
    /// The walk met events new to the index (a gap repair ends only after).
    #[serde(default)]
    pub found_new: bool,
    /// The walk met the room's `m.room.create`.
    #[serde(default)]
    pub saw_create: bool,
    /// Downloads of this room's media that failed (retried by the media worker).
    #[serde(default)]
    pub media_failed: i64,
}

/// Why a room's walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalkEnd {
    /// Down to the room's creation.
    Creation,
    /// Down to where the homeserver's history of the room starts (it joined
    /// later, or could not fetch older events over federation yet).
    LocalStart,
    /// Down to `--since`.
    Since,
    /// Down to events the index already held.
    Indexed,
    /// The page limit per room.
    PageLimit,
    /// The homeserver gave the same page twice.
    Loop,
}

impl WalkEnd {
    fn as_str(self) -> &'static str {
        match self {
            Self::Creation => "down to the room's creation",
            Self::LocalStart => "down to the oldest event this homeserver has (not the room's creation)",
            Self::Since => "down to --since",
            Self::Indexed => "down to events the index already held",
            Self::PageLimit => {
                "stopped at the page limit (backfill.max_pages_per_room; 20,000 events for a gap repair)"
            }
            Self::Loop => "stopped: the homeserver gave the same page twice",
        }
    }

    /// Whether the index now holds the room's whole history.
    fn complete(self) -> bool {
        matches!(self, Self::Creation | Self::Indexed)
    }

    /// The label of `housekeep_backfill_rooms_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Creation => "creation",
            Self::LocalStart => "local_start",
            Self::Since => "since",
            Self::Indexed => "indexed",
            Self::PageLimit => "page_limit",
            Self::Loop => "loop",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredCursor")]
pub struct BackfillCursor {
    /// The last room started: the rooms after it are not begun yet.
    pub after: ItemCursor,
    /// The walks under way, in room order; more than
    /// `backfill.parallel_rooms` only if it was lowered since they began.
    pub rooms: Vec<RoomWalk>,
}

/// A cursor as this version or an earlier one stored it: a job checkpointed
/// before an upgrade resumes where it was.
#[derive(Deserialize)]
struct StoredCursor {
    #[serde(default)]
    after: ItemCursor,
    #[serde(default)]
    rooms: Vec<RoomWalk>,
    /// Earlier versions walked one room at a time; their `after` is the last
    /// room finished, before this walk's room.
    #[serde(default)]
    room: Option<RoomWalk>,
}

impl From<StoredCursor> for BackfillCursor {
    fn from(stored: StoredCursor) -> Self {
        let mut cursor = Self { after: stored.after, rooms: stored.rooms };
        if let Some(walk) = stored.room {
            // Its room was started: topping the walks up starts after it.
            cursor.after = ItemCursor(cursor.after.0.max(walk.seq));
            cursor.rooms.push(walk);
            cursor.rooms.sort_by_key(|walk| walk.seq);
        }
        cursor
    }
}

/// What one chunk of one room's walk changed.
#[derive(Debug)]
struct Step {
    /// The room's outcome: `Pending` while its walk goes on, `Done` or
    /// `Failed` once it ended.
    result: ItemResult,
    /// The walk to go on with; `None` once it ended.
    walk: Option<RoomWalk>,
    tally: BackfillTally,
}

/// A batch's walks taken together.
#[derive(Debug, Default, PartialEq)]
struct Combined {
    cursor: BackfillCursor,
    tally: BackfillTally,
    /// Rooms whose walk goes on (their detail says how far it is).
    reading: Vec<ItemResult>,
    /// Rooms whose walk ended (done or failed), audited.
    ended: Vec<ItemResult>,
}

/// One cursor, one tally and every room's outcome from the chunks a batch
/// read; `waiting` are walks this batch did not read, carried unchanged.
fn combine(after: ItemCursor, steps: Vec<Step>, waiting: Vec<RoomWalk>) -> Combined {
    let mut combined = Combined { cursor: BackfillCursor { after, rooms: waiting }, ..Combined::default() };
    for step in steps {
        combined.tally.add(step.tally);
        match step.walk {
            Some(walk) => {
                combined.cursor.rooms.push(walk);
                combined.reading.push(step.result);
            }
            None => combined.ended.push(step.result),
        }
    }
    // Room order: the walks resumed first are the oldest rooms started.
    combined.cursor.rooms.sort_by_key(|walk| walk.seq);
    combined
}

pub struct BackfillKind {
    pub fetcher: Arc<MediaFetcher>,
    pub settings: BackfillSettings,
}

#[async_trait]
impl Kind for BackfillKind {
    const NAME: &'static str = "backfill";
    const LANE: Lane = Lane::Background;
    type Args = BackfillRequest;
    type Plan = BackfillPlan;
    type Cursor = BackfillCursor;
    type Tally = BackfillTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, args: &BackfillRequest) -> anyhow::Result<Planned<BackfillPlan>> {
        plan(ctx, args, self.settings).await
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let store = &ctx.services.store;
        let parallel = self.settings.parallel_rooms.max(1) as usize;
        let mut after = job.cursor.after;
        let mut walks = job.cursor.rooms.clone();
        // More walks than rooms read at once (parallel_rooms lowered since
        // they began): the later ones wait, unchanged, for a free place.
        let waiting = walks.split_off(walks.len().min(parallel));
        let mut rooms = Vec::with_capacity(parallel);
        for walk in walks {
            let item = store
                .next_job_items(&ctx.job.id, walk.seq - 1, 1)
                .await?
                .into_iter()
                .next()
                .filter(|item| item.seq == walk.seq)
                .ok_or_else(|| anyhow::anyhow!("backfill room item {} is gone", walk.seq))?;
            rooms.push((item, walk));
        }
        // A walk that ended (or failed) leaves its place to the next room.
        if waiting.is_empty() && rooms.len() < parallel {
            for item in store.next_job_items(&ctx.job.id, after.0, (parallel - rooms.len()) as i64).await? {
                after = ItemCursor(item.seq);
                let walk = RoomWalk { seq: item.seq, ..RoomWalk::default() };
                rooms.push((item, walk));
            }
        }
        if rooms.is_empty() {
            let mut batch = Batch::new(BackfillCursor { after, rooms: waiting });
            batch.finished = true;
            return Ok(batch);
        }
        // All the rooms' locks in one acquisition: a batch holding one room
        // while waiting for another could wait on a batch (another backfill
        // of the same rooms) that waits for it.
        ctx.lock(rooms.iter().map(|(item, _)| format!("backfill:{}", item.key)).collect()).await;
        let steps = join_all(rooms.into_iter().map(|(item, walk)| self.step(ctx, job, item, walk))).await;
        // One room's error (an outage, the database) fails the batch, as it
        // did with one room at a time: it is tried again, and the other
        // walks redo their chunk from the last checkpoint (indexing is
        // idempotent, fetched media is not fetched again). A room the
        // homeserver refuses is no error: it is failed, the others go on.
        let steps = steps.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        let combined = combine(after, steps, waiting);
        let mut batch = Batch::<Self>::new(combined.cursor);
        batch.tally = combined.tally;
        batch.items = combined.reading;
        for result in combined.ended {
            batch.item(ctx.job, result, "backfill.room");
        }
        batch.finished = batch.cursor.rooms.is_empty() && !ctx.has_items_after(batch.cursor.after.0).await?;
        Ok(batch)
    }

    fn progress(&self, job: &TypedJob<Self>) -> Notice {
        let (record, tally) = (&job.record, &job.tally);
        Notice::new().line(&format!(
            "Backfill {}: {}/{} rooms, {} events read ({} new) in {} pages; media fetched {}, failed {}, abandoned {}.",
            record.id,
            tally.rooms_done + tally.rooms_failed,
            record.total_count,
            tally.events,
            tally.events_new,
            tally.pages,
            tally.media_fetched,
            tally.media_failed,
            tally.media_abandoned
        ))
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        let (record, tally) = (&job.record, &job.tally);
        let mut notice = Notice::new()
            .title(&format!("Backfill {} {}", record.id, state.as_str()))
            .field("rooms", &format!("{} done, {} failed, of {}", tally.rooms_done, tally.rooms_failed, record.total_count))
            .field("events", &format!("{} read, {} new to the index", tally.events, tally.events_new))
            .field("pages", &tally.pages.to_string())
            .field(
                "media",
                &format!(
                    "{} fetched and hashed, {} unavailable (quarantined or gone), {} abandoned; {} stalled downloads restarted",
                    tally.media_fetched, tally.media_unavailable, tally.media_abandoned, tally.media_stalled
                ),
            );
        let failed = ctx.services.store.job_items_in_state(&record.id, ItemState::Failed, 10).await?;
        notice = notice.list(failed.iter().map(|i| format!("{}: {}", i.key, i.detail.as_deref().unwrap_or(""))));
        Ok(notice.line(&format!("{}backfill status shows every room and what is left.", ctx.services.prefix)))
    }
}

impl BackfillKind {
    /// One chunk of one room's walk (the batch holds the room's lock).
    async fn step(
        &self,
        ctx: &RunContext<'_>,
        job: &TypedJob<Self>,
        item: JobItem,
        walk: RoomWalk,
    ) -> anyhow::Result<Step> {
        let room: BackfillItem = serde_json::from_value(item.item)?;
        let item = Item { seq: item.seq, key: item.key, item: room };
        match walk.ended {
            None => self.read(ctx, job, &item, walk).await,
            Some(end) => self.room_done(ctx, job, &item, walk, end, BackfillTally::default()).await,
        }
    }

    /// Reads up to a chunk of the room's history and downloads its media.
    async fn read(
        &self,
        ctx: &RunContext<'_>,
        job: &TypedJob<Self>,
        item: &Item<BackfillItem>,
        mut walk: RoomWalk,
    ) -> anyhow::Result<Step> {
        let services = ctx.services;
        let room_id = &item.item.room_id;
        let mut tally = BackfillTally::default();
        let mut read_ids = Vec::new();
        let mut end = None;
        let chunk = self.settings.chunk_events as usize;
        let page_events = self.settings.page_events.clamp(1, MAX_PAGE_EVENTS);
        let max_pages = if job.plan.gap_repair {
            GAP_REPAIR_EVENTS.div_ceil(page_events)
        } else {
            self.settings.max_pages_per_room
        };
        while read_ids.len() < chunk {
            if walk.pages >= max_pages {
                end = Some(WalkEnd::PageLimit);
                break;
            }
            let limit = page_events.min((chunk - read_ids.len()) as u32).max(1);
            let page = match services.homeserver.admin_room_messages(room_id, walk.from.as_deref(), limit).await {
                Ok(page) => page,
                // An outage: the batch is tried again, the job paused if it lasts.
                Err(error) if error.is_retryable() => return Err(error.into()),
                // Gone, forbidden, or an answer housekeep cannot read: this room
                // fails, the job goes on.
                Err(error) => return self.room_failed(ctx, item, walk, tally, &error.to_string()),
            };
            walk.pages += 1;
            tally.pages += 1;
            services.metrics.backfill_pages.inc();
            let chunk_events = page.chunk;
            walk.saw_create |= chunk_events.iter().any(|e| e["type"] == "m.room.create");
            let indexed = index_page(ctx, room_id, chunk_events).await?;
            walk.events += indexed.ids.len() as i64;
            tally.events += indexed.ids.len() as i64;
            tally.events_new += indexed.new;
            let all_indexed = !indexed.ids.is_empty() && indexed.new == 0;
            let gap_passed = walk.found_new;
            walk.found_new |= indexed.new > 0;
            read_ids.extend(indexed.ids);
            let since = job.plan.since;
            // A walk ends only where the homeserver gives no token, even
            // past a short page ending with the room's creation (one more,
            // empty request a room): Synapse cuts rejected events out of a
            // page after its LIMIT, so a short page is no proof that nothing
            // is below, and a remote server chooses its events' depth, which
            // can sort them below the creation.
            end = match &page.end {
                None if walk.saw_create => Some(WalkEnd::Creation),
                None => Some(WalkEnd::LocalStart),
                Some(next) if walk.from.as_ref() == Some(next) || walk.recent_tokens.contains(next) => {
                    tracing::warn!(
                        room_id,
                        token = next,
                        "backfill: the homeserver gave the same page twice; stopping"
                    );
                    Some(WalkEnd::Loop)
                }
                // By the page's newest event: one event claiming an old time
                // (any server may) must not cut the walk short.
                _ if since.is_some_and(|since| indexed.newest.is_some_and(|newest| newest < since)) => {
                    Some(WalkEnd::Since)
                }
                // A gap repair goes past the live events newer than the gap,
                // and stops at the indexed history below it.
                _ if all_indexed && job.plan.gap_repair && gap_passed => Some(WalkEnd::Indexed),
                _ if all_indexed
                    && !job.plan.gap_repair
                    && !job.plan.full
                    && services.store.room_history_is_indexed(room_id).await? =>
                {
                    Some(WalkEnd::Indexed)
                }
                Some(_) => None,
            };
            if let Some(from) = walk.from.take() {
                walk.recent_tokens.push(from);
                if walk.recent_tokens.len() > RECENT_TOKENS {
                    walk.recent_tokens.remove(0);
                }
            }
            walk.from = page.end;
            if end.is_some() {
                break;
            }
        }
        // The chunk's media, before its checkpoint: a restart redoes the chunk.
        let due = services.store.unfetched_media_of_events(&read_ids).await?;
        let counts = self.fetcher.fetch_all(due, &ctx.cancel).await;
        walk.media_failed += counts.failed + counts.abandoned;
        tally.media(counts);
        match end {
            Some(end) => self.room_done(ctx, job, item, walk, end, tally).await,
            None => {
                let detail = format!("reading: {} pages, {} events so far", walk.pages, walk.events);
                step(item, ItemState::Pending, detail, Some(walk), tally)
            }
        }
    }

    /// The room's walk ended: it is done (its failed downloads are the media
    /// worker's to retry).
    async fn room_done(
        &self,
        ctx: &RunContext<'_>,
        job: &TypedJob<Self>,
        item: &Item<BackfillItem>,
        walk: RoomWalk,
        end: WalkEnd,
        mut tally: BackfillTally,
    ) -> anyhow::Result<Step> {
        let room_id = &item.item.room_id;
        if end.complete() && !job.plan.gap_repair {
            ctx.services.store.mark_room_backfilled(room_id).await?;
        }
        ctx.services.metrics.backfill_rooms.get_or_create(&WalkLabel { end: end.label() }).inc();
        tally.rooms_done += 1;
        let mut detail = format!("{} pages, {} events, {}", walk.pages, walk.events, end.as_str());
        if walk.media_failed > 0 {
            detail.push_str(&format!(
                "; {} media downloads failed (the media worker retries them; {}backfill status lists them)",
                walk.media_failed, ctx.services.prefix
            ));
        }
        tracing::info!(room_id, pages = walk.pages, events = walk.events, end = end.as_str(), "backfill: room done");
        step(item, ItemState::Done, detail, None, tally)
    }

    /// The homeserver refused the room (gone, no rights): it is failed, the job goes on.
    fn room_failed(
        &self,
        ctx: &RunContext<'_>,
        item: &Item<BackfillItem>,
        walk: RoomWalk,
        mut tally: BackfillTally,
        why: &str,
    ) -> anyhow::Result<Step> {
        tracing::info!(room_id = item.item.room_id, why, "backfill: the homeserver refused this room; skipping it");
        ctx.services.metrics.backfill_rooms.get_or_create(&WalkLabel { end: "refused" }).inc();
        tally.rooms_failed += 1;
        let detail = format!("not read after {} pages: {why}", walk.pages);
        step(item, ItemState::Failed, detail, None, tally)
    }
}

fn step(
    item: &Item<BackfillItem>,
    state: ItemState,
    detail: String,
    walk: Option<RoomWalk>,
    tally: BackfillTally,
) -> anyhow::Result<Step> {
    let result =
        ItemResult { seq: item.seq, key: item.key.clone(), item: serde_json::to_value(&item.item)?, state, detail };
    Ok(Step { result, walk, tally })
}

/// What indexing one page found.
struct IndexedPage {
    /// The event IDs read (and stored).
    ids: Vec<String>,
    /// How many were new to the index.
    new: i64,
    /// The newest `origin_server_ts` on the page.
    newest: Option<i64>,
}

/// Indexes one page. Events the homeserver serves redacted are marked so
/// (it applied their redaction); one the index cannot take is logged,
/// counted and skipped, and the rest of the page still goes in.
async fn index_page(ctx: &RunContext<'_>, room_id: &str, chunk: Vec<Value>) -> anyhow::Result<IndexedPage> {
    let services = ctx.services;
    let mut extracted = Vec::with_capacity(chunk.len());
    let mut redacted = Vec::new();
    for mut event in chunk {
        if event.get("room_id").is_none()
            && let Some(object) = event.as_object_mut()
        {
            object.insert("room_id".to_owned(), Value::String(room_id.to_owned()));
        }
        match extract_value(&event) {
            Ok(rows) => {
                services.metrics.skip_bad_mxcs(&rows.event.event_id, &rows.rejected, "backfill");
                // A redacted state event keeps its place in the room's state:
                // it is indexed as it is, like live ones.
                if let Some(by) = event.pointer("/unsigned/redacted_because")
                    && rows.event.state_key.is_none()
                {
                    let at = by.get("origin_server_ts").and_then(Value::as_i64).unwrap_or(rows.event.origin_server_ts);
                    redacted.push((rows.event.event_id.clone(), at));
                }
                extracted.push(rows);
            }
            Err(error) => {
                services.metrics.reject(RejectReason::BadEvent);
                tracing::info!(room_id, %error, "backfill: skipping an event the index cannot store");
            }
        }
    }
    let new = match services.store.index_events(&extracted, Source::Backfill).await {
        Ok(counts) => {
            services.metrics.skip_media_queue(&counts.media_skipped, "backfill");
            counts.events as i64
        }
        // One event the database refuses (PostgreSQL takes no NUL in text)
        // must not keep the rest of the page out: each on its own, then.
        Err(error) if extracted.len() > 1 => {
            tracing::info!(room_id, error = format!("{error:#}"), "backfill: a page did not go in whole; one by one");
            let mut new = 0;
            let mut kept = Vec::with_capacity(extracted.len());
            for rows in extracted {
                match services.store.index_events(std::slice::from_ref(&rows), Source::Backfill).await {
                    Ok(counts) => {
                        services.metrics.skip_media_queue(&counts.media_skipped, "backfill");
                        new += counts.events as i64;
                        kept.push(rows);
                    }
                    Err(error) => {
                        services.metrics.reject(RejectReason::BadEvent);
                        tracing::info!(
                            event_id = rows.event.event_id,
                            error = format!("{error:#}"),
                            "backfill: skipping an event the database refused"
                        );
                    }
                }
            }
            if kept.is_empty() {
                // Not one event: the database is the problem, not the page.
                return Err(error);
            }
            extracted = kept;
            new
        }
        Err(error) => return Err(error),
    };
    services.metrics.backfill_events.inc_by(extracted.len() as u64);
    for (event_id, at) in redacted {
        services.store.mark_event_redacted(&event_id, at).await?;
    }
    let newest = extracted.iter().map(|e| e.event.origin_server_ts).max();
    if let Some(newest) = newest {
        tracing::debug!(room_id, events = extracted.len(), newest = format_ms(newest), "backfill: page indexed");
    }
    Ok(IndexedPage { ids: extracted.into_iter().map(|e| e.event.event_id).collect(), new, newest })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn walk(seq: i64, pages: u32) -> RoomWalk {
        RoomWalk {
            seq,
            from: Some(format!("t{seq}-{pages}")),
            pages,
            events: 10 * i64::from(pages),
            ..RoomWalk::default()
        }
    }

    fn result(seq: i64, state: ItemState) -> ItemResult {
        ItemResult {
            seq,
            key: format!("!r{seq}:x"),
            item: json!({"room_id": format!("!r{seq}:x")}),
            state,
            detail: String::new(),
        }
    }

    #[test]
    fn a_cursor_of_the_one_room_version_resumes_its_walk() {
        let old =
            json!({"after": 3, "room": {"seq": 4, "from": "t4", "pages": 2, "events": 20, "recent_tokens": ["t3"]}});
        let cursor: BackfillCursor = serde_json::from_value(old).unwrap();
        let walk = RoomWalk {
            seq: 4,
            from: Some("t4".into()),
            pages: 2,
            events: 20,
            recent_tokens: vec!["t3".into()],
            ..RoomWalk::default()
        };
        assert_eq!(cursor, BackfillCursor { after: ItemCursor(4), rooms: vec![walk] }, "its room counts as started");
        // Between two rooms, and before the first: nothing under way.
        let between: BackfillCursor = serde_json::from_value(json!({"after": 3, "room": null})).unwrap();
        assert_eq!(between, BackfillCursor { after: ItemCursor(3), rooms: vec![] });
        let first: BackfillCursor = serde_json::from_value(json!({"after": -1, "room": null})).unwrap();
        assert_eq!(first, BackfillCursor::default());
        // A walk of older versions still, which had ended and waited for its media.
        let ended = json!({"after": 0, "room": {"seq": 1, "from": null, "pages": 1, "events": 5, "recent_tokens": [], "ended": "creation"}});
        let cursor: BackfillCursor = serde_json::from_value(ended).unwrap();
        assert_eq!(cursor.rooms[0].ended, Some(WalkEnd::Creation));
    }

    #[test]
    fn a_cursor_of_several_walks_is_stored_and_read_back_as_it_was() {
        let cursor = BackfillCursor { after: ItemCursor(7), rooms: vec![walk(2, 3), walk(6, 1), walk(7, 0)] };
        let stored = serde_json::to_value(&cursor).unwrap();
        assert!(stored.get("room").is_none(), "no field of the old form: {stored}");
        assert_eq!(serde_json::from_value::<BackfillCursor>(stored).unwrap(), cursor);
    }

    #[test]
    fn walks_combine_into_one_cursor_tally_and_outcome_per_room() {
        let tally = |pages, rooms_done, rooms_failed| BackfillTally {
            pages,
            events: 10 * pages,
            rooms_done,
            rooms_failed,
            ..BackfillTally::default()
        };
        let steps = vec![
            // Resumed, goes on.
            Step { result: result(5, ItemState::Pending), walk: Some(walk(5, 4)), tally: tally(2, 0, 0) },
            // Started this batch, ended.
            Step { result: result(8, ItemState::Done), walk: None, tally: tally(1, 1, 0) },
            // Refused by the homeserver.
            Step { result: result(9, ItemState::Failed), walk: None, tally: tally(0, 0, 1) },
            // Started this batch, goes on.
            Step { result: result(10, ItemState::Pending), walk: Some(walk(10, 1)), tally: tally(1, 0, 0) },
        ];
        let combined = combine(ItemCursor(10), steps, vec![walk(3, 9)]);
        assert_eq!(
            combined.cursor,
            BackfillCursor { after: ItemCursor(10), rooms: vec![walk(3, 9), walk(5, 4), walk(10, 1)] },
            "the walks that go on and the one that waited, in room order; ended ones are gone"
        );
        assert_eq!(combined.tally, tally(4, 1, 1));
        assert_eq!(combined.reading, vec![result(5, ItemState::Pending), result(10, ItemState::Pending)]);
        assert_eq!(combined.ended, vec![result(8, ItemState::Done), result(9, ItemState::Failed)]);
    }
}
