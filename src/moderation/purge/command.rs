//! How `!purge` runs: a plan of its job kind.

use super::args::PurgeArgs;
use super::kind::PurgeKind;
use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::ActionFlags;

impl AdminCommand for PurgeArgs {
    const NAME: &'static str = "purge";

    fn action_flags(&self) -> Option<&ActionFlags> {
        Some(&self.flags)
    }

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        ctx.plan_action::<PurgeKind>(Self::NAME, &self.flags, self).await
    }
}
