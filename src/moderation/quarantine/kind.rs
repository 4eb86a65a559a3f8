//! The `quarantine` and `unquarantine` job kinds: each media through
//! Synapse's admin API, a few at a time, in checkpointed batches.
//! Quarantining is idempotent, so a batch redone after a crash is harmless.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::args::{QuarantineArgs, UnquarantineArgs};
use super::plan::{Action, MediaPlan, Selection, is_protected, plan};
use crate::extract::mxc::parse_mxc;
use crate::homeserver::HsError;
use crate::jobs::{Batch, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Services, Tally, TypedJob};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobState};

/// Media handled per batch (one checkpoint each).
const BATCH_SIZE: i64 = 20;
/// Admin API calls in flight at once.
const CONCURRENCY: usize = 4;

/// Who shared a media, when a job takes only media of its own sharers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub owners: Vec<String>,
}

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
pub struct QuarantineKind;

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
        run_batch(ctx, job, Action::Quarantine).await
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        describe_result(ctx, job, Action::Quarantine, state).await
    }
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
        run_batch(ctx, job, Action::Unquarantine).await
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        describe_result(ctx, job, Action::Unquarantine, state).await
    }
}

/// The next media after the cursor, `CONCURRENCY` at a time.
async fn run_batch<K>(ctx: &RunContext<'_>, job: &TypedJob<K>, action: Action) -> anyhow::Result<Batch<K>>
where
    K: Kind<Plan = MediaPlan, Cursor = ItemCursor, Tally = MediaTally>,
{
    let items = ctx.next_items::<Option<Owned>>(job.cursor.0, BATCH_SIZE).await?;
    let Some(last) = items.last().map(|i| i.seq) else {
        let mut batch = Batch::<K>::new(job.cursor);
        batch.finished = true;
        return Ok(batch);
    };
    let reason = job.plan.reason.as_deref();
    let outcomes: Vec<_> = futures::stream::iter(items)
        .map(|item| async move {
            let owners = item.item.as_ref().map(|owned| owned.owners.as_slice());
            let outcome = apply(ctx.services, ctx.job.actor(), reason, action, &item.key, owners).await;
            outcome.map(|(state, detail)| (item, state, detail))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
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
        let info = match homeserver.media_info(server, media_id).await {
            Ok(info) => info,
            Err(error) => return refused_or_retry(error),
        };
        if let (Some(owners), Some(info)) = (owners, &info)
            && let Some(uploader) = info["user_id"].as_str()
            && !owners.iter().any(|owner| owner == uploader)
        {
            return Ok((
                ItemState::Skipped,
                format!("uploaded by {uploader}, not by who shared it: left alone (--include-others-uploads takes it)"),
            ));
        }
        if action == Action::Quarantine && info.as_ref().is_some_and(is_protected) {
            return Ok((ItemState::Skipped, "protected: Synapse keeps serving it".to_owned()));
        }
    }
    let called = match action {
        Action::Quarantine => homeserver.quarantine_media(server, media_id).await,
        Action::Unquarantine => homeserver.unquarantine_media(server, media_id).await,
    };
    if let Err(error) = called {
        return refused_or_retry(error);
    }
    let record = match action {
        Action::Quarantine => Some((actor, reason)),
        Action::Unquarantine => None,
    };
    services.store.set_media_quarantine(server, media_id, record).await?;
    Ok((ItemState::Done, format!("{}d", action.as_str())))
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
