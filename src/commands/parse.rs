//! Message body → [`Command`]: the parse pipeline, errors and help.
//!
//! 1. **Prefix.** After leading whitespace, the body must start with the
//!    prefix immediately followed by an ASCII letter; otherwise it is not a
//!    command at all (`None`): `!`, `!!!`, `! hi`, `?!purge` and a sentence
//!    mentioning `!purge` are chat, not commands.
//! 2. **Command name.** The word after the prefix, matched case-insensitively
//!    (phones capitalize the first letter: `!Purge` works). Unknown names get
//!    the nearest command as a suggestion.
//! 3. **Shell split** with shell-words, so `--reason "spam wave"` is one
//!    argument. Before splitting: a `#` starting a word is escaped (shell-words
//!    would take it for a comment, and room aliases start with `#`); curly
//!    double quotes (“ ” „, from phone keyboards) become `"`; CR and other
//!    Unicode whitespace become plain whitespace.
//! 4. **Links.** Each argument that is a matrix.to link or `matrix:` URI
//!    becomes the bare ID (see [`normalize_matrix_link`]); the value of
//!    `--reason` is left alone. An argument starting with an em or en dash and
//!    a letter (`—dry-run`, a phone's "smart dash") gets `--` instead.
//! 5. **clap** (`try_get_matches_from`, no binary name, no colour, no `help`
//!    subcommand, no `--version`; `-h`/`--help` give help), then the
//!    conversion to the public argument types, which checks the rules clap
//!    cannot express.
//!
//! Errors come back as [`CommandError`]: what was wrong plus the usage of
//! the command (or subcommand) concerned, with the configured prefix.

use std::fmt;

use clap::error::ErrorKind;
use clap::{ColorChoice, FromArgMatches, Subcommand};

use super::Command;
use super::links::normalize_matrix_link;

/// Longest piece of user input echoed back in an error message, in characters.
const MAX_ECHO_CHARS: usize = 48;
/// Jaro-Winkler similarity from which an unknown command gets a suggestion.
const SUGGEST_SIMILARITY: f64 = 0.8;

/// Why a message could not be turned into a [`Command`], or the help it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    /// What was wrong: one or a few lines of plain text (no ANSI). When
    /// `is_help` is set, the full help text instead.
    pub message: String,
    /// The usage of the command concerned, plain text, starting with `Usage: `
    /// and using the configured prefix (`Usage: !purge [OPTIONS] <ROOM|--all-rooms>`).
    /// `None` for unknown commands and for help.
    pub usage: Option<String>,
    /// For an unknown command, the nearest known command name, without
    /// prefix (`"purge"`). Also mentioned in `message`.
    pub suggestion: Option<String>,
    /// `-h`/`--help` was given: `message` is the help to send, not an error.
    pub is_help: bool,
}

