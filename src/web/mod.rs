//! The dashboard: read-only pages for moderators on a listener of its own
//! (`web.hostname`/`web.port`), signed in through the admin room.
//!
//! Server-rendered HTML (maud: escaped by default), charts as SVG from the
//! same drawing code as the PNGs posted to rooms, one small script of our
//! own for live updates. No third-party requests, no build step: `cargo
//! build` makes all of it. Every response carries a CSP without inline
//! scripts, and every query a page makes is bounded and indexed.

mod command;
mod layout;
mod live;
mod names;
mod pages;
mod sign_in;

pub use command::{DashboardAction, DashboardArgs};
pub use sign_in::{LINK_LIFETIME, issue_link, minutes};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use url::Url;

use crate::homeserver::HomeserverClient;
use crate::store::Store;

/// What the dashboard's handlers share.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    /// The dashboard's own URL (links, and whether cookies are `Secure`).
    pub public_url: Url,
    pub session_lifetime: Duration,
    pub prefix: String,
    live: live::Live,
    names: Arc<names::RoomNames>,
}

impl WebState {
    /// `homeserver`: where room names come from (the bot must be a server
    /// admin); without it rooms show as IDs.
    pub fn new(
        store: Store,
        homeserver: Option<HomeserverClient>,
        public_url: Url,
        session_lifetime: Duration,
        prefix: String,
    ) -> Self {
        let live = live::Live::new(store.clone());
        let names = Arc::new(names::RoomNames::new(homeserver));
        Self { store, public_url, session_lifetime, prefix, live, names }
    }

    /// The store's watermark as last read, for a page to carry.
    fn live_json(&self) -> String {
        self.live.json()
    }
}

/// Every route; pages other than sign-in need a session.
pub fn router(state: WebState) -> Router {
    let state = Arc::new(state);
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/rooms", get(pages::rooms))
        .route("/rooms/{room_id}", get(pages::room))
        .route("/media", get(pages::media))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/audit", get(pages::audit))
        .route("/live", get(live::events))
        .route("/sign-out", post(sign_in::sign_out))
        .route_layer(middleware::from_fn_with_state(state.clone(), sign_in::require_session));
    Router::new()
        .merge(pages)
        .route("/sign-in", get(sign_in::confirm_page).post(sign_in::sign_in))
        .route("/static/app.js", get(script))
        .route("/static/style.css", get(style))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

type Shared = State<Arc<WebState>>;

/// No inline scripts or styles, nothing from elsewhere, never framed, never cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/web/app.js"))
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../assets/web/style.css"))
}

