//! Typed client for the homeserver: the Client-Server API as the appservice
//! (as_token) or as a local user, and Synapse's admin API.
//!
//! Every request goes through [`HomeserverClient::send`], which retries
//! connection failures, 429 and 5xx with exponential backoff and honours
//! `retry_after_ms`, up to a bounded total. This is the one retry layer of
//! each call: callers record what still failed (an item's outcome, a reply
//! saying so) instead of retrying again around it.
//!
//! The client knows no store and nothing of housekeep's features.

mod account;
mod admin;
pub mod power;
mod rooms;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

pub use account::{PingOutcome, StartupReport};
pub use admin::truthy;

#[derive(Debug, thiserror::Error)]
pub enum HsError {
    #[error("homeserver unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("homeserver answered {status} {errcode}: {error}")]
    Matrix { status: StatusCode, errcode: String, error: String, body: Value },
    #[error("unexpected response from the homeserver: {0}")]
    Decode(String),
}

impl HsError {
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Self::Matrix { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Matrix { status, .. } => *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
            Self::Decode(_) => false,
        }
    }

    /// The server's own wait hint on 429.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Matrix { status, body, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                body.get("retry_after_ms").and_then(Value::as_u64).map(Duration::from_millis)
            }
            _ => None,
        }
    }
}

/// How hard one call tries before giving up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first attempt; `None` retries forever.
    pub max_retries: Option<usize>,
}

impl Default for RetryPolicy {
    /// Seven retries, 0.5 s doubling to at most 15 s: about a minute in all.
    fn default() -> Self {
        Self { min_delay: Duration::from_millis(500), max_delay: Duration::from_secs(15), max_retries: Some(7) }
    }
}

impl RetryPolicy {
    /// No retries: for probes whose caller decides what a failure means.
    pub const ONCE: Self =
        Self { min_delay: Duration::from_millis(0), max_delay: Duration::from_millis(0), max_retries: Some(0) };

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        let builder =
            ExponentialBuilder::new().with_min_delay(self.min_delay).with_max_delay(self.max_delay).with_jitter();
        match self.max_retries {
            Some(n) => builder.with_max_times(n).build(),
            None => builder.without_max_times().build(),
        }
    }
}

#[derive(Clone)]
pub struct HomeserverClient {
    http: reqwest::Client,
    base: Url,
    /// The appservice's token, or a local user's (see [`Self::with_token`]).
    token: String,
    retry: RetryPolicy,
}

/// The token stays out of logs and panics.
impl std::fmt::Debug for HomeserverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeserverClient")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .field("retry", &self.retry)
            .finish()
    }
}

impl HomeserverClient {
    pub fn new(base: Url, as_token: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("housekeep/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            // The token is an admin credential: never carry it to wherever a
            // redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, base, token: as_token, retry: RetryPolicy::default() })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The same client acting with another access token (a local user's).
    pub fn with_token(&self, token: String) -> Self {
        Self { token, ..self.clone() }
    }

    /// `base` + path segments, each percent-encoded: nothing user-typed is
    /// spliced raw into a URL.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("http(s) URLs have paths").pop_if_empty().extend(segments);
        url
    }

    /// One JSON request as the appservice, retried per the client's policy.
    pub async fn send<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<R, HsError> {
        self.send_url(method, self.url(segments), body).await
    }

    /// [`send`](Self::send) to a full URL (one with a query string).
    pub async fn send_url<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<R, HsError> {
        let mut backoff = self.retry.backoff();
        loop {
            match self.send_once(method.clone(), url.clone(), body).await {
                Ok(value) => {
                    return serde_json::from_value(value).map_err(|e| HsError::Decode(e.to_string()));
                }
                Err(error) if error.is_retryable() => {
                    let Some(delay) = backoff.next() else {
                        return Err(error);
                    };
                    let delay = error.retry_after().unwrap_or(delay);
                    tracing::info!(%method, path = url.path(), %error, ?delay, "homeserver request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn send_once<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Value, HsError> {
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(HsError::Transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(HsError::Transport)?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(body);
        }
        let field = |name| body.get(name).and_then(Value::as_str).map(str::to_owned);
        Err(HsError::Matrix {
            status,
            errcode: field("errcode").unwrap_or_else(|| "M_UNKNOWN".to_owned()),
            error: field("error").unwrap_or_else(|| body.to_string().chars().take(200).collect()),
            body,
        })
    }
}
