//! The `cleanup` job kind: the stop, the purge (delegated to `PurgeKind`,
//! batch by batch, on this job's items), the final sanction.
//!
//! Items, in order: the stop (seq 0) and the final sanction (seq 1), each
//! keyed by the account, then the purge's events and media. The purge part
//! starts after the sanction items and never reads them; the final
//! sanction's item is read back by its sequence number once the purge is
//! done.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::args::CleanupArgs;
use crate::grammar::RoomSelector;
use crate::jobs::{Batch, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Size, Tally, TypedJob};
use crate::moderation::purge::{
    self, PurgeArgs, PurgeCursor, PurgeKind, PurgeMediaAction, PurgeMethod, PurgePlan, PurgeTally,
};
use crate::moderation::sanction::{Protected, Sanction, account_key, apply, audit_action};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobState};

/// The stored plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupPlan {
    pub user_id: String,
    /// Applied before anything else (a suspension).
    pub stop: Option<Sanction>,
    /// Applied once the events are redacted (a lock or a deactivation).
    pub last: Option<Sanction>,
    pub purge: PurgePlan,
    /// Uploads of theirs quarantined beyond what their events shared.
    pub uploads: i64,
}

impl CleanupPlan {
    /// How many items the sanctions take before the purge's.
    fn sanction_items(&self) -> i64 {
        i64::from(self.stop.is_some()) + i64::from(self.last.is_some())
    }
}

/// Which part runs next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    #[default]
    Stop,
    Purge,
    Last,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupCursor {
    pub part: Part,
    /// The purge part's own cursor, once it started.
    pub purge: Option<PurgeCursor>,
}

/// One sanction as it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionOutcome {
    pub sanction: Sanction,
    pub state: ItemState,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupTally {
    pub sanctions: Vec<SanctionOutcome>,
    pub purge: PurgeTally,
    /// The stop suspended the account (it was not suspended before).
    pub suspended_here: bool,
}

impl Tally for CleanupTally {
    fn add(&mut self, other: Self) {
        self.sanctions.extend(other.sanctions);
        self.purge.add(other.purge);
        self.suspended_here |= other.suspended_here;
    }
}

pub struct CleanupKind {
    pub protected: Protected,
    pub purge: PurgeKind,
}

/// The stop and the final sanction of what was asked for.
fn steps(sanction: Option<Sanction>) -> (Option<Sanction>, Option<Sanction>) {
    match sanction {
        None => (None, None),
        Some(Sanction::Suspend) => (Some(Sanction::Suspend), None),
        Some(last) => (Some(Sanction::Suspend), Some(last)),
    }
}

