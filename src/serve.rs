//! Serving HTTP to strangers: the appservice endpoint, the stats endpoint
//! and the dashboard each run through [`serve`], which bounds what one peer
//! can hold.
//!
//! `axum::serve` has no timer, so a client that sends its request head one
//! byte at a time (slowloris), or opens connections and sends nothing, keeps
//! each connection, and a file descriptor, for ever. Here:
//!
//! - the request head (and, on a kept-alive connection, the wait for the next
//!   one) must arrive within [`Limits::header_timeout`];
//! - a request body must arrive within [`Limits::body_timeout`];
//! - at most [`Limits::connections`] connections are open at once: at the
//!   limit, new ones wait in the kernel's backlog until one closes (nothing is
//!   refused, and the slow ones are closed by the timeouts above);
//! - at most [`Limits::connections_per_ip`] of them from one address: more
//!   are closed at once, so one peer cannot take every slot.
//!
//! Each closed slow connection and each refusal is counted in `/metrics`
//! (`housekeep_listener_closed_total{listener, reason}`) and logged at INFO,
//! at most once a minute per listener and reason (an attack would flood the
//! log otherwise).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::clock::now_ms;
use crate::metrics::Metrics;

/// What one listener allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub connections: usize,
    pub connections_per_ip: usize,
}

impl Limits {
    /// For every listener: hyper's own header timeout (an idle kept-alive
    /// connection is closed after it too, which clients expect), a minute for
    /// a body (a transaction is at most `appservice.max_body_bytes`), and
    /// room for the homeserver, a reverse proxy's dashboard users and a
    /// metrics scraper at once.
    pub const DEFAULT: Limits = Limits {
        header_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(60),
        connections: 1024,
        connections_per_ip: 256,
    };
}

/// Why a connection was closed before its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Closed {
    /// Its request head (or the next one) did not arrive in time.
    SlowHeaders,
    /// Its address already had `connections_per_ip` open.
    TooManyFromOneAddress,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::SlowHeaders => "slow_headers",
            Closed::TooManyFromOneAddress => "too_many_from_one_address",
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes,
/// then lets open requests finish (each connection is told to close after
/// its current response) and returns when every connection is closed.
/// Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    name: &'static str,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = app.layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let slots = Arc::new(Semaphore::new(limits.connections));
    let per_ip = Arc::new(PerIp::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let log = Arc::new(RateLimitedLog::default());
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!(listener = name, %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(claim) = per_ip.claim(peer.ip(), limits.connections_per_ip) else {
            log.closed(&metrics, name, Closed::TooManyFromOneAddress, peer);
            drop(stream);
            continue;
        };
        let app = app.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(axum::body::Body::new)
        });
        let (metrics, log, stop) = (metrics.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            let _held = (slot, claim);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            let mut connection = std::pin::pin!(connection.with_upgrades());
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                if error.is_timeout() {
                    log.closed(&metrics, name, Closed::SlowHeaders, peer);
                } else {
                    tracing::debug!(listener = name, %peer, %error, "a connection ended with an error");
                }
            }
        });
    }
    stop.cancel();
    // Every connection holds a slot until it is closed.
    let _ = slots.acquire_many(limits.connections as u32).await;
}

