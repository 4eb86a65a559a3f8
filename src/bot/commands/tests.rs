//! The assembled command language: prefixes, names, quoting, help, errors.

use proptest::prelude::*;

use super::{Command, HelpArgs};
use crate::command::{AuditArgs, JobsArgs, StatusArgs};
use crate::grammar::{RoomSelector, help_text, parse_command, prepare_for_split, root_command, with_prefix};
use crate::moderation::purge::PurgeArgs;

fn ok(body: &str) -> Command {
    crate::grammar::test_support::ok::<Command>(body)
}

fn err(body: &str) -> crate::grammar::CommandError {
    crate::grammar::test_support::err::<Command>(body)
}

fn parse(body: &str, prefix: &str) -> Option<Result<Command, crate::grammar::CommandError>> {
    parse_command::<Command>(body, prefix)
}

fn help(prefix: &str, topic: Option<&str>) -> Result<String, crate::grammar::CommandError> {
    help_text::<Command>(prefix, topic)
}

#[test]
fn not_a_command() {
    for body in [
        "",
        "!",
        "!!!",
        "!!purge",
        "! purge",
        "!1",
        "!-h",
        "!#room:x.org",
        "!@user",
        "!$",
        "hello",
        "please run !purge on that room",
        "?!purge",
        "> <@a:x.org> !purge\n\nthis",
        "!éclair",
    ] {
        assert_eq!(parse(body, "!"), None, "{body:?}");
    }
    assert_eq!(parse("!purge", "hk "), None);
    assert_eq!(parse("hk purge", "hk!"), None);
}

#[test]
fn dashboard_takes_a_code_or_ends_every_session() {
    use crate::web::{DashboardAction, DashboardArgs};
    let args = |action, code: &[&str]| {
        Command::Dashboard(DashboardArgs { action, code: code.iter().map(|c| c.to_string()).collect() })
    };
    assert_eq!(ok("!dashboard"), args(None, &[]));
    assert_eq!(ok("!dashboard logout-all"), args(Some(DashboardAction::LogoutAll), &[]));
    assert_eq!(ok("!dashboard WDJB-MJHT"), args(None, &["WDJB-MJHT"]));
    assert_eq!(ok("!dashboard wdjb mjht"), args(None, &["wdjb", "mjht"]), "typed with a space");
    // A near miss of the subcommand is taken as a code, and refused as one
    // with a pointer to logout-all (`web::command`).
    assert_eq!(ok("!dashboard logout"), args(None, &["logout"]));
    let error = err("!dashboard WDJB MJHT extra");
    assert!(error.usage.as_deref().is_some_and(|usage| usage.starts_with("Usage: !dashboard")), "{error:?}");
    let error = err("!dashboard logout-all WDJB-MJHT");
    assert!(error.usage.is_some(), "{error:?}");
}

#[test]
fn leading_whitespace_and_case() {
    assert_eq!(ok("  \n\t!status"), Command::Status(StatusArgs::default()));
    assert_eq!(ok("!Status"), Command::Status(StatusArgs::default()));
    assert_eq!(ok("!STATUS"), Command::Status(StatusArgs::default()));
    assert_eq!(ok("!status   "), Command::Status(StatusArgs::default()));
    assert_eq!(ok("!status --exact"), Command::Status(StatusArgs { exact: true }));
    assert_eq!(ok("!Jobs"), Command::Jobs(JobsArgs {}));
    assert!(matches!(ok("!Purge !a:x.org --everything"), Command::Purge(_)));
}

#[test]
fn other_prefixes() {
    assert_eq!(parse("hk:status", "hk:"), Some(Ok(Command::Status(StatusArgs::default()))));
    assert_eq!(parse("🧹status", "🧹"), Some(Ok(Command::Status(StatusArgs::default()))));
    assert_eq!(parse(".jobs", "."), Some(Ok(Command::Jobs(JobsArgs {}))));
    assert_eq!(parse("jobs", ""), Some(Ok(Command::Jobs(JobsArgs {}))));
    assert_eq!(parse("hk:", "hk:"), None);
}

