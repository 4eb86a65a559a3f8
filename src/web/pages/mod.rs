//! The dashboard's pages. Each reads a bounded, indexed slice of the store
//! and renders it; the charts are the stats charts, drawn as SVG.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Shared;
use super::layout::{SignedIn, layout, or_error_page};

use crate::clock::date;
use crate::clock::{format_ms, now_ms};
use crate::grammar::TimeSpec;
use crate::grammar::percent_encode as urlencode;
use crate::stats::chart::{ChartSpec, Series, Shape, render_svg};
use crate::stats::summary::{Scope, ServerStats, Summary, bytes};
use crate::store::{AuditFilter, JobState, TopBy};
use crate::text;

mod audit;
mod jobs;
mod media;
mod overview;
mod reports;
mod rooms;

pub(super) use audit::audit;
pub(super) use jobs::{job, jobs};
pub(super) use media::media;
pub(super) use overview::overview;
pub(super) use reports::reports;
pub(super) use rooms::{room, rooms};

/// The busiest rooms of the last `days` by messages (at most [`ROWS`]), as
/// the store keeps them when adding them up is slow (see `store::kept`).
async fn busiest_rooms(
    store: &crate::store::Store,
    days: u32,
) -> anyhow::Result<crate::store::Figure<Vec<(String, i64)>>> {
    let key = format!("busiest rooms {days}");
    store
        .kept_or_computed(key, move |store| async move {
            let (first, last) = crate::stats::summary::day_span(now_ms(), days);
            store.top_by_messages(TopBy::Room, None, first, last, ROWS).await
        })
        .await
}

/// A room's media by kind, as the store keeps it for a room with much media.
async fn room_media(
    store: &crate::store::Store,
    room: &str,
) -> anyhow::Result<crate::store::Figure<Vec<crate::store::KindCount>>> {
    let of = room.to_owned();
    store
        .kept_or_computed(format!("room media {room}"), move |store| {
            let room = of.clone();
            async move { store.room_media_by_kind(&room).await }
        })
        .await
}

/// How many media each of `rooms` references, as one figure: the store
/// keeps it when counting them all is slow (the rooms page counts twenty).
async fn media_of_rooms(
    store: &crate::store::Store,
    rooms: Vec<String>,
) -> anyhow::Result<crate::store::Figure<BTreeMap<String, i64>>> {
    let key = format!("media of rooms {}", rooms.join(" "));
    store
        .kept_or_computed(key, move |store| {
            let rooms = rooms.clone();
            async move {
                let mut media = BTreeMap::new();
                for room in rooms {
                    let kinds = store.room_media_by_kind(&room).await?;
                    media.insert(room, kinds.iter().map(|k| k.media).sum::<i64>());
                }
                anyhow::Ok(media)
            }
        })
        .await
}

/// Computes the figures a moderator opening the dashboard, or typing
/// `!stats`, asks for first, so that on a big server (where they are kept:
/// see `store::kept`) no one waits for them: the server's summary of the
/// dashboard's and of `!stats`' default days, the busiest rooms and their
/// media. On a small server this is a few quick queries, kept by no one.
pub async fn warm_figures(store: &crate::store::Store) -> anyhow::Result<()> {
    Summary::load_kept(store, Scope::Server, DEFAULT_DAYS).await?;
    Summary::load_kept(store, Scope::Server, crate::stats::DEFAULT_STATS_DAYS).await?;
    let busiest = busiest_rooms(store, DEFAULT_DAYS).await?;
    let rooms: Vec<String> = busiest.value.iter().take(ROOMS_WITH_MEDIA).map(|(room, _)| room.clone()).collect();
    media_of_rooms(store, rooms).await?;
    Ok(())
}

/// The older of two kept figures' times (`None`: computed when asked).
fn oldest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    a.into_iter().chain(b).min()
}

const DEFAULT_DAYS: u32 = 30;
const MAX_DAYS: u32 = 365;
/// Rows a list page shows at most.
const ROWS: i64 = 100;
/// Rooms whose media the rooms page counts (one indexed query each).
const ROOMS_WITH_MEDIA: usize = 20;
/// Rooms a search adds beyond the busiest: those Synapse finds by name.
const SEARCH_EXTRA_ROOMS: usize = 20;
/// The busiest rooms whose media the media page adds up.
const MEDIA_PAGE_ROOMS: i64 = 10;

