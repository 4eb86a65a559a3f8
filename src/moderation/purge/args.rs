//! `!purge`: redact or delete events selected from the index.

use clap::error::ErrorKind;
use clap::{ArgGroup, Args, ValueEnum};
use ruma::{OwnedEventId, OwnedRoomOrAliasId, OwnedUserId};

use crate::grammar::{ActionFlags, RoomSelector, TimeSpec, args_via, parse_event, parse_room, parse_user, rule_error};

/// Shown at the end of `!help purge`.
pub const EXAMPLES: &str = "\
Examples:
  !purge #lobby:example.org --user @spammer:example.org --dry-run
  !purge !abc:example.org --after 2h --reason \"spam wave\"
  !purge --all-rooms --user @spammer:example.org --with-media quarantine
  !purge --all-rooms --after 1h --everything
  !purge !abc:example.org --event $ev1 --event $ev2 --method delete
  !purge #old:example.org --before 2025-01-01 --method delete
  !purge !abc:example.org --everything";

/// A parsed `!purge`.
///
/// Filters combine: an event is purged when it is in the selected room(s),
/// sent inside the `--after`/`--before` window, by one of `users` (if any),
/// and one of `events` (if any). Invariants, checked by the parser:
/// `AllRooms` has at least one filter, and `everything` exactly when its only
/// filters are times (every user's events server-wide); a `Room` has filters
/// xor `everything`;
/// when both times are absolute (or both relative), `after < before`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeArgs {
    pub rooms: RoomSelector,
    /// Only events sent before this time (exclusive).
    pub before: Option<TimeSpec>,
    /// Only events sent after this time (exclusive).
    pub after: Option<TimeSpec>,
    pub users: Vec<OwnedUserId>,
    pub events: Vec<OwnedEventId>,
    pub method: PurgeMethod,
    pub with_media: Option<PurgeMediaAction>,
    /// With `--with-media`: also media the purged events shared but someone else uploaded.
    pub include_others_uploads: bool,
    /// The moderator asked for every event of the room (a `Room` without
    /// filters), or of every user in the time window (`AllRooms` with only
    /// `--before`/`--after`).
    pub everything: bool,
    pub flags: ActionFlags,
}

impl PurgeArgs {
    /// Whether any of `--before`, `--after`, `--user`, `--event` was given.
    pub fn has_filters(&self) -> bool {
        self.before.is_some() || self.after.is_some() || !self.users.is_empty() || !self.events.is_empty()
    }
}

/// How `!purge` removes events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeMethod {
    /// Redact each event: its content is removed here and on every server that honours redactions; a stub stays
    #[default]
    Redact,
    /// Delete the events from this homeserver's database (admin API); local only, other servers keep them
    Delete,
}

impl PurgeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Delete => "delete",
        }
    }
}

/// What `!purge --with-media` does with the media the purged events reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum PurgeMediaAction {
    /// Quarantine it, so this homeserver stops serving it
    Quarantine,
}

/// Redact or delete events: in one room, or by sender/event across all rooms
///
/// Selects events from the index by room, time, sender and event ID. Shows
/// a plan first; nothing happens until !confirm <job> (or a ✅ reaction
/// on the plan), unless --yes is given. A purge is local only: other
/// servers in the room may still have the events (they receive
/// redactions, but nothing makes them drop their copies).
#[derive(Args)]
#[command(after_long_help = EXAMPLES)]
#[command(group(ArgGroup::new("scope").required(true).args(["room", "all_rooms"])))]
struct PurgeCli {
    /// The room: a room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
    #[arg(value_name = "ROOM", value_parser = parse_room)]
    room: Option<OwnedRoomOrAliasId>,
    /// Every room in the index, instead of one; needs --user or --event, or a time window with --everything
    #[arg(long)]
    all_rooms: bool,
    /// Only events sent before TIME: 2026-11-20T10:00:00Z, 2026-11-20 (UTC), unix ms, or a duration ago (30m, 7d)
    #[arg(long, value_name = "TIME")]
    before: Option<TimeSpec>,
    /// Only events sent after TIME (same forms as --before)
    #[arg(long, value_name = "TIME")]
    after: Option<TimeSpec>,
    /// Only events sent by USER (a user ID or matrix.to link); repeat for several users
    #[arg(long = "user", value_name = "USER", value_parser = parse_user)]
    users: Vec<OwnedUserId>,
    /// Only this event (an event ID or a message link); repeat for several events
    #[arg(long = "event", value_name = "EVENT", value_parser = parse_event)]
    events: Vec<OwnedEventId>,
    /// How to remove the events
    #[arg(long, value_enum, value_name = "METHOD", default_value_t)]
    method: PurgeMethod,
    /// Also act on the media the purged events shared (not what they merely mentioned)
    #[arg(long, value_enum, value_name = "ACTION")]
    with_media: Option<PurgeMediaAction>,
    /// With --with-media: also media a sender shared but someone else uploaded (Synapse quarantines every copy)
    #[arg(long, requires = "with_media")]
    include_others_uploads: bool,
    /// Purge every user's events: the whole room when no filter is given, or with --all-rooms every event in the time window
    #[arg(long)]
    everything: bool,
    #[command(flatten)]
    flags: ActionFlags,
}