async fn not_found() -> Response {
    let body = layout::bare("Not found", maud::html! { p { "No such page. " a href="/" { "Overview" } } });
    (StatusCode::NOT_FOUND, body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn dashboard(public_url: &str) -> (Store, Router) {
        let store = Store::connect("sqlite::memory:", Some(1)).await.unwrap();
        store.migrate().await.unwrap();
        let state = WebState::new(
            store.clone(),
            None,
            Url::parse(public_url).unwrap(),
            Duration::from_secs(3600),
            "!".to_owned(),
        );
        (store, router(state))
    }

    async fn call(router: &Router, request: Request<Body>) -> Response {
        router.clone().oneshot(request).await.unwrap()
    }

    fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
        let request = Request::get(path);
        let request = match cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        };
        request.body(Body::empty()).unwrap()
    }

    /// The sign-in form's post of a fresh link, as a browser on `site` sends it.
    async fn sign_in_form(store: &Store, public_url: &str, site: &str) -> Request<Body> {
        let link = issue_link(store, &Url::parse(public_url).unwrap(), "@mod:hs").await.unwrap();
        let token = link.query_pairs().find(|(k, _)| k == "token").unwrap().1.into_owned();
        Request::post("/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .body(Body::from(format!("token={token}")))
            .unwrap()
    }

    /// Signs in with a fresh link; the `Set-Cookie` header.
    async fn sign_in(store: &Store, router: &Router, public_url: &str) -> String {
        let response = call(router, sign_in_form(store, public_url, "same-origin").await).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_sign_in_posted_from_another_site_is_refused_and_spends_nothing() {
        let (store, router) = dashboard("http://127.0.0.1:1/").await;
        let response = call(&router, sign_in_form(&store, "http://127.0.0.1:1/", "cross-site").await).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!response.headers().contains_key(header::SET_COOKIE));
        assert!(store.audit_entries(10, None).await.unwrap().is_empty(), "no link was used");
    }

    fn post_token(token: &str) -> Request<Body> {
        Request::post("/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    }

    /// Anyone can post to /sign-in: a token housekeep never gave is refused
    /// by a read, so it never waits for (or takes) the writer's lock, which
    /// on SQLite the indexer needs. Before, each post opened a write
    /// transaction, and one posted while the indexer wrote waited for it.
    #[tokio::test]
    async fn junk_sign_ins_never_wait_for_the_database_writer() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("web.db").display());
        let store = Store::connect(&url, Some(2)).await.unwrap();
        store.migrate().await.unwrap();
        let public_url = Url::parse("http://127.0.0.1:1/").unwrap();
        let state = WebState::new(store.clone(), None, public_url, Duration::from_secs(60), "!".into());
        let router = router(state);
        // Someone else holds the write lock (as a long indexing commit would).
        let mut writer = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.unwrap();
        for token in ["junk", &"0".repeat(64), &"A".repeat(64)] {
            let started = std::time::Instant::now();
            let response = call(&router, post_token(token)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{token}");
            assert!(started.elapsed() < Duration::from_secs(2), "{token}: answered after {:?}", started.elapsed());
            // A sign-out with a made-up session cookie: refused by a read.
            let started = std::time::Instant::now();
            let sign_out = Request::post("/sign-out")
                .header("sec-fetch-site", "same-origin")
                .header(header::COOKIE, format!("housekeep_session={token}"))
                .body(Body::empty())
                .unwrap();
            assert_eq!(call(&router, sign_out).await.status(), StatusCode::UNAUTHORIZED, "{token}");
            assert!(started.elapsed() < Duration::from_secs(2), "sign-out {token}: after {:?}", started.elapsed());
        }
        sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
    }

    #[tokio::test]
    async fn a_sign_out_posted_from_another_site_ends_nothing() {
        let public_url = "http://127.0.0.1:1/";
        let (store, router) = dashboard(public_url).await;
        let cookie = sign_in(&store, &router, public_url).await;
        let session = cookie.split(';').next().unwrap().to_owned();
        for site in [Some("cross-site"), Some("same-site"), None] {
            let request = Request::post("/sign-out").header(header::COOKIE, &session);
            let request = match site {
                Some(site) => request.header("sec-fetch-site", site),
                None => request,
            };
            let response = call(&router, request.body(Body::empty()).unwrap()).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{site:?}");
            assert!(!response.headers().contains_key(header::SET_COOKIE));
        }
        let jobs = call(&router, get("/jobs", Some(&session))).await;
        assert_eq!(jobs.status(), StatusCode::OK, "still signed in");
    }

    #[tokio::test]
    async fn every_page_and_the_event_stream_need_a_session_and_every_answer_has_the_safety_headers() {
        let (_store, router) = dashboard("http://127.0.0.1:1/").await;
        for path in ["/", "/rooms", "/rooms/!r:hs", "/media", "/jobs", "/jobs/x", "/audit", "/live"] {
            let response = call(&router, get(path, None)).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(body.contains("Send !dashboard in housekeep's admin room"), "{body}");
        }
        let forged = call(&router, get("/jobs", Some("housekeep_session=00ff"))).await;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED, "a made-up session");
    }

    #[tokio::test]
    async fn the_session_cookie_is_http_only_strict_and_secure_behind_https() {
        for (public_url, secure) in [("http://127.0.0.1:1/", false), ("https://hk.example.org/", true)] {
            let (store, router) = dashboard(public_url).await;
            let cookie = sign_in(&store, &router, public_url).await;
            assert!(cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict"), "{cookie}");
            assert!(cookie.contains("Max-Age=3600"), "the configured lifetime: {cookie}");
            assert_eq!(cookie.contains("; Secure"), secure, "{public_url}: {cookie}");
            assert_eq!(cookie.starts_with("__Host-housekeep_session="), secure, "{public_url}: {cookie}");
            let session = cookie.split(';').next().unwrap();
            let jobs = call(&router, get("/jobs", Some(session))).await;
            assert_eq!(jobs.status(), StatusCode::OK);
            let body = axum::body::to_bytes(jobs.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(body.contains("@mod:hs") && body.contains("No jobs yet"), "{body}");
            let live = call(&router, get("/live", Some(session))).await;
            assert_eq!(live.headers()[header::CONTENT_TYPE], "text/event-stream");
            assert_eq!(live.headers()["x-accel-buffering"], "no", "a proxy must not hold the events back");
        }
    }
}
