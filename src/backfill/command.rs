//! How `!backfill` runs: a backfill starts at once (read only); status and
//! retry-failed answer from the store.

use super::args::BackfillArgs;
use super::kind::BackfillKind;
use super::plan::BackfillRequest;
use super::status::{retry_failed, status};
use crate::command::{AdminCommand, Context, Executed};
use crate::jobs::{ConfirmPolicy, PlanMode};

impl AdminCommand for BackfillArgs {
    const NAME: &'static str = "backfill";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        match self {
            // Read only: starts at once, no confirmation.
            BackfillArgs::Start(start) => {
                let request = BackfillRequest::from_command(start, ctx.text());
                ctx.plan::<BackfillKind>(Self::NAME, &request, PlanMode::Yes, ConfirmPolicy::NONE).await
            }
            BackfillArgs::Status => Ok(Executed::ok(status(ctx.services()).await?)),
            BackfillArgs::RetryFailed => Ok(Executed::ok(retry_failed(ctx.services()).await?)),
        }
    }
}
