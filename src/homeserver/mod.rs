//! Typed client for the homeserver: the Client-Server API as the appservice
//! (as_token) or as a local user, and Synapse's admin API.
//!
//! Every request goes through [`HomeserverClient::send`], which retries
//! connection failures, 429 and 5xx with exponential backoff and honours
//! the homeserver's `Retry-After` / `retry_after_ms` (read by ruma's error
//! kinds; a wait longer than [`MAX_SERVER_WAIT`] is cut to it: a proxy's
//! `Retry-After: 4294967295` must not stall a job for ever), up to a
//! bounded total. This is the one retry layer of
//! each call: callers record what still failed (an item's outcome, a reply
//! saying so) instead of retrying again around it.
//!
//! The client knows no store and nothing of housekeep's features.

mod account;
mod admin;
mod media;
pub mod power;
mod reports;
mod rooms;
mod rooms_admin;
mod users;

use std::time::Duration;

use std::borrow::Cow;
use std::sync::LazyLock;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Method, StatusCode};
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::error::{ErrorKind, LimitExceededErrorData, RetryAfter};
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt, SupportedVersions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

/// The Matrix versions requests are made for: every homeserver housekeep
/// supports (Synapse 1.1xx) speaks them.
static SUPPORTED_VERSIONS: LazyLock<SupportedVersions> =
    LazyLock::new(|| SupportedVersions::from_parts(&["v1.11".to_owned()], &Default::default()));

/// What a ruma endpoint's path builder needs to pick its path.
pub trait PathInput: PathBuilder {
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Cow<'_, SupportedVersions> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) {}
}

/// A body as JSON, or (not JSON) as a string of it.
fn parse_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

pub use account::{PingOutcome, StartupReport};
pub use admin::{ListedRoom, MediaInfo, MessagesPage, Upload};
pub use reports::{EventReport, ReportsPage};
pub use rooms_admin::{BlockState, DeleteRoom, DeleteState, DeleteStatus, ShutdownResult};
pub use users::AccountStatus;

#[derive(Debug, thiserror::Error)]
pub enum HsError {
    #[error("homeserver unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    /// What was to be sent is not valid (an ID that is no ID): not sent.
    #[error("{0}")]
    Invalid(String),
    /// A non-2xx answer. `kind` is ruma's reading of its `errcode` and the
    /// fields that go with it (`retry_after_ms` and the `Retry-After` header
    /// for `M_LIMIT_EXCEEDED`, `status` for `M_BAD_STATUS`, …);
    /// `M_UNKNOWN` when the body is no Matrix error.
    #[error("homeserver answered {status} {errcode}: {error}")]
    Matrix { status: StatusCode, errcode: String, error: String, kind: Box<ErrorKind> },
    #[error("unexpected response from the homeserver: {0}")]
    Decode(String),
}

impl HsError {
    /// The error of a non-2xx answer, once its body is read.
    async fn from_response(response: reqwest::Response) -> Self {
        let (status, headers) = (response.status(), response.headers().clone());
        match response.bytes().await {
            Ok(bytes) => Self::from_answer(status, &headers, &bytes),
            Err(error) => Self::Transport(error),
        }
    }

