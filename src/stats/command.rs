//! `!stats`: activity summary with a chart.

use clap::{Args, Subcommand, value_parser};
use ruma::OwnedRoomOrAliasId;

use super::summary::{Scope, Summary};
use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::{args_via, parse_room};

/// Shown at the end of `!help stats`.
pub const EXAMPLES: &str = "\
Examples:
  !stats
  !stats --days 30
  !stats room #lobby:example.org --days 1";

/// Default of `!stats --days`.
pub const DEFAULT_STATS_DAYS: u32 = 7;
/// Largest `!stats --days`.
pub use crate::config::MAX_STATS_DAYS;

/// A parsed `!stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsArgs {
    /// One room, or (`None`) the whole server.
    pub room: Option<OwnedRoomOrAliasId>,
    /// How many days back, `1..=365`.
    pub days: u32,
}

/// Summarize activity (events, senders, media) with a chart
#[derive(Args)]
#[command(after_long_help = EXAMPLES)]
struct StatsCli {
    #[command(subcommand)]
    scope: Option<StatsScopeCli>,
    /// How many days back to summarize (1-365)
    #[arg(
        long,
        global = true,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = DEFAULT_STATS_DAYS,
        value_parser = value_parser!(u32).range(1..=i64::from(MAX_STATS_DAYS)),
    )]
    days: u32,
}

#[derive(Subcommand)]
enum StatsScopeCli {
    /// Stats of one room instead of the whole server
    Room {
        /// A room ID (!abc:example.org), an alias (#lobby:example.org) or a matrix.to link
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
    },
}

args_via!(StatsArgs, StatsCli);

impl TryFrom<StatsCli> for StatsArgs {
    type Error = clap::Error;

    fn try_from(cli: StatsCli) -> Result<Self, clap::Error> {
        let room = cli.scope.map(|StatsScopeCli::Room { room }| room);
        Ok(StatsArgs { room, days: cli.days })
    }
}

impl AdminCommand for StatsArgs {
    const NAME: &'static str = "stats";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        let services = ctx.services();
        let scope = match &self.room {
            None => Scope::Server,
            Some(room) => Scope::Room {
                room_id: services.homeserver.resolve_room(room.as_str()).await?.to_string(),
                named: room.to_string(),
            },
        };
        let summary = Summary::load_kept(&services.store, scope, self.days).await?;
        let (reply, image) = super::post::render(&summary, ctx.prefix()).await;
        Ok(Executed { image, ..Executed::ok(reply) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::test_support::{assert_errors, ok};

    /// A one-command tree, as the chat front-end would make.
    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Stats(StatsArgs),
    }

    fn stats(body: &str) -> StatsArgs {
        let Tree::Stats(args) = ok::<Tree>(body);
        args
    }

    #[test]
    fn valid_forms() {
        let lobby: Option<OwnedRoomOrAliasId> = Some("#lobby:example.org".parse().unwrap());
        assert_eq!(stats("!stats"), StatsArgs { room: None, days: 7 });
        assert_eq!(stats("!stats --days 30"), StatsArgs { room: None, days: 30 });
        assert_eq!(stats("!stats --days=1"), StatsArgs { room: None, days: 1 });
        assert_eq!(stats("!stats --days 365"), StatsArgs { room: None, days: 365 });
        assert_eq!(stats("!stats room #lobby:example.org"), StatsArgs { room: lobby.clone(), days: 7 });
        assert_eq!(stats("!stats room #lobby:example.org --days 3"), StatsArgs { room: lobby.clone(), days: 3 });
        assert_eq!(stats("!stats --days 3 room #lobby:example.org"), StatsArgs { room: lobby.clone(), days: 3 });
        assert_eq!(stats("!stats room https://matrix.to/#/%23lobby:example.org"), StatsArgs { room: lobby, days: 7 });
    }

    #[test]
    fn errors() {
        let table: &[(&str, &str, &str)] = &[
            ("!stats --days 0", "invalid value '0' for '--days <N>': 0 is not in 1..=365", "Usage: !stats "),
            ("!stats --days 366", "366 is not in 1..=365", "Usage: !stats "),
            ("!stats --days -1", "-1 is not in 1..=365", "Usage: !stats "),
            ("!stats --days week", "invalid value 'week'", "Usage: !stats "),
            ("!stats room", "<ROOM>", "Usage: !stats room "),
            ("!stats room lobby", "invalid value 'lobby' for '<ROOM>'", "Usage: !stats room "),
            ("!stats room #a:x.org --days 400", "400 is not in 1..=365", "Usage: !stats room "),
            ("!stats user @a:x.org", "unrecognized subcommand 'user'", "Usage: !stats "),
        ];
        assert_errors::<Tree>(table);
    }
}