/// The message, then a blank line and the usage if there is one.
impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(usage) = &self.usage {
            write!(f, "\n\n{usage}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {}

/// Parses a message body as a command.
///
/// `None` when the body is not a command at all (see the module docs: the
/// prefix must start the message and be followed directly by a letter).
/// Otherwise the parsed command, or a [`CommandError`] to reply with (which
/// may be help, see [`CommandError::is_help`]).
pub fn parse_command(body: &str, prefix: &str) -> Option<Result<Command, CommandError>> {
    let rest = body.trim_start().strip_prefix(prefix)?;
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(parse_after_prefix(rest, prefix))
}

fn parse_after_prefix(rest: &str, prefix: &str) -> Result<Command, CommandError> {
    let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (word, args) = rest.split_at(word_end);
    let name = word.to_ascii_lowercase();
    let Some(mut cmd) = display_command(prefix, &name) else {
        return Err(unknown_command(prefix, word));
    };
    let mut argv = shell_words::split(&prepare_for_split(args)).map_err(|_| CommandError {
        message: "a quote is not closed: put text with spaces between a pair of \"double\" or \
                  'single' quotes, and escape a quote that is part of the text with a backslash (\\\")"
            .to_owned(),
        usage: Some(cmd.render_usage().to_string()),
        suggestion: None,
        is_help: false,
    })?;
    normalize_args(&mut argv);

    // Parse once against the command re-rooted as `!name`, so clap's errors,
    // usage and help read `!purge …` (a sub-command of a root would read
    // `<root> purge …`); then again in the full tree to build the value.
    if let Err(e) = cmd.try_get_matches_from_mut(&argv) {
        return Err(from_clap(e, prefix, &mut cmd, &argv));
    }
    let mut root = root_command();
    let matches = match root.try_get_matches_from_mut(std::iter::once(&name).chain(&argv)) {
        Ok(matches) => matches,
        Err(e) => return Err(from_clap(e, prefix, &mut cmd, &argv)),
    };
    Command::from_arg_matches(&matches).map_err(|e| {
        let e = e.format(&mut cmd);
        from_clap(e, prefix, &mut cmd, &argv)
    })
}

/// Help for `!help [command]`: the list of commands, or one command's (or
/// subcommand's, `"quarantine media"`) full help, in plain text with the
/// configured prefix. The topic may carry the prefix (`"!purge"`) and any
/// letter case. Errors for unknown topics, with a suggestion.
pub fn help_text(prefix: &str, command: Option<&str>) -> Result<String, CommandError> {
    let mut words = command.unwrap_or_default().split_whitespace();
    let Some(first) = words.next() else {
        return Ok(overview(prefix));
    };
    let typed = first.strip_prefix(prefix).filter(|s| !s.is_empty()).unwrap_or(first);
    let name = typed.to_ascii_lowercase();
    let mut cmd = display_command(prefix, &name).ok_or_else(|| unknown_command(prefix, typed))?;
    let help = match words.next() {
        None => cmd.render_long_help(),
        Some(part) => {
            cmd.build();
            let usage = cmd.render_usage().to_string();
            let parts: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
            match cmd.find_subcommand_mut(part.to_ascii_lowercase()) {
                Some(sub) => sub.render_long_help(),
                None => {
                    let message = if parts.is_empty() {
                        format!("{prefix}{name} has no parts; see {prefix}help {name}")
                    } else {
                        format!("{prefix}{name} has no part '{}'; its parts are: {}", echo(part), parts.join(", "))
                    };
                    return Err(CommandError { message, usage: Some(usage), suggestion: None, is_help: false });
                }
            }
        }
    };
    Ok(with_prefix(help.to_string().trim_end(), prefix))
}

/// The one-line-per-command list for `!help`.
fn overview(prefix: &str) -> String {
    let root = root_command();
    let visible: Vec<&clap::Command> = root.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    let width = visible.iter().map(|c| c.get_name().len()).max().unwrap_or(0) + prefix.chars().count();
    let mut out = String::from("Commands:\n");
    for cmd in visible {
        let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
        out.push_str(&format!("  {:<width$}  {about}\n", format!("{prefix}{}", cmd.get_name())));
    }
    out.push_str(&format!(
        "\nSend {prefix}help <command> (or {prefix}<command> --help) for its options and examples.\n\
         purge, quarantine and unquarantine show a plan first and act after {prefix}confirm <job> \
         or a ✅ reaction on the plan; --dry-run only plans, --yes acts at once."
    ));
    out
}

/// The whole command tree, as the parser for values.
fn root_command() -> clap::Command {
    let root = clap::Command::new("housekeep").no_binary_name(true).subcommand_required(true);
    configure(Command::augment_subcommands(root))
}

/// Settings shared by the tree and the re-rooted commands.
fn configure(cmd: clap::Command) -> clap::Command {
    cmd.color(ColorChoice::Never).disable_help_subcommand(true).disable_version_flag(true).arg_required_else_help(false)
}

/// Command `name` as a root of its own named `{prefix}{name}`, for usage,
/// errors and help that read as the moderator types them. `None` for unknown
/// names (hidden commands are known).
fn display_command(prefix: &str, name: &str) -> Option<clap::Command> {
    let sub = root_command().find_subcommand(name)?.clone();
    let sub = configure(sub).bin_name(format!("{prefix}{name}")).no_binary_name(true);
    // A required subcommand (quarantine's target) should be reported missing,
    // not answered with the whole help, which clap derive asks for.
    Some(sub.mut_subcommands(|s| s.arg_required_else_help(false)))
}

/// A clap error as a [`CommandError`]: help stays whole; errors lose the
/// `error: ` head and the `--help` tail, and their usage goes to its field.
/// clap leaves the usage out of some errors (invalid values): then it is the
/// usage of the (sub)command `argv` reaches in `cmd`.
fn from_clap(err: clap::Error, prefix: &str, cmd: &mut clap::Command, argv: &[String]) -> CommandError {
    let rendered = err.render().to_string();
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::DisplayVersion
    ) {
        return CommandError {
            message: with_prefix(rendered.trim_end(), prefix),
            usage: None,
            suggestion: None,
            is_help: true,
        };
    }
    let text = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let text = text.split("\n\nFor more information, try").next().unwrap_or(text);
    let (message, usage) = match text.split_once("\n\nUsage: ") {
        Some((message, usage)) => (message, format!("Usage: {}", usage.trim_end())),
        None => (text, usage_for(cmd, argv)),
    };
    CommandError {
        message: with_prefix(message.trim_end(), prefix),
        usage: Some(usage),
        suggestion: None,
        is_help: false,
    }
}

/// The usage of the deepest subcommand of `cmd` that `argv` reaches, e.g.
/// `!quarantine media` for `["--dry-run", "media", "mxc://…"]`. Follows
/// clap's rule: a subcommand name counts only as the first positional
/// argument of its level (and, where arguments conflict with subcommands,
/// only before any argument), skipping the values of long options.
fn usage_for(cmd: &mut clap::Command, argv: &[String]) -> String {
    cmd.build();
    let mut current = cmd;
    let mut args = argv.iter();
    let mut seen_arg = false;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let takes_value = !long.contains('=')
                && current.get_arguments().any(|a| a.get_long() == Some(long) && a.get_action().takes_values());
            if takes_value {
                args.next();
            }
            seen_arg = true;
            continue;
        }
        if arg.starts_with('-') {
            seen_arg = true;
            continue;
        }
        let may_be_subcommand = !(seen_arg && current.is_args_conflicts_with_subcommands_set());
        if may_be_subcommand && current.find_subcommand(arg).is_some() {
            current = current.find_subcommand_mut(arg).expect("just found");
            seen_arg = false;
        } else {
            break;
        }
    }
    current.render_usage().to_string().trim_end().to_owned()
}

