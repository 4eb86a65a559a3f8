//! The homeserver client's retry policy, against a local HTTP server that
//! answers like a rate-limiting or failing homeserver.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::get;
use housekeep::homeserver::{HomeserverClient, HsError, RetryPolicy};
use serde_json::{Value, json};

tests! {
    plain: [
        rate_limits_wait_for_retry_after_ms,
        server_errors_are_retried_then_reported,
        client_errors_are_not_retried,
        an_unreachable_homeserver_is_retried,
    ],
}

/// When each request reached the homeserver.
type Arrivals = Arc<std::sync::Mutex<Vec<Instant>>>;

/// Serves `answers` in order on `GET /_matrix/client/v3/account/whoami`, then 200s.
async fn homeserver(answers: Vec<(StatusCode, Value)>) -> (HomeserverClient, Arc<AtomicUsize>) {
    let (client, calls, _) = homeserver_timed(answers).await;
    (client, calls)
}

/// [`homeserver`], also keeping when each request arrived.
async fn homeserver_timed(answers: Vec<(StatusCode, Value)>) -> (HomeserverClient, Arc<AtomicUsize>, Arrivals) {
    let calls = Arc::new(AtomicUsize::new(0));
    let arrivals = Arrivals::default();
    let (counter, arrived) = (calls.clone(), arrivals.clone());
    let answers = Arc::new(answers);
    let app = axum::Router::new().route(
        "/_matrix/client/v3/account/whoami",
        get(move || {
            arrived.lock().unwrap().push(Instant::now());
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            async move {
                let (status, body) =
                    answers.get(n).cloned().unwrap_or((StatusCode::OK, json!({"user_id": "@housekeep:hs.example"})));
                (status, Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let policy = RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        max_retries: Some(3),
    };
    (HomeserverClient::new(url, "token".into()).unwrap().with_retry(policy), calls, arrivals)
}

async fn rate_limits_wait_for_retry_after_ms() {
    let limited = (StatusCode::TOO_MANY_REQUESTS, json!({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 400}));
    let (client, calls, arrivals) = homeserver_timed(vec![limited.clone(), limited]).await;
    assert_eq!(client.whoami().await.unwrap().as_str(), "@housekeep:hs.example");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Each retry came at least retry_after_ms after the answer that asked
    // for it (the backoff alone would be 50-200 ms), as the homeserver saw it.
    let arrivals = arrivals.lock().unwrap().clone();
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(400), "a retry came {gap:?} after a 429 asking for 400 ms");
    }
}

async fn server_errors_are_retried_then_reported() {
    let down = (StatusCode::BAD_GATEWAY, json!({"errcode": "M_UNKNOWN", "error": "upstream"}));
    let (client, calls) = homeserver(vec![down.clone(), down.clone()]).await;
    client.whoami().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let (client, calls) = homeserver(vec![down; 10]).await;
    let error = client.whoami().await.unwrap_err();
    assert!(matches!(error, HsError::Matrix { status, .. } if status == StatusCode::BAD_GATEWAY), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one try and three retries");
}

async fn client_errors_are_not_retried() {
    let forbidden = (StatusCode::FORBIDDEN, json!({"errcode": "M_FORBIDDEN", "error": "no"}));
    let (client, calls) = homeserver(vec![forbidden]).await;
    let error = client.whoami().await.unwrap_err();
    assert_eq!(error.errcode(), Some("M_FORBIDDEN"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

async fn an_unreachable_homeserver_is_retried() {
    let port = housekeep::testbed::free_port().unwrap();
    let policy = RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(20),
        max_retries: Some(2),
    };
    let client = HomeserverClient::new(format!("http://127.0.0.1:{port}").parse().unwrap(), "t".into())
        .unwrap()
        .with_retry(policy);
    let started = Instant::now();
    assert!(matches!(client.whoami().await.unwrap_err(), HsError::Transport(_)));
    assert!(started.elapsed() >= Duration::from_millis(40));
}
