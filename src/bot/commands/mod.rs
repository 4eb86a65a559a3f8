//! The registry: every admin-room command, one line each.
//!
//! A command is its args type (its grammar and help, in its own folder)
//! implementing [`AdminCommand`]; the line below adds it to the parser,
//! `!help`, dispatch and the rules for commands that act. Adding one:
//!
//! 1. in its folder, a clap `Args` type whose doc comment is its help
//!    (first line: the one-line description `!help` lists), with
//!    `#[command(after_long_help = EXAMPLES)]`;
//! 2. `impl AdminCommand` for it: its `NAME`, `action_flags` if it changes
//!    something on the homeserver (then `run` is one
//!    [`Context::plan_action`](crate::command::Context::plan_action) call
//!    with its job kind, registered in `service/mod.rs`), and `run`;
//! 3. one line here. The order here is `!help`'s order.

mod help;

use clap::Subcommand;

pub use help::HelpArgs;

use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::ActionFlags;

/// Declares [`Command`], the clap command tree, with one variant per line,
/// named as its args type's `AdminCommand::NAME`, and the three things
/// asked of a parsed command: its name, its action flags and running it.
macro_rules! registry {
    ($( $(#[cfg($cfg:meta)])? $variant:ident($args:ty), )*) => {
        /// One admin-room command, parsed.
        #[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
        pub enum Command {
            $( $(#[cfg($cfg)])? #[command(name = <$args as AdminCommand>::NAME)] $variant($args), )*
        }

        impl Command {
            /// The command's name as typed after the prefix (`"purge"`, …).
            pub fn name(&self) -> &'static str {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(_) => <$args as AdminCommand>::NAME, )*
                }
            }

            /// See [`AdminCommand::action_flags`].
            pub fn action_flags(&self) -> Option<&ActionFlags> {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(args) => args.action_flags(), )*
                }
            }

            /// See [`AdminCommand::run`].
            pub async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(args) => args.run(ctx).await, )*
                }
            }
        }
    };
}

registry! {
    Help(HelpArgs),
    Status(crate::command::StatusArgs),
    Purge(crate::moderation::purge::PurgeArgs),
    Cleanup(crate::moderation::cleanup::CleanupArgs),
    Room(crate::moderation::room::RoomArgs),
    Quarantine(crate::moderation::quarantine::QuarantineArgs),
    Unquarantine(crate::moderation::quarantine::UnquarantineArgs),
    Suspend(crate::moderation::sanction::SuspendArgs),
    Unsuspend(crate::moderation::sanction::UnsuspendArgs),
    Lock(crate::moderation::sanction::LockArgs),
    Unlock(crate::moderation::sanction::UnlockArgs),
    Shadowban(crate::moderation::sanction::ShadowbanArgs),
    Unshadowban(crate::moderation::sanction::UnshadowbanArgs),
    Deactivate(crate::moderation::sanction::DeactivateArgs),
    Backfill(crate::backfill::BackfillArgs),
    Blocklist(crate::media::blocklist::BlocklistArgs),
    Stats(crate::stats::StatsArgs),
    Reports(crate::reports::ReportsArgs),
    Report(crate::reports::ReportArgs),
    Policy(crate::policy_lists::PolicyArgs),
    Jobs(crate::command::JobsArgs),
    Job(crate::command::JobArgs),
    Confirm(crate::command::ConfirmArgs),
    Cancel(crate::command::CancelArgs),
    Audit(crate::command::AuditArgs),
    Dashboard(crate::web::DashboardArgs),
    #[cfg(debug_assertions)]
    TestJob(crate::command::testjob::TestJobArgs),
}

#[cfg(test)]
mod tests;
