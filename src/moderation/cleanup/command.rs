//! How `!cleanup` runs: a sanction on another server's user, on the bot or
//! (without `--force`) on a protected account is refused; else a plan of
//! its job kind.

use super::args::CleanupArgs;
use super::kind::CleanupKind;
use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::ActionFlags;
use crate::moderation::sanction::{refuse_protected, refuse_the_bot};
use crate::notice::Notice;

impl AdminCommand for CleanupArgs {
    const NAME: &'static str = "cleanup";

    fn action_flags(&self) -> Option<&ActionFlags> {
        Some(&self.flags)
    }

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        let server = ctx.services().server_name();
        if let Some(sanction) = self.sanction
            && self.user.server_name().as_str() != server
        {
            let reply = Notice::new().line(&format!(
                "--{} acts on this homeserver's accounts only, and {} is a user of {}. Leave it out: \
                 {}cleanup {} --with-media quarantine redacts what they sent here and quarantines their media.",
                sanction.command(),
                self.user,
                self.user.server_name(),
                ctx.prefix(),
                self.user,
            ));
            return Ok(Executed::with_outcome(reply, "refused: a sanction on a user of another server"));
        }
        if self.sanction.is_some() && self.user == ctx.services().bot_user_id {
            return Ok(refuse_the_bot());
        }
        if let Some(refusal) = refuse_protected(ctx, &self.user, self.force).await? {
            return Ok(refusal);
        }
        ctx.plan_action::<CleanupKind>(Self::NAME, &self.flags, self).await
    }
}