/// Open connections per address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One open connection of an address; released when dropped.
struct Claim {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn claim(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Claim> {
        let mut open = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Claim { per_ip: self.clone(), ip })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut open = self.per_ip.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Counts every closed connection; logs one a minute per reason.
#[derive(Default)]
struct RateLimitedLog {
    slow_headers: AtomicI64,
    too_many: AtomicI64,
}

impl RateLimitedLog {
    fn closed(&self, metrics: &Metrics, listener: &'static str, why: Closed, peer: SocketAddr) {
        metrics.listener_closed.get_or_create(&crate::metrics::ListenerLabel { listener, reason: why.as_str() }).inc();
        let last = match why {
            Closed::SlowHeaders => &self.slow_headers,
            Closed::TooManyFromOneAddress => &self.too_many,
        };
        let now = now_ms();
        let logged = last.load(Ordering::Relaxed);
        if now - logged >= 60_000 && last.compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let what = match why {
                Closed::SlowHeaders => "closed a connection that did not send its request in time",
                Closed::TooManyFromOneAddress => "closed a connection from an address that has too many open",
            };
            tracing::info!(
                listener,
                %peer,
                reason = why.as_str(),
                "{what} (logged once a minute; housekeep_listener_closed_total counts each)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const LIMITS: Limits = Limits {
        header_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(400),
        connections: 6,
        connections_per_ip: 3,
    };

    struct Server {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        /// Sending, or dropping it, stops the server.
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        /// Rung when a handler starts (before it reads the body).
        handling: Arc<tokio::sync::Notify>,
    }

    async fn start(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handling = Arc::new(tokio::sync::Notify::new());
        let notify = handling.clone();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }).put(
                |body: axum::body::Body| async move {
                    notify.notify_one();
                    match axum::body::to_bytes(body, 1 << 20).await {
                        Ok(bytes) => bytes.len().to_string(),
                        Err(error) => format!("body: {error}"),
                    }
                },
            ),
        );
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, "test", metrics.clone(), async move {
            let _ = stopped.await;
        }));
        Server { addr, metrics, stop: Some(stop), handling }
    }

    /// Sends `head` and reads until the server closes: what it answered.
    /// (Without the limits a slow head would be held for ever: the test
    /// fails after 10 s instead of hanging.)
    async fn exchange(addr: SocketAddr, head: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
        assert!(read.is_ok(), "still open after 10 s; answered so far: {answer:?}");
        answer
    }

    fn closed(metrics: &Metrics, reason: &'static str) -> u64 {
        metrics.listener_closed.get_or_create(&crate::metrics::ListenerLabel { listener: "test", reason }).get()
    }

    #[tokio::test]
    async fn a_request_head_sent_too_slowly_is_closed() {
        let server = start(LIMITS).await;
        let (addr, metrics) = (server.addr, &server.metrics);
        let started = Instant::now();
        // Slowloris: a head that never ends.
        let answer = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await;
        let waited = started.elapsed();
        assert!(waited >= LIMITS.header_timeout && waited < 10 * LIMITS.header_timeout, "closed after {waited:?}");
        assert!(!answer.contains("200 OK"), "{answer}");
        assert_eq!(closed(metrics, "slow_headers"), 1);
    }

    #[tokio::test]
    async fn a_body_sent_too_slowly_is_refused() {
        let server = start(LIMITS).await;
        let addr = server.addr;
        let answer =
            exchange(addr, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\nabc").await;
        assert!(answer.contains("body: "), "the body never came: {answer}");
        let answer =
            exchange(addr, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("\r\n\r\n3"), "{answer}");
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_connection() {
        let server = start(Limits { header_timeout: Duration::from_secs(30), ..LIMITS }).await;
        let (addr, metrics) = (server.addr, &server.metrics);
        // Three idle connections: all this address may hold.
        let mut idle = Vec::new();
        for _ in 0..LIMITS.connections_per_ip {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // The fourth is closed at once, unanswered.
        let started = Instant::now();
        let answer = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(answer, "");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(closed(metrics, "too_many_from_one_address"), 1);
        // One closes: the address is served again, and sees itself as the peer.
        drop(idle.pop());
        // The server notices the close when it next reads that socket.
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let answer = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
                if !answer.is_empty() {
                    break answer;
                }
            }
        });
        let answer = answered.await.expect("served again within 10 s of a connection closing");
        assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let mut server = start(LIMITS).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc").await.unwrap();
        server.handling.notified().await;
        server.stop.take().unwrap().send(()).unwrap();
        stream.write_all(b"def").await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("\r\n\r\n6"), "{answer}");
    }
}
