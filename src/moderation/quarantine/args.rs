//! `!quarantine` and `!unquarantine`: stop (or resume) serving media.

use clap::{Args, Subcommand};
use ruma::{OwnedEventId, OwnedMxcUri, OwnedRoomOrAliasId, OwnedUserId};

use crate::extract::mxc::parse_mxc;
use crate::grammar::{ActionFlags, args_via, parse_event, parse_room, parse_user};

/// Shown at the end of `!help quarantine`.
pub const QUARANTINE_EXAMPLES: &str = "\
Examples:
  !quarantine media mxc://example.org/AbCdEf mxc://example.org/GhIjKl --reason csam
  !quarantine room #lobby:example.org --dry-run
  !quarantine room #lobby:example.org --include-mentions
  !quarantine user @spammer:example.org --yes
  !quarantine event https://matrix.to/#/!abc:example.org/$ev1
  !quarantine hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Shown at the end of `!help unquarantine`.
pub const UNQUARANTINE_EXAMPLES: &str = "\
Examples:
  !unquarantine media mxc://example.org/AbCdEf --reason \"false positive\"
  !unquarantine user @alice:example.org --dry-run";

/// A parsed `!quarantine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineArgs {
    pub target: QuarantineTarget,
    /// Also media that was only mentioned (an mxc URI pasted into some
    /// field), not shared as an attachment, image or avatar.
    pub include_mentions: bool,
    /// For `user` and `event`: also media they shared that someone else
    /// uploaded (or that another server hosts).
    pub include_others_uploads: bool,
    pub flags: ActionFlags,
}

/// What `!quarantine` acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuarantineTarget {
    /// These media (at least one; each validated by [`parse_mxc`]).
    Media(Vec<OwnedMxcUri>),
    /// All media referenced in the room.
    Room(OwnedRoomOrAliasId),
    /// All media the user sent or uses as avatar.
    User(OwnedUserId),
    /// The media the event references.
    Event(OwnedEventId),
    /// Every copy of the file with this SHA-256 (64 lowercase hex characters).
    Hash(String),
}

/// A parsed `!unquarantine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnquarantineArgs {
    pub target: UnquarantineTarget,
    pub flags: ActionFlags,
}

/// What `!unquarantine` acts on (as [`QuarantineTarget`], without `Event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnquarantineTarget {
    Media(Vec<OwnedMxcUri>),
    Room(OwnedRoomOrAliasId),
    User(OwnedUserId),
    /// 64 lowercase hex characters.
    Hash(String),
}

/// Quarantine media: by mxc URI, or all media of a room, user, event or file hash
///
/// Quarantined media is no longer served by this homeserver. Only media
/// that was shared (an attachment, image, sticker or avatar) is selected;
/// media merely mentioned (an mxc URI pasted into a text) is counted and
/// left out unless --include-mentions is given. Shows a plan first;
/// nothing happens until !confirm <job> (or a ✅ reaction on the plan),
/// unless --yes is given.
#[derive(Args)]
#[command(after_long_help = QUARANTINE_EXAMPLES)]
struct QuarantineCli {
    #[command(subcommand)]
    target: QuarantineTargetCli,
    /// Also quarantine media that was only mentioned (an mxc URI pasted into text or another field), not shared as an attachment, image or avatar
    #[arg(long, global = true)]
    include_mentions: bool,
    /// For user and event: also media they shared that someone else uploaded or another server hosts (Synapse quarantines every copy)
    #[arg(long, global = true)]
    include_others_uploads: bool,
    #[command(flatten)]
    flags: ActionFlags,
}

#[derive(Subcommand)]
enum QuarantineTargetCli {
    /// Quarantine these media
    Media {
        /// An mxc URI (mxc://server/media_id); give several to quarantine several
        #[arg(value_name = "MXC", required = true, value_parser = parse_mxc_uri)]
        mxc: Vec<OwnedMxcUri>,
    },
    /// Quarantine all media referenced in a room
    Room {
        /// A room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
    },
    /// Quarantine all media a user has sent, and their avatars
    User {
        /// A user ID (@spammer:example.org) or a matrix.to link
        #[arg(value_name = "USER", value_parser = parse_user)]
        user: OwnedUserId,
    },
    /// Quarantine the media an event references (attachment, thumbnail, inline images)
    Event {
        /// An event ID ($abc) or a message link
        #[arg(value_name = "EVENT", value_parser = parse_event)]
        event: OwnedEventId,
    },
    /// Quarantine every copy of a file, by its SHA-256, under any mxc URI
    Hash {
        /// The file's SHA-256: 64 hexadecimal characters
        #[arg(value_name = "SHA256", value_parser = parse_sha256)]
        sha256: String,
    },
}

