//! From a command to a stored plan: the kind selects and writes its items,
//! the confirmation rules decide what happens next.

use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use super::Jobs;
use super::context::PlanContext;
use super::kind::{Kind, Size};
use crate::clock::now_ms;
use crate::notice::Notice;
use crate::store::{AuditEntry, FinishedPlan, Job, JobState, NewJob};

/// What the moderator asked for besides the plan itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanMode {
    /// Wait for `!confirm` (or ✅).
    Confirm,
    /// `--yes`: run at once, if the selection is small enough.
    Yes,
    /// `--dry-run`: only show the plan.
    DryRun,
}

/// How big a selection may be before it needs more than `--yes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmPolicy {
    /// Above this, `--yes` is refused and the plan waits for a confirmation.
    pub yes_limit: Size,
    /// Above this, the confirmation must come from a moderator other than the requester.
    pub two_person: Option<Size>,
}

impl ConfirmPolicy {
    /// No limits (jobs housekeep starts by itself).
    pub const NONE: Self = Self { yes_limit: Size { events: i64::MAX, media: i64::MAX }, two_person: None };

    /// Whether a selection of `size` needs a moderator other than the
    /// requester: above the two-person threshold, or anything irreversible
    /// wherever that rule is on.
    fn needs_second_moderator(&self, size: Size, irreversible: bool) -> bool {
        self.two_person.is_some_and(|limit| irreversible || exceeds(size, limit))
    }

    /// Whether `--yes` (the requester confirming alone) is refused for it:
    /// above either threshold, whichever order they are in, and always for
    /// what cannot be undone.
    fn refuses_yes(&self, size: Size, irreversible: bool) -> bool {
        irreversible || exceeds(size, self.yes_limit) || self.needs_second_moderator(size, false)
    }
}

fn exceeds(size: Size, limit: Size) -> bool {
    size.events > limit.events || size.media > limit.media
}

/// Who asked for what.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// The command event (or a key naming what started the job): one job per key.
    pub command_event_id: String,
    pub room_id: String,
    pub requested_by: String,
    pub command_text: String,
    pub mode: PlanMode,
    /// How long a plan waits for its confirmation.
    pub expiry: Duration,
    pub policy: ConfirmPolicy,
}

/// What came of a plan.
#[derive(Debug, Clone)]
pub enum PlanOutcome {
    /// The selection is empty: no job.
    Nothing { summary: Notice },
    /// It cannot run as things are (`why`): no job, unless it was a dry run.
    Blocked { summary: Notice, why: String },
    /// A stored job: planned, confirmed (`--yes`) or a dry run.
    Job {
        job: Box<Job>,
        summary: Notice,
        /// `--yes` was given but the selection is above `admin.confirm_threshold`
        /// (or cannot be undone).
        yes_refused: bool,
        /// It cannot be undone: confirmed explicitly, whatever its size.
        irreversible: bool,
        /// Why it could not run as things are (a dry run is stored anyway).
        blocked: Option<String>,
    },
}

