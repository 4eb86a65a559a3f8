//! `!cleanup`'s grammar.

use clap::error::ErrorKind;
use clap::{ArgGroup, Args};
use ruma::OwnedUserId;

use crate::grammar::{ActionFlags, TimeSpec, args_via, parse_user, rule_error};
use crate::moderation::purge::PurgeMediaAction;
use crate::moderation::sanction::Sanction;

/// Shown at the end of `!help cleanup`.
pub const EXAMPLES: &str = "\
Examples:
  !cleanup @spammer:example.org --suspend --with-media quarantine --dry-run
  !cleanup @spammer:example.org --since 2d --lock --reason \"spam wave\"
  !cleanup @spammer:example.org --deactivate --with-media quarantine
  !cleanup @spammer:elsewhere.example --with-media quarantine --yes";

/// A parsed `!cleanup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupArgs {
    pub user: OwnedUserId,
    /// Only events sent after this time.
    pub since: Option<TimeSpec>,
    /// The sanction asked for: `Suspend`, `Lock` or `Deactivate`.
    pub sanction: Option<Sanction>,
    pub with_media: bool,
    pub force: bool,
    pub flags: ActionFlags,
}

/// Clean up after a spammer in one plan: stop the account, redact what it sent everywhere, quarantine its media
///
/// Selects every event the user sent in every indexed room (since --since),
/// and with --with-media quarantine the media those events shared and, for
/// a user of this homeserver, every upload of theirs. --suspend, --lock or
/// --deactivate (users of this homeserver only) stop the account first:
/// it is suspended at once, the events are redacted, and a lock or
/// deactivation is applied last (a locked or deactivated account can no
/// longer redact). One confirmation runs it all; the result reports each
/// part. --deactivate cannot be undone and never runs with --yes.
#[derive(Args)]
#[command(after_long_help = EXAMPLES)]
#[command(group(ArgGroup::new("sanction").args(["suspend", "lock", "deactivate"])))]
struct CleanupCli {
    /// The user: a user ID (of this homeserver or another) or a matrix.to link
    #[arg(value_name = "USER", value_parser = parse_user)]
    user: OwnedUserId,
    /// Only what they sent after TIME: a duration ago (2h, 7d), 2026-11-20 (UTC), or unix ms; default: everything indexed
    #[arg(long, value_name = "TIME")]
    since: Option<TimeSpec>,
    /// Suspend the account first: they cannot send, join or invite
    #[arg(long)]
    suspend: bool,
    /// Lock the account: suspended at once, locked once their events are redacted
    #[arg(long)]
    lock: bool,
    /// Deactivate the account for good: suspended at once, deactivated once their events are redacted
    #[arg(long)]
    deactivate: bool,
    /// Also quarantine the media their events shared and (a local user) every upload of theirs
    #[arg(long, value_enum, value_name = "ACTION")]
    with_media: Option<PurgeMediaAction>,
    /// Also when the user is a server admin, a moderator or housekeep's bot (refused without; no sanction on the bot even then)
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    flags: ActionFlags,
}

args_via!(CleanupArgs, CleanupCli);

impl TryFrom<CleanupCli> for CleanupArgs {
    type Error = clap::Error;

    fn try_from(cli: CleanupCli) -> Result<Self, clap::Error> {
        cli.flags.check()?;
        if cli.deactivate && cli.flags.yes {
            return Err(rule_error(
                ErrorKind::ArgumentConflict,
                "--deactivate cannot be undone, so the plan always waits for a moderator's confirmation; \
                 leave --yes out",
            ));
        }
        let sanction = match (cli.suspend, cli.lock, cli.deactivate) {
            (true, _, _) => Some(Sanction::Suspend),
            (_, true, _) => Some(Sanction::Lock),
            (_, _, true) => Some(Sanction::Deactivate { erase: false }),
            _ => None,
        };
        Ok(Self {
            user: cli.user,
            since: cli.since,
            sanction,
            with_media: cli.with_media.is_some(),
            force: cli.force,
            flags: cli.flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Cleanup(CleanupArgs),
    }

    fn cleanup(body: &str) -> CleanupArgs {
        let Tree::Cleanup(args) = crate::grammar::test_support::ok::<Tree>(body);
        args
    }

    #[test]
    fn a_user_a_window_a_sanction_and_the_media() {
        let a = cleanup("!cleanup @spam:example.org");
        assert_eq!((a.sanction, a.with_media, a.since), (None, false, None));
        let a = cleanup("!cleanup @spam:example.org --since 2d --lock --with-media quarantine --yes");
        assert_eq!(a.sanction, Some(Sanction::Lock));
        assert!(a.with_media && a.flags.yes);
        assert_eq!(a.since, Some(TimeSpec::Ago(std::time::Duration::from_secs(2 * 86_400))));
        assert_eq!(cleanup("!cleanup @s:x.org --suspend").sanction, Some(Sanction::Suspend));
        let a = cleanup("!cleanup https://matrix.to/#/@s:x.org --deactivate --dry-run");
        assert_eq!(a.sanction, Some(Sanction::Deactivate { erase: false }));
    }

    #[test]
    fn bad_input_says_what_was_wrong() {
        crate::grammar::test_support::assert_errors::<Tree>(&[
            ("!cleanup", "the following required arguments were not provided", "Usage: !cleanup "),
            ("!cleanup spammer", "expected a user ID", "Usage: !cleanup "),
            ("!cleanup @s:x.org --suspend --lock", "cannot be used with", "Usage: !cleanup "),
            ("!cleanup @s:x.org --deactivate --yes", "leave --yes out", "Usage: !cleanup "),
            ("!cleanup @s:x.org --with-media delete", "invalid value 'delete'", "Usage: !cleanup "),
            ("!cleanup @s:x.org --since yesterday", "is not a time", "Usage: !cleanup "),
            ("!cleanup @s:x.org --dry-run --yes", "cannot be used with", "Usage: !cleanup "),
        ]);
    }
}
