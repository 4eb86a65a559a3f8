//! `!room takedown|block|unblock`: act on a whole room of this homeserver.

use clap::{Args, Subcommand, ValueEnum};
use ruma::{OwnedRoomId, OwnedRoomOrAliasId};

use crate::grammar::{ActionFlags, args_via, parse_room};

/// Shown at the end of `!help room`.
pub const EXAMPLES: &str = "\
Examples:
  !room takedown #bazaar:example.org --dry-run
  !room takedown !abc:example.org --block --purge --with-media quarantine --reason \"spam room\"
  !room takedown #bazaar:example.org --block --message \"This room broke the rules and is closed.\"
  !room block !abc:example.org --reason \"raid staging room\"
  !room unblock !abc:example.org";

/// Longest `--message`, in characters: Synapse posts it as one message.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

/// A parsed `!room`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomArgs {
    pub action: RoomAction,
    pub flags: ActionFlags,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomAction {
    Takedown(TakedownArgs),
    Block(OwnedRoomOrAliasId),
    Unblock(OwnedRoomOrAliasId),
}

/// A parsed `!room takedown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakedownArgs {
    pub room: OwnedRoomOrAliasId,
    /// Keep the room from being joined again.
    pub block: bool,
    /// Erase the room from the homeserver's database.
    pub purge: bool,
    /// Told to the removed local members, in a room housekeep's bot makes for it.
    pub message: Option<String>,
    pub with_media: Option<RoomMediaAction>,
}

/// What `!room takedown --with-media` does with the room's shared media.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum RoomMediaAction {
    /// Quarantine it before the takedown (a purge erases the events that say which media the room shared)
    Quarantine,
}

/// Take down, block or unblock a whole room on this homeserver
///
/// Each shows a plan first; nothing happens until !confirm <job> (or a ✅
/// reaction on the plan). --yes runs a block or an unblock at once, never
/// a takedown: it removes every local member (and --purge cannot be
/// undone), so it is always confirmed, by a second moderator where
/// admin.two_person_threshold is set. Remote servers keep their copy of a
/// room: a takedown acts on this homeserver only.
#[derive(Args)]
#[command(after_long_help = EXAMPLES)]
struct RoomCli {
    #[command(subcommand)]
    action: RoomActionCli,
    #[command(flatten)]
    flags: ActionFlags,
}

#[derive(Subcommand)]
enum RoomActionCli {
    /// Remove every local member from a room; optionally block it, purge it, and quarantine its media first
    Takedown {
        /// The room: a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
        /// Also block the room: nobody on this server can join it or be invited again (!room unblock lifts it)
        #[arg(long)]
        block: bool,
        /// Also erase the room from this homeserver's database (its events and state; the media stays)
        #[arg(long)]
        purge: bool,
        /// Tell the removed local members why: housekeep's bot makes a room, moves them and the room's local aliases there, and posts TEXT
        #[arg(long, value_name = "TEXT", value_parser = parse_message)]
        message: Option<String>,
        /// Also act on the media the room shared (from housekeep's index), before the takedown
        #[arg(long, value_enum, value_name = "ACTION")]
        with_media: Option<RoomMediaAction>,
    },
    /// Block a room: nobody on this server can join it or be invited; its members stay
    Block {
        /// The room: a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
    },
    /// Lift a room's block: local users can join it again
    Unblock {
        /// The room: a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
    },
}

args_via!(RoomArgs, RoomCli);

impl TryFrom<RoomCli> for RoomArgs {
    type Error = clap::Error;

    fn try_from(cli: RoomCli) -> Result<Self, clap::Error> {
        cli.flags.check()?;
        let action = match cli.action {
            RoomActionCli::Takedown { room, block, purge, message, with_media } => {
                RoomAction::Takedown(TakedownArgs { room, block, purge, message, with_media })
            }
            RoomActionCli::Block { room } => RoomAction::Block(room),
            RoomActionCli::Unblock { room } => RoomAction::Unblock(room),
        };
        Ok(RoomArgs { action, flags: cli.flags })
    }
}

/// A `--message`: trimmed, not empty, at most [`MAX_MESSAGE_CHARS`].
fn parse_message(s: &str) -> Result<String, String> {
    let message = s.trim();
    if message.is_empty() {
        return Err("the message is empty; leave --message out instead".to_owned());
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(format!("the message is {chars} characters long; at most {MAX_MESSAGE_CHARS} are allowed"));
    }
    Ok(message.to_owned())
}

impl RoomAction {
    /// The room it acts on, as the moderator named it.
    pub(super) fn room(&self) -> &OwnedRoomOrAliasId {
        match self {
            Self::Takedown(args) => &args.room,
            Self::Block(room) | Self::Unblock(room) => room,
        }
    }
}

/// A takedown for its job kind: the room resolved once, by the command
/// (which refused the admin room on that ID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takedown {
    pub room_id: OwnedRoomId,
    pub args: TakedownArgs,
    pub reason: Option<String>,
}

