//! Whether a rule matches a user, a server, a room or a piece of media, and
//! whether a rule is one housekeep refuses to act on at all.

use std::fmt;

use ruma::{OwnedRoomOrAliasId, OwnedUserId, ServerName, UserId};

use super::glob::Case;
use super::rule::{Pattern, PolicyRule, RuleKind};
use super::sha256_of;

/// What a rule is tried against. The strings are taken as they are (the
/// index's IDs); nothing here validates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A user ID: user rules, and server rules by the user's server.
    User(&'a str),
    /// A server name, with or without a port: server rules.
    Server(&'a str),
    /// A room ID or a room alias: room rules (a rule may name either; the
    /// caller tries each it knows for the room).
    Room(&'a str),
    /// A whole `mxc://server/id` URI: media rules.
    Media(&'a str),
}

/// How a rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// The entity is exactly the target.
    Literal,
    /// The entity is a glob that matches the target.
    Glob,
    /// The entity's SHA-256 (MSC4205) is the target's.
    Sha256,
}

impl fmt::Display for MatchedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchedBy::Literal => "literal",
            MatchedBy::Glob => "glob",
            MatchedBy::Sha256 => "sha256 hash",
        })
    }
}

/// Why a rule matched a target: for `!policy match` and the plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub by: MatchedBy,
    /// A server rule that matched a user: the user's server name, as it
    /// was in the user ID.
    pub server_of_user: Option<String>,
}

/// Whether `rule` matches `target`, and how. A rule only matches targets
/// of its kind, except that a server rule matches every user of the
/// server. Case: IDs and mxc URIs are compared exactly; server names
/// ASCII-case-insensitively and with or without their port (see the
/// module doc).
pub fn matches(rule: &PolicyRule, target: Target<'_>) -> Option<Match> {
    let direct = |by| Match { by, server_of_user: None };
    match (rule.kind(), target) {
        (RuleKind::User, Target::User(user)) => entity_matches(&rule.entity, user).map(direct),
        (RuleKind::Room, Target::Room(room)) => entity_matches(&rule.entity, room).map(direct),
        (RuleKind::Media, Target::Media(mxc)) => entity_matches(&rule.entity, mxc).map(direct),
        (RuleKind::Server, Target::Server(server)) => server_matches(&rule.entity, server).map(direct),
        (RuleKind::Server, Target::User(user)) => {
            let server = server_of_user(user)?;
            server_matches(&rule.entity, server).map(|by| Match { by, server_of_user: Some(server.to_owned()) })
        }
        _ => None,
    }
}

/// The server name of a user ID: everything after the first `:` (no
/// localpart may hold a `:`, historical ones included).
pub fn server_of_user(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server).filter(|server| !server.is_empty())
}

/// A server name without its port: `example.org:8448` → `example.org`,
/// `[::1]:8448` → `[::1]`; left alone when there is no port.
pub fn without_port(server_name: &str) -> &str {
    match server_name.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => server_name,
    }
}

/// Exact (case-sensitive) matching: user IDs, room IDs and aliases, mxc URIs.
fn entity_matches(pattern: &Pattern, target: &str) -> Option<MatchedBy> {
    let matched = match pattern {
        Pattern::Literal(entity) => entity == target,
        Pattern::Glob(glob) => glob.matches(target, Case::Sensitive),
        Pattern::Sha256(hash) => sha256_of(target) == *hash,
    };
    matched.then_some(pattern_kind(pattern))
}

/// Server names as server ACLs match them: ASCII case folded, the port left
/// out; the name with its port is tried too, for a rule that names one.
/// A hash is compared with the hash of each of those forms, and of the
/// lowercased ones.
fn server_matches(pattern: &Pattern, server: &str) -> Option<MatchedBy> {
    let host = without_port(server);
    let matched = match pattern {
        Pattern::Literal(entity) => entity.eq_ignore_ascii_case(host) || entity.eq_ignore_ascii_case(server),
        Pattern::Glob(glob) => {
            glob.matches(host, Case::AsciiInsensitive) || glob.matches(server, Case::AsciiInsensitive)
        }
        Pattern::Sha256(hash) => [host, server]
            .into_iter()
            .flat_map(|name| [sha256_of(name), sha256_of(&name.to_ascii_lowercase())])
            .any(|candidate| candidate == *hash),
    };
    matched.then_some(pattern_kind(pattern))
}

