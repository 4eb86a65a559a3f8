//! The dashboard: read-only pages for moderators on a listener of its own
//! (`web.hostname`/`web.port`), signed in through the admin room with a
//! code the browser shows (`sign_in`).
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
mod recheck;
mod sign_in;

pub use command::{DashboardAction, DashboardArgs};
pub use pages::warm_figures;
pub use sign_in::minutes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::homeserver::HomeserverClient;
use crate::metrics::Metrics;
use crate::moderators::{AdminRoom, ModeratorRule};
use crate::sign_ins::SignIns;
use crate::store::Store;

/// What the dashboard is built from.
pub struct WebSetup {
    /// The dashboard's own small pool: a flood of its requests never takes
    /// the connections the indexer writes with.
    pub store: Store,
    /// Room names come from it (the bot must be a server admin), and
    /// signed-in users are checked again through it.
    pub homeserver: HomeserverClient,
    /// Shared with `!dashboard`, which approves the codes.
    pub sign_ins: Arc<SignIns>,
    /// The bot's rule, to check signed-in users against again.
    pub moderators: ModeratorRule,
    /// Found by start-up after the dashboard starts.
    pub admin_room: AdminRoom,
    /// `web.recheck_moderator_every`.
    pub recheck_moderator_every: Duration,
    pub prefix: String,
    pub metrics: Arc<Metrics>,
}

/// What the dashboard's handlers share.
pub struct WebState {
    pub store: Store,
    pub sign_ins: Arc<SignIns>,
    pub prefix: String,
    metrics: Arc<Metrics>,
    moderators: recheck::ModeratorRecheck,
    live: live::Live,
    names: names::RoomNames,
}

impl WebState {
    pub fn new(setup: WebSetup) -> Self {
        let WebSetup { store, homeserver, sign_ins, moderators, admin_room, recheck_moderator_every, prefix, metrics } =
            setup;
        let live = live::Live::new(store.clone());
        let names = names::RoomNames::new(Some(homeserver.clone()));
        let moderators = recheck::ModeratorRecheck::new(moderators, homeserver, admin_room, recheck_moderator_every);
        Self { store, sign_ins, prefix, metrics, moderators, live, names }
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
        .route("/reports", get(pages::reports))
        .route("/audit", get(pages::audit))
        .route("/live", get(live::events))
        .route("/sign-out", post(sign_in::sign_out))
        .route_layer(middleware::from_fn_with_state(state.clone(), sign_in::require_session));
    Router::new()
        .merge(pages)
        .route("/sign-in", get(sign_in::show_code).post(sign_in::continue_sign_in))
        .route("/sign-in/wait", post(sign_in::wait_for_approval))
        .route("/static/app.js", get(script))
        .route("/static/sign-in.js", get(sign_in_script))
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

async fn sign_in_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/web/sign-in.js"))
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
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use futures::StreamExt;
    use tower::ServiceExt;
    use url::Url;

    use super::command::{Approval, approve, end_everything};
    use super::*;
    use crate::sign_ins::DeviceCode;

    struct Dashboard {
        store: Store,
        sign_ins: Arc<SignIns>,
        metrics: Arc<Metrics>,
        router: Router,
    }

    /// A dashboard whose only moderator is `@mod:hs` (allowlisted), with a
    /// homeserver nobody answers at.
    async fn dashboard(public_url: &str) -> Dashboard {
        let store = Store::connect("sqlite::memory:", Some(1)).await.unwrap();
        store.migrate().await.unwrap();
        dashboard_on(store, public_url, Duration::from_secs(3600), None).await
    }

    /// With `power_level`, users joined to `!admin:hs` at that level are
    /// moderators too (the homeserver, which does not answer, would say).
    async fn dashboard_on(
        store: Store,
        public_url: &str,
        session_lifetime: Duration,
        power_level: Option<i64>,
    ) -> Dashboard {
        let metrics = Arc::new(Metrics::new());
        let public_url = Url::parse(public_url).unwrap();
        let sign_ins = Arc::new(SignIns::new(public_url, session_lifetime, metrics.clone()));
        let admin_room = AdminRoom::default();
        admin_room.set("!admin:hs".try_into().unwrap());
        let state = WebState::new(WebSetup {
            store: store.clone(),
            homeserver: HomeserverClient::new(Url::parse("http://127.0.0.1:1/").unwrap(), String::new()).unwrap(),
            sign_ins: sign_ins.clone(),
            moderators: ModeratorRule {
                allowlist: vec!["@mod:hs".try_into().unwrap()],
                power_level,
                allow_remote: false,
                server_name: "hs".try_into().unwrap(),
                bot: "@bot:hs".try_into().unwrap(),
            },
            admin_room,
            recheck_moderator_every: Duration::from_secs(1),
            prefix: "!".to_owned(),
            metrics: metrics.clone(),
        });
        Dashboard { store, sign_ins, metrics, router: router(state) }
    }

    async fn call(router: &Router, request: Request<Body>) -> Response {
        router.clone().oneshot(request).await.unwrap()
    }

    async fn text(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
        let request = Request::get(path);
        let request = match cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        };
        request.body(Body::empty()).unwrap()
    }