/// A block or unblock for its job kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetBlock {
    pub room_id: OwnedRoomId,
    pub block: bool,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::test_support::{assert_errors, ok};

    /// A one-command tree, as the chat front-end would make.
    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Room(RoomArgs),
    }

    fn room(body: &str) -> RoomArgs {
        let Tree::Room(args) = ok::<Tree>(body);
        args
    }

    fn id(s: &str) -> OwnedRoomOrAliasId {
        s.parse().unwrap()
    }

    #[test]
    fn takedown_alone_and_with_every_option() {
        let parsed = room("!room takedown #bazaar:example.org");
        assert_eq!(parsed.flags, ActionFlags::default());
        let RoomAction::Takedown(a) = parsed.action else { panic!() };
        assert_eq!(a.room, id("#bazaar:example.org"));
        assert!(!a.block && !a.purge && a.message.is_none() && a.with_media.is_none());

        let parsed = room(
            "!room takedown !abc:example.org --block --purge --message \"closed for spam\" \
             --with-media quarantine --reason 'spam room' --yes",
        );
        assert_eq!(parsed.flags.reason.as_deref(), Some("spam room"));
        assert!(parsed.flags.yes && !parsed.flags.dry_run);
        let RoomAction::Takedown(a) = parsed.action else { panic!() };
        assert!(a.block && a.purge);
        assert_eq!(a.message.as_deref(), Some("closed for spam"));
        assert_eq!(a.with_media, Some(RoomMediaAction::Quarantine));
        let parsed = room("!room --dry-run takedown !abc:example.org");
        assert!(parsed.flags.dry_run, "flags before the subcommand count too");
    }

    #[test]
    fn block_and_unblock() {
        let parsed = room("!room block !abc:example.org --reason raid --dry-run");
        assert_eq!(parsed.action, RoomAction::Block(id("!abc:example.org")));
        assert_eq!(parsed.flags.reason.as_deref(), Some("raid"));
        assert!(parsed.flags.dry_run);
        let parsed = room("!room unblock #bazaar:example.org --yes");
        assert_eq!(parsed.action, RoomAction::Unblock(id("#bazaar:example.org")));
        assert!(parsed.flags.yes);
    }

    #[test]
    fn matrix_to_links_name_the_room() {
        let parsed = room("!room takedown https://matrix.to/#/%23bazaar%3Aexample.org?via=example.org");
        assert_eq!(parsed.action.room(), &id("#bazaar:example.org"));
        let parsed = room("!room block https://matrix.to/#/!abc:example.org?via=example.org");
        assert_eq!(parsed.action, RoomAction::Block(id("!abc:example.org")));
    }

    #[test]
    fn invalid_commands_say_what_was_wrong() {
        let long = format!("!room takedown !a:x.org --message \"{}\"", "x".repeat(MAX_MESSAGE_CHARS + 1));
        let table: &[(&str, &str, &str)] = &[
            ("!room", "requires a subcommand", "Usage: !room "),
            ("!room !a:x.org", "unrecognized subcommand '!a:x.org'", "Usage: !room "),
            ("!room tekedown !a:x.org", "unrecognized subcommand 'tekedown'", "Usage: !room "),
            ("!room takedown", "<ROOM>", "Usage: !room takedown "),
            ("!room takedown lobby", "invalid value 'lobby' for '<ROOM>'", "Usage: !room takedown "),
            ("!room takedown lobby", "expected a room ID (!abc:example.org), an alias", "Usage: !room takedown "),
            ("!room takedown !a:x.org !b:x.org", "unexpected argument '!b:x.org'", "Usage: !room takedown "),
            ("!room takedown !a:x.org --with-media delete", "invalid value 'delete'", "Usage: !room takedown "),
            ("!room takedown !a:x.org --with-media", "a value is required", "Usage: !room takedown "),
            ("!room takedown !a:x.org --message \"  \"", "the message is empty", "Usage: !room takedown "),
            (&long, "at most 1000 are allowed", "Usage: !room takedown "),
            (
                "!room takedown !a:x.org --dry-run --yes",
                "'--dry-run' cannot be used with '--yes'",
                "Usage: !room takedown ",
            ),
            ("!room takedown !a:x.org --reason \"\"", "the reason is empty", "Usage: !room takedown "),
            ("!room takedown !a:x.org --blokc", "--block", "Usage: !room takedown "),
            ("!room block", "<ROOM>", "Usage: !room block "),
            ("!room block !a:x.org --purge", "unexpected argument '--purge'", "Usage: !room block "),
            ("!room unblock !a:x.org --message hi", "unexpected argument '--message'", "Usage: !room unblock "),
            ("!room unblock @a:x.org", "invalid value '@a:x.org' for '<ROOM>'", "Usage: !room unblock "),
            (
                "!room block !a\u{200b}b:x.org",
                "invisible or direction-changing character (U+200B)",
                "Usage: !room block ",
            ),
        ];
        assert_errors::<Tree>(table);
    }
}