args_via!(PurgeArgs, PurgeCli);

impl TryFrom<PurgeCli> for PurgeArgs {
    type Error = clap::Error;

    fn try_from(cli: PurgeCli) -> Result<Self, clap::Error> {
        let rooms = match (cli.room, cli.all_rooms) {
            (Some(room), false) => RoomSelector::Room(room),
            (None, true) => RoomSelector::AllRooms,
            // The required "scope" group lets exactly one through.
            (Some(_), true) | (None, false) => {
                return Err(rule_error(ErrorKind::ArgumentConflict, "give either a room or --all-rooms, not both"));
            }
        };
        let args = PurgeArgs {
            rooms,
            before: cli.before,
            after: cli.after,
            users: cli.users,
            events: cli.events,
            method: cli.method,
            with_media: cli.with_media,
            include_others_uploads: cli.include_others_uploads,
            everything: cli.everything,
            flags: cli.flags,
        };
        args.flags.check()?;
        let by_sender_or_event = !args.users.is_empty() || !args.events.is_empty();
        match (&args.rooms, args.everything, args.has_filters()) {
            (RoomSelector::AllRooms, true, false) => Err(rule_error(
                ErrorKind::ArgumentConflict,
                "--everything with --all-rooms and no time window would purge every event in every room, \
                 which is not supported; add --before/--after, or narrow it with --user or --event",
            )),
            (RoomSelector::AllRooms, true, true) if by_sender_or_event => Err(rule_error(
                ErrorKind::ArgumentConflict,
                "--everything is for purging every user's events; with --user or --event, leave it out",
            )),
            (RoomSelector::AllRooms, false, false) => Err(rule_error(
                ErrorKind::MissingRequiredArgument,
                "--all-rooms needs at least one filter: --user, --event, or --before/--after with --everything",
            )),
            (RoomSelector::AllRooms, false, true) if !by_sender_or_event => Err(rule_error(
                ErrorKind::MissingRequiredArgument,
                "--all-rooms with only --before/--after purges every user's events in every room: \
                 add --everything if that is what you mean, or narrow it with --user or --event",
            )),
            (RoomSelector::Room(_), true, true) => Err(rule_error(
                ErrorKind::ArgumentConflict,
                "--everything is only allowed without filters: it purges the whole room, while \
                 --before/--after/--user/--event purge only what they match; remove either \
                 --everything or the filters",
            )),
            (RoomSelector::Room(room), false, false) => Err(rule_error(
                ErrorKind::MissingRequiredArgument,
                format!(
                    "no filter given, so this would purge every event in {room}: narrow it with \
                     --before, --after, --user or --event, or add --everything to purge the whole room"
                ),
            )),
            _ => {
                check_window(args.after, args.before)?;
                Ok(args)
            }
        }
    }
}