    /// A post as the dashboard's own pages send it.
    fn post(path: &str, cookie: Option<&str>) -> Request<Body> {
        let request = Request::post(path).header("sec-fetch-site", "same-origin");
        let request = match cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        };
        request.body(Body::empty()).unwrap()
    }

    /// `name=value` of the `Set-Cookie` for `name`, with its attributes.
    fn set_cookie(response: &Response, name: &str) -> Option<String> {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    fn pair(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_owned()
    }

    /// A browser at `address` opens /sign-in: its code and its cookie.
    async fn open_sign_in(router: &Router, address: &str, cookie_name: &str) -> (DeviceCode, String) {
        let mut request =
            Request::get("/sign-in").header(header::USER_AGENT, "TestBrowser/1.0").body(Body::empty()).unwrap();
        let peer: SocketAddr = format!("{address}:40000").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = call(router, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = set_cookie(&response, cookie_name).expect("the browser gets its secret");
        let page = text(response).await;
        let shown = page.split("<span id=\"code\">").nth(1).and_then(|rest| rest.split('<').next()).unwrap();
        (shown.parse().unwrap(), pair(&cookie))
    }

    /// Signs a browser in as `@mod:hs`: its session cookie (`name=value`).
    async fn signed_in(dashboard: &Dashboard, cookie_name: &str, session_name: &str) -> String {
        let (code, cookie) = open_sign_in(&dashboard.router, "192.0.2.1", cookie_name).await;
        assert!(matches!(
            approve(&dashboard.store, &dashboard.sign_ins, code, "@mod:hs").await.unwrap(),
            Approval::SignedIn(_)
        ));
        let response = call(&dashboard.router, post("/sign-in/wait", Some(&cookie))).await;
        assert_eq!(response.status(), StatusCode::OK);
        pair(&set_cookie(&response, session_name).expect("a session"))
    }

    #[tokio::test]
    async fn the_browser_showing_a_code_is_signed_in_once_a_moderator_sends_it_and_no_other() {
        let Dashboard { store, sign_ins, router, metrics } = dashboard("http://127.0.0.1:1/").await;
        let (code, cookie) = open_sign_in(&router, "192.0.2.1", "housekeep_sign_in").await;
        assert!(cookie.len() > 60, "a secret: {cookie}");
        // A reload shows the same code.
        let again = call(&router, get("/sign-in", Some(&cookie))).await;
        assert!(text(again).await.contains(&code.to_string()));
        // Someone who read the code in the room has no cookie, or another one.
        let (_, stranger) = open_sign_in(&router, "198.51.100.7", "housekeep_sign_in").await;
        // Not approved yet: the no-script button shows the code again.
        let early = call(&router, post("/sign-in", Some(&cookie))).await;
        assert_eq!(early.status(), StatusCode::OK);
        assert!(text(early).await.contains("Not approved yet"));

        // The page waits; the moderator sends the code meanwhile.
        let waiting = {
            let (router, cookie) = (router.clone(), cookie.clone());
            tokio::spawn(async move { call(&router, post("/sign-in/wait", Some(&cookie))).await })
        };
        tokio::task::yield_now().await;
        let mut approved = Approval::NotWaiting;
        if let Approval::SignedIn(browser) = approve(&store, &sign_ins, code, "@mod:hs").await.unwrap() {
            assert_eq!(browser.address.to_string(), "192.0.2.1", "the moderator is told where");
            assert_eq!(browser.user_agent, "TestBrowser/1.0");
            approved = Approval::SignedIn(browser);
        }
        assert!(matches!(approved, Approval::SignedIn(_)));
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "answered at the approval, not at the 20 s mark");
        assert_eq!(response.status(), StatusCode::OK);
        let session = pair(&set_cookie(&response, "housekeep_session").unwrap());
        assert_eq!(set_cookie(&response, "housekeep_sign_in").unwrap().split(';').next(), Some("housekeep_sign_in="));
        let jobs = call(&router, get("/jobs", Some(&session))).await;
        assert_eq!(jobs.status(), StatusCode::OK);
        assert!(text(jobs).await.contains("@mod:hs"));

        // Once only, and only that browser.
        assert_eq!(call(&router, post("/sign-in/wait", Some(&cookie))).await.status(), StatusCode::GONE);
        let no_cookie = call(&router, post("/sign-in/wait", None)).await;
        assert_eq!(no_cookie.status(), StatusCode::GONE);
        assert!(set_cookie(&no_cookie, "housekeep_session").is_none());
        let strangers = call(&router, post("/sign-in", Some(&stranger))).await;
        assert!(set_cookie(&strangers, "housekeep_session").is_none(), "the stranger's own code is not approved");
        assert!(
            matches!(approve(&store, &sign_ins, code, "@mod:hs").await.unwrap(), Approval::NotWaiting),
            "single use"
        );
        let text = metrics.render();
        assert!(text.contains("housekeep_dashboard_sign_ins_total{outcome=\"signed_in\"} 1"), "{text}");
        assert!(text.contains("housekeep_dashboard_sign_ins_total{outcome=\"unknown_code\"} 1"), "{text}");
    }

    #[tokio::test]
    async fn a_sign_in_asked_for_by_another_site_is_refused_and_takes_nothing() {
        let Dashboard { store, sign_ins, router, .. } = dashboard("http://127.0.0.1:1/").await;
        let (code, cookie) = open_sign_in(&router, "192.0.2.1", "housekeep_sign_in").await;
        approve(&store, &sign_ins, code, "@mod:hs").await.unwrap();
        for path in ["/sign-in", "/sign-in/wait"] {
            let request = Request::post(path)
                .header("sec-fetch-site", "cross-site")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap();
            let response = call(&router, request).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
            assert!(set_cookie(&response, "housekeep_session").is_none());
        }
        let own = call(&router, post("/sign-in", Some(&cookie))).await;
        assert_eq!(own.status(), StatusCode::SEE_OTHER, "the approval still waits for its own page");
        assert!(set_cookie(&own, "housekeep_session").is_some());
    }

    /// Anyone can ask for a code and post to the sign-in endpoints: none of
    /// it writes to the database (waiting browsers are in memory) or waits
    /// for its writer's lock, which on SQLite the indexer needs. Before,
    /// a re-posted spent or expired link opened a write transaction.
    #[tokio::test]
    async fn nothing_an_anonymous_visitor_does_writes_or_waits_for_the_database_writer() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("web.db").display());
        let store = Store::connect(&url, Some(2)).await.unwrap();
        store.migrate().await.unwrap();
        let Dashboard { router, .. } =
            dashboard_on(store.clone(), "http://127.0.0.1:1/", Duration::from_secs(60), None).await;
        let audited = store.audit_entries(1, None).await.unwrap().len();
        // Someone else holds the write lock (as a long indexing commit would).
        let mut writer = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.unwrap();
        let (_, waiting) = open_sign_in(&router, "192.0.2.1", "housekeep_sign_in").await;
        let junk = ["junk", &"0".repeat(64), &"A".repeat(64)];
        let mut requests = vec![post("/sign-in", Some(&waiting)), post("/sign-in", None), post("/sign-in/wait", None)];
        for token in junk {
            requests.push(post("/sign-in/wait", Some(&format!("housekeep_sign_in={token}"))));
            requests.push(post("/sign-in", Some(&format!("housekeep_sign_in={token}"))));
            requests.push(post("/sign-out", Some(&format!("housekeep_session={token}"))));
            requests.push(get("/jobs", Some(&format!("housekeep_session={token}"))));
        }
        for request in requests {
            let what = format!("{} {}", request.method(), request.uri());
            let started = std::time::Instant::now();
            let response = call(&router, request).await;
            assert!(response.status() != StatusCode::INTERNAL_SERVER_ERROR, "{what}");
            assert!(set_cookie(&response, "housekeep_session").is_none(), "{what}");
            assert!(started.elapsed() < Duration::from_secs(2), "{what}: answered after {:?}", started.elapsed());
        }
        sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
        assert_eq!(store.audit_entries(1, None).await.unwrap().len(), audited, "nothing audited");
        let sessions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM web_sessions").fetch_one(store.pool()).await.unwrap();
        assert_eq!(sessions, 0);
    }

    #[tokio::test]
    async fn a_sign_out_posted_from_another_site_ends_nothing() {
        let dashboard = dashboard("http://127.0.0.1:1/").await;
        let session = signed_in(&dashboard, "housekeep_sign_in", "housekeep_session").await;
        for site in [Some("cross-site"), Some("same-site"), None] {
            let request = Request::post("/sign-out").header(header::COOKIE, &session);
            let request = match site {
                Some(site) => request.header("sec-fetch-site", site),
                None => request,
            };
            let response = call(&dashboard.router, request.body(Body::empty()).unwrap()).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{site:?}");
            assert!(!response.headers().contains_key(header::SET_COOKIE));
        }
        let jobs = call(&dashboard.router, get("/jobs", Some(&session))).await;
        assert_eq!(jobs.status(), StatusCode::OK, "still signed in");
    }

    #[tokio::test]
    async fn every_page_and_the_event_stream_need_a_session_and_every_answer_has_the_safety_headers() {
        let Dashboard { router, .. } = dashboard("http://127.0.0.1:1/").await;
        for path in ["/", "/rooms", "/rooms/!r:hs", "/media", "/jobs", "/jobs/x", "/reports", "/audit", "/live"] {
            let response = call(&router, get(path, None)).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
            let body = text(response).await;
            assert!(body.contains("Get a sign-in code") && body.contains("!dashboard CODE"), "{body}");
        }
        let forged = call(&router, get("/jobs", Some("housekeep_session=00ff"))).await;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED, "a made-up session");
        let sign_in = call(&router, get("/sign-in", None)).await;
        let csp = sign_in.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(text(sign_in).await.contains("src=\"/static/sign-in.js\""));
    }

    /// A report's reason and room name are strangers' text: shown on one
    /// line, cut, without what hides or reorders.
    #[tokio::test]
    async fn the_reports_page_shows_open_reports_and_strangers_text_safely() {
        let dashboard = dashboard("http://127.0.0.1:1/").await;
        let report = |id: i64, reason: String| crate::store::EventReportRow {
            report_id: id,
            received_ts: 1_700_000_000_000,
            room_id: "!r:hs".into(),
            event_id: format!("$e{id}"),
            reporter: "@alice:hs".into(),
            sender: Some("@spammer:hs".into()),
            reason: Some(reason),
            score: None,
            room_name: Some("<script>alert(1)</script>\u{202e}".into()),
            room_alias: None,
        };
        let reports = [report(1, format!("spam \u{202e}{}", "x".repeat(5_000))), report(2, "closed".into())];
        dashboard.store.insert_reports(&reports, 0).await.unwrap();
        dashboard.store.dismiss_report(2, "@mod:hs", Some("fine"), 1).await.unwrap();
        let session = signed_in(&dashboard, "housekeep_sign_in", "housekeep_session").await;
        let open = text(call(&dashboard.router, get("/reports", Some(&session))).await).await;
        assert!(open.contains("@spammer:hs") && !open.contains("closed"), "open ones only");
        assert!(!open.contains('\u{202e}') && !open.contains("<script>alert"), "{open}");
        assert!(open.len() < 20_000, "the reason is cut: {} bytes", open.len());
        let all = text(call(&dashboard.router, get("/reports?state=all", Some(&session))).await).await;
        assert!(all.contains("dismissed") && all.contains("fine"), "every state");
        assert!(all.contains("No policy lists are watched"), "{all}");
        let list = crate::store::PolicyList::new("!bans:hs", "#bans:hs\u{202e}", "auto", "command", "@mod:hs", 1);
        dashboard.store.watch_list(&list).await.unwrap();
        let with_list = text(call(&dashboard.router, get("/reports", Some(&session))).await).await;
        for expected in ["#bans:hs", "!bans:hs", "auto", "not yet"] {
            assert!(with_list.contains(expected), "{expected:?} missing: {with_list}");
        }
        assert!(!with_list.contains('\u{202e}'), "{with_list}");
    }

    #[tokio::test]
    async fn the_cookies_are_http_only_strict_and_secure_behind_https() {
        for (public_url, secure) in [("http://127.0.0.1:1/", false), ("https://hk.example.org/", true)] {
            let dashboard = dashboard(public_url).await;
            let prefix = if secure { "__Host-" } else { "" };
            let (sign_in_name, session_name) =
                (format!("{prefix}housekeep_sign_in"), format!("{prefix}housekeep_session"));
            let response = call(&dashboard.router, get("/sign-in", None)).await;
            let waiting = set_cookie(&response, &sign_in_name).unwrap_or_else(|| panic!("{public_url}: {response:?}"));
            assert!(waiting.contains("; HttpOnly") && waiting.contains("; SameSite=Strict"), "{waiting}");
            assert!(waiting.contains("Max-Age=300"), "as long as the code: {waiting}");
            assert_eq!(waiting.contains("; Secure"), secure, "{public_url}: {waiting}");

            let (code, cookie) = open_sign_in(&dashboard.router, "192.0.2.1", &sign_in_name).await;
            approve(&dashboard.store, &dashboard.sign_ins, code, "@mod:hs").await.unwrap();
            let response = call(&dashboard.router, post("/sign-in/wait", Some(&cookie))).await;
            let session = set_cookie(&response, &session_name).unwrap();
            assert!(session.contains("; HttpOnly") && session.contains("; SameSite=Strict"), "{session}");
            assert!(session.contains("Max-Age=3600"), "the configured lifetime: {session}");
            assert_eq!(session.contains("; Secure"), secure, "{public_url}: {session}");
            let session = pair(&session);
            let jobs = call(&dashboard.router, get("/jobs", Some(&session))).await;
            assert_eq!(jobs.status(), StatusCode::OK);
            let body = text(jobs).await;
            assert!(body.contains("@mod:hs") && body.contains("No jobs yet"), "{body}");
            let live = call(&dashboard.router, get("/live", Some(&session))).await;
            assert_eq!(live.headers()[header::CONTENT_TYPE], "text/event-stream");
            assert_eq!(live.headers()["x-accel-buffering"], "no", "a proxy must not hold the events back");
        }
    }

    /// Opens `/live` and reads its first event (the watermark as it is):
    /// the stream is open and flowing.
    async fn live(router: &Router, session: &str) -> axum::body::BodyDataStream {
        let response = call(router, get("/live", Some(session))).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body().into_data_stream();
        let first = tokio::time::timeout(Duration::from_secs(5), body.next()).await.unwrap().unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("event: change"), "{first:?}");
        body
    }

    /// The events of a `/live` stream until it closes (at most `within`).
    async fn events_until_closed(mut body: axum::body::BodyDataStream, within: Duration) -> Vec<String> {
        let mut seen = String::new();
        tokio::time::timeout(within, async {
            while let Some(chunk) = body.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the stream was still open after {within:?}: {seen}"));
        seen.lines().filter_map(|line| line.strip_prefix("event: ")).map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn open_event_streams_close_at_sign_out_logout_all_and_expiry() {
        let dashboard = dashboard("http://127.0.0.1:1/").await;
        // Signed out in another tab.
        let session = signed_in(&dashboard, "housekeep_sign_in", "housekeep_session").await;
        let stream = live(&dashboard.router, &session).await;
        let other = signed_in(&dashboard, "housekeep_sign_in", "housekeep_session").await;
        let other_stream = live(&dashboard.router, &other).await;
        assert_eq!(call(&dashboard.router, post("/sign-out", Some(&session))).await.status(), StatusCode::OK);
        assert_eq!(events_until_closed(stream, Duration::from_secs(5)).await, ["signed-out"]);
        // The other session goes on until `!dashboard logout-all`.
        let (_, waiting) = open_sign_in(&dashboard.router, "192.0.2.1", "housekeep_sign_in").await;
        let (ended, voided) = end_everything(&dashboard.store, &dashboard.sign_ins, &dashboard.metrics).await.unwrap();
        assert_eq!((ended, voided), (1, 1));
        assert_eq!(events_until_closed(other_stream, Duration::from_secs(5)).await, ["signed-out"]);
        assert_eq!(call(&dashboard.router, post("/sign-in/wait", Some(&waiting))).await.status(), StatusCode::GONE);

        // A session that expires while its page is open.
        let store = dashboard.store.clone();
        let short = dashboard_on(store, "http://127.0.0.1:1/", Duration::from_secs(2), None).await;
        let session = signed_in(&short, "housekeep_sign_in", "housekeep_session").await;
        let started = std::time::Instant::now();
        let events = events_until_closed(live(&short.router, &session).await, Duration::from_secs(6)).await;
        assert_eq!(events, ["signed-out"]);
        assert!(started.elapsed() < Duration::from_secs(4), "at its expiry: {:?}", started.elapsed());
    }

    /// A power-level moderator's session goes on while the homeserver
    /// cannot say whether they still are one; a user the rule no longer
    /// names is signed out everywhere at their next request.
    #[tokio::test]
    async fn a_user_no_longer_a_moderator_is_signed_out_but_a_silent_homeserver_signs_no_one_out() {
        let store = Store::connect("sqlite::memory:", Some(1)).await.unwrap();
        store.migrate().await.unwrap();
        let dashboard = dashboard_on(store.clone(), "http://127.0.0.1:1/", Duration::from_secs(3600), Some(50)).await;
        let now = crate::clock::now_ms();
        let session = |token: &str| format!("housekeep_session={token}");
        let by_level = crate::sign_ins::new_token();
        store.start_session(&crate::sign_ins::token_hash(&by_level), "@carol:hs", now, now + 3_600_000).await.unwrap();
        let jobs = call(&dashboard.router, get("/jobs", Some(&session(&by_level)))).await;
        assert_eq!(jobs.status(), StatusCode::OK, "the homeserver does not answer: no demotion");

        // `@mod:other` was an allowlisted moderator of another server (two
        // browsers); the rule (no remote moderators) says no. (An open page
        // closing at a demotion: `dashboard::postgres::…`, on Synapse.)
        let remote = [crate::sign_ins::new_token(), crate::sign_ins::new_token()];
        for token in &remote {
            store.start_session(&crate::sign_ins::token_hash(token), "@mod:other", now, now + 3_600_000).await.unwrap();
        }
        let refused = call(&dashboard.router, get("/jobs", Some(&session(&remote[0])))).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(text(refused).await.contains("@mod:other is no longer a housekeep moderator"));
        let jobs = call(&dashboard.router, get("/jobs", Some(&session(&remote[1])))).await;
        assert_eq!(jobs.status(), StatusCode::UNAUTHORIZED, "every session of theirs ended");
        let audit = store.audit_entries(10, Some("@mod:other")).await.unwrap();
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!(audit[0].entry.outcome, "signed out: no longer a moderator");
        let text = dashboard.metrics.render();
        assert!(text.contains("housekeep_dashboard_sessions_ended_total{reason=\"no_longer_moderator\"} 2"), "{text}");
    }
}
