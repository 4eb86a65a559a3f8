//! Admin-room chat commands: the command tree and its (pure) parser.
//!
//! [`Command`] is a clap-derived enum tree, one module per command group; the
//! doc comments on the clap types are the help text, so `!help` cannot drift
//! from the parser. [`parse_command`] turns a message body into a `Command`
//! (or a [`CommandError`] to show the moderator); [`help_text`] renders help.
//! Nothing here does I/O: executing a command is someone else's job.
//!
//! Some public argument types (`PurgeArgs`, `QuarantineArgs`, …) are plain
//! structs/enums shaped for the executor to `match` on, and parse through a
//! private clap-derived twin (`PurgeCli`, …) via [`clap::Args`] and
//! [`clap::FromArgMatches`] impls that delegate to it; cross-argument rules
//! clap cannot express are checked in that conversion, with errors that say
//! what was wrong.

mod audit;
mod backfill;
mod jobs;
mod links;
mod parse;
mod purge;
mod quarantine;
mod stats;
pub mod time;

pub use audit::{AuditArgs, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use backfill::BackfillArgs;
#[cfg(debug_assertions)]
pub use jobs::TestJobArgs;
pub use jobs::{JobIdArg, MAX_JOB_ID_LEN, is_valid_job_id};
pub use links::normalize_matrix_link;
pub use parse::{CommandError, help_text, parse_command};
pub use purge::{PurgeArgs, PurgeMediaAction, PurgeMethod};
pub use quarantine::{QuarantineArgs, QuarantineTarget, UnquarantineArgs, UnquarantineTarget};
pub use stats::{DEFAULT_STATS_DAYS, MAX_STATS_DAYS, StatsArgs};
pub use time::{TimeSpec, TimeSpecError};

use clap::{Args, Subcommand};
use ruma::{OwnedEventId, OwnedRoomOrAliasId, OwnedUserId};

/// One admin-room command, parsed. Variant doc comments are the one-line
/// descriptions `!help` lists (first line) and the intro of each command's
/// own help (the rest).
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// List the commands, or show the full help of one
    ///
    /// The same help comes with --help after any command.
    Help(HelpArgs),
    /// Show the health of the index, backfill, jobs and the homeserver
    Status,
    /// Redact or delete events: in one room, or by sender/event across all rooms
    ///
    /// Selects events from the index by room, time, sender and event ID. Shows
    /// a plan first; nothing happens until !confirm <job> (or a ✅ reaction
    /// on the plan), unless --yes is given. A purge is local only: other
    /// servers in the room may still have the events (they receive
    /// redactions, but nothing makes them drop their copies).
    #[command(after_long_help = purge::EXAMPLES)]
    Purge(PurgeArgs),
    /// Quarantine media: by mxc URI, or all media of a room, user, event or file hash
    ///
    /// Quarantined media is no longer served by this homeserver. Shows a plan
    /// first; nothing happens until !confirm <job> (or a ✅ reaction on the
    /// plan), unless --yes is given.
    #[command(after_long_help = quarantine::QUARANTINE_EXAMPLES)]
    Quarantine(QuarantineArgs),
    /// Lift a quarantine: by mxc URI, or all media of a room, user or file hash
    ///
    /// Shows a plan first; nothing happens until !confirm <job> (or a ✅
    /// reaction on the plan), unless --yes is given.
    #[command(after_long_help = quarantine::UNQUARANTINE_EXAMPLES)]
    Unquarantine(UnquarantineArgs),
    /// Fetch room history into the index, or show/retry backfill progress
    #[command(after_long_help = backfill::EXAMPLES)]
    Backfill(BackfillArgs),
    /// Summarize activity (events, senders, media) with a chart
    #[command(after_long_help = stats::EXAMPLES)]
    Stats(StatsArgs),
    /// List recent and running jobs
    Jobs,
    /// Show one job: its plan, progress and result
    Job(JobIdArg),
    /// Run a planned job (same as a ✅ reaction on its plan)
    Confirm(JobIdArg),
    /// Cancel a planned or running job (a running one stops after its current batch)
    Cancel(JobIdArg),
    /// Show the audit log: who ran what, and how it went
    Audit(AuditArgs),
    /// Run a synthetic job, to exercise the job framework (debug builds only)
    #[cfg(debug_assertions)]
    #[command(name = "testjob", hide = true)]
    TestJob(TestJobArgs),
}

