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
use crate::store::{EventFilter, ItemResult, ItemState, JobState};

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
    /// Asked for with `--force`: a server admin or a moderator too.
    #[serde(default)]
    pub force: bool,
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
    /// Lift the suspension the stop added, once the lock holds.
    Lift,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupCursor {
    pub part: Part,
    /// The purge part's own cursor, once it started.
    pub purge: Option<PurgeCursor>,
    /// Whether the account was suspended before the stop: read and
    /// committed before the stop suspends it, so a restart right after the
    /// suspension still knows the suspension is this job's.
    #[serde(default)]
    pub was_suspended: Option<bool>,
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
}

impl Tally for CleanupTally {
    fn add(&mut self, other: Self) {
        self.sanctions.extend(other.sanctions);
        self.purge.add(other.purge);
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
        let plan = CleanupPlan { user_id, stop, last, purge: purged.plan, uploads, force: args.force };
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
        match (cursor.part, plan.stop) {
            (Part::Stop, Some(stop)) => {
                if let Some(refusal) = self.protected.refused_now(ctx.services, stop, &plan.user_id, plan.force).await?
                {
                    anyhow::bail!("{refusal}; nothing of the cleanup was done");
                }
                if cursor.was_suspended.is_none() {
                    // Committed before the suspension: see `was_suspended`.
                    let status = ctx.services.homeserver.account_status(&plan.user_id).await?;
                    cursor.was_suspended = Some(status.is_some_and(|s| s.suspended == Some(true)));
                    return Ok(Batch::new(cursor));
                }
                cursor.part = Part::Purge;
                let mut batch = Batch::<Self>::new(cursor);
                sanction_item(ctx, &mut batch, stop, &plan.user_id, -1).await?;
                Ok(batch)
            }
            (Part::Stop, None) => {
                cursor.part = Part::Purge;
                Ok(Batch::new(cursor))
            }
            (Part::Purge, _) => {
                let purged = self.purge.run_batch(ctx, &self.purge_view(job)).await?;
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
                Ok(batch)
            }
            (Part::Last, _) => {
                let Some(last) = plan.last else {
                    let mut batch = Batch::<Self>::new(cursor);
                    batch.finished = true;
                    return Ok(batch);
                };
                // The key `!suspend`/`!lock` jobs take: none acts on the account meanwhile.
                ctx.lock(vec![account_key(&plan.user_id)]).await;
                cursor.part = Part::Lift;
                let mut batch = Batch::<Self>::new(cursor);
                batch.finished = last != Sanction::Lock;
                sanction_item(ctx, &mut batch, last, &plan.user_id, i64::from(plan.stop.is_some()) - 1).await?;
                Ok(batch)
            }
            (Part::Lift, _) => {
                let mut batch = Batch::<Self>::new(cursor.clone());
                batch.finished = true;
                ctx.lock(vec![account_key(&plan.user_id)]).await;
                let (state, detail) = self.lift_suspension(ctx, job, cursor.was_suspended).await?;
                let target = Some(account_key(&plan.user_id));
                batch.audit.push(ctx.audit(
                    &audit_action(Sanction::Unsuspend),
                    target,
                    format!("{}: {detail}", state.as_str()),
                ));
                batch.tally.sanctions.push(SanctionOutcome { sanction: Sanction::Unsuspend, state, detail });
                Ok(batch)
            }
        }
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
        let mut notice = purge::report(ctx, &self.purge_view(job), state, notice).await?;
        // What they sent between the plan and the stop is not in the plan.
        let since_plan = EventFilter {
            senders: vec![job.plan.user_id.clone()],
            after: Some(job.record.created_at),
            ..EventFilter::default()
        };
        let later = ctx.services.store.event_selection_stats(&since_plan).await?.events;
        if later > 0 {
            notice = notice.line(&format!(
                "{later} events of theirs reached the index after the plan was made and are not in it: \
                 {}cleanup {} again takes them.",
                ctx.services.prefix, job.plan.user_id
            ));
        }
        Ok(notice)
    }

    async fn ended(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<()> {
        self.purge.ended(ctx, &self.purge_view(job)).await
    }
}

impl CleanupKind {
    /// Lifts the suspension the stop added, once the lock holds: not when
    /// the account was suspended before, nor when another moderator
    /// suspended it meanwhile (their `!suspend` found it suspended and
    /// changed nothing, but it was their decision), nor when it is not
    /// locked after all.
    async fn lift_suspension(
        &self,
        ctx: &RunContext<'_>,
        job: &TypedJob<Self>,
        was_suspended: Option<bool>,
    ) -> anyhow::Result<(ItemState, String)> {
        let user_id = &job.plan.user_id;
        if was_suspended != Some(false) {
            return Ok((ItemState::Skipped, "suspended before the cleanup: left suspended".to_owned()));
        }
        let services = ctx.services;
        let by_others = services
            .store
            .actions_by_others_since(
                &audit_action(Sanction::Suspend),
                &account_key(user_id),
                job.record.created_at,
                &job.record.id,
            )
            .await?;
        if by_others > 0 {
            return Ok((ItemState::Skipped, "another moderator suspended them meanwhile: left suspended".to_owned()));
        }
        let locked = services.homeserver.account_status(user_id).await?.is_some_and(|s| s.locked == Some(true));
        if !locked {
            return Ok((ItemState::Skipped, "not locked: left suspended".to_owned()));
        }
        apply(services, Sanction::Unsuspend, user_id).await
    }

    /// The job as its purge part sees it: its plan, its cursor (after the
    /// sanction items until it started), its totals.
    fn purge_view(&self, job: &TypedJob<Self>) -> TypedJob<PurgeKind> {
        let cursor = job.cursor.purge.clone().unwrap_or_else(|| PurgeCursor {
            after: ItemCursor(job.plan.sanction_items() - 1),
            ..PurgeCursor::default()
        });
        // Its media items include the uploads: the result counts them all.
        let plan = PurgePlan { media: job.plan.purge.media + job.plan.uploads, ..job.plan.purge.clone() };
        TypedJob { record: job.record.clone(), plan, cursor, tally: job.tally.purge.clone() }
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
