//! How `!quarantine` and `!unquarantine` run: a plan of their job kinds.

use super::args::{QuarantineArgs, UnquarantineArgs};
use super::kind::{QuarantineKind, UnquarantineKind};
use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::ActionFlags;

impl AdminCommand for QuarantineArgs {
    const NAME: &'static str = "quarantine";

    fn action_flags(&self) -> Option<&ActionFlags> {
        Some(&self.flags)
    }

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        ctx.plan_action::<QuarantineKind>(Self::NAME, &self.flags, self).await
    }
}

impl AdminCommand for UnquarantineArgs {
    const NAME: &'static str = "unquarantine";

    fn action_flags(&self) -> Option<&ActionFlags> {
        Some(&self.flags)
    }

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        ctx.plan_action::<UnquarantineKind>(Self::NAME, &self.flags, self).await
    }
}
