//! Signing in, by device code (like OAuth's device grant, RFC 8628): the
//! browser opens `/sign-in`, which shows a short code and gives the browser
//! a secret cookie; a moderator sends `!dashboard <code>` in the admin
//! room; the page, holding a request open for it, then gets the session cookie.
//! Only the browser holding the secret is signed in, once, within five
//! minutes; nothing that signs anyone in is ever posted in a room. Whatever
//! login the homeserver uses (password, SSO, MAS), being a moderator in the
//! admin room is what counts, then and while the session lasts
//! (`recheck`).
//!
//! Nothing a visitor does here writes to the database before a moderator
//! approves their code: waiting browsers are kept in memory
//! (`crate::sign_ins`), and every cookie is shape-checked before it is
//! looked up. Only hashes of sessions are stored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use url::Url;

use super::layout::{SignedIn, bare, bare_with_script, error_page};
use super::{Shared, WebState};
use crate::clock::now_ms;
use crate::metrics::SessionEndLabel;
use crate::sign_ins::{Browser, CODE_LIFETIME, Claim, Full, Shown, token_hash};
use crate::store::AuditEntry;

/// How long a waiting page's request is held before it is answered "not yet".
const WAIT_AT_MOST: Duration = Duration::from_secs(20);
/// How much of a browser's `User-Agent` the approving moderator is shown.
const USER_AGENT_CHARS: usize = 120;

/// The session cookie's name; under https with the `__Host-` prefix, which
/// browsers accept only from this origin, `Secure`, `Path=/` and without a
/// `Domain`: a sibling subdomain cannot plant or shadow it.
fn session_cookie_name(public_url: &Url) -> &'static str {
    if is_https(public_url) { "__Host-housekeep_session" } else { "housekeep_session" }
}

/// The cookie binding a waiting browser to its code (the same rules).
fn sign_in_cookie_name(public_url: &Url) -> &'static str {
    if is_https(public_url) { "__Host-housekeep_sign_in" } else { "housekeep_sign_in" }
}

fn is_https(public_url: &Url) -> bool {
    public_url.scheme() == "https"
}