    /// The error a homeserver's non-2xx answer carries: its body read as a
    /// Matrix error by ruma's [`ErrorKind`], and its `Retry-After` header.
    ///
    /// Not ruma's `Error::from_http_response`, which reads the header too
    /// but takes a body without `error` for no Matrix error at all: the
    /// spec makes `error` optional, and a 429 without it still says how
    /// long to wait. The header is read as ruma does, and wins over
    /// `retry_after_ms` as there.
    fn from_answer(status: StatusCode, headers: &http::HeaderMap, bytes: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            #[serde(flatten)]
            kind: ErrorKind,
            #[serde(default)]
            error: Option<String>,
        }
        let (mut kind, error) = match serde_json::from_slice::<Body>(bytes) {
            Ok(body) => (body.kind, body.error),
            Err(_) => (ErrorKind::Unknown, None),
        };
        let header = headers.get(http::header::RETRY_AFTER).and_then(|value| RetryAfter::try_from(value).ok());
        match &mut kind {
            ErrorKind::LimitExceeded(LimitExceededErrorData { retry_after, .. }) if header.is_some() => {
                *retry_after = header;
            }
            // A 429 from something in front of the homeserver (a proxy's
            // page) may still carry the header.
            ErrorKind::Unknown if status == StatusCode::TOO_MANY_REQUESTS => {
                let mut limited = LimitExceededErrorData::new();
                limited.retry_after = header;
                kind = ErrorKind::LimitExceeded(limited);
            }
            _ => {}
        }
        let error = error.unwrap_or_else(|| String::from_utf8_lossy(bytes).chars().take(200).collect());
        Self::Matrix { status, errcode: kind.errcode().to_string(), error, kind: Box::new(kind) }
    }

    pub fn errcode(&self) -> Option<&str> {
        match self {
            Self::Matrix { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (the homeserver unreachable, busy or failing).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Matrix { status, kind, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
                    || matches!(**kind, ErrorKind::LimitExceeded(_))
            }
            Self::Decode(_) | Self::Invalid(_) => false,
        }
    }

    /// How long to wait before retrying after this error: the server's own
    /// hint, at most [`MAX_SERVER_WAIT`], or else `backoff`.
    fn wait_before_retry(&self, backoff: Duration) -> Duration {
        self.retry_after().map_or(backoff, |wait| wait.min(MAX_SERVER_WAIT))
    }

    /// The server's own wait hint when it limits our rate: the
    /// `Retry-After` header or `retry_after_ms` (a date in the past: now).
    fn retry_after(&self) -> Option<Duration> {
        let Self::Matrix { kind, .. } = self else {
            return None;
        };
        let ErrorKind::LimitExceeded(LimitExceededErrorData { retry_after: Some(retry_after), .. }) = &**kind else {
            return None;
        };
        Some(match retry_after {
            RetryAfter::Delay(delay) => *delay,
            RetryAfter::DateTime(at) => at.duration_since(std::time::SystemTime::now()).unwrap_or_default(),
        })
    }
}

/// The longest wait a server's rate-limit hint is followed for (Synapse's
/// are seconds); the retry after it may be limited again, and waits again.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(60);

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

/// A builder for an HTTP client with TLS through rustls and *ring*:
/// reqwest's default provider, aws-lc-rs, builds a C library with cmake
/// (45 s of a cold build on 2 cores) for the same job. The provider is
/// installed for the process the first time; every client housekeep (and
/// its testbed) makes starts here, as reqwest panics without one.
pub fn http_client() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // An error means a provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

impl HomeserverClient {
    pub fn new(base: Url, as_token: String) -> anyhow::Result<Self> {
        let http = http_client()
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

    /// The homeserver's base URL (for messages to operators).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `base` + path segments, each percent-encoded: nothing user-typed is
    /// spliced raw into a URL.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("http(s) URLs have paths").pop_if_empty().extend(segments);
        url
    }