#[test]
fn help_and_status() {
    assert_eq!(ok("!help"), Command::Help(HelpArgs::default()));
    let Command::Help(args) = ok("!help purge") else { panic!() };
    assert_eq!(args.topic().as_deref(), Some("purge"));
    let Command::Help(args) = ok("!help quarantine media") else { panic!() };
    assert_eq!(args.topic().as_deref(), Some("quarantine media"));
    assert_eq!(ok("!status"), Command::Status(StatusArgs::default()));
    let e = err("!status now");
    assert!(e.message.contains("unexpected argument 'now'"), "{e:?}");
    assert!(e.usage.unwrap().starts_with("Usage: !status"));
    let e = err("!help a b c");
    assert!(e.message.contains("unexpected argument 'c'"), "{e:?}");
    assert!(e.usage.unwrap().starts_with("Usage: !help "));
}

#[test]
fn unknown_commands_get_a_suggestion() {
    let table: &[(&str, &str)] = &[
        ("!purg !a:x.org", "purge"),
        ("!prune", "purge"),
        ("!qurantine media x", "quarantine"),
        ("!quarantien", "quarantine"),
        ("!unqurantine", "unquarantine"),
        ("!stat", "stats"),
        ("!satus", "status"),
        ("!jbos", "jobs"),
        ("!confrim k3f9x2", "confirm"),
        ("!cancle k3f9x2", "cancel"),
        ("!backfil --all", "backfill"),
        ("!hlep", "help"),
        ("!Audti", "audit"),
    ];
    for &(body, expected) in table {
        let e = err(body);
        assert_eq!(e.suggestion.as_deref(), Some(expected), "{body:?}: {e:?}");
        assert!(e.message.contains(&format!("did you mean '!{expected}'?")), "{e:?}");
        assert!(e.message.starts_with("unknown command '!"), "{e:?}");
        assert_eq!(e.usage, None);
    }
}

#[test]
fn unknown_commands_without_a_close_one_point_at_help() {
    for body in ["!xyzzy", "!ban @a:x.org", "!I'm back", "!thanks everyone", "!testjb"] {
        let e = err(body);
        assert_eq!(e.suggestion, None, "{body:?}: {e:?}");
        assert!(e.message.contains("send '!help' for the list of commands"), "{e:?}");
    }
    let e = err(&format!("!{}", "a".repeat(500)));
    assert!(e.message.chars().count() < 200, "{e:?}");
    let Some(Err(e)) = parse("hk:prge", "hk:") else { panic!() };
    assert!(e.message.contains("did you mean 'hk:purge'?"), "{e:?}");
}

#[test]
fn quotes() {
    let reason = |body: &str| ok(body).action_flags().and_then(|f| f.reason.clone());
    let base = "!purge !a:x.org --everything --reason";
    assert_eq!(reason(&format!("{base} \"spam wave\"")).as_deref(), Some("spam wave"));
    assert_eq!(reason(&format!("{base} 'spam wave'")).as_deref(), Some("spam wave"));
    assert_eq!(reason(&format!("{base} spam\\ wave")).as_deref(), Some("spam wave"));
    assert_eq!(reason(&format!("{base} \"it's \\\"spam\\\"\"")).as_deref(), Some("it's \"spam\""));
    assert_eq!(reason(&format!("{base}=\"spam wave\"")).as_deref(), Some("spam wave"));
    assert_eq!(reason(&format!("{base} “spam wave”")).as_deref(), Some("spam wave"));
    assert_eq!(reason(&format!("{base} „spam wave“")).as_deref(), Some("spam wave"));
    assert_eq!(reason(&format!("{base} \"#1 spammer\"")).as_deref(), Some("#1 spammer"));
    assert_eq!(reason(&format!("{base} \"a\nb\"")).as_deref(), Some("a\nb"));
    // A link as the reason stays a link.
    let link = "https://matrix.to/#/@spam:x.org";
    assert_eq!(reason(&format!("{base} {link}")).as_deref(), Some(link));
    assert_eq!(reason(&format!("{base}={link}")).as_deref(), Some(link));

    for body in [
        "!purge !a:x.org --everything --reason \"spam wave",
        "!purge !a:x.org --everything --reason 'spam wave",
        "!purge !a:x.org --everything --reason it's",
    ] {
        let e = err(body);
        assert!(e.message.contains("a quote is not closed"), "{body:?}: {e:?}");
        assert!(e.usage.unwrap().starts_with("Usage: !purge "));
    }
}

