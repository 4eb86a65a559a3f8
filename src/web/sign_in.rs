//! Signing in: `!dashboard` gives a moderator a one-time link (valid five
//! minutes); opening it shows a button, and pressing it spends the link and
//! sets the session cookie. The link is spent by the button, not by opening
//! it, so a URL preview (the homeserver's, or a client's) cannot use it up.
//! Whatever login the homeserver uses (password, SSO, MAS), being a
//! moderator in the admin room is what counts. Only hashes of links and
//! sessions are stored.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::layout::{SignedIn, bare, error_page};
use super::{Shared, WebState};
use crate::clock::now_ms;
use crate::store::{LinkUse, Store};

const NOT_A_LINK: &str = "This is not a sign-in link housekeep gave, or it no longer works (all sessions were ended).";

/// How long a sign-in link works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The session cookie's name; under https with the `__Host-` prefix, which
/// browsers accept only from this origin, `Secure`, `Path=/` and without a
/// `Domain`: a sibling subdomain cannot plant or shadow it.
fn cookie_name(public_url: &Url) -> &'static str {
    if public_url.scheme() == "https" { "__Host-housekeep_session" } else { "housekeep_session" }
}

/// 256 random bits, hex.
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new one-time sign-in link for `user_id`.
pub async fn issue_link(store: &Store, public_url: &Url, user_id: &str) -> anyhow::Result<Url> {
    let token = new_token();
    let now = now_ms();
    store.create_sign_in_link(&token_hash(&token), user_id, now, now + LINK_LIFETIME.as_millis() as i64).await?;
    let mut url = public_url.join("sign-in")?;
    url.query_pairs_mut().append_pair("token", &token);
    Ok(url)
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    token: String,
}

/// The link's page: a button that signs in (opening the link spends nothing).
pub(super) async fn confirm_page(Query(form): Query<TokenForm>) -> Response {
    if form.token.is_empty() {
        return not_signed_in_page(StatusCode::BAD_REQUEST, "This address needs the link the bot gave you.");
    }
    bare(
        "Sign in",
        html! {
            h1 { "housekeep dashboard" }
            form method="post" action="/sign-in" {
                input type="hidden" name="token" value=(form.token);
                button type="submit" id="sign-in" { "Sign in" }
            }
            p.muted { "The link works once and for " (minutes(LINK_LIFETIME)) "." }
        },
    )
    .into_response()
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
        "This form was not sent from the dashboard's own page; open the bot's link instead.",
    )
}

/// Whether `token` has the shape of the tokens [`new_token`] makes: 64
/// lowercase hex digits. Anything else is refused before the database.
fn is_token_shaped(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Spends the link and starts a session.
///
/// Guessing a link is hopeless (256 bits), and a wrong one costs one
/// indexed read on the dashboard's own small pool: there is deliberately no
/// per-address limit, since behind a reverse proxy every visitor has the
/// proxy's address, and ten junk posts a minute would lock every moderator out.
pub(super) async fn sign_in(State(state): Shared, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    if !from_this_origin(&headers, &state.public_url) {
        return refused_cross_site();
    }
    if !is_token_shaped(&form.token) {
        tracing::info!("dashboard sign-in refused: not a token housekeep makes");
        return not_signed_in_page(StatusCode::FORBIDDEN, NOT_A_LINK);
    }
    let session = new_token();
    let now = now_ms();
    let expires = now.saturating_add(state.session_lifetime.as_millis() as i64);
    match state.store.use_sign_in_link(&token_hash(&form.token), &token_hash(&session), now, expires).await {
        Ok(LinkUse::SignedIn { user_id }) => {
            tracing::info!(user_id, "signed in to the dashboard");
            let mut response = Redirect::to("/").into_response();
            let cookie = cookie(&state, &session, state.session_lifetime.as_secs());
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Ok(refused) => {
            let why = match &refused {
                LinkUse::Spent { .. } => "This link was used before: each link signs in once.".to_owned(),
                LinkUse::Expired { .. } => format!("This link expired: links work for {}.", minutes(LINK_LIFETIME)),
                _ => NOT_A_LINK.to_owned(),
            };
            tracing::info!(?refused, "dashboard sign-in refused");
            not_signed_in_page(StatusCode::FORBIDDEN, &why)
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "dashboard sign-in failed");
            error_page(&error)
        }
    }
}

/// Ends this browser's session.
pub(super) async fn sign_out(State(state): Shared, headers: HeaderMap) -> Response {
    if !from_this_origin(&headers, &state.public_url) {
        return refused_cross_site();
    }
    if let Some(token) = session_cookie(&headers, &state.public_url)
        && let Err(error) = state.store.end_session(&token_hash(token)).await
    {
        return error_page(&error);
    }
    let mut response = not_signed_in_page(StatusCode::OK, "Signed out.");
    response.headers_mut().insert(header::SET_COOKIE, cookie(&state, "", 0));
    response
}

/// "5 minutes".
pub fn minutes(lifetime: Duration) -> String {
    let n = lifetime.as_secs() / 60;
    format!("{n} minute{}", if n == 1 { "" } else { "s" })
}

fn cookie(state: &WebState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.public_url.scheme() == "https" { "; Secure" } else { "" };
    let name = cookie_name(&state.public_url);
    let cookie = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).expect("hex and ASCII")
}

fn session_cookie<'a>(headers: &'a HeaderMap, public_url: &Url) -> Option<&'a str> {
    let name = cookie_name(public_url);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|token| !token.is_empty())
}

/// Lets a request through only with a live session.
pub(super) async fn require_session(State(state): Shared, mut request: Request, next: Next) -> Response {
    let Some(token) = session_cookie(request.headers(), &state.public_url) else {
        return not_signed_in(&state);
    };
    match state.store.session_user(&token_hash(token), now_ms()).await {
        Ok(Some(user)) => {
            request.extensions_mut().insert(SignedIn(user));
            next.run(request).await
        }
        Ok(None) => not_signed_in(&state),
        Err(error) => error_page(&error),
    }
}

/// The page for a visitor without a session: anyone on the internet. It
/// does not name the admin room (a squatter of its alias, or anyone, would
/// learn where the moderators meet); moderators know it.
fn not_signed_in(state: &Arc<WebState>) -> Response {
    let how = format!(
        "Not signed in. Send {}dashboard in housekeep's admin room; the bot answers moderators with a sign-in link.",
        state.prefix
    );
    not_signed_in_page(StatusCode::UNAUTHORIZED, &how)
}

fn not_signed_in_page(status: StatusCode, text: &str) -> Response {
    (status, bare("Sign in", html! { h1 { "housekeep dashboard" } p #reason { (text) } })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_empty_means_none() {
        let plain = Url::parse("http://127.0.0.1:8080/").unwrap();
        let https = Url::parse("https://hk.example.org/").unwrap();
        let cookies = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_static(value));
            headers
        };
        assert_eq!(session_cookie(&cookies("a=1; housekeep_session=abc; b=2"), &plain), Some("abc"));
        assert_eq!(session_cookie(&cookies("housekeep_session_x=abc; housekeep_session="), &plain), None);
        // Under https only the __Host- cookie counts: a sibling subdomain
        // can set `housekeep_session` for the parent domain, not that one.
        assert_eq!(session_cookie(&cookies("housekeep_session=planted"), &https), None);
        assert_eq!(session_cookie(&cookies("__Host-housekeep_session=abc"), &https), Some("abc"));
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
    fn tokens_are_long_and_stored_only_as_hashes() {
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert_ne!(new_token(), token);
        assert_eq!(token_hash(&token).len(), 64);
        assert_ne!(token_hash(&token), token);
    }
}
