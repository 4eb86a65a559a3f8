//! How the account sanctions run: a remote account, housekeep's own bot and
//! (without `--force`) a protected account are refused; else a plan of the
//! sanction job kind. The refusals are `!cleanup`'s too.

use ruma::UserId;

use super::Sanction;
use super::args::{
    DeactivateArgs, LockArgs, SanctionArgs, ShadowbanArgs, SuspendArgs, UnlockArgs, UnshadowbanArgs, UnsuspendArgs,
};
use super::kind::SanctionKind;
use super::target::refuse_remote;
use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::ActionFlags;
use crate::notice::Notice;

/// One sanction command's `impl AdminCommand`: its name and sanction.
macro_rules! sanction_command {
    ($args:ident, $name:literal, $sanction:expr) => {
        impl AdminCommand for $args {
            const NAME: &'static str = $name;

            fn action_flags(&self) -> Option<&ActionFlags> {
                Some(&self.target.flags)
            }

            async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
                run(ctx, Self::NAME, &self.target.as_args($sanction)).await
            }
        }
    };
}

sanction_command!(SuspendArgs, "suspend", Sanction::Suspend);
sanction_command!(UnsuspendArgs, "unsuspend", Sanction::Unsuspend);
sanction_command!(LockArgs, "lock", Sanction::Lock);
sanction_command!(UnlockArgs, "unlock", Sanction::Unlock);
sanction_command!(ShadowbanArgs, "shadowban", Sanction::Shadowban);
sanction_command!(UnshadowbanArgs, "unshadowban", Sanction::Unshadowban);

impl AdminCommand for DeactivateArgs {
    const NAME: &'static str = "deactivate";

    fn action_flags(&self) -> Option<&ActionFlags> {
        Some(&self.target.flags)
    }

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        run(ctx, Self::NAME, &self.target.as_args(Sanction::Deactivate { erase: self.erase })).await
    }
}

/// Refuses what no plan should be made for (a remote account; a protected
/// one without `--force`), else plans.
async fn run(ctx: &Context<'_>, name: &str, args: &SanctionArgs) -> anyhow::Result<Executed> {
    let services = ctx.services();
    if let Some(refusal) = refuse_remote(&args.user, services.server_name(), ctx.prefix()) {
        return Ok(Executed::with_outcome(refusal, "refused: a user of another server"));
    }
    if args.user == services.bot_user_id {
        return Ok(refuse_the_bot());
    }
    if !args.sanction.lifts()
        && let Some(refusal) = refuse_protected(ctx, &args.user, args.force).await?
    {
        return Ok(refusal);
    }
    ctx.plan_action::<SanctionKind>(name, &args.flags, args).await
}

/// No sanction applies to housekeep's own bot, `--force` or not: it would
/// stop housekeep itself.
pub fn refuse_the_bot() -> Executed {
    let reply =
        Notice::new().line("Refused: that is housekeep's own bot; a sanction on it would stop housekeep itself.");
    Executed::with_outcome(reply, "refused: housekeep's own bot")
}

/// Acting on a server admin, a moderator or the bot without `--force`:
/// refused, saying who they are.
pub async fn refuse_protected(ctx: &Context<'_>, user: &UserId, force: bool) -> anyhow::Result<Option<Executed>> {
    if force {
        return Ok(None);
    }
    let kind = ctx.jobs.kind::<SanctionKind>()?;
    // Most targets are nobody in particular: the plan reads their rooms,
    // this need not too. Only a protected one (or one the admin room cannot
    // tell about) is read in full, for the refusal to say who they are.
    if kind.protected.protected_now(ctx.services(), user).await.is_ok_and(|protected| protected.is_empty()) {
        return Ok(None);
    }
    let target = kind.protected.look_up(ctx.services(), user).await?;
    let protected = target.protected_as();
    if protected.is_empty() {
        return Ok(None);
    }
    let reply = target.describe(Notice::new().line(&format!(
        "Refused: {user} is {}. Nothing was planned. If you mean it, send the command again with --force.",
        protected.join(" and ")
    )));
    Ok(Some(Executed::with_outcome(reply, format!("refused: {user} is {}", protected.join(" and ")))))
}
