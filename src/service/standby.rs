//! A second housekeep against the same PostgreSQL does not exit: it waits
//! as a **standby**. Its listener answers `/health` with 503 `standby` (so
//! a load balancer in front sends Synapse to the active one), `/metrics`
//! with `housekeep_standby 1` (so monitoring sees the standby is there) and
//! every other request with 503; it indexes nothing and runs nothing. It asks for
//! the instance lock every [`POLL`]: PostgreSQL releases the active one's
//! advisory lock the moment its connection ends (the process died, or lost
//! the database), and the standby starts as a fresh start would: jobs
//! resume from their checkpoints, the inbox from its unhandled rows, and
//! the index takes what Synapse sends again. README: "A standby".
//!
//! SQLite stays single-instance: its lock is a file on one machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{InstanceLock, Store};

/// How often a standby asks for the instance lock.
const POLL: Duration = Duration::from_secs(1);

/// What `/health` answers while standing by.
pub const STANDBY: &str = "standby: another housekeep holds this database's instance lock; this one takes over \
     when it stops";

/// Waits for the instance lock, answering as a standby meanwhile; `None`
/// if housekeep is stopped first.
pub(super) async fn take_over(
    store: &Store,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<InstanceLock>> {
    let bind = (config.appservice.hostname, config.appservice.port);
    let listener = TcpListener::bind(bind).await.with_context(|| {
        format!(
            "another housekeep holds this database's instance lock, and this one would wait as its standby, but \
             cannot listen on {}:{} (appservice.hostname/port): a standby needs an address of its own \
             (another machine, or another port behind the load balancer; README: \"A standby\")",
            bind.0, bind.1
        )
    })?;
    let metrics = Arc::new(Metrics::new());
    metrics.standby.set(1);
    let app = Router::new()
        .route("/health", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, format!("{STANDBY}\n")) }))
        .route("/metrics", get(move || async move { ([(CONTENT_TYPE, Metrics::CONTENT_TYPE)], metrics.render()) }))
        .fallback(|| async {
            let body = serde_json::json!({"errcode": "M_UNKNOWN", "error": STANDBY});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
        });
    let standing_by = CancellationToken::new();
    let server = {
        let stop = standing_by.clone();
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await })
    };
    tracing::info!("{STANDBY}");
    let since = Instant::now();
    let lock = loop {
        match store.try_claim_instance(&config.database.url).await {
            Ok(Some(lock)) => break Some(lock),
            Ok(None) => {}
            Err(error) => tracing::warn!(error = format!("{error:#}"), "standby: cannot ask for the instance lock"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => break None,
        }
    };
    standing_by.cancel();
    // The listener is free again once the standby's server has stopped.
    server.await.context("the standby's listener")?.context("the standby's listener")?;
    if lock.is_some() {
        tracing::info!(stood_by = ?since.elapsed(), "took over: the instance lock is this housekeep's now");
    }
    Ok(lock)
}
