//! The frame every dashboard page is drawn in: with the navigation for a
//! signed-in moderator, or bare (sign-in, errors).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::WebState;

/// Who is signed in (set on the request by `sign_in::require_session`): the
/// moderator who approved the browser's code, still one when last checked.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    /// The session's (its cookie's hash, as stored).
    pub session_hash: String,
    /// When the session ends (unix ms).
    pub expires_at: i64,
}

/// A page with the navigation, for a signed-in moderator.
pub(super) fn layout(
    state: &WebState,
    title: &str,
    here: &str,
    who: &SignedIn,
    watch: &str,
    content: Markup,
) -> Response {
    let nav = [
        ("/", "Overview"),
        ("/rooms", "Rooms"),
        ("/media", "Media"),
        ("/jobs", "Jobs"),
        ("/reports", "Reports"),
        ("/audit", "Audit log"),
    ];
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · housekeep" }
                link rel="stylesheet" href="/static/style.css";
                script src="/static/app.js" defer {}
            }
            body data-live=(watch) data-seen=(state.live_json()) {
                header {
                    strong { "housekeep" }
                    @for (href, name) in nav {
                        a href=(href) class=[(href == here).then_some("here")] { (name) }
                    }
                    span.who { (who.user_id) @if !watch.is_empty() { " · " span #live { "…" } } }
                    form method="post" action="/sign-out" { button type="submit" { "Sign out" } }
                }
                main { h1 { (title) } (content) }
            }
        }
    };
    Html(page.into_string()).into_response()
}

/// A page without navigation (sign-in, errors).
pub(super) fn bare(title: &str, content: Markup) -> Html<String> {
    bare_page(title, None, content)
}

/// [`bare`], with a script of the dashboard's own (`/static/…`).
pub(super) fn bare_with_script(title: &str, script: &str, content: Markup) -> Html<String> {
    bare_page(title, Some(script), content)
}

fn bare_page(title: &str, script: Option<&str>, content: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · housekeep" }
                    link rel="stylesheet" href="/static/style.css";
                    @if let Some(script) = script { script src=(script) defer {} }
                }
                body { main { (content) } }
            }
        }
        .into_string(),
    )
}

/// A failed read: logged in full, shown without details.
pub(super) fn error_page(error: &anyhow::Error) -> Response {
    tracing::warn!(error = format!("{error:#}"), "dashboard page failed");
    let body = bare(
        "Error",
        html! { h1 { "Something went wrong" } p { "The page could not be read; housekeep's log says why. Try again in a moment." } },
    );
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}

pub(super) fn or_error_page(result: anyhow::Result<Response>) -> Response {
    result.unwrap_or_else(|error| error_page(&error))
}
