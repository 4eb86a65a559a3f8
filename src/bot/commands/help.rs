//! `!help [command [part]]`: the registry's own command (it lists the others).

use clap::Args;

use super::Command;
use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::help_text;
use crate::notice::Notice;

/// List the commands, or show the full help of one
///
/// The same help comes with --help after any command.
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

impl AdminCommand for HelpArgs {
    const NAME: &'static str = "help";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        Ok(match help_text::<Command>(ctx.prefix(), self.topic().as_deref()) {
            Ok(text) => Executed::ok(Notice::new().code(&text)),
            Err(error) => Executed::with_outcome(Notice::new().line(&error.message), "unknown help topic"),
        })
    }
}