/// Rejects an empty `--after`/`--before` window when it is empty whatever
/// "now" is: both absolute, or both relative.
fn check_window(after: Option<TimeSpec>, before: Option<TimeSpec>) -> Result<(), clap::Error> {
    let empty = match (after, before) {
        (Some(TimeSpec::At(a)), Some(TimeSpec::At(b))) => a >= b,
        // Ago: a longer duration is an earlier time.
        (Some(TimeSpec::Ago(a)), Some(TimeSpec::Ago(b))) => a <= b,
        _ => false,
    };
    if empty {
        let (after, before) = (after.unwrap_or(TimeSpec::At(0)), before.unwrap_or(TimeSpec::At(0)));
        return Err(rule_error(
            ErrorKind::ValueValidation,
            format!(
                "--after {after} is not earlier than --before {before}, so nothing would match; \
                 --after is the start of the window and --before its end (did you swap them?)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::parse_command;
    use std::time::Duration;

    /// A one-command tree, as the chat front-end would make.
    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Purge(PurgeArgs),
    }

    fn purge(body: &str) -> PurgeArgs {
        let Tree::Purge(args) = crate::grammar::test_support::ok::<Tree>(body);
        args
    }

    fn err(body: &str) -> crate::grammar::CommandError {
        crate::grammar::test_support::err::<Tree>(body)
    }

    fn room(s: &str) -> RoomSelector {
        RoomSelector::Room(s.parse().unwrap())
    }

    #[test]
    fn room_with_each_filter() {
        let a = purge("!purge !abc:example.org --before 2026-11-20T10:00:00Z");
        assert_eq!(a.rooms, room("!abc:example.org"));
        assert_eq!(a.before, Some(TimeSpec::At(1_795_168_800_000)));
        assert_eq!(a.after, None);
        assert_eq!(a.method, PurgeMethod::Redact);
        assert_eq!(a.flags, ActionFlags::default());
        assert!(!a.everything);

        let a = purge("!purge #lobby:example.org --after 7d");
        assert_eq!(a.rooms, room("#lobby:example.org"));
        assert_eq!(a.after, Some(TimeSpec::Ago(Duration::from_secs(7 * 86_400))));

        let a = purge("!purge !abc:example.org --user @spam:example.org");
        assert_eq!(a.users, vec![OwnedUserId::try_from("@spam:example.org").unwrap()]);

        let a = purge("!purge !abc:example.org --event $ev1");
        assert_eq!(a.events, vec![OwnedEventId::try_from("$ev1").unwrap()]);
    }

    #[test]
    fn repeated_users_and_events_keep_order() {
        let a = purge("!purge !abc:example.org --user @a:x.org --event $e1 --user @b:x.org --event=$e2");
        let users: Vec<&str> = a.users.iter().map(|u| u.as_str()).collect();
        let events: Vec<&str> = a.events.iter().map(|e| e.as_str()).collect();
        assert_eq!(users, ["@a:x.org", "@b:x.org"]);
        assert_eq!(events, ["$e1", "$e2"]);
    }

    #[test]
    fn all_options_together() {
        let a = purge(
            "!purge !abc:example.org --after 1795168800000 --before 2026-11-21 --user @a:x.org \
             --method delete --with-media quarantine --reason \"spam wave\" --yes",
        );
        assert_eq!(a.after, Some(TimeSpec::At(1_795_168_800_000)));
        assert_eq!(a.method, PurgeMethod::Delete);
        assert_eq!(a.with_media, Some(PurgeMediaAction::Quarantine));
        assert_eq!(a.flags.reason.as_deref(), Some("spam wave"));
        assert!(a.flags.yes && !a.flags.dry_run);
    }

    #[test]
    fn method_values() {
        assert_eq!(purge("!purge !a:x.org --everything --method redact").method, PurgeMethod::Redact);
        assert_eq!(purge("!purge !a:x.org --everything --method=delete").method, PurgeMethod::Delete);
        let e = err("!purge !a:x.org --everything --method nuke");
        assert!(e.message.contains("invalid value 'nuke'"), "{e:?}");
        assert!(e.message.contains("redact") && e.message.contains("delete"), "{e:?}");
        let e = err("!purge !a:x.org --everything --with-media keep");
        assert!(e.message.contains("invalid value 'keep'") && e.message.contains("quarantine"), "{e:?}");
    }

    #[test]
    fn everything_alone_is_a_whole_room_purge() {
        let a = purge("!purge !abc:example.org --everything --dry-run");
        assert!(a.everything && !a.has_filters());
        assert!(a.flags.dry_run);
    }

    #[test]
    fn all_rooms_with_filters() {
        let a = purge("!purge --all-rooms --user @spam:example.org --with-media quarantine");
        assert_eq!(a.rooms, RoomSelector::AllRooms);
        for body in [
            "!purge --all-rooms --event $e",
            "!purge --all-rooms --before 1d --everything",
            "!purge --all-rooms --after 2026-01-01 --everything",
            "!purge --all-rooms --user @a:x.org --before 1d",
        ] {
            assert_eq!(purge(body).rooms, RoomSelector::AllRooms, "{body}");
        }
    }

    #[test]
    fn matrix_to_links_for_room_user_event() {
        let a = purge(
            "!purge https://matrix.to/#/%23lobby%3Aexample.org?via=example.org \
             --user https://matrix.to/#/@spam:example.org \
             --event https://matrix.to/#/!abc:example.org/$ev1?via=example.org \
             --user=matrix:u/other:example.org",
        );
        assert_eq!(a.rooms, room("#lobby:example.org"));
        let users: Vec<&str> = a.users.iter().map(|u| u.as_str()).collect();
        assert_eq!(users, ["@spam:example.org", "@other:example.org"]);
        assert_eq!(a.events[0].as_str(), "$ev1");
    }

    #[test]
    fn invalid_combinations_say_what_was_wrong() {
        let table: &[(&str, &str)] = &[
            ("!purge", "<ROOM|--all-rooms>"),
            ("!purge --before 1d", "<ROOM|--all-rooms>"),
            ("!purge !a:x.org --all-rooms --user @u:x.org", "cannot be used with"),
            ("!purge --all-rooms", "--all-rooms needs at least one filter"),
            ("!purge --all-rooms --dry-run", "--all-rooms needs at least one filter"),
            ("!purge --all-rooms --everything", "would purge every event in every room"),
            ("!purge --all-rooms --before 1d", "add --everything if that is what you mean"),
            ("!purge --all-rooms --after 1h --before 1m", "purges every user's events in every room"),
            ("!purge --all-rooms --user @u:x.org --everything", "with --user or --event, leave it out"),
            ("!purge !a:x.org", "add --everything to purge the whole room"),
            ("!purge !a:x.org --method delete --yes", "would purge every event in !a:x.org"),
            ("!purge !a:x.org --everything --user @u:x.org", "--everything is only allowed without filters"),
            ("!purge !a:x.org --everything --before 1d", "--everything is only allowed without filters"),
            ("!purge !a:x.org --everything --after 1d", "--everything is only allowed without filters"),
            ("!purge !a:x.org --everything --event $e", "--everything is only allowed without filters"),
            ("!purge !a:x.org --user @u:x.org --dry-run --yes", "'--dry-run' cannot be used with '--yes'"),
            ("!purge !a:x.org --after 1d --before 7d", "did you swap them?"),
            ("!purge !a:x.org --after 2026-11-20 --before 2026-11-19", "not earlier than --before"),
            ("!purge !a:x.org --after 2026-11-20 --before 2026-11-20", "not earlier than --before"),
            ("!purge !a:x.org --before yesterday", "is not a time"),
            ("!purge !a:x.org --before 1763632800", "looks like unix seconds"),
            ("!purge !a:x.org --user spammer", "invalid value 'spammer' for '--user <USER>'"),
            ("!purge !a:x.org --event ev1", "invalid value 'ev1' for '--event <EVENT>'"),
            ("!purge lobby --user @u:x.org", "invalid value 'lobby' for '[ROOM]'"),
            ("!purge lobby --user @u:x.org", "expected a room ID (!abc:example.org), an alias"),
            ("!purge !a:x.org --event ev1", "expected an event ID"),
            ("!purge !a:x.org --user", "a value is required for '--user <USER>'"),
            ("!purge !a:x.org --befor 1d", "--before"),
            ("!purge !a:x.org !b:x.org --user @u:x.org", "unexpected argument '!b:x.org'"),
            ("!purge !a:x.org --everything --reason \"\"", "the reason is empty"),
        ];
        for &(body, expected) in table {
            let e = err(body);
            assert!(e.message.contains(expected), "{body:?}: {:?} should contain {expected:?}", e.message);
            let usage = e.usage.as_deref().unwrap_or_default();
            assert!(usage.starts_with("Usage: !purge "), "{body:?}: usage {usage:?}");
            assert!(!e.is_help);
        }
    }

    #[test]
    fn mixed_time_forms_are_not_judged_without_now() {
        let a = purge("!purge !a:x.org --after 2026-11-20 --before 7d");
        assert_eq!(a.before, Some(TimeSpec::Ago(Duration::from_secs(7 * 86_400))));
    }

    #[test]
    fn custom_prefix_in_usage() {
        let Some(Err(e)) = parse_command::<Tree>("hk:purge --all-rooms", "hk:") else { panic!() };
        assert!(e.usage.unwrap().starts_with("Usage: hk:purge "));
    }
}
