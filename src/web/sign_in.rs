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

/// How long a sign-in link works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);
const COOKIE: &str = "housekeep_session";

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

/// Whether a form was posted from another site (the browser says so in
/// `Sec-Fetch-Site`): a hostile page must not sign a moderator in as someone
/// else, nor out. Browsers without the header are let through; SameSite=Strict
/// still keeps the session cookie from cross-site requests.
fn cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").is_some_and(|site| site.as_bytes() == b"cross-site")
}

fn refused_cross_site() -> Response {
    not_signed_in_page(StatusCode::FORBIDDEN, "This form was sent from another site; open the bot's link instead.")
}

/// Spends the link and starts a session.
pub(super) async fn sign_in(State(state): Shared, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    if cross_site(&headers) {
        return refused_cross_site();
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
                _ => "This is not a sign-in link housekeep gave, or it no longer works (all sessions were ended)."
                    .to_owned(),
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
    if let Some(token) = session_cookie(&headers)
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
    let cookie = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).expect("hex and ASCII")
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|token| !token.is_empty())
}

/// Lets a request through only with a live session.
pub(super) async fn require_session(State(state): Shared, mut request: Request, next: Next) -> Response {
    let Some(token) = session_cookie(request.headers()) else {
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

fn not_signed_in(state: &Arc<WebState>) -> Response {
    let how = format!(
        "Not signed in. Send {}dashboard in the admin room ({}); the bot answers moderators with a sign-in link.",
        state.prefix, state.admin_room
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
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; housekeep_session=abc; b=2"));
        assert_eq!(session_cookie(&headers), Some("abc"));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("housekeep_session_x=abc; housekeep_session="));
        assert_eq!(session_cookie(&headers), None);
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