impl Command {
    /// The command's name as typed after the prefix (`"purge"`, `"testjob"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Help(_) => "help",
            Command::Status => "status",
            Command::Purge(_) => "purge",
            Command::Quarantine(_) => "quarantine",
            Command::Unquarantine(_) => "unquarantine",
            Command::Backfill(_) => "backfill",
            Command::Stats(_) => "stats",
            Command::Jobs => "jobs",
            Command::Job(_) => "job",
            Command::Confirm(_) => "confirm",
            Command::Cancel(_) => "cancel",
            Command::Audit(_) => "audit",
            #[cfg(debug_assertions)]
            Command::TestJob(_) => "testjob",
        }
    }

    /// Whether the command changes anything on the homeserver: it then goes
    /// through plan → confirm (unless `--yes`) and takes [`ActionFlags`].
    pub fn is_destructive(&self) -> bool {
        self.action_flags().is_some()
    }

    /// The `--reason/--dry-run/--yes` flags of a destructive command.
    pub fn action_flags(&self) -> Option<&ActionFlags> {
        match self {
            Command::Purge(args) => Some(&args.flags),
            Command::Quarantine(args) => Some(&args.flags),
            Command::Unquarantine(args) => Some(&args.flags),
            #[cfg(debug_assertions)]
            Command::TestJob(args) => Some(&args.flags),
            Command::Help(_)
            | Command::Status
            | Command::Backfill(_)
            | Command::Stats(_)
            | Command::Jobs
            | Command::Job(_)
            | Command::Confirm(_)
            | Command::Cancel(_)
            | Command::Audit(_) => None,
        }
    }
}

/// `!help [command [subcommand]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub struct HelpArgs {
    /// The command to explain, e.g. purge (the prefix is optional)
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// For commands with parts, the part, e.g. !help quarantine media
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

impl HelpArgs {
    /// The topic to pass to [`help_text`]: `"quarantine media"`, `"purge"` or `None`.
    pub fn topic(&self) -> Option<String> {
        match (&self.command, &self.subcommand) {
            (Some(command), Some(sub)) => Some(format!("{command} {sub}")),
            (Some(command), None) => Some(command.clone()),
            (None, _) => None,
        }
    }
}

/// Flags every destructive command takes.
///
/// Without `--dry-run` or `--yes`, the command makes a plan and waits for
/// `!confirm <job>` (or a ✅ reaction on the plan message).
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub struct ActionFlags {
    /// Why: kept in the audit log and the job, and given to the homeserver where it takes one (redactions)
    #[arg(long, global = true, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: Option<String>,
    /// Only show the plan; change nothing
    #[arg(long, global = true, conflicts_with = "yes")]
    pub dry_run: bool,
    /// Run at once, without waiting for !confirm
    #[arg(long, global = true)]
    pub yes: bool,
}

impl ActionFlags {
    /// `--dry-run` and `--yes` exclude each other. Clap checks this within one
    /// level; this also catches `!quarantine --dry-run media … --yes`, where the
    /// two land on different levels of the command tree.
    fn check(&self) -> Result<(), clap::Error> {
        if self.dry_run && self.yes {
            return Err(rule_error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--dry-run' cannot be used with '--yes': \
                 --dry-run only shows the plan, --yes runs it without asking",
            ));
        }
        Ok(())
    }
}

/// Longest `--reason`, in characters: it ends up in redaction events and the audit log.
pub const MAX_REASON_CHARS: usize = 500;

