//! The shared grammar of chat commands: the parse pipeline (generic over
//! a command tree), help rendering, and the argument pieces several commands
//! use (times, rooms, users, links, `--reason/--dry-run/--yes`).
//!
//! Pure: nothing here does I/O. Each command's own grammar lives with the
//! rest of that command (`moderation/purge/args.rs`, …); the chat front-end
//! assembles them into one tree (`bot/commands`).
//!
//! Argument types with rules clap cannot express (`PurgeArgs`, …) are plain
//! structs/enums shaped for their `AdminCommand::run` to `match` on, and parse through a
//! private clap-derived twin (`PurgeCli`, …) via [`clap::Args`] and
//! [`clap::FromArgMatches`] impls that delegate to it ([`args_via`]); the
//! cross-argument rules are checked in that conversion, with errors that say
//! what was wrong.

mod links;
mod parse;
pub mod time;

pub use links::{normalize_matrix_link, percent_encode};
pub use parse::{CommandError, CommandTree, help_text, parse_command, prepare_for_split, root_command, with_prefix};
pub use time::{TimeSpec, TimeSpecError};

use clap::Args;
use ruma::{OwnedEventId, OwnedRoomOrAliasId, OwnedUserId};

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
    pub fn check(&self) -> Result<(), clap::Error> {
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

pub fn parse_reason(s: &str) -> Result<String, String> {
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

/// An ID typed into a command with a character that hides or reorders text
/// (copied from a crafted name, say) would target something other than
/// what the moderator reads: refused, naming the character.
fn visible(s: &str) -> Result<&str, String> {
    match crate::text::first_hiding(s) {
        Some(c) => Err(format!("{s:?} holds an invisible or direction-changing character ({c}); type the ID again")),
        None => Ok(s),
    }
}

/// A room argument; ruma's reason, then what was expected.
pub fn parse_room(s: &str) -> Result<OwnedRoomOrAliasId, String> {
    visible(s)?.parse().map_err(|e| {
        format!("{e}; expected a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link")
    })
}

/// A user argument; ruma's reason, then what was expected.
pub fn parse_user(s: &str) -> Result<OwnedUserId, String> {
    visible(s)?.parse().map_err(|e| format!("{e}; expected a user ID (@alice:example.org) or a matrix.to link"))
}

/// An event argument; ruma's reason, then what was expected.
pub fn parse_event(s: &str) -> Result<OwnedEventId, String> {
    visible(s)?.parse().map_err(|e| format!("{e}; expected an event ID ($abc...) or a message link"))
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
pub(crate) use args_via;

/// A clap error for a rule clap could not check itself; the parser formats
/// it with the command's usage.
pub fn rule_error(kind: clap::error::ErrorKind, message: impl std::fmt::Display) -> clap::Error {
    clap::Error::raw(kind, message)
}

/// Helpers for the grammar tests of each command: parse through a
/// one-command tree of the test's own.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{CommandError, CommandTree, parse_command};

    /// Parses `body` with prefix `!`, expecting a command.
    pub fn ok<C: CommandTree + std::fmt::Debug>(body: &str) -> C {
        match parse_command::<C>(body, "!") {
            Some(Ok(command)) => command,
            other => panic!("{body:?} parsed to {other:?}"),
        }
    }

    /// Parses `body` with prefix `!`, expecting an error.
    pub fn err<C: CommandTree + std::fmt::Debug>(body: &str) -> CommandError {
        match parse_command::<C>(body, "!") {
            Some(Err(e)) => {
                assert!(!e.message.contains('\x1b'), "ANSI in {e:?}");
                e
            }
            other => panic!("{body:?} parsed to {other:?}"),
        }
    }

    /// For each `(body, expected message part, expected usage prefix)`:
    /// parsing fails, says what was wrong, and shows the right usage.
    pub fn assert_errors<C: CommandTree + std::fmt::Debug>(table: &[(&str, &str, &str)]) {
        for (body, expected, usage) in table {
            let e = err::<C>(body);
            assert!(e.message.contains(expected), "{body:?}: {:?} should contain {expected:?}", e.message);
            let got = e.usage.as_deref().unwrap_or_default();
            assert!(got.starts_with(usage), "{body:?}: usage {got:?} should start with {usage:?}");
        }
    }
}
