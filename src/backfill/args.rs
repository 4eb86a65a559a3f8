//! `!backfill`: read room history into the index.

use clap::{ArgGroup, Args, Subcommand};
use ruma::OwnedRoomOrAliasId;

use crate::grammar::{RoomSelector, TimeSpec, args_via, parse_room};

/// Shown at the end of `!help backfill`.
pub const EXAMPLES: &str = "\
Examples:
  !backfill #lobby:example.org
  !backfill --all --since 30d
  !backfill #lobby:example.org --full
  !backfill status
  !backfill retry-failed";

/// What to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackfillStart {
    pub rooms: RoomSelector,
    /// Do not read events older than this.
    pub since: Option<TimeSpec>,
    /// Read down to the room's creation even past events the index holds.
    pub full: bool,
}

/// A parsed `!backfill`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackfillArgs {
    /// Start (or resume) backfilling.
    Start(BackfillStart),
    /// Show progress per room.
    Status,
    /// Retry the rooms and media downloads that failed.
    RetryFailed,
}

/// Read room history into the index, or show/retry backfill progress
///
/// Reads the history of one room, or of every room the homeserver knows
/// (not only rooms the bot is in), newest first, and downloads and hashes
/// every media it references. Read only: it starts at once, as a
/// background job that moderation jobs never wait behind.
#[derive(Args)]
#[command(after_long_help = EXAMPLES)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(group(ArgGroup::new("scope").required(true).args(["room", "all"])))]
struct BackfillCli {
    #[command(subcommand)]
    action: Option<BackfillActionCli>,
    /// The room to backfill: a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
    #[arg(value_name = "ROOM", value_parser = parse_room)]
    room: Option<OwnedRoomOrAliasId>,
    /// Backfill every room the homeserver knows, whether or not the bot is in it
    #[arg(long)]
    all: bool,
    /// Do not read events older than TIME: 2026-11-20T10:00:00Z, 2026-11-20 (UTC), unix ms, or a duration ago (30d)
    #[arg(long, value_name = "TIME")]
    since: Option<TimeSpec>,
    /// Read down to each room's creation, even past events the index already holds
    #[arg(long)]
    full: bool,
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
            (None, room) => BackfillArgs::Start(BackfillStart {
                // The required "scope" group: no room means --all.
                rooms: room.map_or(RoomSelector::AllRooms, RoomSelector::Room),
                since: cli.since,
                full: cli.full,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::test_support::{assert_errors, ok};

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
        let start = |rooms, since, full| BackfillArgs::Start(BackfillStart { rooms, since, full });
        assert_eq!(backfill("!backfill #lobby:example.org"), start(room("#lobby:example.org"), None, false));
        assert_eq!(
            backfill("!backfill https://matrix.to/#/!abc:example.org?via=example.org --since 2026-11-20"),
            start(room("!abc:example.org"), Some(TimeSpec::At(1_795_132_800_000)), false)
        );
        assert_eq!(
            backfill("!backfill --all --since 30d"),
            start(RoomSelector::AllRooms, Some(TimeSpec::Ago(Duration::from_secs(30 * 86_400))), false)
        );
        assert_eq!(backfill("!backfill --all"), start(RoomSelector::AllRooms, None, false));
        assert_eq!(backfill("!backfill !abc:example.org --full"), start(room("!abc:example.org"), None, true));
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
