//! The dashboard: read-only pages for moderators on a listener of its own
//! (`web.hostname`/`web.port`), signed in through the admin room.
//!
//! Server-rendered HTML (maud: escaped by default), charts as SVG from the
//! same drawing code as the PNGs posted to rooms, one small script of our
//! own for live updates. No third-party requests, no build step: `cargo
//! build` makes all of it. Every response carries a CSP without inline
//! scripts, and every query a page makes is bounded and indexed.

mod live;
mod names;
mod pages;
pub mod sign_in;

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
    /// The admin room, as configured (the 401 page says where to sign in).
    pub admin_room: String,
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
        admin_room: String,
        prefix: String,
    ) -> Self {
        let live = live::Live::new(store.clone());
        let names = Arc::new(names::RoomNames::new(homeserver));
        Self { store, public_url, session_lifetime, admin_room, prefix, live, names }
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

/// Serves the dashboard until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
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
    let body = pages::bare("Not found", maud::html! { p { "No such page. " a href="/" { "Overview" } } });
    (StatusCode::NOT_FOUND, body).into_response()
}
