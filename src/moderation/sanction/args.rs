//! The grammar of the account sanctions: `!suspend`, `!unsuspend`, `!lock`,
//! `!unlock`, `!shadowban`, `!unshadowban`, `!deactivate`. Each takes one
//! account of this homeserver and the usual `--reason/--dry-run/--yes`;
//! applying one to a server admin or a moderator needs `--force` (the
//! bot is refused whatever the flags);
//! `!deactivate` takes `--erase` and never `--yes`.

use clap::Args;
use clap::error::ErrorKind;
use ruma::OwnedUserId;

use super::Sanction;
use crate::grammar::{ActionFlags, args_via, parse_user, rule_error};

/// What every sanction command is, once parsed: the job kind's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SanctionArgs {
    pub user: OwnedUserId,
    pub sanction: Sanction,
    /// Also on a server admin, a moderator or the bot.
    pub force: bool,
    pub flags: ActionFlags,
}

/// The account a sanction applies to.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct Applied {
    /// The account: a user ID of this homeserver (@spammer:example.org) or a matrix.to link
    #[arg(value_name = "USER", value_parser = parse_user)]
    pub user: OwnedUserId,
    /// Apply it to a server admin or a moderator too (refused without; housekeep's bot is always refused)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub flags: ActionFlags,
}

/// The account a sanction is lifted from (lifting is harmless on anyone).
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct Lifted {
    /// The account: a user ID of this homeserver (@spammer:example.org) or a matrix.to link
    #[arg(value_name = "USER", value_parser = parse_user)]
    pub user: OwnedUserId,
    #[command(flatten)]
    pub flags: ActionFlags,
}

/// One sanction command's args type: its help (the doc comment), whether
/// it applies or lifts (`Applied` or `Lifted`), and its examples. Its name
/// and sanction are in `command.rs`'s `sanction_command!`.
macro_rules! sanction_args {
    ($(#[$doc:meta])* $args:ident, $target:ident, $examples:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Args)]
        #[command(after_long_help = $examples)]
        pub struct $args {
            #[command(flatten)]
            pub target: $target,
        }
    };
}

impl Applied {
    /// The job kind's arguments for `sanction`.
    pub(super) fn as_args(&self, sanction: Sanction) -> SanctionArgs {
        SanctionArgs { user: self.user.clone(), sanction, force: self.force, flags: self.flags.clone() }
    }
}

impl Lifted {
    /// The job kind's arguments for `sanction` (never `--force`: lifting is harmless).
    pub(super) fn as_args(&self, sanction: Sanction) -> SanctionArgs {
        SanctionArgs { user: self.user.clone(), sanction, force: false, flags: self.flags.clone() }
    }
}

sanction_args!(
    /// Suspend a local account: they can read and redact their own events, but not send, join or invite
    SuspendArgs, Applied,
    "Examples:\n  !suspend @spammer:example.org --reason \"spam wave\"\n  !suspend @spammer:example.org --yes"
);
sanction_args!(
    /// Lift a suspension
    UnsuspendArgs, Lifted,
    "Examples:\n  !unsuspend @alice:example.org --reason \"appeal accepted\""
);
sanction_args!(
    /// Lock a local account: every token is refused, they cannot log in; their devices stay
    LockArgs, Applied,
    "Examples:\n  !lock @spammer:example.org --reason \"compromised account\""
);
sanction_args!(
    /// Unlock a locked account
    UnlockArgs, Lifted,
    "Examples:\n  !unlock @alice:example.org"
);
sanction_args!(
    /// Shadow-ban a local account: what they send seems to succeed and reaches nobody
    ShadowbanArgs, Applied,
    "Examples:\n  !shadowban @spammer:example.org --dry-run"
);
sanction_args!(
    /// Lift a shadow-ban
    UnshadowbanArgs, Lifted,
    "Examples:\n  !unshadowban @alice:example.org"
);

/// Shown at the end of `!help deactivate`.
pub const DEACTIVATE_EXAMPLES: &str = "\
Examples:
  !deactivate @spammer:example.org --reason \"spam bot\"
  !deactivate @spammer:example.org --erase --dry-run";

/// Deactivate a local account for good (cannot be undone; always waits for a confirmation)
///
/// The account leaves every room and can never log in again. With --erase
/// its messages are also hidden from users who join rooms later. There is
/// no --yes: a moderator confirms the plan (a second moderator where
/// admin.two_person_threshold is set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeactivateArgs {
    pub target: Applied,
    pub erase: bool,
}

/// Deactivate a local account for good (cannot be undone; always waits for a confirmation)
///
/// The account leaves every room and can never log in again. With --erase
/// its messages are also hidden from users who join rooms later. There is
/// no --yes: a moderator confirms the plan (a second moderator where
/// admin.two_person_threshold is set).
#[derive(Args)]
#[command(after_long_help = DEACTIVATE_EXAMPLES)]
struct DeactivateCli {
    #[command(flatten)]
    target: Applied,
    /// Also erase: their messages are hidden from users who join later (GDPR erasure)
    #[arg(long)]
    erase: bool,
}

args_via!(DeactivateArgs, DeactivateCli);

impl TryFrom<DeactivateCli> for DeactivateArgs {
    type Error = clap::Error;

    fn try_from(cli: DeactivateCli) -> Result<Self, clap::Error> {
        if cli.target.flags.yes {
            return Err(rule_error(
                ErrorKind::ArgumentConflict,
                "--yes cannot run a deactivation: it cannot be undone, so it always waits for a moderator's \
                 confirmation; leave --yes out",
            ));
        }
        cli.target.flags.check()?;
        Ok(Self { target: cli.target, erase: cli.erase })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Suspend(SuspendArgs),
        Unlock(UnlockArgs),
        Deactivate(DeactivateArgs),
    }

    fn ok(body: &str) -> Tree {
        crate::grammar::test_support::ok::<Tree>(body)
    }

    #[test]
    fn a_sanction_takes_one_account_and_the_action_flags() {
        let Tree::Suspend(args) = ok("!suspend @spam:example.org --reason \"spam wave\" --yes") else { panic!() };
        let args = args.target.as_args(Sanction::Suspend);
        assert_eq!(args.user.as_str(), "@spam:example.org");
        assert!(args.flags.yes && !args.force);
        assert_eq!(args.flags.reason.as_deref(), Some("spam wave"));
        let Tree::Suspend(args) = ok("!suspend https://matrix.to/#/@spam:example.org --force") else { panic!() };
        assert!(args.target.force);
        let Tree::Deactivate(args) = ok("!deactivate @spam:example.org --erase --dry-run") else { panic!() };
        assert!(args.erase && args.target.flags.dry_run);
    }

    #[test]
    fn bad_input_says_what_was_wrong() {
        crate::grammar::test_support::assert_errors::<Tree>(&[
            ("!suspend", "the following required arguments were not provided", "Usage: !suspend "),
            ("!suspend spammer", "expected a user ID", "Usage: !suspend "),
            ("!suspend @a:x.org @b:x.org", "unexpected argument '@b:x.org'", "Usage: !suspend "),
            ("!suspend @a:x.org --dry-run --yes", "cannot be used with", "Usage: !suspend "),
            ("!unlock @a:x.org --force", "unexpected argument '--force'", "Usage: !unlock "),
            ("!deactivate @a:x.org --yes", "it cannot be undone", "Usage: !deactivate "),
            ("!deactivate @a:x.org --erase --yes", "leave --yes out", "Usage: !deactivate "),
        ]);
    }
}
