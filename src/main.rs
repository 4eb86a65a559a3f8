//! The `housekeep` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use housekeep::clock::now_ms;
use housekeep::config::redact_url;
use housekeep::config::{Config, ConfigArg};
use housekeep::store::Backend;
use housekeep::{registration, service, testbed};

/// A Matrix application service that indexes every event and media reference
/// on a homeserver and runs moderation commands from an admin room.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appservice (applies database migrations first).
    Run(ConfigArg),
    /// Write the registration file for the homeserver; fills in missing tokens in the config.
    GenerateRegistration {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the registration; `-` for standard output.
        #[arg(short, long, default_value = "registration.yaml")]
        output: PathBuf,
    },
    /// Check the config file and exit; errors name the key.
    CheckConfig(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Print the lines that point Synapse's usage reports (phone-home) at housekeep; generates stats.secret.
    StatsEndpoint {
        #[command(flatten)]
        config: ConfigArg,
        /// Replace stats.secret with a new one (Synapse logs the endpoint URL, secret included): then
        /// restart housekeep, put the printed line into homeserver.yaml and restart Synapse
        #[arg(long)]
        rotate: bool,
    },
    /// Print a stats summary from the database: phone-home reports and the index.
    Stats {
        #[command(flatten)]
        config: ConfigArg,
        /// Days summarized, up to today (UTC).
        #[arg(long, default_value_t = housekeep::stats::DEFAULT_STATS_DAYS,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(housekeep::config::MAX_STATS_DAYS)))]
        days: u32,
        /// `text` for people, `json` for scripts (phone-home fields by their payload names).
        #[arg(long, value_enum, default_value_t = StatsFormat::Text)]
        format: StatsFormat,
    },
    /// Start a throwaway local Synapse and housekeep, seed a room, and show what the index holds.
    Demo(testbed::demo::DemoArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StatsFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(arg) => {
            let config = Config::load(&arg.config)?;
            service::init_logging(Some(&config));
            if let Some(warning) = Config::exposure(&arg.config) {
                tracing::warn!("{warning}");
            }
            if let Some(warning) = housekeep::store::sqlite_exposure(&config.database.url) {
                tracing::warn!("{warning}");
            }
            service::run(config).await
        }
        Command::GenerateRegistration { config, output } => {
            service::init_logging(None);
            let (_, yaml) = registration::generate(&config.config)?;
            if output.as_os_str() == "-" {
                print!("{yaml}");
            } else {
                registration::write_private(&output, &yaml)
                    .with_context(|| format!("cannot write {}", output.display()))?;
                eprintln!(
                    "wrote {} (mode 600: let the homeserver's user read it, e.g. chown synapse); \
                     add it to the homeserver's app_service_config_files and restart the homeserver",
                    output.display()
                );
            }
            Ok(())
        }
        Command::CheckConfig(arg) => {
            // A fresh config has no tokens yet: that is a step to do, not an error in the file.
            let mut config = Config::load_unvalidated(&arg.config)?;
            config.validate_shape().with_context(|| format!("invalid config {}", arg.config.display()))?;
            if config.appservice.as_token.is_empty() || config.appservice.hs_token.is_empty() {
                eprintln!(
                    "note: appservice.as_token/hs_token are empty; `housekeep generate-registration` fills them in"
                );
            } else {
                config.validate().with_context(|| format!("invalid config {}", arg.config.display()))?;
            }
            println!(
                "{}: ok (bot {}, homeserver {}, database {} {})",
                arg.config.display(),
                config.bot_user_id()?,
                config.homeserver.url,
                Backend::from_url(&config.database.url).map_or("unknown", Backend::as_str),
                redact_url(&config.database.url)
            );
            Ok(())
        }
        Command::Migrate(arg) => {
            let config = Config::load_unvalidated(&arg.config)?;
            config.validate_shape().with_context(|| format!("invalid config {}", arg.config.display()))?;
            service::init_logging(Some(&config));
            service::open_store(&config).await?.close().await;
            Ok(())
        }
        Command::StatsEndpoint { config, rotate } => {
            service::init_logging(None);
            let config = registration::ensure_stats_secret(&config.config, rotate)?;
            let url = registration::stats_endpoint(&config)?;
            println!("# Put these lines into Synapse's homeserver.yaml, then restart Synapse:");
            println!("report_stats: true");
            println!("report_stats_endpoint: \"{url}\"");
            eprintln!(
                "Synapse sends a report every 3 hours (the first about 5 minutes after it starts) with PUT to {}; \
                 housekeep must be running to take it.",
                url.path()
            );
            Ok(())
        }
        Command::Stats { config, days, format } => {
            let config = Config::load_unvalidated(&config.config)?;
            config.validate_shape()?;
            service::init_logging(Some(&config));
            // Read only: a newer binary must not migrate the database under a running service.
            let store = housekeep::store::Store::connect(&config.database.url, Some(2)).await?;
            let summary = housekeep::stats::summary::Summary::load(
                &store,
                housekeep::stats::summary::Scope::Server,
                days,
                now_ms(),
            )
            .await
            .context("cannot read the stats (has `housekeep migrate` or `run` set up this database?)")?;
            match format {
                StatsFormat::Text => println!("{}", summary.notice(&config.admin.command_prefix).plain),
                StatsFormat::Json => println!("{}", serde_json::to_string_pretty(&summary.json())?),
            }
            store.close().await;
            Ok(())
        }
        Command::Demo(args) => {
            // Warnings only: the demo prints its own steps, and its encrypting
            // client's library would fill them with its INFO lines.
            service::init_logging_at(None, "warn");
            testbed::demo::run(args).await
        }
    }
}
