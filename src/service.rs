//! `housekeep run`: wires config, store, listener and homeserver together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ruma::OwnedRoomId;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::appservice::{AppState, BotLink, router};
use crate::bot::BotContext;
use crate::bot::route::Routing;
use crate::config::{Config, LogFormat};
use crate::homeserver::{HomeserverClient, RetryPolicy};
use crate::store::{Store, redact_url};

/// Sets up logging from the config; `RUST_LOG` wins when set.
pub fn init_logging(config: Option<&Config>) {
    let level = config.map_or("info", |c| c.logging.level.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let json = config.is_some_and(|c| c.logging.format == LogFormat::Json);
    // A second init (tests) is harmless.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Connects to the database and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database.url, config.database.max_connections).await?;
    store.migrate().await?;
    tracing::info!(backend = store.backend().as_str(), url = redact_url(&config.database.url), "database ready");
    Ok(store)
}

/// Runs until SIGINT/SIGTERM: the listener first (the homeserver's ping needs
/// it), then the start-up handshake in the background.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let homeserver = HomeserverClient::new(config.homeserver.url.clone(), config.appservice.as_token.clone())?;
    let bot_user_id = config.bot_user_id()?;
    let admin_room_id = resolve_admin_room(&homeserver, &config.admin.room).await?;
    tracing::info!(room = config.admin.room, %admin_room_id, "admin room");

    let mut state = AppState::new(store.clone(), &config.appservice.hs_token, bot_user_id.clone());
    let wake = Arc::new(Notify::new());
    state.bot = Some(BotLink {
        routing: Arc::new(Routing {
            admin_room_id: admin_room_id.to_string(),
            bot_user_id: bot_user_id.to_string(),
            prefix: config.admin.command_prefix.clone(),
        }),
        wake: wake.clone(),
    });
    let bot = Arc::new(BotContext {
        store: store.clone(),
        homeserver: homeserver.clone(),
        metrics: state.metrics.clone(),
        bot_user_id,
        admin_room_id,
        moderators: config.admin.moderators.clone(),
        moderator_power_level: config.admin.moderator_power_level,
        prefix: config.admin.command_prefix.clone(),
        confirm_expiry: config.admin.confirm_expiry()?,
        inbox_wake: wake,
        jobs_wake: Arc::new(Notify::new()),
    });

    let bind = (config.appservice.hostname, config.appservice.port);
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {}:{} (appservice.hostname/port)", bind.0, bind.1))?;
    tracing::info!(address = %listener.local_addr()?, "appservice listening");

    // The handshake needs the listener up: the homeserver's ping calls us back.
    let bot_workers = {
        let config = config.clone();
        async move {
            homeserver
                .startup_handshake(
                    &config.appservice.id,
                    &config.appservice.bot_localpart,
                    config.appservice.address.as_str(),
                )
                .await;
            let mut workers = crate::bot::spawn(bot);
            // Both run forever; one ending means it panicked. Stop, so a
            // supervisor (systemd, Kubernetes) restarts housekeep, rather than
            // run on with commands or jobs silently stalled.
            let ended = workers.join_next().await;
            let which = match &ended {
                Some(Ok(name)) => *name,
                _ => "a bot worker",
            };
            anyhow::bail!("{which} stopped unexpectedly ({ended:?}); exiting so that housekeep is restarted")
        }
    };

    let serve = axum::serve(listener, router(state, config.appservice.max_body_bytes))
        .with_graceful_shutdown(shutdown_signal());
    let outcome = tokio::select! {
        served = serve => served.context("appservice listener failed"),
        failed = bot_workers => failed,
    };
    store.close().await;
    tracing::info!("stopped");
    outcome
}

/// The admin room's ID. An alias is resolved before anything else starts, so
/// commands in it are recognised from the first transaction on; a homeserver
/// that is down is waited for, an alias that does not exist stops start-up.
async fn resolve_admin_room(homeserver: &HomeserverClient, room: &str) -> anyhow::Result<OwnedRoomId> {
    let patient = homeserver.clone().with_retry(RetryPolicy {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        max_retries: None,
    });
    patient.resolve_room(room).await.map_err(|error| match error.errcode() {
        Some("M_NOT_FOUND") => anyhow::anyhow!("admin.room: the alias {room} does not exist on the homeserver"),
        _ => anyhow::anyhow!("admin.room: cannot resolve {room}: {error}"),
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
