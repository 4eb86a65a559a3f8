//! hs_token check for every homeserver-facing route.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::{AppState, MatrixError};
use crate::metrics::RejectReason;

/// Accepts `Authorization: Bearer <hs_token>` (spec v1.4+) or the legacy
/// `?access_token=` query parameter, compared in constant time.
pub async fn require_hs_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, MatrixError> {
    let Some(token) = bearer_token(&request).or_else(|| query_token(&request)) else {
        state.metrics.reject(RejectReason::BadToken);
        tracing::info!(path = %request.uri().path(), "request without hs_token refused");
        return Err(MatrixError::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "missing hs_token"));
    };
    if !bool::from(token.as_bytes().ct_eq(state.hs_token.as_bytes())) {
        state.metrics.reject(RejectReason::BadToken);
        tracing::info!(path = %request.uri().path(), "request with a wrong hs_token refused");
        return Err(MatrixError::forbidden("invalid hs_token"));
    }
    Ok(next.run(request).await)
}

fn bearer_token(request: &Request) -> Option<String> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

fn query_token(request: &Request) -> Option<String> {
    url::form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(key, _)| key == "access_token")
        .map(|(_, value)| value.into_owned())
}
