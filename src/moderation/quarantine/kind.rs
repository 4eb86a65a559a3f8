//! The `quarantine` and `unquarantine` job kinds: each media through
//! Synapse's admin API, a few at a time, in checkpointed batches.
//! Quarantining is idempotent, so a batch redone after a crash is harmless.
//!
//! A room or a local user is quarantined with Synapse's own bulk call first
//! when what that call takes is all in the plan: the room call takes every
//! `url`, `thumbnail`, sticker and room avatar of the room (its scan is a
//! subset of the index's shared media, unless the index lacks some of the
//! room's history); the user call takes every upload of the user (the plan
//! lists them all, unless they uploaded more since). Each media is still
//! checked (protected? quarantined now?) and recorded; only what the bulk
//! call cannot see (encrypted files, `<img>` in HTML, mentions, remote
//! media a user shared) is quarantined one by one. In a room, the upload
//! records those checks need come from the posters' lists of uploads (one
//! call per 500 uploads), so most media cost one call or none.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::args::{QuarantineArgs, UnquarantineArgs};
use super::plan::{Action, MediaPlan, Owned, Selection, is_protected, plan};
use crate::extract::mxc::parse_mxc;
use crate::homeserver::{HsError, MediaInfo, Upload};
use crate::jobs::{Batch, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Services, Tally, TypedJob};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobState};

/// Media handled per batch (one checkpoint each): enough to keep
/// `jobs.homeserver_concurrency` calls in flight most of the batch.
const BATCH_SIZE: i64 = 100;

/// Running totals of a quarantine job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaTally {
    pub done: i64,
    /// Left alone: protected media (Synapse keeps serving it), someone
    /// else's upload, or another server's; reported, not recorded as quarantined.
    #[serde(alias = "protected")]
    pub skipped: i64,
    pub failed: i64,
}

impl Tally for MediaTally {
    fn add(&mut self, other: Self) {
        self.done += other.done;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }
}

/// `!quarantine`.
#[derive(Debug, Default)]
pub struct QuarantineKind {
    /// Per job of a room or a local user, the media Synapse's bulk call
    /// quarantined in this run of the job (empty when it was not used), and
    /// for a room the upload records read from its posters' lists.
    /// Kept until the job ends.
    covered: std::sync::Mutex<HashMap<String, Arc<Covered>>>,
}

/// `!unquarantine`.
#[derive(Debug, Default)]
pub struct UnquarantineKind;

#[async_trait]
impl Kind for QuarantineKind {
    const NAME: &'static str = "quarantine";
    const LANE: Lane = Lane::Moderation;
    type Args = QuarantineArgs;
    type Plan = MediaPlan;
    type Cursor = ItemCursor;
    type Tally = MediaTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, args: &QuarantineArgs) -> anyhow::Result<Planned<MediaPlan>> {
        let selection = Selection::from(&args.target);
        let (mentions, others) = (args.include_mentions, args.include_others_uploads);
        plan(ctx, Action::Quarantine, selection, mentions, others, args.flags.reason.as_deref()).await
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let bulk = match (&job.plan.room_id, &job.plan.user_id) {
            (Some(room_id), _) => Some(Bulk::Room(room_id)),
            (None, Some(user_id)) => Some(Bulk::User(user_id)),
            (None, None) => None,
        };
        let covered = match bulk {
            Some(bulk) => self.bulk_call(ctx, job, bulk).await,
            None => Arc::default(),
        };
        run_batch(ctx, job, Action::Quarantine, &covered).await
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        describe_result(ctx, job, Action::Quarantine, state).await
    }

    async fn ended(&self, _ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<()> {
        self.covered.lock().expect("not poisoned").remove(&job.record.id);
        Ok(())
    }
}

/// What one Synapse call can quarantine in bulk.
#[derive(Debug, Clone, Copy)]
enum Bulk<'a> {
    /// `POST /_synapse/admin/v1/room/{room}/media/quarantine`.
    Room(&'a str),
    /// `POST /_synapse/admin/v1/user/{user}/media/quarantine` (a local user).
    User(&'a str),
}

impl Bulk<'_> {
    /// How an item it took is described.
    fn outcome(self) -> &'static str {
        match self {
            Self::Room(_) => "quarantined by Synapse's room quarantine",
            Self::User(_) => "quarantined by Synapse's user quarantine",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Room(_) => "room",
            Self::User(_) => "user",
        }
    }
}