/// Whether `token` has the shape of the tokens and secrets housekeep makes
/// (`sign_ins::new_token`): 64 lowercase hex digits. Anything else is
/// refused before it is looked up anywhere.
fn is_token_shaped(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `GET /sign-in`: the browser's code (the same one on a reload while it
/// lasts), and with a new code the cookie that binds the browser to it.
pub(super) async fn show_code(
    State(state): Shared,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    code_page(&state, peer, &headers, None)
}

fn code_page(
    state: &WebState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    note: Option<&str>,
) -> Response {
    let secret = find_cookie(headers, sign_in_cookie_name(&state.sign_ins.public_url)).filter(|s| is_token_shaped(s));
    let browser = Browser {
        address: peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(peer))| peer.ip()),
        user_agent: headers
            .get(header::USER_AGENT)
            .map(|agent| crate::text::shown(&String::from_utf8_lossy(agent.as_bytes()), USER_AGENT_CHARS))
            .unwrap_or_default(),
    };
    let Shown { code, expires_at, new_secret, .. } = match state.sign_ins.show(secret, browser) {
        Ok(shown) => shown,
        Err(Full) => {
            return not_signed_in_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many browsers are waiting to sign in right now; try again in a few minutes.",
            );
        }
    };
    let prefix = &state.prefix;
    let seconds_left = (expires_at - now_ms()).max(0) / 1000;
    let page = bare_with_script(
        "Sign in",
        "/static/sign-in.js",
        html! {
            h1 { "housekeep dashboard" }
            p { "Send this in housekeep's admin room:" }
            p.command { code { (prefix) "dashboard " span #code { (code.to_string()) } } }
            p #status data-expires-in=(seconds_left) {
                "Once the bot has it, this page signs in by itself, as the moderator who sent it. "
                "The code works once, for " (super::minutes(CODE_LIFETIME)) "."
            }
            @if let Some(note) = note { p #reason { (note) } }
            p.muted { "Send only a code your own browser shows: whoever shows a code you send is signed in as you." }
            // The page notices the approval by itself; the button is for a browser without scripts.
            form method="post" action="/sign-in" { button type="submit" id="continue" { "I sent it: continue" } }
        },
    );
    let mut response = page.into_response();
    if let Some(secret) = new_secret {
        let name = sign_in_cookie_name(&state.sign_ins.public_url);
        let cookie = cookie(state, name, &secret, CODE_LIFETIME.as_secs());
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /sign-in`, the page's button (for a browser without scripts):
/// the dashboard when approved, else the code page again.
pub(super) async fn continue_sign_in(
    State(state): Shared,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    if !from_this_origin(&headers, &state.sign_ins.public_url) {
        return refused_cross_site();
    }
    match claim(&state, &headers) {
        Claim::SignedIn { user_id, session_token } => signed_in(&state, &user_id, &session_token, Redirect::to("/")),
        Claim::Waiting => code_page(&state, peer, &headers, Some("Not approved yet: send the command above first.")),
        // A new code.
        Claim::Gone => Redirect::to("/sign-in").into_response(),
    }
}

/// `POST /sign-in/wait`, the page's script: answered as soon as a
/// moderator approves this browser (`200`, with the session cookie), or
/// after [`WAIT_AT_MOST`] (`204`: ask again); `410` when its code is no
/// more (the page then shows a new one).
pub(super) async fn wait_for_approval(State(state): Shared, headers: HeaderMap) -> Response {
    if !from_this_origin(&headers, &state.sign_ins.public_url) {
        return refused_cross_site();
    }
    let mut approvals = state.sign_ins.approvals();
    approvals.borrow_and_update();
    let deadline = tokio::time::Instant::now() + WAIT_AT_MOST;
    loop {
        match claim(&state, &headers) {
            Claim::SignedIn { user_id, session_token } => {
                return signed_in(&state, &user_id, &session_token, StatusCode::OK);
            }
            Claim::Gone => return StatusCode::GONE.into_response(),
            Claim::Waiting => {
                let approved = tokio::time::timeout_at(deadline, approvals.changed()).await;
                if !matches!(approved, Ok(Ok(()))) {
                    return StatusCode::NO_CONTENT.into_response();
                }
            }
        }
    }
}

fn claim(state: &WebState, headers: &HeaderMap) -> Claim {
    match find_cookie(headers, sign_in_cookie_name(&state.sign_ins.public_url)) {
        Some(secret) if is_token_shaped(secret) => state.sign_ins.claim(secret),
        _ => Claim::Gone,
    }
}

/// `response` with the session cookie set and the sign-in cookie cleared.
fn signed_in(state: &WebState, user_id: &str, session_token: &str, response: impl IntoResponse) -> Response {
    tracing::info!(user_id, "signed in to the dashboard");
    let public_url = &state.sign_ins.public_url;
    let mut response = response.into_response();
    let lifetime = state.sign_ins.session_lifetime.as_secs();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, cookie(state, session_cookie_name(public_url), session_token, lifetime));
    headers.append(header::SET_COOKIE, cookie(state, sign_in_cookie_name(public_url), "", 0));
    response
}

/// Whether a form was posted by the dashboard's own pages: a hostile page
/// (another site, or a sibling subdomain) must not sign a moderator in as
/// someone else, nor out. Browsers say where a request comes from in
/// `Sec-Fetch-Site` (`same-origin`, or `none` when typed or bookmarked);
/// older ones send `Origin`, which must be `web.public_url`'s. A post with
/// neither is refused: every browser of the last years sends one.
fn from_this_origin(headers: &HeaderMap, public_url: &Url) -> bool {
    match headers.get("sec-fetch-site") {
        Some(site) => matches!(site.as_bytes(), b"same-origin" | b"none"),
        None => headers
            .get(header::ORIGIN)
            .and_then(|origin| origin.to_str().ok())
            .and_then(|origin| Url::parse(origin).ok())
            .is_some_and(|origin| origin.origin() == public_url.origin()),
    }
}

fn refused_cross_site() -> Response {
    not_signed_in_page(
        StatusCode::FORBIDDEN,
        "This form was not sent from the dashboard's own page; open the dashboard's /sign-in instead.",
    )
}

/// Ends this browser's session.
pub(super) async fn sign_out(State(state): Shared, headers: HeaderMap) -> Response {
    if !from_this_origin(&headers, &state.sign_ins.public_url) {
        return refused_cross_site();
    }
    // `require_session` let the request through: the cookie names a session.
    if let Some(token) = find_cookie(&headers, session_cookie_name(&state.sign_ins.public_url)) {
        match state.store.end_session(&token_hash(token)).await {
            Ok(true) => {
                count_ended(&state, "sign_out", 1);
                state.sign_ins.sessions_ended();
            }
            Ok(false) => {}
            Err(error) => return error_page(&error),
        }
    }
    let mut response = not_signed_in_page(StatusCode::OK, "Signed out.");
    let name = session_cookie_name(&state.sign_ins.public_url);
    response.headers_mut().insert(header::SET_COOKIE, cookie(&state, name, "", 0));
    response
}

fn count_ended(state: &WebState, reason: &'static str, ended: u64) {
    state.metrics.dashboard_sessions_ended.get_or_create(&SessionEndLabel { reason }).inc_by(ended);
}

/// "5 minutes".
pub fn minutes(lifetime: Duration) -> String {
    let n = lifetime.as_secs() / 60;
    format!("{n} minute{}", if n == 1 { "" } else { "s" })
}

fn cookie(state: &WebState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if is_https(&state.sign_ins.public_url) { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).expect("hex and ASCII")
}

fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|token| !token.is_empty())
}

/// Lets a request through only with a live session of a user who is still
/// a moderator (checked again at most every `web.recheck_moderator_every`).
pub(super) async fn require_session(State(state): Shared, mut request: Request, next: Next) -> Response {
    let cookie = find_cookie(request.headers(), session_cookie_name(&state.sign_ins.public_url));
    let Some(token) = cookie.filter(|token| is_token_shaped(token)) else {
        return not_signed_in(&state);
    };
    let session_hash = token_hash(token);
    let session = match state.store.session(&session_hash, now_ms()).await {
        Ok(Some(session)) => session,
        Ok(None) => return not_signed_in(&state),
        Err(error) => return error_page(&error),
    };
    if !state.moderators.still_moderator(&session.user_id).await {
        end_demoted(&state, &session.user_id).await;
        return no_longer_a_moderator(&session.user_id);
    }
    request.extensions_mut().insert(SignedIn {
        user_id: session.user_id,
        session_hash,
        expires_at: session.expires_at,
    });
    next.run(request).await
}

/// Ends every session of a user who is no longer a moderator, audited;
/// open pages of theirs stop updating.
pub(super) async fn end_demoted(state: &WebState, user_id: &str) {
    let audit = AuditEntry {
        actor: user_id.to_owned(),
        action: "dashboard.sign_out".to_owned(),
        outcome: "signed out: no longer a moderator".to_owned(),
        ..AuditEntry::default()
    };
    match state.store.end_user_sessions(user_id, audit, now_ms()).await {
        Ok(ended) => {
            if ended > 0 {
                tracing::info!(user_id, ended, "ended the dashboard sessions of a user who is no longer a moderator");
                count_ended(state, "no_longer_moderator", ended);
            }
            state.sign_ins.sessions_ended();
        }
        // The user is checked again at their next request, and this retried.
        Err(error) => tracing::warn!(
            user_id,
            error = format!("{error:#}"),
            "cannot end the dashboard sessions of a user who is no longer a moderator"
        ),
    }
}

pub(super) fn no_longer_a_moderator(user_id: &str) -> Response {
    let text = format!("Signed out: {user_id} is no longer a housekeep moderator.");
    not_signed_in_page(StatusCode::UNAUTHORIZED, &text)
}

/// The page for a visitor without a session: anyone on the internet. It
/// does not name the admin room (a squatter of its alias, or anyone, would
/// learn where the moderators meet); moderators know it.
fn not_signed_in(state: &Arc<WebState>) -> Response {
    let body = bare(
        "Sign in",
        html! {
            h1 { "housekeep dashboard" }
            p #reason {
                "Not signed in. " a href="/sign-in" { "Get a sign-in code" }
                ", then send " code { (state.prefix) "dashboard CODE" } " in housekeep's admin room."
            }
        },
    );
    (StatusCode::UNAUTHORIZED, body).into_response()
}

fn not_signed_in_page(status: StatusCode, text: &str) -> Response {
    let body = bare(
        "Sign in",
        html! { h1 { "housekeep dashboard" } p #reason { (text) " " a href="/sign-in" { "Sign in" } } },
    );
    (status, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_empty_means_none() {
        let plain = Url::parse("http://127.0.0.1:8080/").unwrap();
        let https = Url::parse("https://hk.example.org/").unwrap();
        let cookies = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_static(value));
            headers
        };
        let session =
            |headers: &HeaderMap, url: &Url| find_cookie(headers, session_cookie_name(url)).map(str::to_owned);
        assert_eq!(session(&cookies("a=1; housekeep_session=abc; b=2"), &plain).as_deref(), Some("abc"));
        assert_eq!(session(&cookies("housekeep_session_x=abc; housekeep_session="), &plain), None);
        // Under https only the __Host- cookies count: a sibling subdomain
        // can set `housekeep_session` for the parent domain, not that one.
        assert_eq!(session(&cookies("housekeep_session=planted"), &https), None);
        assert_eq!(session(&cookies("__Host-housekeep_session=abc"), &https).as_deref(), Some("abc"));
        let headers = cookies("housekeep_session=s; housekeep_sign_in=w");
        assert_eq!(find_cookie(&headers, sign_in_cookie_name(&plain)), Some("w"));
        assert_eq!(find_cookie(&cookies("housekeep_sign_in=planted"), sign_in_cookie_name(&https)), None);
    }

    /// Posts from another site, a sibling subdomain, another port, or with
    /// nothing that says where they come from, are refused.
    #[test]
    fn only_posts_from_the_dashboards_own_origin_are_taken() {
        let public_url = Url::parse("https://hk.example.org/").unwrap();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            headers
        };
        let taken: &[&[(&str, &str)]] = &[
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "none")],
            &[("origin", "https://hk.example.org")],
            &[("sec-fetch-site", "same-origin"), ("origin", "https://hk.example.org")],
        ];
        for pairs in taken {
            assert!(from_this_origin(&headers(pairs), &public_url), "{pairs:?}");
        }
        let refused: &[&[(&str, &str)]] = &[
            &[],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "cross-site"), ("origin", "https://hk.example.org")],
            &[("origin", "https://evil.example.org")],
            &[("origin", "https://hk.example.org:8443")],
            &[("origin", "http://hk.example.org")],
            &[("origin", "null")],
        ];
        for pairs in refused {
            assert!(!from_this_origin(&headers(pairs), &public_url), "{pairs:?}");
        }
    }

    #[test]
    fn only_token_shaped_cookies_are_looked_up() {
        let token = crate::sign_ins::new_token();
        assert!(is_token_shaped(&token));
        assert_ne!(crate::sign_ins::new_token(), token);
        assert_eq!(token_hash(&token).len(), 64);
        assert_ne!(token_hash(&token), token);
        for junk in ["", "00ff", &"A".repeat(64), &"g".repeat(64), &"0".repeat(65)] {
            assert!(!is_token_shaped(junk), "{junk}");
        }
    }
}