fn pattern_kind(pattern: &Pattern) -> MatchedBy {
    match pattern {
        Pattern::Literal(_) => MatchedBy::Literal,
        Pattern::Glob(_) => MatchedBy::Glob,
        Pattern::Sha256(_) => MatchedBy::Sha256,
    }
}

/// Who and what a rule must never touch, as plain values (the caller reads
/// them from the config and the admin room).
#[derive(Debug, Clone, Copy)]
pub struct SafetyContext<'a> {
    /// This homeserver's `server_name`.
    pub server_name: &'a ServerName,
    /// The bot's own user.
    pub bot: &'a UserId,
    /// Everyone allowed to command the bot (the config's list and those
    /// with the admin room's moderator power level).
    pub moderators: &'a [OwnedUserId],
    /// Rooms housekeep works from: the admin room and the watched lists
    /// (IDs and aliases).
    pub protected_rooms: &'a [OwnedRoomOrAliasId],
}

/// Why a rule is refused: it is not applied, and the admin room is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A server rule that matches this homeserver.
    OwnServer { server: String },
    /// A server rule that matches the server of a moderator.
    ModeratorServer { moderator: String },
    /// A user rule that matches the bot.
    Bot { bot: String },
    /// A user rule that matches a moderator.
    Moderator { moderator: String },
    /// A user rule that matches an unremarkable local user ID (`example`):
    /// taken to match every user of this homeserver.
    EveryLocalUser { example: String },
    /// A room rule that matches the admin room or a watched list.
    ProtectedRoom { room: String },
    /// A room rule that matches an unremarkable room ID or alias
    /// (`example`): taken to match any room.
    EveryRoom { example: String },
    /// A media rule with a glob: a media rule names one piece of media.
    MediaGlob,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OwnServer { server } => write!(f, "it matches this homeserver ({server})"),
            Refusal::ModeratorServer { moderator } => write!(f, "it matches the server of moderator {moderator}"),
            Refusal::Bot { bot } => write!(f, "it matches the bot itself ({bot})"),
            Refusal::Moderator { moderator } => write!(f, "it matches moderator {moderator}"),
            Refusal::EveryLocalUser { example } => {
                write!(f, "it would match every user of this homeserver (it matches {example})")
            }
            Refusal::ProtectedRoom { room } => write!(f, "it matches {room}, a room housekeep works from"),
            Refusal::EveryRoom { example } => write!(f, "it would match any room (it matches {example})"),
            Refusal::MediaGlob => f.write_str("a media rule with a glob: media rules name one mxc URI each"),
        }
    }
}

/// Local user IDs no targeted rule would name: a user rule matching one of
/// them is taken to match every local user (`@*:ourserver`, `*:ourserver`,
/// `@?*:ourserver`, `*`). The long one has every kind of character a
/// localpart may, and is no word a rule would start or end with.
pub const LOCAL_USER_PROBES: [&str; 3] = ["a", "zz", "q.0_1-2=3/4+5"];