impl Jobs {
    /// Plans a job of kind `K` for a request. A request whose command made a
    /// job already (handled again after a crash) gets that job back, with its
    /// summary made again and nothing written.
    pub async fn plan<K: Kind>(&self, request: PlanRequest, args: &K::Args) -> anyhow::Result<PlanOutcome> {
        let kind = self.kind::<K>()?;
        let _planning = self.planning.acquire().await?;
        let store = &self.services.store;
        let new = NewJob {
            id: Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase(),
            kind: K::NAME.to_owned(),
            command_event_id: request.command_event_id.clone(),
            room_id: request.room_id.clone(),
            requested_by: request.requested_by.clone(),
            command_text: request.command_text.clone(),
        };
        let job = store.begin_planning(&new).await?;
        let now = now_ms();
        if job.state != JobState::Planning {
            let mut ctx = PlanContext::describe_only(&self.services, &job.id, &request.requested_by, job.created_at);
            let planned = kind.plan(&mut ctx, args).await?;
            return Ok(PlanOutcome::Job {
                job: Box::new(job),
                summary: planned.summary,
                yes_refused: false,
                irreversible: planned.irreversible,
                blocked: planned.blocked,
            });
        }
        let dry_run = request.mode == PlanMode::DryRun;
        let mut ctx = PlanContext::new(&self.services, &job.id, &request.requested_by, now, dry_run);
        let planned = match kind.plan(&mut ctx, args).await {
            Ok(planned) => planned,
            Err(error) => {
                store.abandon_planning(&job.id).await?;
                return Err(error);
            }
        };
        ctx.flush().await?;
        // Progress counts items; a kind that lists none counts its selection.
        let total = match ctx.items_written() {
            0 => planned.size.events + planned.size.media,
            items => items,
        };
        if let Some(why) = &planned.blocked
            && !dry_run
        {
            store.abandon_planning(&job.id).await?;
            return Ok(PlanOutcome::Blocked { summary: planned.summary, why: why.clone() });
        }
        if total == 0 {
            store.abandon_planning(&job.id).await?;
            return Ok(PlanOutcome::Nothing { summary: planned.summary });
        }
        let needs_second_moderator = request.policy.needs_second_moderator(planned.size, planned.irreversible);
        let yes_refused =
            request.mode == PlanMode::Yes && request.policy.refuses_yes(planned.size, planned.irreversible);
        let state = match request.mode {
            PlanMode::DryRun => JobState::DryRun,
            PlanMode::Yes if !yes_refused => JobState::Confirmed,
            _ => JobState::Planned,
        };
        let plan = serde_json::to_value(&planned.plan)?;
        let plan_hash = hex::encode(Sha256::digest(plan.to_string().as_bytes()));
        let finished = FinishedPlan {
            plan,
            plan_hash: plan_hash.clone(),
            state,
            total_count: total,
            expires_at: now + request.expiry.as_millis() as i64,
            needs_second_moderator,
        };
        let audit = AuditEntry {
            actor: request.requested_by.clone(),
            room_id: Some(request.room_id.clone()),
            event_id: Some(request.command_event_id.clone()),
            job_id: Some(job.id.clone()),
            action: "plan".to_owned(),
            command: Some(request.command_text.clone()),
            target: Some(format!("plan {}", &plan_hash[..12])),
            outcome: if yes_refused {
                "planned: --yes refused (above the confirm or two-person threshold)".to_owned()
            } else {
                state.as_str().to_owned()
            },
        };
        // A confirmed (`--yes`) job starts once its plan is posted: the
        // front-end records the plan's message, then wakes the runner.
        let job = store.finish_planning(&job.id, &finished, &request.requested_by, &audit).await?;
        if dry_run {
            store.delete_job_items(&job.id).await?;
        }
        Ok(PlanOutcome::Job {
            job: Box::new(job),
            summary: planned.summary,
            yes_refused,
            irreversible: planned.irreversible,
            blocked: planned.blocked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_exceeds_a_limit_by_events_or_by_media() {
        let limit = Size { events: 1000, media: 100 };
        assert!(!exceeds(Size { events: 1000, media: 100 }, limit));
        assert!(exceeds(Size { events: 1001, media: 0 }, limit));
        assert!(exceeds(Size { events: 0, media: 101 }, limit));
        assert!(!exceeds(Size { events: i64::MAX, media: i64::MAX }, ConfirmPolicy::NONE.yes_limit));
    }

    #[test]
    fn yes_is_never_enough_where_a_second_moderator_is_needed() {
        let size = |events| Size { events, media: 0 };
        // Two-person below the confirm threshold: --yes must not slip between them.
        let policy = ConfirmPolicy { yes_limit: size(1000), two_person: Some(size(10)) };
        assert!(!policy.refuses_yes(size(10), false));
        assert!(policy.refuses_yes(size(11), false) && policy.needs_second_moderator(size(11), false));
        let policy = ConfirmPolicy { yes_limit: size(10), two_person: Some(size(1000)) };
        assert!(policy.refuses_yes(size(11), false) && !policy.needs_second_moderator(size(11), false));
        assert!(!ConfirmPolicy::NONE.refuses_yes(size(i64::MAX), false));
    }

    #[test]
    fn what_cannot_be_undone_is_never_yes_and_needs_a_second_moderator_where_that_rule_is_on() {
        let nothing = Size::default();
        assert!(ConfirmPolicy::NONE.refuses_yes(nothing, true));
        assert!(!ConfirmPolicy::NONE.needs_second_moderator(nothing, true), "no two-person rule configured");
        let policy = ConfirmPolicy {
            yes_limit: Size { events: 1000, media: 100 },
            two_person: Some(Size { events: 10_000, media: 1000 }),
        };
        assert!(policy.needs_second_moderator(nothing, true) && !policy.needs_second_moderator(nothing, false));
    }
}
