//! `!help [command [part]]`.

use clap::Args;

use super::{Command, Executed};
use crate::bot::Bot;
use crate::grammar::help_text;
use crate::notice::Notice;

/// `!help [command [subcommand]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub struct HelpArgs {
    /// The command to explain, e.g. purge (the prefix is optional)
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// For commands with parts, the part, e.g. !help quarantine media
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

impl HelpArgs {
    /// The topic to pass to [`help_text`]: `"quarantine media"`, `"purge"` or `None`.
    pub fn topic(&self) -> Option<String> {
        match (&self.command, &self.subcommand) {
            (Some(command), Some(sub)) => Some(format!("{command} {sub}")),
            (Some(command), None) => Some(command.clone()),
            (None, _) => None,
        }
    }
}

pub fn help(bot: &Bot, args: &HelpArgs) -> Executed {
    match help_text::<Command>(&bot.prefix, args.topic().as_deref()) {
        Ok(text) => Executed::ok(Notice::new().code(&text)),
        Err(error) => Executed::with_outcome(Notice::new().line(&error.message), "unknown help topic"),
    }
}
