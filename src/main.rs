//! The `housekeep` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use housekeep::config::{Config, ConfigArg};
use housekeep::{registration, service, store::redact_url, testbed};

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
    /// Start a throwaway local Synapse and housekeep, seed a room, and show what the index holds.
    Demo(testbed::demo::DemoArgs),
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
                config.backend().as_str(),
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
        Command::Demo(args) => {
            service::init_logging(None);
            testbed::demo::run(args).await
        }
    }
}