impl QuarantineKind {
    /// Synapse's bulk call, before the job's first media: the media it
    /// took, or none if it would take media the plan does not list or it
    /// failed (a room gone, a scan too slow for the client's timeout): the
    /// job then goes one media at a time. A resumed job does not call it
    /// again (media released meanwhile stays released).
    ///
    /// Synapse lists again when called: a media posted or uploaded between
    /// its list and its call is taken too although the plan never showed
    /// it. What is listed afterwards and was not before is told to the
    /// operators, to release with `!unquarantine media`.
    async fn bulk_call(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, bulk: Bulk<'_>) -> Arc<Covered> {
        let id = &job.record.id;
        if let Some(covered) = self.covered.lock().expect("not poisoned").get(id) {
            return covered.clone();
        }
        let mut covered = if job.cursor.0 > 0 {
            Covered::none()
        } else {
            match quarantine_in_bulk_if_planned(ctx, id, bulk).await {
                Ok(covered) => covered,
                Err(error) => {
                    tracing::info!(
                        job = %id,
                        call = bulk.name(),
                        error = format!("{error:#}"),
                        "Synapse's bulk quarantine not used; quarantining one by one"
                    );
                    Covered::none()
                }
            }
        };
        if let Bulk::Room(room_id) = bulk
            && let Err(error) = uploads_of_posters(ctx, id, room_id, &mut covered).await
        {
            tracing::info!(job = %id, room_id, error = format!("{error:#}"), "posters' uploads not listed; looking one by one");
        }
        let covered = Arc::new(covered);
        self.covered.lock().expect("not poisoned").insert(id.clone(), covered.clone());
        covered
    }
}

/// What Synapse's bulk call takes, as mxc URIs, once each (a room lists a
/// media as often as it is posted); a user's come with their upload records.
async fn bulk_media(ctx: &RunContext<'_>, bulk: Bulk<'_>) -> anyhow::Result<HashMap<String, Option<Known>>> {
    let homeserver = &ctx.services.homeserver;
    Ok(match bulk {
        Bulk::Room(room_id) => homeserver.room_media(room_id).await?.into_iter().map(|mxc| (mxc, None)).collect(),
        Bulk::User(user_id) => {
            let local = ctx.services.server_name();
            let mut media = HashMap::new();
            let mut from = 0;
            loop {
                let (page, next) = homeserver.user_uploads_page(user_id, from).await?;
                for upload in page {
                    let mxc = format!("mxc://{local}/{}", upload.media_id);
                    media.insert(mxc, Some(Known { upload, uploader: user_id.to_owned() }));
                }
                match next {
                    Some(next) => from = next,
                    None => break,
                }
            }
            media
        }
    })
}

/// See [`QuarantineKind::bulk_call`].
async fn quarantine_in_bulk_if_planned(ctx: &RunContext<'_>, id: &str, bulk: Bulk<'_>) -> anyhow::Result<Covered> {
    let store = &ctx.services.store;
    let homeserver = &ctx.services.homeserver;
    let seen: Vec<String> = bulk_media(ctx, bulk).await?.into_keys().collect();
    let planned = store.count_job_items_with_keys(id, &seen).await?;
    if planned < seen.len() as i64 {
        tracing::info!(
            job = %id,
            call = bulk.name(),
            synapse_takes = seen.len(),
            planned,
            "Synapse's bulk quarantine would take media the plan does not list; quarantining one by one"
        );
        return Ok(Covered::none());
    }
    let changed = match bulk {
        Bulk::Room(room_id) => homeserver.quarantine_room_media(room_id).await?,
        Bulk::User(user_id) => homeserver.quarantine_user_media(user_id).await?,
    };
    tracing::info!(job = %id, call = bulk.name(), media = seen.len(), changed, "Synapse's bulk quarantine called");
    let seen: HashSet<String> = seen.into_iter().collect();
    let mut media = match bulk_media(ctx, bulk).await {
        Ok(after) => after,
        // The call is made: a failed list costs looks, not its cover.
        Err(error) => {
            tracing::info!(job = %id, error = format!("{error:#}"), "media not listed again after the bulk call");
            HashMap::new()
        }
    };
    let extra: Vec<String> = media.keys().filter(|mxc| !seen.contains(*mxc)).cloned().collect();
    if !extra.is_empty() && store.count_job_items_with_keys(id, &extra).await? < extra.len() as i64 {
        tracing::warn!(job = %id, call = bulk.name(), extra = ?extra, "media added during Synapse's bulk quarantine was taken too");
        let notice = Notice::new()
            .title(&format!("Job {id}: Synapse's {} quarantine took media added while it ran", bulk.name()))
            .line("Not in the plan; release what should stay with !unquarantine media:")
            .list(extra.iter().cloned());
        ctx.services.tell_operators(&format!("{id}-bulk-call-extra"), &notice).await;
    }
    for mxc in seen {
        media.entry(mxc).or_insert(None);
    }
    Ok(Covered { by: bulk.outcome(), media, uploads: HashMap::new() })
}