/// Lift a quarantine: by mxc URI, or all media of a room, user or file hash
///
/// Shows a plan first; nothing happens until !confirm <job> (or a ✅
/// reaction on the plan), unless --yes is given.
#[derive(Args)]
#[command(after_long_help = UNQUARANTINE_EXAMPLES)]
struct UnquarantineCli {
    #[command(subcommand)]
    target: UnquarantineTargetCli,
    #[command(flatten)]
    flags: ActionFlags,
}

#[derive(Subcommand)]
enum UnquarantineTargetCli {
    /// Lift the quarantine of these media
    Media {
        /// An mxc URI (mxc://server/media_id); give several to release several
        #[arg(value_name = "MXC", required = true, value_parser = parse_mxc_uri)]
        mxc: Vec<OwnedMxcUri>,
    },
    /// Lift the quarantine of all media referenced in a room
    Room {
        /// A room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
    },
    /// Lift the quarantine of all media a user has sent
    User {
        /// A user ID (@alice:example.org) or a matrix.to link
        #[arg(value_name = "USER", value_parser = parse_user)]
        user: OwnedUserId,
    },
    /// Lift the quarantine of every copy of a file, by its SHA-256
    Hash {
        /// The file's SHA-256: 64 hexadecimal characters
        #[arg(value_name = "SHA256", value_parser = parse_sha256)]
        sha256: String,
    },
}

args_via!(QuarantineArgs, QuarantineCli);
args_via!(UnquarantineArgs, UnquarantineCli);

impl TryFrom<QuarantineCli> for QuarantineArgs {
    type Error = clap::Error;

    fn try_from(cli: QuarantineCli) -> Result<Self, clap::Error> {
        cli.flags.check()?;
        let target = match cli.target {
            QuarantineTargetCli::Media { mxc } => QuarantineTarget::Media(mxc),
            QuarantineTargetCli::Room { room } => QuarantineTarget::Room(room),
            QuarantineTargetCli::User { user } => QuarantineTarget::User(user),
            QuarantineTargetCli::Event { event } => QuarantineTarget::Event(event),
            QuarantineTargetCli::Hash { sha256 } => QuarantineTarget::Hash(sha256),
        };
        Ok(QuarantineArgs {
            target,
            include_mentions: cli.include_mentions,
            include_others_uploads: cli.include_others_uploads,
            flags: cli.flags,
        })
    }
}

impl TryFrom<UnquarantineCli> for UnquarantineArgs {
    type Error = clap::Error;

    fn try_from(cli: UnquarantineCli) -> Result<Self, clap::Error> {
        cli.flags.check()?;
        let target = match cli.target {
            UnquarantineTargetCli::Media { mxc } => UnquarantineTarget::Media(mxc),
            UnquarantineTargetCli::Room { room } => UnquarantineTarget::Room(room),
            UnquarantineTargetCli::User { user } => UnquarantineTarget::User(user),
            UnquarantineTargetCli::Hash { sha256 } => UnquarantineTarget::Hash(sha256),
        };
        Ok(UnquarantineArgs { target, flags: cli.flags })
    }
}

/// An mxc URI accepted by the strict [`parse_mxc`]; clap puts the value in front of the reason.
fn parse_mxc_uri(s: &str) -> Result<OwnedMxcUri, String> {
    match parse_mxc(s) {
        Ok(_) => Ok(OwnedMxcUri::from(s)),
        Err(e) => Err(e.to_string()),
    }
}

