//! `housekeep run`: wires config, store, listener and homeserver together.

use anyhow::Context;
use tokio::net::TcpListener;

use crate::appservice::{AppState, router};
use crate::config::{Config, LogFormat};
use crate::homeserver::HomeserverClient;
use crate::store::{Store, redact_url};

/// Sets up logging from the config; `RUST_LOG` wins when set.
pub fn init_logging(config: Option<&Config>) {
    let level = config.map_or("info", |c| c.logging.level.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
    let state = AppState::new(store.clone(), &config.appservice.hs_token, config.bot_user_id()?);
    let bind = (config.appservice.hostname, config.appservice.port);
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {}:{} (appservice.hostname/port)", bind.0, bind.1))?;
    tracing::info!(address = %listener.local_addr()?, "appservice listening");

    let homeserver = HomeserverClient::new(config.homeserver.url.clone(), config.appservice.as_token.clone())?;
    let handshake = tokio::spawn({
        let config = config.clone();
        async move {
            homeserver
                .startup_handshake(
                    &config.appservice.id,
                    &config.appservice.bot_localpart,
                    config.appservice.address.as_str(),
                )
                .await
        }
    });

    axum::serve(listener, router(state, config.appservice.max_body_bytes))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("appservice listener failed")?;
    handshake.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
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