/// What a page refreshes on (the parts of the store's watermark, see
/// `live.rs`); empty: it does not refresh by itself.
const ON_REPORTS_AND_ACTIONS: &str = "reports jobs audit";
const ON_JOBS: &str = "jobs";
const ON_ACTIONS: &str = "jobs audit";
const ON_AUDIT: &str = "audit";
/// Reports change with their state (dismissals and handling are audited,
/// handling ends a job).
const ON_REPORTS: &str = "jobs audit";
const NEVER: &str = "";

fn chart(spec: &ChartSpec) -> Markup {
    match render_svg(spec) {
        Ok(svg) => {
            let encoded = percent_encoding::utf8_percent_encode(&svg, percent_encoding::NON_ALPHANUMERIC);
            html! { img src=(format!("data:image/svg+xml;charset=utf-8,{encoded}")) alt=(spec.title); }
        }
        Err(error) => html! { p.empty { "Chart not drawn: " (format!("{error:#}")) } },
    }
}

fn number(n: Option<i64>) -> String {
    n.map_or("–".to_owned(), |n| n.to_string())
}

fn card(label: &str, value: &str) -> Markup {
    html! { div.card { div.value { (value) } div.label { (label) } } }
}

#[derive(Debug, Default, Deserialize)]
/// The query string the list pages share; each uses what applies to it.
pub(super) struct PageQuery {
    /// The days shown, up to today (default 30, at most 365); text, so that
    /// a cleared box or a typo shows the default rather than a bare 400.
    days: Option<String>,
    /// The homeserver shown (of those reporting).
    hs: Option<String>,
    /// Rooms page: part of a room ID, or a name or alias Synapse searches.
    q: Option<String>,
    /// Rooms page: `messages` (default) or `media`.
    sort: Option<String>,
}

impl PageQuery {
    fn days(&self) -> u32 {
        let asked = self.days.as_deref().and_then(|days| days.trim().parse().ok());
        asked.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS)
    }

    fn filters(&self, extra: Markup) -> Markup {
        html! {
            form.filters method="get" {
                label { "days" input type="number" name="days" min="1" max=(MAX_DAYS) value=(self.days()); }
                (extra)
                button type="submit" { "Show" }
            }
        }
    }
}

fn kind_table(kinds: &[crate::store::KindCount]) -> Markup {
    html! {
        @if kinds.is_empty() {
            div.empty { "No media referenced." }
        } @else {
            table {
                tr { th { "kind" } th.num { "references" } th.num { "media" } th.num { "downloaded bytes" } }
                @for k in kinds { tr { td { (k.kind) } td.num { (k.refs) } td.num { (k.media) } td.num { (bytes(k.bytes)) } } }
            }
        }
    }
}

fn audit_table(records: &[crate::store::AuditRecord]) -> Markup {
    html! {
        table #audit {
            tr { th { "when" } th { "who" } th { "action" } th { "target" } th { "command" } th { "outcome" } }
            @for r in records {
                @let e = &r.entry;
                tr {
                    td { (format_ms(r.ts)) }
                    td.mono { (text::line(&e.actor)) }
                    td { (e.action) }
                    td.mono { (text::line(e.target.as_deref().unwrap_or(""))) @if let Some(job) = &e.job_id { " " a href=(format!("/jobs/{}", urlencode(job))) { (job) } } }
                    td.mono { (text::line(e.command.as_deref().unwrap_or(""))) }
                    td { (text::line(&e.outcome)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused command is audited as typed, by anyone in the admin room:
    /// a direction override must not reorder the cells after it, and a
    /// long one must not push the table off the page.
    #[test]
    fn strangers_text_in_the_audit_table_is_cut_and_cannot_reorder() {
        let record = crate::store::AuditRecord {
            id: 1,
            ts: 0,
            entry: crate::store::AuditEntry {
                actor: "@mallory:example.org".to_owned(),
                action: "refused".to_owned(),
                command: Some(format!("!status \u{202e}detcader{}", "x".repeat(10_000))),
                target: Some("\u{2066}!room:example.org".to_owned()),
                outcome: "not a moderator\u{1b}[2J".to_owned(),
                ..Default::default()
            },
        };
        let html = audit_table(&[record]).into_string();
        assert!(!html.contains(['\u{202e}', '\u{2066}', '\u{1b}']), "{html}");
        assert!(html.contains("!status \u{FFFD}detcader"), "{html}");
        assert!(html.len() < 3 * text::LINE_CHARS + 1_000, "cut: {} bytes", html.len());
    }
}