fn parse_reason(s: &str) -> Result<String, String> {
    let reason = s.trim();
    if reason.is_empty() {
        return Err("the reason is empty; leave --reason out instead".to_owned());
    }
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(format!("the reason is {chars} characters long; at most {MAX_REASON_CHARS} are allowed"));
    }
    Ok(reason.to_owned())
}

/// A room argument; ruma's reason, then what was expected.
fn parse_room(s: &str) -> Result<OwnedRoomOrAliasId, String> {
    s.parse().map_err(|e| {
        format!("{e}; expected a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link")
    })
}

/// A user argument; ruma's reason, then what was expected.
fn parse_user(s: &str) -> Result<OwnedUserId, String> {
    s.parse().map_err(|e| format!("{e}; expected a user ID (@alice:example.org) or a matrix.to link"))
}

/// An event argument; ruma's reason, then what was expected.
fn parse_event(s: &str) -> Result<OwnedEventId, String> {
    s.parse().map_err(|e| format!("{e}; expected an event ID ($abc...) or a message link"))
}

/// Which rooms a command acts on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoomSelector {
    /// One room, by ID or alias (aliases are resolved by the executor).
    Room(OwnedRoomOrAliasId),
    /// Every room the index knows.
    AllRooms,
}

/// Implements [`clap::Args`] and [`clap::FromArgMatches`] for a public
/// argument type by delegating to its private clap-derived twin, converting
/// with `TryFrom<Twin, Error = clap::Error>` (where cross-argument rules live).
macro_rules! args_via {
    ($public:ty, $cli:ty) => {
        impl ::clap::FromArgMatches for $public {
            fn from_arg_matches(matches: &::clap::ArgMatches) -> Result<Self, ::clap::Error> {
                <$cli as ::clap::FromArgMatches>::from_arg_matches(matches).and_then(Self::try_from)
            }

            fn update_from_arg_matches(&mut self, matches: &::clap::ArgMatches) -> Result<(), ::clap::Error> {
                *self = <Self as ::clap::FromArgMatches>::from_arg_matches(matches)?;
                Ok(())
            }
        }

        impl ::clap::Args for $public {
            fn augment_args(cmd: ::clap::Command) -> ::clap::Command {
                <$cli as ::clap::Args>::augment_args(cmd)
            }

            fn augment_args_for_update(cmd: ::clap::Command) -> ::clap::Command {
                <$cli as ::clap::Args>::augment_args_for_update(cmd)
            }
        }
    };
}
use args_via;

/// A clap error for a rule clap could not check itself; the parser formats
/// it with the command's usage.
fn rule_error(kind: clap::error::ErrorKind, message: impl std::fmt::Display) -> clap::Error {
    clap::Error::raw(kind, message)
}

#[cfg(test)]
mod test_support {
    use super::{Command, CommandError, parse_command};

    /// Parses `body` with prefix `!`, expecting a command.
    pub fn ok(body: &str) -> Command {
        match parse_command(body, "!") {
            Some(Ok(command)) => command,
            other => panic!("{body:?} parsed to {other:?}"),
        }
    }

    /// Parses `body` with prefix `!`, expecting an error.
    pub fn err(body: &str) -> CommandError {
        match parse_command(body, "!") {
            Some(Err(e)) => {
                assert!(!e.message.contains('\x1b'), "ANSI in {e:?}");
                e
            }
            other => panic!("{body:?} parsed to {other:?}"),
        }
    }

    /// For each `(body, expected message part, expected usage prefix)`:
    /// parsing fails, says what was wrong, and shows the right usage.
    pub fn assert_errors(table: &[(&str, &str, &str)]) {
        for (body, expected, usage) in table {
            let e = err(body);
            assert!(e.message.contains(expected), "{body:?}: {:?} should contain {expected:?}", e.message);
            let got = e.usage.as_deref().unwrap_or_default();
            assert!(got.starts_with(usage), "{body:?}: usage {got:?} should start with {usage:?}");
        }
    }
}