/// A SHA-256 in hex, normalized to lowercase.
pub fn parse_sha256(s: &str) -> Result<String, String> {
    let len = s.chars().count();
    if len != 64 {
        return Err(format!("a SHA-256 is 64 hexadecimal characters, this is {len}"));
    }
    if let Some(bad) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("a SHA-256 is 64 hexadecimal characters (0-9, a-f), {bad:?} is not one"));
    }
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::test_support::{assert_errors, ok};

    /// The two commands, as the chat front-end would have them.
    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Quarantine(QuarantineArgs),
        Unquarantine(UnquarantineArgs),
    }

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn quarantine(body: &str) -> QuarantineArgs {
        match ok::<Tree>(body) {
            Tree::Quarantine(args) => args,
            other => panic!("{body:?} parsed to {other:?}"),
        }
    }

    fn unquarantine(body: &str) -> UnquarantineArgs {
        match ok::<Tree>(body) {
            Tree::Unquarantine(args) => args,
            other => panic!("{body:?} parsed to {other:?}"),
        }
    }

    fn mxcs(list: &[&str]) -> Vec<OwnedMxcUri> {
        list.iter().map(|s| OwnedMxcUri::from(*s)).collect()
    }

    #[test]
    fn quarantine_each_target() {
        let a = quarantine("!quarantine media mxc://example.org/AbC mxc://other.org:8448/x-y_z");
        assert_eq!(a.target, QuarantineTarget::Media(mxcs(&["mxc://example.org/AbC", "mxc://other.org:8448/x-y_z"])));
        assert_eq!(a.flags, ActionFlags::default());

        let a = quarantine("!quarantine room #lobby:example.org");
        assert_eq!(a.target, QuarantineTarget::Room("#lobby:example.org".parse().unwrap()));
        let a = quarantine("!quarantine user @spam:example.org");
        assert_eq!(a.target, QuarantineTarget::User("@spam:example.org".parse().unwrap()));
        let a = quarantine("!quarantine event $ev1");
        assert_eq!(a.target, QuarantineTarget::Event("$ev1".parse().unwrap()));
        let a = quarantine(&format!("!quarantine hash {}", HASH.to_uppercase()));
        assert_eq!(a.target, QuarantineTarget::Hash(HASH.to_owned()));
    }

    #[test]
    fn quarantine_flags_before_or_after_the_target() {
        let a = quarantine("!quarantine media mxc://example.org/AbC --reason \"spam wave\" --dry-run");
        assert_eq!(a.flags.reason.as_deref(), Some("spam wave"));
        assert!(a.flags.dry_run && !a.flags.yes);
        let a = quarantine("!quarantine --yes --reason 'it is spam' user @spam:example.org");
        assert_eq!(a.flags.reason.as_deref(), Some("it is spam"));
        assert!(a.flags.yes && !a.flags.dry_run);
        let a = quarantine(&format!("!quarantine --reason=x hash {HASH}"));
        assert_eq!(a.flags.reason.as_deref(), Some("x"));
        assert!(!a.include_mentions);
        assert!(quarantine("!quarantine room #a:x.org --include-mentions").include_mentions);
        assert!(quarantine("!quarantine --include-mentions user @a:x.org").include_mentions);
    }

    #[test]
    fn quarantine_matrix_to_links() {
        let a = quarantine("!quarantine room https://matrix.to/#/!abc:example.org?via=example.org");
        assert_eq!(a.target, QuarantineTarget::Room("!abc:example.org".parse().unwrap()));
        let a = quarantine("!quarantine user https://matrix.to/#/@spam:example.org");
        assert_eq!(a.target, QuarantineTarget::User("@spam:example.org".parse().unwrap()));
        let a = quarantine("!quarantine event https://matrix.to/#/!abc:example.org/%24ev1?via=example.org");
        assert_eq!(a.target, QuarantineTarget::Event("$ev1".parse().unwrap()));
        let a = quarantine("!quarantine event matrix:roomid/abc:example.org/e/ev1");
        assert_eq!(a.target, QuarantineTarget::Event("$ev1".parse().unwrap()));
    }

    #[test]
    fn unquarantine_each_target() {
        let a = unquarantine("!unquarantine media mxc://example.org/AbC --reason \"false positive\"");
        assert_eq!(a.target, UnquarantineTarget::Media(mxcs(&["mxc://example.org/AbC"])));
        assert_eq!(a.flags.reason.as_deref(), Some("false positive"));
        let a = unquarantine("!unquarantine room !abc:example.org --dry-run");
        assert_eq!(a.target, UnquarantineTarget::Room("!abc:example.org".parse().unwrap()));
        assert!(a.flags.dry_run);
        let a = unquarantine("!unquarantine user @alice:example.org --yes");
        assert_eq!(a.target, UnquarantineTarget::User("@alice:example.org".parse().unwrap()));
        assert!(a.flags.yes);
        let a = unquarantine(&format!("!unquarantine hash {HASH}"));
        assert_eq!(a.target, UnquarantineTarget::Hash(HASH.to_owned()));
    }

    #[test]
    fn quarantine_errors() {
        let table: &[(&str, &str, &str)] = &[
            ("!quarantine", "requires a subcommand", "Usage: !quarantine "),
            ("!quarantine --dry-run", "requires a subcommand", "Usage: !quarantine "),
            ("!quarantine mdia mxc://a.org/b", "unrecognized subcommand 'mdia'", "Usage: !quarantine "),
            ("!quarantine media", "<MXC>...", "Usage: !quarantine media "),
            (
                "!quarantine media https://a.org/b",
                "invalid value 'https://a.org/b' for '<MXC>...': not an mxc URI",
                "Usage: !quarantine media ",
            ),
            (
                "!quarantine media mxc://a.org/ok mxc://a.org/b?c",
                "invalid value 'mxc://a.org/b?c'",
                "Usage: !quarantine media ",
            ),
            ("!quarantine media mxc://a.org/b?c", "media id may only contain", "Usage: !quarantine media "),
            ("!quarantine media mxc:///b", "empty server name", "Usage: !quarantine media "),
            ("!quarantine room", "<ROOM>", "Usage: !quarantine room "),
            ("!quarantine room lobby", "invalid value 'lobby' for '<ROOM>'", "Usage: !quarantine room "),
            ("!quarantine room !a:x.org !b:x.org", "unexpected argument '!b:x.org'", "Usage: !quarantine room "),
            ("!quarantine user alice", "invalid value 'alice' for '<USER>'", "Usage: !quarantine user "),
            ("!quarantine --reason media user alice", "invalid value 'alice' for '<USER>'", "Usage: !quarantine user "),
            ("!quarantine --reason=x --dry-run user alice", "invalid value 'alice'", "Usage: !quarantine user "),
            ("!quarantine event ev1", "invalid value 'ev1' for '<EVENT>'", "Usage: !quarantine event "),
            ("!quarantine hash abc", "64 hexadecimal characters, this is 3", "Usage: !quarantine hash "),
            (&format!("!quarantine hash {}", HASH.replace('a', "g")), "'g' is not one", "Usage: !quarantine hash "),
            (
                "!quarantine user @a:x.org --dry-run --yes",
                "'--dry-run' cannot be used with '--yes'",
                "Usage: !quarantine user ",
            ),
            (
                "!quarantine --dry-run user @a:x.org --yes",
                "'--dry-run' cannot be used with '--yes'",
                "Usage: !quarantine ",
            ),
            ("!quarantine user @a:x.org --method delete", "unexpected argument '--method'", "Usage: !quarantine user "),
        ];
        assert_errors::<Tree>(table);
    }

    #[test]
    fn unquarantine_errors() {
        let table: &[(&str, &str, &str)] = &[
            ("!unquarantine", "requires a subcommand", "Usage: !unquarantine "),
            ("!unquarantine event $ev1", "unrecognized subcommand 'event'", "Usage: !unquarantine "),
            ("!unquarantine media mxc://a.org", "no media id", "Usage: !unquarantine media "),
            ("!unquarantine hash 12", "64 hexadecimal characters", "Usage: !unquarantine hash "),
            ("!unquarantine user @a:x.org --yes --dry-run", "cannot be used with", "Usage: !unquarantine user "),
            ("!unquarantine user @a:x.org --include-mentions", "unexpected argument", "Usage: !unquarantine user "),
        ];
        assert_errors::<Tree>(table);
    }

    #[test]
    fn sha256_parser() {
        assert_eq!(parse_sha256(HASH).as_deref(), Ok(HASH));
        assert_eq!(parse_sha256(&HASH.to_uppercase()).as_deref(), Ok(HASH));
        assert!(parse_sha256("").is_err());
        assert!(parse_sha256(&format!("{HASH}0")).is_err());
        assert!(parse_sha256(&"é".repeat(64)).is_err());
    }
}