fn unknown_command(prefix: &str, typed: &str) -> CommandError {
    let suggestion = nearest_command(typed);
    let typed = echo(typed);
    let message = match &suggestion {
        Some(name) => format!("unknown command '{prefix}{typed}'; did you mean '{prefix}{name}'?"),
        None => format!("unknown command '{prefix}{typed}'; send '{prefix}help' for the list of commands"),
    };
    CommandError { message, usage: None, suggestion, is_help: false }
}

/// The visible command most similar to `typed`, if similar enough.
fn nearest_command(typed: &str) -> Option<String> {
    let typed: String = typed.chars().take(MAX_ECHO_CHARS).collect::<String>().to_lowercase();
    root_command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| (strsim::jaro_winkler(&typed, c.get_name()), c.get_name().to_owned()))
        .filter(|(score, _)| *score >= SUGGEST_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// User input for an error message: at most [`MAX_ECHO_CHARS`] characters.
fn echo(s: &str) -> String {
    if s.chars().count() <= MAX_ECHO_CHARS {
        s.to_owned()
    } else {
        let mut short: String = s.chars().take(MAX_ECHO_CHARS).collect();
        short.push('…');
        short
    }
}

/// Where [`prepare_for_split`] is, in shell-words' own grammar.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SplitState {
    Delimiter,
    Unquoted,
    /// After a backslash outside quotes (the next character is literal).
    Escaped,
    SingleQuoted,
    DoubleQuoted,
    DoubleQuotedEscaped,
}

/// Rewrites the argument text so shell-words splits it as a moderator means
/// it: whitespace and curly double quotes made plain, and a `#` that starts a
/// word (a room alias) escaped instead of starting a comment.
fn prepare_for_split(args: &str) -> String {
    use SplitState::*;
    let mut out = String::with_capacity(args.len() + 8);
    let mut state = Delimiter;
    for c in args.chars() {
        let c = match c {
            '\r' => '\n',
            '“' | '”' | '„' => '"',
            ' ' | '\t' | '\n' => c,
            c if c.is_whitespace() => ' ',
            c => c,
        };
        state = match (state, c) {
            (Delimiter, '#') => {
                out.push('\\');
                Unquoted
            }
            (Delimiter | Unquoted, ' ' | '\t' | '\n') => Delimiter,
            (Delimiter | Unquoted, '\'') => SingleQuoted,
            (Delimiter | Unquoted, '"') => DoubleQuoted,
            (Delimiter | Unquoted, '\\') => Escaped,
            (Delimiter | Unquoted | Escaped, _) => Unquoted,
            (SingleQuoted, '\'') => Unquoted,
            (SingleQuoted, _) => SingleQuoted,
            (DoubleQuoted, '"') => Unquoted,
            (DoubleQuoted, '\\') => DoubleQuotedEscaped,
            (DoubleQuoted | DoubleQuotedEscaped, _) => DoubleQuoted,
        };
        out.push(c);
    }
    out
}

