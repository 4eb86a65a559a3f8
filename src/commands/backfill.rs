//! `!backfill`: fetch room history into the index.

use clap::{ArgGroup, Args, Subcommand};
use ruma::OwnedRoomOrAliasId;

use super::time::TimeSpec;
use super::{RoomSelector, args_via, parse_room};

/// Shown at the end of `!help backfill`.
pub const EXAMPLES: &str = "\
Examples:
  !backfill #lobby:example.org
  !backfill --all --since 30d
  !backfill status
  !backfill retry-failed";

/// A parsed `!backfill`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackfillArgs {
    /// Start (or resume) backfilling.
    Start {
        rooms: RoomSelector,
        /// Do not fetch events older than this.
        since: Option<TimeSpec>,
    },
    /// Show progress per room.
    Status,
    /// Retry the rooms and media downloads that failed.
    RetryFailed,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(group(ArgGroup::new("scope").required(true).args(["room", "all"])))]
struct BackfillCli {
    #[command(subcommand)]
    action: Option<BackfillActionCli>,
    /// The room to backfill: a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
    #[arg(value_name = "ROOM", value_parser = parse_room)]
    room: Option<OwnedRoomOrAliasId>,
    /// Backfill every room the bot is in (each resumes where it stopped)
    #[arg(long)]
    all: bool,
    /// Do not fetch events older than TIME: 2026-11-20T10:00:00Z, 2026-11-20 (UTC), unix ms, or a duration ago (30d)
    #[arg(long, value_name = "TIME")]
    since: Option<TimeSpec>,
}

#[derive(Subcommand)]
enum BackfillActionCli {
    /// Show backfill progress per room
    Status,
    /// Retry the rooms and media downloads that failed
    RetryFailed,
}

args_via!(BackfillArgs, BackfillCli);

impl TryFrom<BackfillCli> for BackfillArgs {
    type Error = clap::Error;

    fn try_from(cli: BackfillCli) -> Result<Self, clap::Error> {
        Ok(match (cli.action, cli.room) {
            (Some(BackfillActionCli::Status), _) => BackfillArgs::Status,
            (Some(BackfillActionCli::RetryFailed), _) => BackfillArgs::RetryFailed,
            (None, Some(room)) => BackfillArgs::Start { rooms: RoomSelector::Room(room), since: cli.since },
            // The required "scope" group: no room means --all.
            (None, None) => BackfillArgs::Start { rooms: RoomSelector::AllRooms, since: cli.since },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_errors, ok};
    use super::*;

    /// A one-command tree, as the chat front-end would make.
    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Backfill(BackfillArgs),
    }
    use std::time::Duration;

    fn backfill(body: &str) -> BackfillArgs {
        let Tree::Backfill(args) = ok::<Tree>(body);
        args
    }

    #[test]
    fn valid_forms() {
        let room = |s: &str| RoomSelector::Room(s.parse().unwrap());
        assert_eq!(
            backfill("!backfill #lobby:example.org"),
            BackfillArgs::Start { rooms: room("#lobby:example.org"), since: None }
        );
        assert_eq!(
            backfill("!backfill https://matrix.to/#/!abc:example.org?via=example.org --since 2026-11-20"),
            BackfillArgs::Start { rooms: room("!abc:example.org"), since: Some(TimeSpec::At(1_795_132_800_000)) }
        );
        assert_eq!(
            backfill("!backfill --all --since 30d"),
            BackfillArgs::Start {
                rooms: RoomSelector::AllRooms,
                since: Some(TimeSpec::Ago(Duration::from_secs(30 * 86_400)))
            }
        );
        assert_eq!(backfill("!backfill --all"), BackfillArgs::Start { rooms: RoomSelector::AllRooms, since: None });
        assert_eq!(backfill("!backfill status"), BackfillArgs::Status);
        assert_eq!(backfill("!backfill retry-failed"), BackfillArgs::RetryFailed);
    }

    #[test]
    fn errors() {
        let table: &[(&str, &str, &str)] = &[
            ("!backfill", "<ROOM|--all>", "Usage: !backfill "),
            ("!backfill --since 7d", "<ROOM|--all>", "Usage: !backfill "),
            ("!backfill !a:x.org --all", "cannot be used with", "Usage: !backfill "),
            ("!backfill lobby", "invalid value 'lobby' for '[ROOM]'", "Usage: !backfill "),
            ("!backfill --all --since soon", "is not a time", "Usage: !backfill "),
            ("!backfill status --all", "unexpected argument '--all'", "Usage: !backfill status"),
            (
                "!backfill --all status",
                "invalid value 'status' for '[ROOM]'",
                "Usage: !backfill [OPTIONS] <ROOM|--all>",
            ),
            (
                "!backfill --since 1d status",
                "invalid value 'status' for '[ROOM]'",
                "Usage: !backfill [OPTIONS] <ROOM|--all>",
            ),
            ("!backfill retry-failed now", "unexpected argument 'now'", "Usage: !backfill retry-failed"),
        ];
        assert_errors::<Tree>(table);
    }
}