/// The media Synapse's bulk call took (none when it was not used), each
/// with its upload record after the call where a list of uploads had it;
/// and the upload records of the job's other local media, so that those
/// need one call each (the quarantine) instead of two.
#[derive(Debug, Default)]
struct Covered {
    /// The items' outcome.
    by: &'static str,
    media: HashMap<String, Option<Known>>,
    /// Upload records of planned media the bulk call did not take, by mxc URI.
    uploads: HashMap<String, Known>,
}

impl Covered {
    fn none() -> Self {
        Self::default()
    }
}

/// A local media as its uploader's list of uploads shows it.
#[derive(Debug)]
struct Known {
    upload: Upload,
    uploader: String,
}

/// Posters whose uploads are listed; each list is paged at most so far.
const MAX_POSTERS_LISTED: i64 = 20;
const MAX_UPLOAD_PAGES: usize = 20;

/// Fills in the upload records of the job's local media from the uploads of
/// who posted them (one call per 500 uploads instead of one per media):
/// whether each is protected, and quarantined now. Media not found there
/// (uploaded by someone else, or a poster with very many uploads) is looked
/// up one by one. The lists are read once per run of the job, before its
/// first batch: a media protected after that is still quarantined, as if
/// it had been protected after the job (Synapse's room call does the same);
/// the records are kept until the job ends, outages included. At most
/// [`MAX_POSTERS_LISTED`] posters (by user ID) and [`MAX_UPLOAD_PAGES`]
/// pages of 500 uploads each are read.
async fn uploads_of_posters(
    ctx: &RunContext<'_>,
    job_id: &str,
    room_id: &str,
    covered: &mut Covered,
) -> anyhow::Result<()> {
    let services = ctx.services;
    let local = services.server_name();
    let posters = services.store.media_senders_in_room(room_id, local, MAX_POSTERS_LISTED).await?;
    for poster in posters.iter().filter(|p| server_of(p).as_deref() == Some(local)) {
        let mut from = 0;
        for _ in 0..MAX_UPLOAD_PAGES {
            let (page, next) = services.homeserver.user_uploads_page(poster, from).await?;
            let mut others = HashMap::new();
            for upload in page {
                let mxc = format!("mxc://{local}/{}", upload.media_id);
                let known = Known { upload, uploader: poster.clone() };
                match covered.media.get_mut(&mxc) {
                    Some(slot) => *slot = Some(known),
                    None => {
                        others.insert(mxc, known);
                    }
                }
            }
            // Only the job's own media are kept: a poster may have uploaded
            // far more than the room shows.
            let keys: Vec<String> = others.keys().cloned().collect();
            for key in services.store.job_item_keys_among(job_id, &keys).await? {
                if let Some(known) = others.remove(&key) {
                    covered.uploads.insert(key, known);
                }
            }
            match next {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Kind for UnquarantineKind {
    const NAME: &'static str = "unquarantine";
    const LANE: Lane = Lane::Moderation;
    type Args = UnquarantineArgs;
    type Plan = MediaPlan;
    type Cursor = ItemCursor;
    type Tally = MediaTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, args: &UnquarantineArgs) -> anyhow::Result<Planned<MediaPlan>> {
        let selection = Selection::from(&args.target);
        plan(ctx, Action::Unquarantine, selection, true, true, args.flags.reason.as_deref()).await
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        run_batch(ctx, job, Action::Unquarantine, &Covered::none()).await
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        describe_result(ctx, job, Action::Unquarantine, state).await
    }
}

/// The next media after the cursor, `jobs.homeserver_concurrency` at a
/// time; `covered` were quarantined by Synapse's bulk call.
async fn run_batch<K>(
    ctx: &RunContext<'_>,
    job: &TypedJob<K>,
    action: Action,
    covered: &Covered,
) -> anyhow::Result<Batch<K>>
where
    K: Kind<Plan = MediaPlan, Cursor = ItemCursor, Tally = MediaTally>,
{
    let items = ctx.next_items::<Option<Owned>>(job.cursor.0, BATCH_SIZE).await?;
    let Some(last) = items.last().map(|i| i.seq) else {
        let mut batch = Batch::<K>::new(job.cursor);
        batch.finished = true;
        return Ok(batch);
    };
    let outcomes: Vec<_> = futures::stream::iter(items)
        .map(|item| async move {
            let owners = item.item.as_ref().map(|owned| owned.owners.as_slice());
            let outcome = act(ctx.services, action, &item.key, owners, covered).await;
            outcome.map(|(state, detail)| (item, state, detail))
        })
        .buffered(ctx.services.homeserver_concurrency)
        .try_collect()
        .await?;
    // Recorded in one commit: a crash before it redoes the batch, which
    // finds the media quarantined and records it then.
    let done: Vec<(&str, &str)> = outcomes
        .iter()
        .filter(|(_, state, _)| *state == ItemState::Done)
        .filter_map(|(item, _, _)| parse_mxc(&item.key).ok().map(|m| (m.server_name, m.media_id)))
        .collect();
    ctx.services.store.set_media_quarantine(&done, record(action, ctx.job.actor(), job.plan.reason.as_deref())).await?;
    let mut batch = Batch::<K>::new(ItemCursor(last));
    for (item, state, detail) in outcomes {
        match state {
            ItemState::Done => batch.tally.done += 1,
            ItemState::Skipped => batch.tally.skipped += 1,
            ItemState::Failed => batch.tally.failed += 1,
            ItemState::Pending => {}
        }
        let result =
            ItemResult { seq: item.seq, key: item.key, item: serde_json::to_value(&item.item)?, state, detail };
        batch.item(ctx.job, result, &format!("{}.media", action.as_str()));
    }
    batch.finished = !ctx.has_items_after(last).await?;
    Ok(batch)
}

/// Who may own a media a job acts on: `None`, anyone's; else only media
/// uploaded by one of these users (local media) or hosted on one of their
/// servers (remote media). Synapse quarantines by content hash, so acting on
/// someone else's upload would take every copy of it down.
pub type Owners<'a> = Option<&'a [String]>;

/// Quarantines or releases one media and records it. A refusal by the
/// homeserver becomes the item's outcome; an outage (the client's retries
/// spent) is an error, so the batch is tried again later and no item is
/// marked failed for it.
pub async fn apply(
    services: &Services,
    actor: &str,
    reason: Option<&str>,
    action: Action,
    mxc: &str,
    owners: Owners<'_>,
) -> anyhow::Result<(ItemState, String)> {
    let (state, detail) = act(services, action, mxc, owners, &Covered::none()).await?;
    if state == ItemState::Done
        && let Ok(parsed) = parse_mxc(mxc)
    {
        services
            .store
            .set_media_quarantine(&[(parsed.server_name, parsed.media_id)], record(action, actor, reason))
            .await?;
    }
    Ok((state, detail))
}

/// What the index records of a media an action was done to.
fn record<'a>(action: Action, actor: &'a str, reason: Option<&'a str>) -> Option<(&'a str, Option<&'a str>)> {
    match action {
        Action::Quarantine => Some((actor, reason)),
        Action::Unquarantine => None,
    }
}

/// Done by Synapse's bulk call (`covered`, with the media's upload record
/// if known), already so, or now by the per-media call; not recorded here.
/// A local media's upload record comes from `covered` where its poster's
/// list of uploads had it, else from one `media_info` call.
async fn act(
    services: &Services,
    action: Action,
    mxc: &str,
    owners: Owners<'_>,
    covered: &Covered,
) -> anyhow::Result<(ItemState, String)> {
    let (by_bulk, known) = match covered.media.get(mxc) {
        Some(known) => (true, known.as_ref()),
        None => (false, covered.uploads.get(mxc)),
    };
    let Ok(parsed) = parse_mxc(mxc) else {
        return Ok((ItemState::Failed, "not a valid mxc URI".to_owned()));
    };
    let (server, media_id) = (parsed.server_name, parsed.media_id);
    let homeserver = &services.homeserver;
    let local = server == services.server_name();
    if let Some(owners) = owners
        && !local
        && !owners.iter().any(|owner| server_of(owner).as_deref() == Some(server))
    {
        return Ok((ItemState::Skipped, format!("hosted on {server}, not a server of who shared it: left alone")));
    }
    // Synapse answers 200 for protected media but keeps serving it: look first,
    // so protected media is neither reported nor recorded as quarantined.
    if local && (action == Action::Quarantine || owners.is_some()) {
        // Known from its uploader's list of uploads, in the shape of
        // `media_info`. A list without the protection field says nothing:
        // ask. Its quarantine mark is trusted only for what the bulk call
        // just took; any other media may have been released since the list
        // was read, so it is quarantined again (idempotent) rather than
        // recorded as done on an old answer.
        let known = known.and_then(|Known { upload, uploader }| {
            Some(MediaInfo {
                user_id: Some(uploader.clone()),
                quarantined_by: if by_bulk { upload.quarantined_by.clone() } else { None },
                safe_from_quarantine: upload.safe_from_quarantine?,
                sha256: upload.sha256.clone(),
            })
        });
        let info = match known {
            Some(known) => Some(known),
            None => match homeserver.media_info(server, media_id).await {
                Ok(info) => info,
                Err(error) => return refused_or_retry(error),
            },
        };
        if let (Some(owners), Some(info)) = (owners, &info)
            && let Some(uploader) = info.user_id.as_deref()
            && !owners.iter().any(|owner| owner == uploader)
        {
            return Ok((
                ItemState::Skipped,
                format!("uploaded by {uploader}, not by who shared it: left alone (--include-others-uploads takes it)"),
            ));
        }
        if action == Action::Quarantine
            && let Some(owners) = owners
            && let Some(why) = shared_by_others(services, server, media_id, info.as_ref(), owners).await?
        {
            return Ok((ItemState::Skipped, why));
        }
        if action == Action::Quarantine && info.as_ref().is_some_and(is_protected) {
            return Ok((ItemState::Skipped, "protected: Synapse keeps serving it".to_owned()));
        }
        if let Some(by) = info.as_ref().and_then(|info| info.quarantined_by.as_deref())
            && action == Action::Quarantine
        {
            // The bulk call quarantines as the bot; anyone else's mark is older.
            let by_bulk = by_bulk && by == services.bot_user_id.as_str();
            let detail = if by_bulk { covered.by } else { "quarantined (it was already)" };
            return Ok((ItemState::Done, detail.to_owned()));
        }
    } else if action == Action::Quarantine
        && let Some(owners) = owners
        && let Some(why) = shared_by_others(services, server, media_id, None, owners).await?
    {
        return Ok((ItemState::Skipped, why));
    } else if by_bulk && action == Action::Quarantine {
        // Remote media has no protection: the room call marked the cached
        // copy, as the per-media call would.
        return Ok((ItemState::Done, covered.by.to_owned()));
    }
    let called = match action {
        Action::Quarantine => homeserver.quarantine_media(server, media_id).await,
        Action::Unquarantine => homeserver.unquarantine_media(server, media_id).await,
    };
    if let Err(error) = called {
        return refused_or_retry(error);
    }
    Ok((ItemState::Done, format!("{}d", action.as_str())))
}

/// Why a media quarantined for what `owners` shared must be left alone:
/// Synapse quarantines every copy of a file by its content hash, so a
/// spammer who uploads a copy of someone else's picture (a moderator's
/// avatar, a popular sticker) would otherwise take the original down with
/// theirs. Who else shared the same file is what the index knows (the
/// media it hashed); `!quarantine hash` takes every copy on purpose.
async fn shared_by_others(
    services: &Services,
    server: &str,
    media_id: &str,
    info: Option<&MediaInfo>,
    owners: &[String],
) -> anyhow::Result<Option<String>> {
    const SHOWN: i64 = 3;
    let sha256 = info.and_then(|info| info.sha256.as_deref());
    let senders = services.store.senders_of_same_file(server, media_id, sha256, SHOWN + owners.len() as i64).await?;
    let others: Vec<&str> =
        senders.iter().map(String::as_str).filter(|sender| !owners.iter().any(|owner| owner == sender)).collect();
    if others.is_empty() {
        return Ok(None);
    }
    let shown = others.iter().take(SHOWN as usize).copied().collect::<Vec<_>>().join(", ");
    Ok(Some(format!(
        "the same file is shared by {shown} too, and Synapse quarantines every copy of a file: left alone \
         ({}quarantine hash takes every copy on purpose)",
        services.prefix
    )))
}

/// Why a media quarantined because it was shared in `room_id` (a room
/// being taken down) must be left alone: it, or a copy of its file, is
/// shared in other rooms too, and Synapse quarantines every copy (a spam
/// room can post a moderator's avatar or the server's logo).
pub async fn shared_outside_room(services: &Services, mxc: &str, room_id: &str) -> anyhow::Result<Option<String>> {
    let Ok(parsed) = parse_mxc(mxc) else { return Ok(None) };
    let rooms = services.store.rooms_of_same_file(parsed.server_name, parsed.media_id, None, 4).await?;
    let others: Vec<&str> = rooms.iter().map(String::as_str).filter(|room| *room != room_id).collect();
    if others.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "it or the same file is shared in other rooms too ({}), and Synapse quarantines every copy of a file: \
         left alone ({}quarantine media or hash takes it on purpose)",
        others.join(", "),
        services.prefix
    )))
}