/// Whether housekeep refuses `rule`, and why. Checked for literal, glob and
/// hashed entities alike: a rule naming a moderator exactly is refused as
/// surely as a glob that happens to match them.
///
/// - user rules: any local user (see [`LOCAL_USER_PROBES`]; a rule naming
///   one local user is fine), the bot, or any moderator;
/// - server rules: this homeserver, or the server of any moderator;
/// - room rules: any room at all (a glob matching `!a:<ourserver>`,
///   `#a:<ourserver>` or a room ID of room version 12), or a protected room;
/// - media rules: any glob.
pub fn refused(rule: &PolicyRule, ctx: &SafetyContext<'_>) -> Option<Refusal> {
    let hits = |target: Target<'_>| matches(rule, target).is_some();
    match rule.kind() {
        RuleKind::User => {
            let mut local = LOCAL_USER_PROBES.iter().map(|localpart| format!("@{localpart}:{}", ctx.server_name));
            if let Some(example) = local.find(|probe| hits(Target::User(probe))) {
                return Some(Refusal::EveryLocalUser { example });
            }
            if hits(Target::User(ctx.bot.as_str())) {
                return Some(Refusal::Bot { bot: ctx.bot.to_string() });
            }
            ctx.moderators
                .iter()
                .find(|m| hits(Target::User(m.as_str())))
                .map(|moderator| Refusal::Moderator { moderator: moderator.to_string() })
        }
        RuleKind::Server => {
            if hits(Target::Server(ctx.server_name.as_str())) {
                return Some(Refusal::OwnServer { server: ctx.server_name.to_string() });
            }
            ctx.moderators
                .iter()
                .find(|m| hits(Target::User(m.as_str())))
                .map(|moderator| Refusal::ModeratorServer { moderator: moderator.to_string() })
        }
        RuleKind::Room => {
            let v12_room_id = format!("!{}", "A".repeat(43));
            let any = [format!("!a:{}", ctx.server_name), format!("#a:{}", ctx.server_name), v12_room_id];
            if let Some(example) = any.into_iter().find(|probe| hits(Target::Room(probe))) {
                return Some(Refusal::EveryRoom { example });
            }
            ctx.protected_rooms
                .iter()
                .find(|r| hits(Target::Room(r.as_str())))
                .map(|room| Refusal::ProtectedRoom { room: room.to_string() })
        }
        RuleKind::Media => matches!(rule.entity, Pattern::Glob(_)).then_some(Refusal::MediaGlob),
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_alias_id, owned_room_id, owned_user_id, server_name, user_id};
    use serde_json::json;

    use super::*;
    use crate::policy::rule::{ParsedRule, RuleType, parse};
    use crate::policy::{sha256_base64, sha256_of};

    fn rule(rule_type: RuleType, entity: &str) -> PolicyRule {
        rule_with(rule_type, json!({"entity": entity, "recommendation": "m.ban"}))
    }

    fn hashed(rule_type: RuleType, entity: &str) -> PolicyRule {
        let sha256 = sha256_base64(&sha256_of(entity));
        rule_with(rule_type, json!({"hashes": {"sha256": sha256}, "recommendation": "m.takedown"}))
    }

    fn rule_with(rule_type: RuleType, content: serde_json::Value) -> PolicyRule {
        match parse(rule_type, "k", &content) {
            Ok(ParsedRule::Active(rule)) => rule,
            other => panic!("{content}: {other:?}"),
        }
    }

    fn by(rule: &PolicyRule, target: Target<'_>) -> Option<MatchedBy> {
        matches(rule, target).map(|m| m.by)
    }

    #[test]
    fn user_rules_match_user_ids_exactly() {
        let literal = rule(RuleType::PolicyUser, "@spam:example.org");
        assert_eq!(by(&literal, Target::User("@spam:example.org")), Some(MatchedBy::Literal));
        assert_eq!(by(&literal, Target::User("@Spam:example.org")), None, "user IDs are case-sensitive");
        assert_eq!(by(&literal, Target::User("@spam:example.org.evil")), None);
        assert_eq!(by(&literal, Target::Server("example.org")), None, "a user rule is no server rule");

        let glob = rule(RuleType::RoomRuleUser, "@spam*:example.org");
        assert_eq!(by(&glob, Target::User("@spammer:example.org")), Some(MatchedBy::Glob));
        assert_eq!(by(&glob, Target::User("@ham:example.org")), None);
        assert_eq!(by(&glob, Target::User("@spammer:EXAMPLE.org")), None);

        let hash = hashed(RuleType::MjolnirUser, "@yarrgh:example.com");
        assert_eq!(by(&hash, Target::User("@yarrgh:example.com")), Some(MatchedBy::Sha256));
        assert_eq!(by(&hash, Target::User("@yarrgh:example.co")), None);
    }

    #[test]
    fn server_rules_match_servers_without_port_and_case() {
        for rule_type in [RuleType::PolicyServer, RuleType::RoomRuleServer, RuleType::MjolnirServer] {
            let literal = rule(rule_type, "evil.example");
            for (server, expected) in [
                ("evil.example", true),
                ("EVIL.example", true),
                ("evil.example:8448", true),
                ("not-evil.example", false),
                ("evil.example.org", false),
            ] {
                assert_eq!(by(&literal, Target::Server(server)).is_some(), expected, "{rule_type} {server}");
            }
        }
        let glob = rule(RuleType::PolicyServer, "*.evil.example");
        assert_eq!(by(&glob, Target::Server("a.EVIL.example:443")), Some(MatchedBy::Glob));
        assert_eq!(by(&glob, Target::Server("evil.example")), None);

        let with_port = rule(RuleType::PolicyServer, "evil.example:8448");
        assert!(by(&with_port, Target::Server("evil.example:8448")).is_some(), "a rule naming a port");
        assert!(by(&with_port, Target::Server("evil.example")).is_none());

        let ipv6 = rule(RuleType::PolicyServer, "[::1]");
        assert!(by(&ipv6, Target::Server("[::1]:8448")).is_some());

        let hash = hashed(RuleType::PolicyServer, "evil.example");
        for server in ["evil.example", "Evil.Example", "evil.example:8448"] {
            assert_eq!(by(&hash, Target::Server(server)), Some(MatchedBy::Sha256), "{server}");
        }
    }

    #[test]
    fn server_rules_match_users_by_their_server() {
        let glob = rule(RuleType::PolicyServer, "*.evil.example");
        let found = matches(&glob, Target::User("@bob:chat.evil.example:8448")).expect("a match");
        assert_eq!(found, Match { by: MatchedBy::Glob, server_of_user: Some("chat.evil.example:8448".into()) });
        assert!(
            matches(&glob, Target::User("@evil.example:good.example")).is_none(),
            "the localpart is not the server"
        );
        assert!(matches(&glob, Target::User("@nobody")).is_none());

        let hash = hashed(RuleType::PolicyServer, "spam.example");
        assert_eq!(by(&hash, Target::User("@u:spam.example")), Some(MatchedBy::Sha256));
        assert!(matches(&rule(RuleType::PolicyServer, "*"), Target::Room("!r:spam.example")).is_none());
        assert!(matches(&rule(RuleType::PolicyServer, "*"), Target::Media("mxc://spam.example/a")).is_none());
    }

    #[test]
    fn room_rules_match_ids_and_aliases() {
        let by_id = rule(RuleType::PolicyRoom, "!abc:example.org");
        assert_eq!(by(&by_id, Target::Room("!abc:example.org")), Some(MatchedBy::Literal));
        assert_eq!(by(&by_id, Target::Room("!ABC:example.org")), None);
        let alias_glob = rule(RuleType::MjolnirRoom, "#spam-*:example.org");
        assert_eq!(by(&alias_glob, Target::Room("#spam-wave:example.org")), Some(MatchedBy::Glob));
        let hash = hashed(RuleType::RoomRuleRoom, "!abc:example.org");
        assert_eq!(by(&hash, Target::Room("!abc:example.org")), Some(MatchedBy::Sha256));
        assert_eq!(by(&hash, Target::User("!abc:example.org")), None);
    }

    #[test]
    fn media_rules_match_whole_mxc_uris() {
        // MSC4207's example.
        let rule = rule_with(
            RuleType::PolicyMxc,
            json!({"hashes": {"sha256": "ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM="}, "recommendation": "m.takedown"}),
        );
        assert_eq!(by(&rule, Target::Media("mxc://example.com/0")), Some(MatchedBy::Sha256));
        assert_eq!(by(&rule, Target::Media("example.com/0")), None, "the hash is of the whole URI");
        let literal = super::tests::rule(RuleType::Msc4207Mxc, "mxc://example.com/abc");
        assert_eq!(by(&literal, Target::Media("mxc://example.com/abc")), Some(MatchedBy::Literal));
        assert_eq!(by(&literal, Target::Media("mxc://example.com/ABC")), None);
    }

    #[test]
    fn ports_come_off_only_where_they_are_ports() {
        for (name, host) in [
            ("example.org", "example.org"),
            ("example.org:8448", "example.org"),
            ("[::1]:8448", "[::1]"),
            ("[::1]", "[::1]"),
            ("::1", "::1"),
            ("example.org:", "example.org:"),
            ("example.org:80a", "example.org:80a"),
        ] {
            assert_eq!(without_port(name), host, "{name}");
        }
        assert_eq!(server_of_user("@a:b:8448"), Some("b:8448"));
        assert_eq!(server_of_user("@a:"), None);
    }

    struct Fixture {
        moderators: Vec<OwnedUserId>,
        rooms: Vec<OwnedRoomOrAliasId>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                moderators: vec![owned_user_id!("@alice:example.org"), owned_user_id!("@remote:friendly.example")],
                rooms: vec![
                    owned_room_id!("!admin:example.org").into(),
                    owned_room_alias_id!("#bans:example.org").into(),
                ],
            }
        }

        fn ctx(&self) -> SafetyContext<'_> {
            SafetyContext {
                server_name: server_name!("example.org"),
                bot: user_id!("@housekeep:example.org"),
                moderators: &self.moderators,
                protected_rooms: &self.rooms,
            }
        }
    }

    #[test]
    fn rules_against_us_are_refused_and_say_why() {
        let fixture = Fixture::new();
        let ctx = fixture.ctx();
        let bot = || Some(Refusal::Bot { bot: "@housekeep:example.org".into() });
        let alice = || Some(Refusal::Moderator { moderator: "@alice:example.org".into() });
        let every = |example: &str| Some(Refusal::EveryLocalUser { example: example.into() });
        let own = || Some(Refusal::OwnServer { server: "example.org".into() });
        for (rule, expected) in [
            (rule(RuleType::PolicyUser, "@housekeep:example.org"), bot()),
            (hashed(RuleType::PolicyUser, "@housekeep:example.org"), bot()),
            (rule(RuleType::PolicyUser, "@house*:example.org"), bot()),
            (rule(RuleType::PolicyUser, "@alice:example.org"), alice()),
            (hashed(RuleType::MjolnirUser, "@alice:example.org"), alice()),
            (rule(RuleType::PolicyUser, "@ali??:example.org"), alice()),
            (
                rule(RuleType::PolicyUser, "*:friendly.example"),
                Some(Refusal::Moderator { moderator: "@remote:friendly.example".into() }),
            ),
            (rule(RuleType::PolicyUser, "@*:example.org"), every("@a:example.org")),
            (rule(RuleType::PolicyUser, "*"), every("@a:example.org")),
            (rule(RuleType::PolicyUser, "@?:example.org"), every("@a:example.org")),
            (rule(RuleType::PolicyUser, "@??*:example.org"), every("@zz:example.org")),
            (rule(RuleType::PolicyUser, "@*=*:example.org"), every("@q.0_1-2=3/4+5:example.org")),
            (rule(RuleType::PolicyServer, "example.org"), own()),
            (rule(RuleType::PolicyServer, "EXAMPLE.ORG"), own()),
            (rule(RuleType::RoomRuleServer, "*.org"), own()),
            (rule(RuleType::PolicyServer, "*"), own()),
            (hashed(RuleType::PolicyServer, "example.org"), own()),
            (
                rule(RuleType::PolicyServer, "friendly.example"),
                Some(Refusal::ModeratorServer { moderator: "@remote:friendly.example".into() }),
            ),
            (
                rule(RuleType::PolicyRoom, "!admin:example.org"),
                Some(Refusal::ProtectedRoom { room: "!admin:example.org".into() }),
            ),
            (rule(RuleType::PolicyRoom, "#bans:*"), Some(Refusal::ProtectedRoom { room: "#bans:example.org".into() })),
            (rule(RuleType::PolicyRoom, "!*"), Some(Refusal::EveryRoom { example: "!a:example.org".into() })),
            (rule(RuleType::PolicyRoom, "!ad*"), Some(Refusal::ProtectedRoom { room: "!admin:example.org".into() })),
            (rule(RuleType::PolicyRoom, "#?:*"), Some(Refusal::EveryRoom { example: "#a:example.org".into() })),
            (
                rule(RuleType::PolicyRoom, &format!("!{}", "?".repeat(43))),
                Some(Refusal::EveryRoom { example: format!("!{}", "A".repeat(43)) }),
            ),
            (rule(RuleType::PolicyMxc, "mxc://example.org/*"), Some(Refusal::MediaGlob)),
            (rule(RuleType::PolicyMxc, "mxc://spam.example/?"), Some(Refusal::MediaGlob)),
        ] {
            let refusal = refused(&rule, &ctx);
            assert_eq!(refusal, expected, "{} {}", rule.rule_type, rule.entity);
            assert!(!refusal.expect("refused").to_string().is_empty());
        }
    }

    #[test]
    fn targeted_rules_pass() {
        let fixture = Fixture::new();
        let ctx = fixture.ctx();
        for rule in [
            rule(RuleType::PolicyUser, "@spammer:example.org"),
            hashed(RuleType::PolicyUser, "@spammer:example.org"),
            rule(RuleType::PolicyUser, "@spam*:example.org"),
            rule(RuleType::PolicyUser, "@*:spam.example"),
            rule(RuleType::PolicyUser, "*:spam.example"),
            rule(RuleType::PolicyServer, "spam.example"),
            rule(RuleType::PolicyServer, "*.spam.example"),
            rule(RuleType::PolicyServer, "example.org.evil"),
            hashed(RuleType::PolicyServer, "spam.example"),
            rule(RuleType::PolicyRoom, "!spam:example.org"),
            rule(RuleType::PolicyRoom, "!*:spam.example"),
            rule(RuleType::PolicyRoom, "#spam-*:example.org"),
            rule(RuleType::PolicyMxc, "mxc://example.org/abc"),
            hashed(RuleType::Msc4207Mxc, "mxc://example.org/abc"),
        ] {
            assert_eq!(refused(&rule, &ctx), None, "{} {}", rule.rule_type, rule.entity);
        }
    }
}