    /// One JSON request (Synapse's admin API, written by hand), retried per
    /// the client's policy.
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
        let path = url.path().to_owned();
        let bytes = self
            .retrying(&method, &path, || {
                let mut request = self.http.request(method.clone(), url.clone()).bearer_auth(&self.token);
                if let Some(body) = body {
                    request = request.json(body);
                }
                async move { self.execute(request.build().map_err(HsError::Transport)?).await }
            })
            .await?;
        let value: Value = if bytes.is_empty() { Value::Null } else { parse_json(&bytes) };
        // A missing or mistyped field names the endpoint and the field.
        serde_json::from_value(value).map_err(|e| HsError::Decode(format!("{method} {path}: {e}")))
    }

    /// A Client-Server request with ruma's typed request and response,
    /// retried per the client's policy.
    pub async fn call<R>(&self, request: R) -> Result<R::IncomingResponse, HsError>
    where
        R: OutgoingRequest + Clone,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        let method = R::METHOD;
        let build = || -> Result<reqwest::Request, HsError> {
            let http_request = request
                .clone()
                .try_into_http_request::<Vec<u8>>(
                    self.base.as_str(),
                    SendAccessToken::Always(&self.token),
                    R::PathBuilder::input(&SUPPORTED_VERSIONS),
                )
                .map_err(|e| HsError::Invalid(format!("cannot build the request: {e}")))?;
            reqwest::Request::try_from(http_request).map_err(HsError::Transport)
        };
        let first = build()?;
        let path = first.url().path().to_owned();
        let mut first = Some(first);
        let bytes = self
            .retrying(&method, &path, || {
                let request = first.take().map_or_else(build, Ok);
                async move { self.execute(request?).await }
            })
            .await?;
        let response = http::Response::builder()
            .status(http::StatusCode::OK)
            .body(bytes.as_ref())
            .map_err(|e| HsError::Decode(e.to_string()))?;
        R::IncomingResponse::try_from_http_response(response)
            .map_err(|e| HsError::Decode(format!("{method} {path}: {e}")))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy's
    /// retries are spent: connection failures, 429 (after the server's own
    /// `retry_after_ms`) and 5xx are retried.
    async fn retrying<F, Fut>(&self, method: &Method, path: &str, mut attempt: F) -> Result<bytes::Bytes, HsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bytes::Bytes, HsError>>,
    {
        let mut backoff = self.retry.backoff();
        loop {
            match attempt().await {
                Ok(bytes) => return Ok(bytes),
                Err(error) if error.is_retryable() => {
                    let Some(delay) = backoff.next() else {
                        return Err(error);
                    };
                    let delay = error.wait_before_retry(delay);
                    tracing::info!(%method, path, %error, ?delay, "homeserver request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One request: the body of a 2xx answer, or the error the homeserver gave.
    async fn execute(&self, request: reqwest::Request) -> Result<bytes::Bytes, HsError> {
        let response = self.http.execute(request).await.map_err(HsError::Transport)?;
        let status = response.status();
        if status.is_success() {
            return response.bytes().await.map_err(HsError::Transport);
        }
        Err(HsError::from_response(response).await)
    }
}

#[cfg(test)]
mod tests {
    use ruma::api::error::BadStatusErrorData;

    use super::*;

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> HsError {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(http::header::RETRY_AFTER, value.parse().unwrap());
        }
        HsError::from_answer(StatusCode::from_u16(status).unwrap(), &headers, body.as_bytes())
    }

    #[test]
    fn rate_limits_say_how_long_to_wait() {
        let limited = r#"{"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 1500}"#;
        let error = answer(429, None, limited);
        assert_eq!(
            (error.errcode(), error.retry_after()),
            (Some("M_LIMIT_EXCEEDED"), Some(Duration::from_millis(1500)))
        );
        assert!(error.is_retryable());
        assert_eq!(error.to_string(), "homeserver answered 429 Too Many Requests M_LIMIT_EXCEEDED: Too Many Requests");
        // The spec makes `error` optional.
        let bare = answer(429, None, r#"{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 400}"#);
        assert_eq!(bare.retry_after(), Some(Duration::from_millis(400)));
        assert_eq!(bare.wait_before_retry(Duration::from_secs(3)), Duration::from_millis(400));
        // A wait no homeserver means (a proxy's page, a typo): cut to the most.
        let forever = answer(429, Some("4294967295"), "<html>slow down</html>");
        assert_eq!(forever.wait_before_retry(Duration::from_secs(3)), MAX_SERVER_WAIT);
        let plain = answer(502, None, "bad gateway");
        assert_eq!(plain.wait_before_retry(Duration::from_secs(3)), Duration::from_secs(3), "no hint: the backoff");
        // The header wins over the body, as in ruma.
        assert_eq!(answer(429, Some("3"), limited).retry_after(), Some(Duration::from_secs(3)));
        // A date already past: at once.
        let past = answer(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), limited);
        assert_eq!(past.retry_after(), Some(Duration::ZERO));
        // A proxy's 429 page with the header; without it, the backoff decides.
        let proxied = answer(429, Some("2"), "<html>slow down</html>");
        assert_eq!(
            (proxied.errcode(), proxied.retry_after()),
            (Some("M_LIMIT_EXCEEDED"), Some(Duration::from_secs(2)))
        );
        assert_eq!(answer(429, None, "<html>slow down</html>").retry_after(), None);
        assert_eq!(answer(429, None, r#"{"errcode": "M_LIMIT_EXCEEDED"}"#).retry_after(), None);
    }

    #[test]
    fn other_answers_keep_their_errcode_and_words() {
        let forbidden = answer(403, Some("5"), r#"{"errcode": "M_FORBIDDEN", "error": "no"}"#);
        assert_eq!((forbidden.errcode(), forbidden.retry_after()), (Some("M_FORBIDDEN"), None));
        assert!(!forbidden.is_retryable());
        let custom = answer(400, None, r#"{"errcode": "ORG.EXAMPLE_THING", "error": "odd", "extra": 1}"#);
        assert_eq!(custom.errcode(), Some("ORG.EXAMPLE_THING"));
        let gateway = answer(502, None, "<html>Bad Gateway</html>");
        assert_eq!(gateway.errcode(), Some("M_UNKNOWN"));
        assert!(gateway.is_retryable() && gateway.to_string().ends_with("M_UNKNOWN: <html>Bad Gateway</html>"));
        let HsError::Matrix { kind, .. } =
            answer(502, None, r#"{"errcode": "M_BAD_STATUS", "error": "x", "status": 403}"#)
        else {
            panic!("a Matrix error");
        };
        assert!(
            matches!(*kind, ErrorKind::BadStatus(BadStatusErrorData { status: Some(status), .. }) if status == 403),
            "{kind:?}"
        );
    }
}