/// The server name of a user ID, whole (ports included).
fn server_of(user_id: &str) -> Option<String> {
    ruma::UserId::parse(user_id).ok().map(|user| user.server_name().to_string())
}

/// A homeserver error: its refusal is the item's outcome; an outage is the batch's error.
pub fn refused_or_retry(error: HsError) -> anyhow::Result<(ItemState, String)> {
    if error.is_retryable() { Err(error.into()) } else { Ok((ItemState::Failed, error.to_string())) }
}

/// The result, in the shape of Synapse's admin API answers.
async fn describe_result<K>(
    ctx: &RunContext<'_>,
    job: &TypedJob<K>,
    action: Action,
    state: JobState,
) -> anyhow::Result<Notice>
where
    K: Kind<Plan = MediaPlan, Tally = MediaTally>,
{
    let store = &ctx.services.store;
    let record = &job.record;
    let done = store.job_items_in_state(&record.id, ItemState::Done, 10).await?;
    let skipped = store.job_items_in_state(&record.id, ItemState::Skipped, 10).await?;
    let failed = store.job_items_in_state(&record.id, ItemState::Failed, 5).await?;
    let status = state.as_str();
    let mut notice = Notice::new()
        .title(&format!("Job {} ({}) {status}", record.id, record.kind))
        .field(&format!("{}d_count", action.as_str()), &job.tally.done.to_string())
        .field("status", status);
    if !done.is_empty() {
        let more = if job.tally.done > done.len() as i64 {
            format!(" … ({} in all)", job.tally.done)
        } else {
            String::new()
        };
        let ids: Vec<&str> = done.iter().map(|i| i.key.as_str()).collect();
        notice = notice.field("media", &format!("{}{more}", ids.join(", ")));
    }
    if action == Action::Quarantine {
        notice = notice.field("already quarantined before", &job.plan.already_quarantined.to_string());
    }
    if !skipped.is_empty() {
        let list: Vec<String> =
            skipped.iter().map(|i| format!("{} ({})", i.key, i.detail.as_deref().unwrap_or(""))).collect();
        let more = if job.tally.skipped > skipped.len() as i64 {
            format!(" … ({} in all)", job.tally.skipped)
        } else {
            String::new()
        };
        notice = notice.field("not quarantined", &format!("{}{more}", list.join(", ")));
    }
    notice = notice.field("failed", &job.tally.failed.to_string());
    if !failed.is_empty() {
        notice = notice.list(failed.iter().map(|i| format!("{}: {}", i.key, i.detail.as_deref().unwrap_or(""))));
    }
    Ok(notice.line(&format!("{}job {} lists every media and its outcome.", ctx.services.prefix, record.id)))
}
