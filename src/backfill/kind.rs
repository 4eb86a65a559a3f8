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
//! The pagination token is in the job's cursor, committed with each chunk:
//! after a restart the walk goes on from the last chunk, and a finished room
//! is not read again. A room is done when its walk ends: downloads that
//! failed stay in the media queue, retried by the media worker (with
//! backoff, up to `media.max_attempts`), so one room of dead links never
//! holds up the rooms after it.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{BackfillItem, BackfillPlan, BackfillRequest, BackfillSettings, plan};
use crate::clock::format_ms;
use crate::extract::extract_value;
use crate::jobs::{Batch, Item, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Tally, TypedJob};
use crate::media::{FetchCounts, MediaFetcher};
use crate::metrics::{RejectReason, WalkLabel};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobState, Source};

/// Events asked for per page at most (Synapse's most), fewer for smaller
/// chunks: a page of 1,000 events of up to 64 KiB is already 64 MiB.
const PAGE_SIZE: u32 = 1000;
/// Recent pagination tokens kept to notice a walk that loops.
const RECENT_TOKENS: usize = 16;
/// Pages a gap repair reads at most per room.
const GAP_REPAIR_PAGES: u32 = 20;

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

/// Where the walk through the current room stands.
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
            Self::PageLimit => "stopped at the page limit (backfill.max_pages_per_room; 20 for a gap repair)",
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
pub struct BackfillCursor {
    /// The last room finished.
    pub after: ItemCursor,
    pub room: Option<RoomWalk>,
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
        let walk = match &job.cursor.room {
            Some(walk) => walk.clone(),
            None => {
                let next = ctx.next_items::<BackfillItem>(job.cursor.after.0, 1).await?;
                let Some(item) = next.into_iter().next() else {
                    let mut batch = Batch::new(job.cursor.clone());
                    batch.finished = true;
                    return Ok(batch);
                };
                RoomWalk { seq: item.seq, ..RoomWalk::default() }
            }
        };
        let item = ctx
            .services
            .store
            .next_job_items(&ctx.job.id, walk.seq - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|item| item.seq == walk.seq)
            .ok_or_else(|| anyhow::anyhow!("backfill room item {} is gone", walk.seq))?;
        ctx.lock(vec![format!("backfill:{}", item.key)]).await;
        let room: BackfillItem = serde_json::from_value(item.item.clone())?;
        let item = Item { seq: item.seq, key: item.key, item: room };
        match walk.ended {
            None => self.read(ctx, job, &item, walk).await,
            Some(end) => self.room_done(ctx, job, &item, walk, end, BackfillTally::default()).await,
        }
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
    /// Reads up to a chunk of the room's history and downloads its media.
    async fn read(
        &self,
        ctx: &RunContext<'_>,
        job: &TypedJob<Self>,
        item: &Item<BackfillItem>,
        mut walk: RoomWalk,
    ) -> anyhow::Result<Batch<Self>> {
        let services = ctx.services;
        let room_id = &item.item.room_id;
        let mut tally = BackfillTally::default();
        let mut read_ids = Vec::new();
        let mut end = None;
        let chunk = self.settings.chunk_events as usize;
        let max_pages = if job.plan.gap_repair { GAP_REPAIR_PAGES } else { self.settings.max_pages_per_room };
        while read_ids.len() < chunk {
            if walk.pages >= max_pages {
                end = Some(WalkEnd::PageLimit);
                break;
            }
            let limit = PAGE_SIZE.min((chunk - read_ids.len()) as u32).max(1);
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
                let mut batch = self.batch(ctx, item, ItemState::Pending, detail, job.cursor.after, Some(walk))?;
                batch.tally = tally;
                Ok(batch)
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
    ) -> anyhow::Result<Batch<Self>> {
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
        let mut batch = self.batch(ctx, item, ItemState::Done, detail, ItemCursor(item.seq), None)?;
        batch.tally = tally;
        batch.finished = !ctx.has_items_after(item.seq).await?;
        Ok(batch)
    }

    /// The homeserver refused the room (gone, no rights): it is failed, the job goes on.
    fn room_failed(
        &self,
        ctx: &RunContext<'_>,
        item: &Item<BackfillItem>,
        walk: RoomWalk,
        mut tally: BackfillTally,
        why: &str,
    ) -> anyhow::Result<Batch<Self>> {
        tracing::info!(room_id = item.item.room_id, why, "backfill: the homeserver refused this room; skipping it");
        ctx.services.metrics.backfill_rooms.get_or_create(&WalkLabel { end: "refused" }).inc();
        tally.rooms_failed += 1;
        let detail = format!("not read after {} pages: {why}", walk.pages);
        let mut batch = self.batch(ctx, item, ItemState::Failed, detail, ItemCursor(item.seq), None)?;
        batch.tally = tally;
        Ok(batch)
    }

    fn batch(
        &self,
        ctx: &RunContext<'_>,
        item: &Item<BackfillItem>,
        state: ItemState,
        detail: String,
        after: ItemCursor,
        room: Option<RoomWalk>,
    ) -> anyhow::Result<Batch<Self>> {
        let mut batch = Batch::new(BackfillCursor { after, room });
        let result =
            ItemResult { seq: item.seq, key: item.key.clone(), item: serde_json::to_value(&item.item)?, state, detail };
        if state == ItemState::Pending {
            batch.items.push(result);
        } else {
            batch.item(ctx.job, result, "backfill.room");
        }
        Ok(batch)
    }
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
