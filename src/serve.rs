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
//! - a request body must arrive within [`Limits::body_timeout`] of the
//!   handler starting to read it, however it trickles;
//! - an answer the peer does not read (a write that makes no progress) is
//!   given up after [`Limits::write_stall`];
//! - at most [`Limits::connections`] connections are open at once: at the
//!   limit, new ones wait in the kernel's backlog until one closes (the slow
//!   ones are closed by the timeouts above);
//! - at most [`Limits::connections_per_ip`] of them from one address (an
//!   IPv6 address by its /64, which one host usually holds whole): more are
//!   closed at once, so one peer cannot take every slot. Behind a reverse
//!   proxy every peer is the proxy: then this is the listener's limit.
//!
//! On shutdown, requests in flight get [`Limits::grace`] to finish; what is
//! still open then is dropped.
//!
//! Each connection closed early (slow head, slow reader, too many from one
//! address) is counted in `/metrics` (`housekeep_listener_closed_total
//! {listener, reason}`) and logged at INFO, at most once a minute per
//! listener and reason (an attack would flood the log otherwise). A body
//! past its deadline fails its request instead: the handler answers it
//! (400 or 413) and counts it as its own refusal.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
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

use crate::clock::Throttle;
use crate::metrics::Metrics;

/// What one listener allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub write_stall: Duration,
    /// How long requests in flight may take to finish after a shutdown
    /// begins (a SIGTERM must end the process within seconds).
    pub grace: Duration,
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
        write_stall: Duration::from_secs(30),
        grace: Duration::from_secs(5),
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
    /// It did not read its answers for `write_stall`.
    SlowReader,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::SlowHeaders => "slow_headers",
            Closed::TooManyFromOneAddress => "too_many_from_one_address",
            Closed::SlowReader => "slow_reader",
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
        let Some(claim) = per_ip.claim(address_key(peer.ip()), limits.connections_per_ip) else {
            log.closed(&metrics, name, Closed::TooManyFromOneAddress, peer);
            drop(stream);
            continue;
        };
        let app = app.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(|body| axum::body::Body::new(Deadline::new(body, limits.body_timeout)))
        });
        let (metrics, log, stop) = (metrics.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            let _held = (slot, claim);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let stream = WriteStall::new(stream, limits.write_stall);
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
                let stalled = std::error::Error::source(&error)
                    .and_then(|source| source.downcast_ref::<std::io::Error>())
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
                if error.is_timeout() {
                    log.closed(&metrics, name, Closed::SlowHeaders, peer);
                } else if stalled {
                    log.closed(&metrics, name, Closed::SlowReader, peer);
                } else {
                    tracing::debug!(listener = name, %peer, %error, "a connection ended with an error");
                }
            }
        });
    }
    stop.cancel();
    // Every connection holds a slot until it is closed.
    if tokio::time::timeout(limits.grace, slots.acquire_many(limits.connections as u32)).await.is_err() {
        let grace = limits.grace;
        tracing::info!(listener = name, "connections still open {grace:?} after the shutdown began are dropped");
    }
}

/// Who a connection counts against: an IPv6 address by its /64 (one host
/// usually holds the whole block), an IPv4 address (also when it comes as
/// `::ffff:a.b.c.d` on a dual-stack listener) by itself.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A request body that must be read whole within a deadline from its first
/// read (tower-http's body timeout restarts at each frame, so a byte a
/// minute would keep it open for ever).
struct Deadline<B> {
    inner: B,
    within: Duration,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Deadline<B> {
    fn new(inner: B, within: Duration) -> Self {
        Self { inner, within, deadline: None }
    }
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let within = self.within;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(within)));
        if deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(format!("the body did not arrive within {within:?}").into())));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail when they make no progress for `stall`:
/// a peer that sends requests and never reads the answers cannot hold its
/// connection (and slot) for ever. Reads are untouched: a dashboard's live
/// stream is read for hours without the browser sending a byte.
struct WriteStall<S> {
    inner: S,
    stall: Duration,
    /// Set while a write (or flush) waits, cleared when one goes through.
    waiting: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    fn new(inner: S, stall: Duration) -> Self {
        Self { inner, stall, waiting: None }
    }

    /// `poll` of a write or flush, failing once it has waited `stall`.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let stall = self.stall;
        let waiting = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match waiting.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the peer read nothing for {stall:?}"),
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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
struct RateLimitedLog {
    slow_headers: Throttle,
    too_many: Throttle,
    slow_reader: Throttle,
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        let minute = || Throttle::new(Duration::from_secs(60));
        Self { slow_headers: minute(), too_many: minute(), slow_reader: minute() }
    }
}

impl RateLimitedLog {
    fn closed(&self, metrics: &Metrics, listener: &'static str, why: Closed, peer: SocketAddr) {
        metrics.listener_closed.get_or_create(&crate::metrics::ListenerLabel { listener, reason: why.as_str() }).inc();
        let last = match why {
            Closed::SlowHeaders => &self.slow_headers,
            Closed::TooManyFromOneAddress => &self.too_many,
            Closed::SlowReader => &self.slow_reader,
        };
        if last.due() {
            let what = match why {
                Closed::SlowHeaders => "closed a connection that did not send its request in time",
                Closed::TooManyFromOneAddress => "closed a connection from an address that has too many open",
                Closed::SlowReader => "closed a connection that did not read its answers",
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
        write_stall: Duration::from_millis(400),
        grace: Duration::from_millis(400),
        connections: 6,
        connections_per_ip: 3,
    };

    struct Server {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        /// Sending, or dropping it, stops the server.
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        served: Option<tokio::task::JoinHandle<()>>,
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
        let app = app.route("/big", axum::routing::get(|| async { "x".repeat(1 << 20) }));
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, app, limits, "test", metrics.clone(), async move {
            let _ = stopped.await;
        }));
        Server { addr, metrics, stop: Some(stop), handling, served: Some(served) }
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

    /// A byte every 100 ms keeps each read short, but the whole body must
    /// still come within the deadline.
    #[tokio::test]
    async fn a_body_that_trickles_is_refused_at_the_deadline() {
        let server = start(LIMITS).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let trickle = async {
            for _ in 0..100 {
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let mut answer = String::new();
        trickle.await;
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
        assert!(answer.contains("body: "), "refused: {answer:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "after the deadline, not after 100 bytes at 10/s");
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64_and_mapped_ipv4_as_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_ne!(address_key(mapped), address_key("::ffff:192.0.2.8".parse().unwrap()));
    }

    /// A peer that sends requests and never reads the answers: its
    /// connection is closed once the writes stall, and a shutdown is not
    /// held up by it.
    #[tokio::test]
    async fn a_peer_that_never_reads_is_dropped() {
        let mut server = start(Limits { header_timeout: Duration::from_secs(30), ..LIMITS }).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (_read_half, mut write_half) = stream.into_split();
        // Thousands of pipelined requests for a big answer, never read.
        let request = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
        let started = Instant::now();
        let sent = tokio::time::timeout(Duration::from_secs(10), async {
            while write_half.write_all(&request).await.is_ok() {}
        })
        .await;
        assert!(sent.is_ok(), "the server stopped taking requests within 10 s (it closed the connection)");
        assert!(started.elapsed() >= LIMITS.write_stall, "{:?}", started.elapsed());
        assert_eq!(closed(&server.metrics, "slow_reader"), 1);
        // A connection that hangs on: the shutdown still ends within the grace.
        let _hanging = TcpStream::connect(server.addr).await.unwrap();
        let mut served = server.served.take().unwrap();
        server.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut served).await.expect("serve returned").unwrap();
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
