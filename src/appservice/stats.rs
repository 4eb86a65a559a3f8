//! Synapse's phone-home reports (`report_stats_endpoint`): `PUT` (what
//! Synapse sends) or `POST` `/_housekeep/stats/report?secret=…`.
//!
//! Synapse sends no credentials but the URL, so the secret is in it, and is
//! compared in constant time. Each source address gets
//! `stats.reports_per_minute` requests (checked before the secret, which
//! also slows guessing). A report is checked field by field
//! (`stats::report`); a bad one gets 400 with the reason and nothing is
//! stored. A report sent twice (same homeserver and timestamp) is stored
//! once. Several homeservers may report to one housekeep.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{AppState, MatrixError};
use crate::clock::now_ms;
use crate::metrics::StatsLabel;
use crate::stats::report::{MAX_REPORT_BYTES, parse};

pub const REPORT_PATH: &str = "/_housekeep/stats/report";

/// What the report endpoint checks requests against.
pub struct StatsIngest {
    secret: String,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    requests: AtomicU64,
}

impl StatsIngest {
    pub fn new(secret: &str, per_minute: u32) -> Arc<Self> {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("at least 1"));
        Arc::new(Self { secret: secret.to_owned(), limiter: RateLimiter::keyed(quota), requests: AtomicU64::new(0) })
    }
}

pub async fn report(State(state): State<AppState>, request: Request) -> Result<Json<Value>, MatrixError> {
    let refuse = |outcome: &'static str, error: MatrixError| {
        state.metrics.stats_reports.get_or_create(&StatsLabel { outcome }).inc();
        tracing::info!(status = error.status.as_u16(), error = error.error, "a stats report refused");
        error
    };
    let Some(ingest) = state.stats.clone() else {
        return Err(refuse(
            "disabled",
            MatrixError::new(
                StatusCode::NOT_FOUND,
                "M_UNRECOGNIZED",
                "stats reports are not taken: stats.secret is not set",
            ),
        ));
    };
    let source = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
    if let Some(ip) = source {
        // Forget idle sources now and then: the table stays as small as the
        // sources of the last minute.
        if ingest.requests.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            ingest.limiter.retain_recent();
        }
        if ingest.limiter.check_key(&ip).is_err() {
            return Err(refuse(
                "rate_limited",
                MatrixError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "M_LIMIT_EXCEEDED",
                    "too many reports from this address",
                ),
            ));
        }
    }
    let secret = request
        .uri()
        .query()
        .and_then(|query| url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "secret"))
        .map(|(_, value)| value.into_owned());
    match secret {
        None => {
            return Err(refuse(
                "unauthenticated",
                MatrixError::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "the URL has no ?secret="),
            ));
        }
        Some(secret) if !bool::from(secret.as_bytes().ct_eq(ingest.secret.as_bytes())) => {
            return Err(refuse("forbidden", MatrixError::forbidden("wrong secret")));
        }
        Some(_) => {}
    }
    let user_agent = request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match axum::body::to_bytes(request.into_body(), MAX_REPORT_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return Err(refuse(
                "too_large",
                MatrixError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "M_TOO_LARGE",
                    format!("a report is at most {MAX_REPORT_BYTES} bytes"),
                ),
            ));
        }
    };
    let report =
        parse(&body).map_err(|why| refuse("invalid", MatrixError::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", why)))?;
    let raw = String::from_utf8_lossy(&body);
    let source = source.map_or("unknown".to_owned(), |ip| ip.to_string());
    let stored = state
        .store
        .insert_stats_report(&report.homeserver, report.timestamp, now_ms(), &source, user_agent.as_deref(), &raw)
        .await
        .map_err(|error| {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot store a stats report; the homeserver sends the next one"
            );
            refuse("failed", MatrixError::internal())
        })?;
    let outcome = if stored { "stored" } else { "duplicate" };
    state.metrics.stats_reports.get_or_create(&StatsLabel { outcome }).inc();
    tracing::info!(homeserver = report.homeserver, timestamp = report.timestamp, source, outcome, "stats report");
    Ok(Json(json!({ "stored": stored })))
}
