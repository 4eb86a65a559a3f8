//! Message body → command: the parse pipeline, errors and help, for any
//! clap-derived command tree (the chat front-end assembles the tree).
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

use super::links::normalize_matrix_link;

/// A command tree: a clap-derived enum of commands, one variant each.
pub trait CommandTree: Subcommand + FromArgMatches {}

impl<T: Subcommand + FromArgMatches> CommandTree for T {}

/// Longest piece of user input echoed back in an error message, in characters.
const MAX_ECHO_CHARS: usize = 48;
/// Jaro-Winkler similarity from which an unknown command gets a suggestion.
const SUGGEST_SIMILARITY: f64 = 0.8;

/// Why a message could not be turned into a command, or the help it asked for.
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
pub fn parse_command<C: CommandTree>(body: &str, prefix: &str) -> Option<Result<C, CommandError>> {
    let rest = body.trim_start().strip_prefix(prefix)?;
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(parse_after_prefix::<C>(rest, prefix))
}

fn parse_after_prefix<C: CommandTree>(rest: &str, prefix: &str) -> Result<C, CommandError> {
    let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (word, args) = rest.split_at(word_end);
    let name = word.to_ascii_lowercase();
    let Some(mut cmd) = display_command::<C>(prefix, &name) else {
        return Err(unknown_command::<C>(prefix, word));
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
        return Err(from_clap::<C>(e, prefix, &mut cmd, &argv));
    }
    let mut root = root_command::<C>();
    let matches = match root.try_get_matches_from_mut(std::iter::once(&name).chain(&argv)) {
        Ok(matches) => matches,
        Err(e) => return Err(from_clap::<C>(e, prefix, &mut cmd, &argv)),
    };
    C::from_arg_matches(&matches).map_err(|e| {
        let e = e.format(&mut cmd);
        from_clap::<C>(e, prefix, &mut cmd, &argv)
    })
}

/// Help for `!help [command]`: the list of commands, or one command's (or
/// subcommand's, `"quarantine media"`) full help, in plain text with the
/// configured prefix. The topic may carry the prefix (`"!purge"`) and any
/// letter case. Errors for unknown topics, with a suggestion.
pub fn help_text<C: CommandTree>(prefix: &str, command: Option<&str>) -> Result<String, CommandError> {
    let mut words = command.unwrap_or_default().split_whitespace();
    let Some(first) = words.next() else {
        return Ok(overview::<C>(prefix));
    };
    let typed = first.strip_prefix(prefix).filter(|s| !s.is_empty()).unwrap_or(first);
    let name = typed.to_ascii_lowercase();
    let mut cmd = display_command::<C>(prefix, &name).ok_or_else(|| unknown_command::<C>(prefix, typed))?;
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
    Ok(with_prefix::<C>(help.to_string().trim_end(), prefix))
}

/// The one-line-per-command list for `!help`.
fn overview<C: CommandTree>(prefix: &str) -> String {
    let root = root_command::<C>();
    let visible: Vec<&clap::Command> = root.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    let width = visible.iter().map(|c| c.get_name().len()).max().unwrap_or(0) + prefix.chars().count();
    let mut out = String::from("Commands:\n");
    for cmd in &visible {
        let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
        out.push_str(&format!("  {:<width$}  {about}\n", format!("{prefix}{}", cmd.get_name())));
    }
    // The commands that act are those taking `--yes` (`ActionFlags`): named
    // from the tree, so the list cannot miss one added later.
    let acting: Vec<&str> = visible
        .iter()
        .filter(|cmd| cmd.get_arguments().any(|arg| arg.get_id() == "yes"))
        .map(|cmd| cmd.get_name())
        .collect();
    out.push_str(&format!(
        "\nSend {prefix}help <command> (or {prefix}<command> --help) for its options and examples.\n\
         {} show a plan first and act after {prefix}confirm <job> \
         or a ✅ reaction on the plan; --dry-run only plans, --yes acts at once.",
        acting.join(", ")
    ));
    out
}

/// The whole command tree, as the parser for values.
pub fn root_command<C: CommandTree>() -> clap::Command {
    let root = clap::Command::new("housekeep").no_binary_name(true).subcommand_required(true);
    configure(C::augment_subcommands(root))
}

/// Settings shared by the tree and the re-rooted commands.
fn configure(cmd: clap::Command) -> clap::Command {
    cmd.color(ColorChoice::Never).disable_help_subcommand(true).disable_version_flag(true).arg_required_else_help(false)
}

/// Command `name` as a root of its own named `{prefix}{name}`, for usage,
/// errors and help that read as the moderator types them. `None` for unknown
/// names (hidden commands are known).
fn display_command<C: CommandTree>(prefix: &str, name: &str) -> Option<clap::Command> {
    let sub = root_command::<C>().find_subcommand(name)?.clone();
    let sub = configure(sub).bin_name(format!("{prefix}{name}")).no_binary_name(true);
    // A required subcommand (quarantine's target) should be reported missing,
    // not answered with the whole help, which clap derive asks for.
    Some(sub.mut_subcommands(|s| s.arg_required_else_help(false)))
}

/// A clap error as a [`CommandError`]: help stays whole; errors lose the
/// `error: ` head and the `--help` tail, and their usage goes to its field.
/// clap leaves the usage out of some errors (invalid values): then it is the
/// usage of the (sub)command `argv` reaches in `cmd`.
fn from_clap<C: CommandTree>(err: clap::Error, prefix: &str, cmd: &mut clap::Command, argv: &[String]) -> CommandError {
    let rendered = err.render().to_string();
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::DisplayVersion
    ) {
        return CommandError {
            message: with_prefix::<C>(rendered.trim_end(), prefix),
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
        message: with_prefix::<C>(message.trim_end(), prefix),
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

fn unknown_command<C: CommandTree>(prefix: &str, typed: &str) -> CommandError {
    let suggestion = nearest_command::<C>(typed);
    let typed = echo(typed);
    let message = match &suggestion {
        Some(name) => format!("unknown command '{prefix}{typed}'; did you mean '{prefix}{name}'?"),
        None => format!("unknown command '{prefix}{typed}'; send '{prefix}help' for the list of commands"),
    };
    CommandError { message, usage: None, suggestion, is_help: false }
}

/// The visible command most similar to `typed`, if similar enough.
fn nearest_command<C: CommandTree>(typed: &str) -> Option<String> {
    let typed: String = typed.chars().take(MAX_ECHO_CHARS).collect::<String>().to_lowercase();
    root_command::<C>()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| (strsim::jaro_winkler(&typed, c.get_name()), c.get_name().to_owned()))
        .filter(|(score, _)| *score >= SUGGEST_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// User input for an error message: at most [`MAX_ECHO_CHARS`] characters,
/// control and invisible characters shown as `�` (found by the fuzzer: an
/// ESC echoed back).
fn echo(s: &str) -> String {
    crate::text::shown(s, MAX_ECHO_CHARS)
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
pub fn prepare_for_split(args: &str) -> String {
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
pub fn with_prefix<C: CommandTree>(text: &str, prefix: &str) -> String {
    if prefix == "!" {
        return text.to_owned();
    }
    let root = root_command::<C>();
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