#[test]
fn room_aliases_are_not_shell_comments() {
    let Command::Purge(PurgeArgs { rooms, .. }) = ok("!purge #lobby:x.org --everything") else { panic!() };
    assert_eq!(rooms, RoomSelector::Room("#lobby:x.org".parse().unwrap()));
    let Command::Purge(PurgeArgs { rooms, .. }) = ok("!purge\t#lobby:x.org\n--everything") else { panic!() };
    assert_eq!(rooms, RoomSelector::Room("#lobby:x.org".parse().unwrap()));
    let Command::Stats(args) = ok("!stats room #lobby:x.org") else { panic!() };
    assert_eq!(args.room.unwrap().as_str(), "#lobby:x.org");
}

#[test]
fn whitespace_and_dash_normalization() {
    let Command::Audit(args) = ok("!audit\u{a0}--limit\u{3000}5\r\n") else { panic!() };
    assert_eq!(args, AuditArgs { limit: 5, actor: None });
    let cmd = ok("!purge !a:x.org —everything –dry-run —reason —x");
    let flags = cmd.action_flags().unwrap();
    assert!(flags.dry_run);
    assert_eq!(flags.reason.as_deref(), Some("—x"));
}

#[test]
fn help_flag_gives_help_with_prefix() {
    for (body, usage) in [
        ("!purge -h", "Usage: !purge [OPTIONS] <ROOM|--all-rooms>"),
        ("!purge --help", "Usage: !purge [OPTIONS] <ROOM|--all-rooms>"),
        ("!purge !a:x.org --help", "Usage: !purge "),
        ("!quarantine --help", "Usage: !quarantine [OPTIONS] <COMMAND>"),
        ("!quarantine media -h", "Usage: !quarantine media [OPTIONS] <MXC>..."),
        ("!stats -h", "Usage: !stats "),
        ("!help -h", "Usage: !help "),
        ("!confirm --help", "Usage: !confirm <JOB>"),
    ] {
        let e = err(body);
        assert!(e.is_help, "{body:?}: {e:?}");
        assert!(e.message.contains(usage), "{body:?}: {}", e.message);
        assert_eq!(e.usage, None);
        assert!(!e.message.contains("\u{1b}["));
    }
    let Some(Err(e)) = parse("hk:purge --help", "hk:") else { panic!() };
    assert!(e.message.contains("Usage: hk:purge [OPTIONS]"), "{}", e.message);
    assert!(e.message.contains("hk:confirm <job>"), "{}", e.message);
    assert!(e.message.contains("hk:purge #lobby:example.org"), "{}", e.message);
}

#[test]
fn help_overview_lists_visible_commands() {
    let text = help("!", None).unwrap();
    for name in [
        "help",
        "status",
        "purge",
        "quarantine",
        "unquarantine",
        "backfill",
        "stats",
        "jobs",
        "job",
        "confirm",
        "cancel",
        "audit",
    ] {
        assert!(text.contains(&format!("\n  !{name} ")), "{name} missing from {text}");
    }
    assert!(!text.contains("testjob"), "{text}");
    assert!(text.contains("Redact or delete events"), "{text}");
    assert!(!text.contains('\u{1b}'));
    assert_eq!(help("!", Some("  ")).unwrap(), text);
    let custom = help("hk:", None).unwrap();
    assert!(custom.contains("\n  hk:purge ") && custom.contains("hk:help <command>"), "{custom}");
}

