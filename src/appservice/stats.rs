//! Synapse's phone-home reports (`report_stats_endpoint`): `PUT` (what
//! Synapse sends) or `POST` `/_housekeep/stats/report?secret=…`.
//!
//! Synapse sends no credentials but the URL, so the secret is in it, and is
//! compared in constant time, first. Each source address (an IPv6 /64) may
//! fail it `stats.reports_per_minute` times a minute, then gets 429 (which
//! slows guessing); requests with the secret are never limited by others'
//! failures (Synapse does not retry a refused report, and shares its
//! address behind a NAT). A report is checked field by field
//! (`stats::report`); a bad one (too big, not JSON, a field of the wrong
//! type, a time in the future) gets 400 with the reason and nothing is
//! stored, and one from a homeserver not in `stats.homeservers` gets 403.
//! Only the known fields are stored, at most one report per homeserver per
//! [`MIN_GAP`] (Synapse sends one every 3 hours), so whoever holds the
//! secret cannot fill the disk; a report sent twice (same homeserver and
//! timestamp) is stored once.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, MatrixError};
use crate::clock::now_ms;
use crate::metrics::StatsLabel;
use crate::serve::address_key;
use crate::stats::report::{MAX_REPORT_BYTES, parse};
use crate::store::ReportStored;

pub const REPORT_PATH: &str = "/_housekeep/stats/report";

/// What the report endpoint checks requests against.
pub struct StatsIngest {
    secret: String,
    /// Counts failed secrets per source address.
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    requests: AtomicU64,
    /// The homeservers whose reports are taken (`stats.homeservers`).
    homeservers: Vec<String>,
}

impl StatsIngest {
    pub fn new(secret: &str, failures_per_minute: u32, homeservers: Vec<String>) -> Arc<Self> {
        let quota = Quota::per_minute(NonZeroU32::new(failures_per_minute.max(1)).expect("at least 1"));
        Arc::new(Self {
            secret: secret.to_owned(),
            limiter: RateLimiter::keyed(quota),
            requests: AtomicU64::new(0),
            homeservers,
        })
    }
}

/// The least time between two stored reports of one homeserver.
pub const MIN_GAP: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// How long a report's body may take to arrive (Synapse sends ~1.5 KiB at once).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A report may claim to be from at most this far in the future (clock skew).
const FUTURE_SLACK_S: i64 = 86_400;

pub async fn report(State(state): State<AppState>, request: Request) -> Result<Json<Value>, MatrixError> {
    let refuse = |outcome: &'static str, error: MatrixError| {
        state.metrics.stats_reports.get_or_create(&StatsLabel { outcome }).inc();
        // Anyone can send these: counted always, logged at INFO only where it
        // tells an operator something (a misconfigured Synapse, a bad report).
        match outcome {
            "rate_limited" | "disabled" => {
                tracing::debug!(status = error.status.as_u16(), error = error.error, "a stats report refused")
            }
            _ => tracing::info!(status = error.status.as_u16(), error = error.error, "a stats report refused"),
        }
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
    // Forget idle sources now and then: the table stays as small as the
    // sources of the last minute.
    if ingest.requests.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
        ingest.limiter.retain_recent();
    }
    let secret = request
        .uri()
        .query()
        .and_then(|query| url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "secret"))
        .map(|(_, value)| value.into_owned());
    let failure = match secret {
        None => Some((
            "unauthenticated",
            MatrixError::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "the URL has no ?secret="),
        )),
        // Compared as hashes: equal lengths, so the time says nothing of the secret's length either.
        Some(secret)
            if !bool::from(Sha256::digest(secret.as_bytes()).ct_eq(&Sha256::digest(ingest.secret.as_bytes()))) =>
        {
            Some(("forbidden", MatrixError::forbidden("wrong secret")))
        }
        Some(_) => None,
    };
    if let Some((outcome, error)) = failure {
        // Only failures count against the address.
        if ingest.limiter.check_key(&source.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), address_key)).is_err() {
            return Err(refuse(
                "rate_limited",
                MatrixError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "M_LIMIT_EXCEEDED",
                    "too many refused reports from this address",
                ),
            ));
        }
        return Err(refuse(outcome, error));
    }
    let user_agent = request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bad = |why: String| refuse("invalid", MatrixError::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", why));
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(request.into_body(), MAX_REPORT_BYTES))
        .await
    {
        Ok(Ok(body)) => body,
        // Almost always the size limit (axum's error does not say which).
        Ok(Err(_)) => return Err(bad(format!("a report is at most {MAX_REPORT_BYTES} bytes (or its body broke off)"))),
        Err(_) => return Err(bad(format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()))),
    };
    let report = parse(&body).map_err(bad)?;
    if !ingest.homeservers.contains(&report.homeserver) {
        let why = format!("homeserver: {} is not in stats.homeservers", crate::text::line(&report.homeserver));
        return Err(refuse("unknown_homeserver", MatrixError::forbidden(&why)));
    }
    let now = now_ms();
    if report.timestamp > now / 1000 + FUTURE_SLACK_S {
        return Err(bad(format!("timestamp: {} is in the future", report.timestamp)));
    }
    let raw = report.to_stored();
    let source = source.map_or("unknown".to_owned(), |ip| ip.to_string());
    let min_gap = MIN_GAP.as_millis() as i64;
    let stored = state
        .store
        .insert_stats_report(&report.homeserver, report.timestamp, now, &source, user_agent.as_deref(), &raw, min_gap)
        .await
        .map_err(|error| {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot store a stats report; the homeserver sends the next one"
            );
            refuse("failed", MatrixError::internal())
        })?;
    let outcome = match stored {
        ReportStored::Stored => "stored",
        ReportStored::Duplicate => "duplicate",
        ReportStored::TooSoon => "too_soon",
    };
    state.metrics.stats_reports.get_or_create(&StatsLabel { outcome }).inc();
    tracing::info!(homeserver = report.homeserver, timestamp = report.timestamp, source, outcome, "stats report");
    Ok(Json(json!({ "stored": stored == ReportStored::Stored, "outcome": outcome })))
}
