//! The HTTP listener: what the homeserver calls (transactions, ping, queries)
//! and what operators scrape (`/health`, `/metrics`). Handlers stay thin; the
//! work is in `extract` and `store`.

mod auth;
mod error;
pub mod nudge;
mod query;
pub mod route;
pub mod stats;
pub(crate) mod transactions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use ruma::OwnedUserId;
use tokio::sync::Notify;

pub use error::MatrixError;

use crate::metrics::Metrics;
use crate::store::Store;
use route::Routing;

/// What every handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub hs_token: Arc<str>,
    pub bot_user_id: OwnedUserId,
    /// Where events addressed to the bot go; `None` runs the index alone.
    pub bot: Option<BotLink>,
    /// Transactions refused once because one before them never arrived.
    pub gaps_refused: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// The numeric id of the transaction this process committed last: the
    /// next one in order needs no look for a gap behind it (0: none yet).
    pub last_committed_txn: Arc<std::sync::atomic::AtomicU64>,
    /// Rung when redactions were queued to be checked with the homeserver.
    pub redaction_checks: Option<Arc<Notify>>,
    /// Rung when media was queued for download.
    pub media_queue: Option<Arc<Notify>>,
    /// Phone-home reports are taken when set (`stats.secret`).
    pub stats: Option<Arc<stats::StatsIngest>>,
    /// Told what arrives and what was refused, so that a transaction the
    /// homeserver stranded is sent (see `nudge`); `None`: nothing nudges.
    pub nudge: Option<Arc<nudge::Nudge>>,
    /// The bot's crypto machine, once it runs (end-to-end encryption on).
    pub crypto: crate::crypto::CryptoSlot,
}

/// How the transaction handler hands events to the bot.
#[derive(Clone)]
pub struct BotLink {
    pub routing: Arc<Routing>,
    /// Rung after a commit that queued inbox items.
    pub wake: Arc<Notify>,
}

impl AppState {
    pub fn new(store: Store, hs_token: &str, bot_user_id: OwnedUserId) -> Self {
        Self {
            store,
            metrics: Arc::new(Metrics::new()),
            hs_token: hs_token.into(),
            bot_user_id,
            bot: None,
            gaps_refused: Arc::default(),
            last_committed_txn: Arc::default(),
            redaction_checks: None,
            media_queue: None,
            stats: None,
            nudge: None,
            crypto: Arc::default(),
        }
    }
}

/// All routes. Homeserver-facing ones require the hs_token; `/health` and
/// `/metrics` do not (bind the listener to a private address). The stats
/// report endpoint is here too unless it has a listener of its own.
pub fn router(state: AppState, max_body_bytes: usize, with_stats: bool) -> Router {
    let homeserver_facing = Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(transactions::put_transaction))
        .route("/transactions/{txn_id}", put(transactions::put_transaction))
        .route("/_matrix/app/v1/ping", post(query::ping))
        .route("/_matrix/app/v1/users/{user_id}", get(query::query_user))
        .route("/users/{user_id}", get(query::query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query::query_room_alias))
        .route("/rooms/{alias}", get(query::query_room_alias))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_hs_token));
    let mut router = Router::new().merge(homeserver_facing);
    if with_stats {
        router = router.route(stats::REPORT_PATH, put(stats::report).post(stats::report));
    }
    router
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(unrecognized)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The report endpoint alone, for a listener of its own (`stats.hostname`/`port`),
/// which may face a wider network: nothing else is served there.
pub fn stats_router(state: AppState) -> Router {
    Router::new()
        .route(stats::REPORT_PATH, put(stats::report).post(stats::report))
        .fallback(unrecognized)
        .with_state(state)
}

/// 200 when the database answers (the index runs), 503 otherwise. The body
/// is `OK`, then a line for each thing housekeep waits for.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    // A probe must not hang on a database that does not answer.
    let ping = tokio::time::timeout(Duration::from_secs(3), state.store.ping()).await;
    match ping.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 3 s"))) {
        Ok(()) => {
            let mut body = String::from("OK");
            for (what, why) in state.metrics.waits() {
                body.push_str(&format!("\nwaiting for {what}: {why}"));
            }
            (StatusCode::OK, body)
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n".to_owned())
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], state.metrics.render())
}

async fn unrecognized() -> MatrixError {
    MatrixError::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "unrecognized request")
}