#[test]
fn help_for_one_command() {
    let purge = help("!", Some("purge")).unwrap();
    for needle in [
        "Usage: !purge [OPTIONS] <ROOM|--all-rooms>",
        "--all-rooms",
        "--before <TIME>",
        "--user <USER>",
        "--method <METHOD>",
        "--with-media <ACTION>",
        "--everything",
        "--dry-run",
        "--yes",
        "--reason <TEXT>",
        "redact",
        "delete",
        "Examples:",
        "local only",
    ] {
        assert!(purge.contains(needle), "{needle:?} missing from {purge}");
    }
    assert_eq!(help("!", Some("!PURGE")).unwrap(), purge);
    let media = help("!", Some("quarantine media")).unwrap();
    assert!(media.contains("Usage: !quarantine media [OPTIONS] <MXC>..."), "{media}");
    assert!(media.contains("--dry-run"), "{media}");
    let custom = help("hk:", Some("hk:purge")).unwrap();
    assert!(custom.contains("Usage: hk:purge [OPTIONS]"), "{custom}");
    assert!(custom.contains("!abc:example.org"), "room IDs keep their '!': {custom}");
    #[cfg(debug_assertions)]
    assert!(help("!", Some("testjob")).unwrap().contains("Usage: !testjob "));
    for name in ["help", "status", "backfill", "stats", "jobs", "job", "confirm", "cancel", "audit", "unquarantine"] {
        let text = help("!", Some(name)).unwrap();
        assert!(text.contains(&format!("Usage: !{name}")), "{text}");
    }
}

#[test]
fn help_for_unknown_topics() {
    let e = help("!", Some("purg")).unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("purge"));
    let e = help("!", Some("zzz")).unwrap_err();
    assert!(e.message.contains("send '!help'"), "{e:?}");
    let e = help("!", Some("quarantine medai")).unwrap_err();
    assert!(e.message.contains("no part 'medai'") && e.message.contains("media, room, user, event, hash"), "{e:?}");
    assert!(e.usage.unwrap().starts_with("Usage: !quarantine "));
    let e = help("!", Some("purge x")).unwrap_err();
    assert!(e.message.contains("!purge has no parts"), "{e:?}");
}

#[test]
fn names_and_destructiveness() {
    let table: &[(&str, &str, bool)] = &[
        ("!help", "help", false),
        ("!status", "status", false),
        ("!purge !a:x.org --everything", "purge", true),
        ("!room block !a:x.org", "room", true),
        ("!quarantine user @a:x.org", "quarantine", true),
        ("!unquarantine user @a:x.org", "unquarantine", true),
        ("!cleanup @a:x.org", "cleanup", true),
        ("!suspend @a:x.org", "suspend", true),
        ("!unsuspend @a:x.org", "unsuspend", true),
        ("!lock @a:x.org", "lock", true),
        ("!unlock @a:x.org", "unlock", true),
        ("!shadowban @a:x.org", "shadowban", true),
        ("!unshadowban @a:x.org", "unshadowban", true),
        ("!deactivate @a:x.org", "deactivate", true),
        ("!backfill status", "backfill", false),
        ("!stats", "stats", false),
        ("!reports", "reports", false),
        ("!report 1", "report", false),
        ("!policy lists", "policy", false),
        ("!jobs", "jobs", false),
        ("!job a", "job", false),
        ("!confirm a", "confirm", false),
        ("!cancel a", "cancel", false),
        ("!audit", "audit", false),
        ("!blocklist list", "blocklist", false),
        ("!dashboard", "dashboard", false),
        #[cfg(debug_assertions)]
        ("!testjob 3", "testjob", true),
    ];
    let root = root_command::<Command>();
    for &(body, name, destructive) in table {
        let cmd = ok(body);
        assert_eq!(cmd.name(), name);
        assert_eq!(cmd.action_flags().is_some(), destructive, "{body}");
        assert!(root.find_subcommand(name).is_some(), "{name}");
    }
    assert_eq!(root.get_subcommands().count(), table.len());
}