/// Step 4 of the pipeline: links to IDs, smart dashes to `--`, `--reason`'s value untouched.
fn normalize_args(argv: &mut [String]) {
    let mut reason_value_next = false;
    for arg in argv.iter_mut() {
        if std::mem::take(&mut reason_value_next) {
            continue;
        }
        if let Some(rest) = arg.strip_prefix(['—', '–'])
            && rest.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            *arg = format!("--{rest}");
        }
        if arg == "--reason" {
            reason_value_next = true;
            continue;
        }
        if arg.starts_with("--reason=") {
            continue;
        }
        if let Some((flag, value)) = arg.split_once('=')
            && flag.starts_with("--")
        {
            if let Some(id) = normalize_matrix_link(value) {
                *arg = format!("{flag}={id}");
            }
        } else if let Some(id) = normalize_matrix_link(arg) {
            *arg = id;
        }
    }
}

/// Replaces the `!` of `!command` mentions in help text (doc comments and
/// examples are written with `!`) by the configured prefix. Room IDs
/// (`!abc:example.org`) are left alone: only command names followed by a
/// non-`:` boundary are rewritten.
fn with_prefix(text: &str, prefix: &str) -> String {
    if prefix == "!" {
        return text.to_owned();
    }
    let root = root_command();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_boundary = true;
    while let Some(i) = rest.find('!') {
        let before = &rest[..i];
        out.push_str(before);
        if let Some(c) = before.chars().last() {
            at_boundary = c.is_whitespace() || matches!(c, '(' | '"' | '\'' | '`');
        }
        let after = &rest[i + 1..];
        let word_len =
            after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(after.len());
        let word = &after[..word_len];
        let is_command = at_boundary
            && !word.is_empty()
            && !after[word_len..].starts_with(':')
            && root.find_subcommand(word).is_some();
        out.push_str(if is_command { prefix } else { "!" });
        out.push_str(word);
        at_boundary = false;
        rest = &after[word_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{err, ok};
    use super::super::{AuditArgs, HelpArgs, PurgeArgs, RoomSelector};
    use super::*;
    use proptest::prelude::*;

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
            assert_eq!(parse_command(body, "!"), None, "{body:?}");
        }
        assert_eq!(parse_command("!purge", "hk "), None);
        assert_eq!(parse_command("hk purge", "hk!"), None);
    }

    #[test]
    fn leading_whitespace_and_case() {
        assert_eq!(ok("  \n\t!status"), Command::Status);
        assert_eq!(ok("!Status"), Command::Status);
        assert_eq!(ok("!STATUS"), Command::Status);
        assert_eq!(ok("!status   "), Command::Status);
        assert_eq!(ok("!Jobs"), Command::Jobs);
        assert!(matches!(ok("!Purge !a:x.org --everything"), Command::Purge(_)));
    }

    #[test]
    fn other_prefixes() {
        assert_eq!(parse_command("hk:status", "hk:"), Some(Ok(Command::Status)));
        assert_eq!(parse_command("🧹status", "🧹"), Some(Ok(Command::Status)));
        assert_eq!(parse_command(".jobs", "."), Some(Ok(Command::Jobs)));
        assert_eq!(parse_command("jobs", ""), Some(Ok(Command::Jobs)));
        assert_eq!(parse_command("hk:", "hk:"), None);
    }

    #[test]
    fn help_and_status() {
        assert_eq!(ok("!help"), Command::Help(HelpArgs::default()));
        let Command::Help(args) = ok("!help purge") else { panic!() };
        assert_eq!(args.topic().as_deref(), Some("purge"));
        let Command::Help(args) = ok("!help quarantine media") else { panic!() };
        assert_eq!(args.topic().as_deref(), Some("quarantine media"));
        assert_eq!(ok("!status"), Command::Status);
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
        let Some(Err(e)) = parse_command("hk:prge", "hk:") else { panic!() };
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
        let Some(Err(e)) = parse_command("hk:purge --help", "hk:") else { panic!() };
        assert!(e.message.contains("Usage: hk:purge [OPTIONS]"), "{}", e.message);
        assert!(e.message.contains("hk:confirm <job>"), "{}", e.message);
        assert!(e.message.contains("hk:purge #lobby:example.org"), "{}", e.message);
    }

    #[test]
    fn help_overview_lists_visible_commands() {
        let text = help_text("!", None).unwrap();
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
        assert_eq!(help_text("!", Some("  ")).unwrap(), text);
        let custom = help_text("hk:", None).unwrap();
        assert!(custom.contains("\n  hk:purge ") && custom.contains("hk:help <command>"), "{custom}");
    }

    #[test]
    fn help_for_one_command() {
        let purge = help_text("!", Some("purge")).unwrap();
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
        assert_eq!(help_text("!", Some("!PURGE")).unwrap(), purge);
        let media = help_text("!", Some("quarantine media")).unwrap();
        assert!(media.contains("Usage: !quarantine media [OPTIONS] <MXC>..."), "{media}");
        assert!(media.contains("--dry-run"), "{media}");
        let custom = help_text("hk:", Some("hk:purge")).unwrap();
        assert!(custom.contains("Usage: hk:purge [OPTIONS]"), "{custom}");
        assert!(custom.contains("!abc:example.org"), "room IDs keep their '!': {custom}");
        #[cfg(debug_assertions)]
        assert!(help_text("!", Some("testjob")).unwrap().contains("Usage: !testjob "));
        for name in ["help", "status", "backfill", "stats", "jobs", "job", "confirm", "cancel", "audit", "unquarantine"]
        {
            let text = help_text("!", Some(name)).unwrap();
            assert!(text.contains(&format!("Usage: !{name}")), "{text}");
        }
    }

    #[test]
    fn help_for_unknown_topics() {
        let e = help_text("!", Some("purg")).unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("purge"));
        let e = help_text("!", Some("zzz")).unwrap_err();
        assert!(e.message.contains("send '!help'"), "{e:?}");
        let e = help_text("!", Some("quarantine medai")).unwrap_err();
        assert!(e.message.contains("no part 'medai'") && e.message.contains("media, room, user, event, hash"), "{e:?}");
        assert!(e.usage.unwrap().starts_with("Usage: !quarantine "));
        let e = help_text("!", Some("purge x")).unwrap_err();
        assert!(e.message.contains("!purge has no parts"), "{e:?}");
    }

    #[test]
    fn names_and_destructiveness() {
        let table: &[(&str, &str, bool)] = &[
            ("!help", "help", false),
            ("!status", "status", false),
            ("!purge !a:x.org --everything", "purge", true),
            ("!quarantine user @a:x.org", "quarantine", true),
            ("!unquarantine user @a:x.org", "unquarantine", true),
            ("!backfill status", "backfill", false),
            ("!stats", "stats", false),
            ("!jobs", "jobs", false),
            ("!job a", "job", false),
            ("!confirm a", "confirm", false),
            ("!cancel a", "cancel", false),
            ("!audit", "audit", false),
            #[cfg(debug_assertions)]
            ("!testjob 3", "testjob", true),
        ];
        let root = root_command();
        for &(body, name, destructive) in table {
            let cmd = ok(body);
            assert_eq!(cmd.name(), name);
            assert_eq!(cmd.is_destructive(), destructive, "{body}");
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
        assert_eq!(with_prefix("run !purge, then !confirm <job>", "hk:"), "run hk:purge, then hk:confirm <job>");
        assert_eq!(with_prefix("!purge !purge:x.org !abc", "."), ".purge !purge:x.org !abc");
        assert_eq!(with_prefix("a!purge (!jobs) `!job`", "."), "a!purge (.jobs) `.job`");
        assert_eq!(with_prefix("!", "."), "!");
    }

    #[test]
    fn split_preparation() {
        assert_eq!(prepare_for_split(" #a '#b' \"#c\" d#e \\#f #g"), " \\#a '#b' \"#c\" d#e \\#f \\#g");
        assert_eq!(prepare_for_split("\"a\\\" #b\" #c"), "\"a\\\" #b\" \\#c");
    }

    proptest! {
        #[test]
        fn parse_command_never_panics(body in "\\PC{0,80}") {
            let _ = parse_command(&body, "!");
            let _ = parse_command(&format!("!{body}"), "!");
            let _ = parse_command(&format!("!purge {body}"), "!");
            let _ = parse_command(&format!("!quarantine {body}"), "!");
            let _ = parse_command(&body, "");
        }

        #[test]
        fn parse_command_never_panics_on_commandish_input(
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
            if let Some(Err(e)) = parse_command(&body, "!") {
                prop_assert!(!e.message.contains('\u{1b}'), "ANSI in {:?}", e);
                prop_assert!(!e.message.starts_with("error:"));
            }
        }

        #[test]
        fn very_long_input_never_panics(word in "[a-z]{1,8}", n in 1usize..2000) {
            let body = format!("!{word} {}", "x \"y\" #z ".repeat(n));
            let _ = parse_command(&body, "!");
            let _ = parse_command(&format!("!{}", word.repeat(n)), "!");
        }

        #[test]
        fn help_text_never_panics(topic in "\\PC{0,40}", prefix in "\\PC{0,3}") {
            let _ = help_text(&prefix, Some(&topic));
            let _ = help_text(&prefix, None);
        }
    }
}
