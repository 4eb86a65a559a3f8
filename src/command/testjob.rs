//! `!testjob`: a synthetic job kind that exercises the runner end to end
//! (kill -9 and resume, cancel, failures, panics, lanes). Compiled into
//! debug builds only.

use std::time::Duration;

use async_trait::async_trait;
use clap::{Args, value_parser};
use serde::{Deserialize, Serialize};

use super::{AdminCommand, Context, Executed};
use crate::grammar::ActionFlags;
use crate::jobs::{Batch, Kind, Lane, NoTally, PlanContext, Planned, RunContext, Size, TypedJob};
use crate::notice::Notice;
use crate::store::JobState;

// A parsed `!testjob` counts through `items` in batches. The doc comment is its help.
/// Run a synthetic job, to exercise the job framework (debug builds only)
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(hide = true)]
pub struct TestJobArgs {
    /// How many items the job processes (1-100000)
    #[arg(value_name = "ITEMS", value_parser = value_parser!(u32).range(1..=100_000))]
    pub items: u32,
    /// Items per batch, one checkpoint per batch (1-1000)
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// Pause in each batch, in milliseconds (0-60000), to watch progress or try !cancel
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = value_parser!(u64).range(..=60_000))]
    pub delay_ms: u64,
    /// Fail on item K (1-100000, 1-based), to exercise failure and resume; never fails if K > ITEMS
    #[arg(long, value_name = "K", value_parser = value_parser!(u32).range(1..=100_000))]
    pub fail_at: Option<u32>,
    /// Panic on item K (1-based), to exercise a job that hits a bug
    #[arg(long, value_name = "K", value_parser = value_parser!(u32).range(1..=100_000))]
    pub panic_at: Option<u32>,
    /// Run in the background lane (as backfill does) instead of the moderation lane
    #[arg(long)]
    pub background: bool,
    /// Panic while planning (in the admin-room worker), to exercise a command that hits a bug
    #[arg(long)]
    pub panic_in_plan: bool,
    /// Fail while planning, as a homeserver that is down would (the command is retried, then given up)
    #[arg(long)]
    pub plan_error: bool,
    #[command(flatten)]
    pub flags: ActionFlags,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestPlan {
    items: u32,
    batch: u32,
    delay_ms: u64,
    fail_at: Option<u32>,
    panic_at: Option<u32>,
}

/// The synthetic kind; `BACKGROUND` picks its lane.
#[derive(Debug, Default)]
pub struct TestJob<const BACKGROUND: bool>;

#[async_trait]
impl<const BACKGROUND: bool> Kind for TestJob<BACKGROUND> {
    const NAME: &'static str = if BACKGROUND { "testjob-background" } else { "testjob" };
    const LANE: Lane = if BACKGROUND { Lane::Background } else { Lane::Moderation };
    type Args = TestJobArgs;
    type Plan = TestPlan;
    /// Items done so far.
    type Cursor = u32;
    type Tally = NoTally;

    async fn plan(&self, _ctx: &mut PlanContext<'_>, args: &TestJobArgs) -> anyhow::Result<Planned<TestPlan>> {
        if args.panic_in_plan {
            panic!("asked to panic while planning (--panic-in-plan)");
        }
        if args.plan_error {
            anyhow::bail!("asked to fail while planning (--plan-error)");
        }
        let plan = TestPlan {
            items: args.items,
            batch: args.batch,
            delay_ms: args.delay_ms,
            fail_at: args.fail_at,
            panic_at: args.panic_at,
        };
        let summary = Notice::new().line(&format!(
            "Would process {} synthetic items in batches of {}, waiting {} ms per batch ({} lane).",
            plan.items,
            plan.batch,
            plan.delay_ms,
            Self::LANE.as_str()
        ));
        Ok(Planned {
            plan,
            summary,
            size: Size { events: i64::from(args.items), media: 0 },
            blocked: None,
            irreversible: false,
        })
    }

    /// Each item is one audited action, committed with the cursor: after a
    /// crash the batch in flight is redone and nothing is recorded twice.
    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let plan = &job.plan;
        let start = job.cursor;
        let end = (start + plan.batch).min(plan.items);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(plan.delay_ms)) => {}
            _ = ctx.cancel.cancelled() => anyhow::bail!("stopped while waiting"),
        }
        let mut batch = Batch::new(end);
        batch.finished = end >= plan.items;
        for item in start..end {
            let number = item + 1;
            if plan.panic_at == Some(number) {
                panic!("asked to panic at item {number} (--panic-at)");
            }
            let failed = plan.fail_at == Some(number);
            if failed {
                batch.extra_failed += 1;
            } else {
                batch.extra_done += 1;
            }
            let outcome = if failed { "failed: asked to fail (--fail-at)" } else { "done" };
            batch.audit.push(ctx.audit("testjob.item", Some(format!("item-{item}")), outcome.to_owned()));
        }
        Ok(batch)
    }

    async fn result(&self, _ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        let record = &job.record;
        Ok(Notice::new()
            .title(&format!("Job {} ({}) {}", record.id, record.kind, state.as_str()))
            .field("status", state.as_str())
            .field("done", &record.done_count.to_string())
            .field("failed", &record.failed_count.to_string()))
    }
}

impl AdminCommand for TestJobArgs {
    const NAME: &'static str = "testjob";

    fn action_flags(&self) -> Option<&ActionFlags> {
        Some(&self.flags)
    }

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        if self.background {
            ctx.plan_action::<TestJob<true>>(Self::NAME, &self.flags, self).await
        } else {
            ctx.plan_action::<TestJob<false>>(Self::NAME, &self.flags, self).await
        }
    }
}