#[test]
fn display_of_errors() {
    let e = err("!purge --all-rooms");
    let text = e.to_string();
    assert!(text.starts_with(&e.message));
    assert!(text.ends_with(e.usage.as_deref().unwrap()));
    assert!(!text.contains("error:") && !text.contains("For more information"), "{text}");
}

#[test]
fn prefix_rewriting_in_help() {
    assert_eq!(with_prefix::<Command>("run !purge, then !confirm <job>", "hk:"), "run hk:purge, then hk:confirm <job>");
    assert_eq!(with_prefix::<Command>("!purge !purge:x.org !abc", "."), ".purge !purge:x.org !abc");
    assert_eq!(with_prefix::<Command>("a!purge (!jobs) `!job`", "."), "a!purge (.jobs) `.job`");
    assert_eq!(with_prefix::<Command>("!", "."), "!");
}

#[test]
fn split_preparation() {
    assert_eq!(prepare_for_split(" #a '#b' \"#c\" d#e \\#f #g"), " \\#a '#b' \"#c\" d#e \\#f \\#g");
    assert_eq!(prepare_for_split("\"a\\\" #b\" #c"), "\"a\\\" #b\" \\#c");
}

/// What every error must look like: plain text that says something, and a
/// usage in the moderator's own terms.
fn well_formed(e: &crate::grammar::CommandError, input: &str) -> Result<(), TestCaseError> {
    prop_assert!(!e.message.trim().is_empty(), "empty message for {:?}", input);
    prop_assert!(!e.message.contains('\u{1b}'), "ANSI in {:?}", e);
    prop_assert!(!e.message.starts_with("error:"), "{:?}", e);
    prop_assert!(!e.message.contains("For more information"), "{:?}", e);
    if let Some(usage) = &e.usage {
        prop_assert!(usage.starts_with("Usage: !"), "{:?}", usage);
    }
    // Whatever is echoed back is bounded by what was typed.
    prop_assert!(e.message.len() <= 2_000 + 4 * input.len(), "{} bytes for {} typed", e.message.len(), input.len());
    Ok(())
}

/// Whether the parser should treat `text` as a command at all.
fn looks_like_command(text: &str) -> bool {
    text.trim_start().strip_prefix('!').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic()))
}