#[async_trait]
impl Kind for CleanupKind {
    const NAME: &'static str = "cleanup";
    const LANE: Lane = Lane::Moderation;
    type Args = CleanupArgs;
    type Plan = CleanupPlan;
    type Cursor = CleanupCursor;
    type Tally = CleanupTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, args: &CleanupArgs) -> anyhow::Result<Planned<CleanupPlan>> {
        let user_id = args.user.to_string();
        let target = self.protected.look_up(ctx.services, &args.user).await?;
        let (stop, last) = if target.local { steps(args.sanction) } else { (None, None) };
        for (sanction, key) in [(stop, account_key(&user_id)), (last, format!("{}:last", account_key(&user_id)))] {
            if let Some(sanction) = sanction {
                ctx.push_item(key, &sanction).await?;
            }
        }
        ctx.flush().await?;
        let purge_args = PurgeArgs {
            rooms: RoomSelector::AllRooms,
            before: None,
            after: args.since,
            users: vec![args.user.clone()],
            events: Vec::new(),
            method: PurgeMethod::Redact,
            with_media: args.with_media.then_some(PurgeMediaAction::Quarantine),
            include_others_uploads: false,
            everything: false,
            flags: args.flags.clone(),
        };
        let purged = purge::plan(ctx, &purge_args).await?;
        let uploads = if args.with_media && target.local && purged.blocked.is_none() {
            purge::push_uploads(ctx, &user_id).await?
        } else {
            0
        };
        let plan = CleanupPlan { user_id, stop, last, purge: purged.plan, uploads };
        let mut summary =
            Notice::new().line(&format!("Cleanup of {}: one plan, run in this order once confirmed.", plan.user_id));
        summary = target.describe(summary);
        summary = summary.line(&match stop {
            Some(stop) => format!("1. Stop: {} now: {}.", stop.command(), stop.effect()),
            None if !target.local => "1. Stop: none (a user of another server: no sanction applies here).".to_owned(),
            None => "1. Stop: none (--suspend, --lock or --deactivate add one).".to_owned(),
        });
        summary = summary.line("2. Events:").append(purged.summary);
        if plan.uploads > 0 {
            summary = summary.line(&format!(
                "3. Media: also {} more uploads of theirs, quarantined after the events.",
                plan.uploads
            ));
        }
        if let Some(last) = last {
            summary = summary.line(&format!(
                "4. Then: {} them ({}): last, because a {} account can no longer redact.",
                last.command(),
                last.effect(),
                last.outcome()
            ));
        }
        let size = Size { events: plan.purge.events, media: plan.purge.media + plan.uploads };
        let irreversible = plan.last.is_some_and(Sanction::irreversible);
        Ok(Planned { plan, summary, size, blocked: purged.blocked, irreversible })
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let plan = &job.plan;
        let mut cursor = job.cursor.clone();
        if cursor.part == Part::Stop {
            cursor.part = Part::Purge;
            if let Some(stop) = plan.stop {
                let mut batch = Batch::<Self>::new(cursor);
                let done = sanction_item(ctx, &mut batch, stop, &plan.user_id, -1).await?;
                batch.tally.suspended_here = done && stop == Sanction::Suspend;
                return Ok(batch);
            }
        }
        if cursor.part == Part::Purge {
            let purge_job = self.purge_view(job);
            let purged = self.purge.run_batch(ctx, &purge_job).await?;
            cursor.purge = Some(purged.cursor);
            if purged.finished {
                cursor.part = Part::Last;
            }
            let mut batch = Batch::<Self>::new(cursor);
            batch.finished = purged.finished && plan.last.is_none();
            batch.items = purged.items;
            batch.audit = purged.audit;
            batch.extra_done = purged.extra_done;
            batch.extra_failed = purged.extra_failed;
            batch.wait = purged.wait;
            batch.tally.purge = purged.tally;
            return Ok(batch);
        }
        let mut batch = Batch::<Self>::new(cursor);
        batch.finished = true;
        let Some(last) = plan.last else { return Ok(batch) };
        let done = sanction_item(ctx, &mut batch, last, &plan.user_id, i64::from(plan.stop.is_some()) - 1).await?;
        if done && last == Sanction::Lock && job.tally.suspended_here {
            // The suspension only held them while their events were redacted.
            let (state, detail) = apply(ctx.services, Sanction::Unsuspend, &plan.user_id).await?;
            batch.audit.push(ctx.audit(&audit_action(Sanction::Unsuspend), Some(plan.user_id.clone()), detail.clone()));
            batch.tally.sanctions.push(SanctionOutcome { sanction: Sanction::Unsuspend, state, detail });
        }
        Ok(batch)
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        let mut notice = Notice::new()
            .title(&format!("Job {} (cleanup) {}", job.record.id, state.as_str()))
            .line(&format!("Cleanup of {}:", job.plan.user_id));
        let sanctions = job.tally.sanctions.iter().map(|outcome| {
            let failed = if outcome.state == ItemState::Failed { "FAILED: " } else { "" };
            format!("{}: {failed}{}", outcome.sanction.command(), outcome.detail)
        });
        notice = notice.list(sanctions);
        if job.plan.uploads > 0 {
            notice = notice.field("uploads of theirs among the media", &job.plan.uploads.to_string());
        }
        purge::report(ctx, &self.purge_view(job), state, notice).await
    }

    async fn ended(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<()> {
        self.purge.ended(ctx, &self.purge_view(job)).await
    }
}

impl CleanupKind {
    /// The job as its purge part sees it: its plan, its cursor (after the
    /// sanction items until it started), its totals.
    fn purge_view(&self, job: &TypedJob<Self>) -> TypedJob<PurgeKind> {
        let cursor = job.cursor.purge.clone().unwrap_or_else(|| PurgeCursor {
            after: ItemCursor(job.plan.sanction_items() - 1),
            ..PurgeCursor::default()
        });
        TypedJob { record: job.record.clone(), plan: job.plan.purge.clone(), cursor, tally: job.tally.purge.clone() }
    }
}

/// Applies the sanction item after `after_seq` to `user_id`; returns whether it changed
/// the account.
async fn sanction_item(
    ctx: &RunContext<'_>,
    batch: &mut Batch<CleanupKind>,
    sanction: Sanction,
    user_id: &str,
    after_seq: i64,
) -> anyhow::Result<bool> {
    let Some(item) = ctx.next_items::<Sanction>(after_seq, 1).await?.into_iter().next() else {
        anyhow::bail!("the plan's {} item is missing", sanction.command());
    };
    let (state, detail) = apply(ctx.services, sanction, user_id).await?;
    batch.tally.sanctions.push(SanctionOutcome { sanction, state, detail: detail.clone() });
    let result = ItemResult { seq: item.seq, key: item.key, item: serde_json::to_value(sanction)?, state, detail };
    batch.item(ctx.job, result, &audit_action(sanction));
    Ok(state == ItemState::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_or_a_deactivation_comes_last_after_a_suspension() {
        assert_eq!(steps(None), (None, None));
        assert_eq!(steps(Some(Sanction::Suspend)), (Some(Sanction::Suspend), None));
        assert_eq!(steps(Some(Sanction::Lock)), (Some(Sanction::Suspend), Some(Sanction::Lock)));
        let deactivate = Sanction::Deactivate { erase: false };
        assert_eq!(steps(Some(deactivate)), (Some(Sanction::Suspend), Some(deactivate)));
    }
}