proptest! {
    #[test]
    fn any_text_is_chat_a_command_or_an_explained_error(body in "\\PC{0,80}") {
        for text in [body.clone(), format!("!{body}"), format!("!purge {body}"), format!("!quarantine {body}")] {
            match parse(&text, "!") {
                None => prop_assert!(!looks_like_command(&text), "{:?} was taken for chat", text),
                Some(result) => {
                    prop_assert!(looks_like_command(&text), "{:?} was taken for a command", text);
                    if let Err(e) = result {
                        well_formed(&e, &text)?;
                    }
                }
            }
        }
        prop_assert!(parse(&body, "").is_some() == body.trim_start().starts_with(|c: char| c.is_ascii_alphabetic()));
    }

    #[test]
    fn commandish_input_parses_or_is_explained(
        name in prop::sample::select(vec![
            "help", "status", "purge", "quarantine", "unquarantine", "backfill", "stats", "jobs", "job",
            "confirm", "cancel", "audit", "testjob", "Purge", "x",
        ]),
        args in prop::collection::vec(
            prop_oneof![
                Just("--".to_owned()),
                Just("-h".to_owned()),
                Just("\"".to_owned()),
                Just("'".to_owned()),
                Just("\\".to_owned()),
                Just("#".to_owned()),
                "--[a-z-]{1,12}",
                "--[a-z-]{1,12}=[^ ]{0,12}",
                "[!#@$][a-z]{0,6}(:[a-z.]{1,8})?",
                "mxc://[a-z.]{0,8}/[A-Za-z_-]{0,8}",
                "https://matrix.to/#/[!#@%$a-z0-9:/?=.]{0,20}",
                "[0-9]{1,16}",
                "\\PC{0,12}",
            ],
            0..8,
        ),
    ) {
        let body = format!("!{name} {}", args.join(" "));
        match parse(&body, "!") {
            Some(Ok(command)) => prop_assert_eq!(command.name(), name.to_ascii_lowercase()),
            Some(Err(e)) if e.is_help => prop_assert!(e.message.contains("Usage: !"), "{:?}", e),
            Some(Err(e)) => well_formed(&e, &body)?,
            None => prop_assert!(false, "{:?} is a command", body),
        }
    }

    #[test]
    fn very_long_input_is_answered_briefly(word in "[a-z]{1,8}", n in 1usize..2000) {
        for body in [format!("!{word} {}", "x \"y\" #z ".repeat(n)), format!("!{}", word.repeat(n))] {
            match parse(&body, "!") {
                Some(Err(e)) => prop_assert!(e.message.chars().count() < 1_000, "{} chars", e.message.chars().count()),
                Some(Ok(_)) => {}
                None => prop_assert!(false, "{:?}… is a command", &body[..20.min(body.len())]),
            }
        }
    }

    #[test]
    fn help_is_help_or_says_what_is_unknown(topic in "\\PC{0,40}", prefix in "\\PC{0,3}") {
        match help(&prefix, Some(&topic)) {
            Ok(text) => prop_assert!(text.contains("Usage: ") || text.starts_with("Commands:"), "{}", text),
            Err(e) => prop_assert!(!e.message.trim().is_empty()),
        }
        prop_assert!(help(&prefix, None).unwrap().starts_with("Commands:"));
    }
}

/// Unicode tricks a chat client may hide: an RTL override or zero-width
/// space in a user ID, a homoglyph in a command name. An ID is refused
/// with a reason; a homoglyph name is not a command at all. Neither is read
/// as a different, valid target.
#[test]
fn unicode_tricks_in_commands_are_refused_not_reinterpreted() {
    for body in [
        "!purge --user @spammer:example.org\u{202e} --all-rooms",
        "!purge --user @spam\u{200b}mer:example.org --all-rooms",
        "!quarantine user @spammer:exa\u{200d}mple.org",
    ] {
        let error = err(body);
        assert!(
            error.message.contains("invisible or direction-changing character (U+20"),
            "{body:?}: {}",
            error.message
        );
        assert!(error.usage.is_some(), "{body:?}: usage shown");
    }
    // A Cyrillic "р" in "рurge" is not purge: not even a command (a command
    // name starts with an ASCII letter), so nothing runs.
    assert_eq!(parse("!\u{440}urge --all-rooms", "!"), None);
}

#[test]
fn room_help_shows_each_part_and_the_examples() {
    let room = help_text::<Command>("!", Some("room")).unwrap();
    for needle in ["Usage: !room [OPTIONS] <COMMAND>", "takedown", "unblock", "--dry-run", "Examples:"] {
        assert!(room.contains(needle), "{needle:?} missing from {room}");
    }
    let takedown = help_text::<Command>("!", Some("room takedown")).unwrap();
    for needle in ["Usage: !room takedown [OPTIONS] <ROOM>", "--block", "--purge", "--message <TEXT>", "quarantine"] {
        assert!(takedown.contains(needle), "{needle:?} missing from {takedown}");
    }
    let overview = help_text::<Command>("!", None).unwrap();
    assert!(overview.contains("purge, cleanup, room, quarantine, unquarantine, suspend"), "{overview}");
}
