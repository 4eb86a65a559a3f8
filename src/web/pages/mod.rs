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

use crate::clock::{format_ms, now_ms};
use crate::grammar::TimeSpec;
use crate::grammar::percent_encode as urlencode;
use crate::stats::chart::{ChartSpec, Series, Shape, render_svg};
use crate::stats::summary::{Scope, ServerStats, Summary, bytes, date};
use crate::store::{AuditFilter, JobState, TopBy};

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

/// One phone-home field drawn in a trend: its payload name, its label, how
/// it is drawn, and what its values are divided by.
type Trend = (&'static str, &'static str, Shape, f64);

/// The overview's trend charts: title, value axis, and the fields drawn.
const TRENDS: &[(&str, &str, &[Trend])] = &[
    (
        "Users",
        "users",
        &[("total_users", "all", Shape::Line, 1.0), ("total_nonbridged_users", "not bridged", Shape::Line, 1.0)],
    ),
    (
        "Rooms",
        "rooms",
        &[
            ("total_room_count", "all", Shape::Line, 1.0),
            ("daily_active_rooms", "active", Shape::Line, 1.0),
            ("daily_active_e2ee_rooms", "active, encrypted", Shape::Line, 1.0),
        ],
    ),
    (
        "Active users",
        "users",
        &[("daily_active_users", "daily", Shape::Line, 1.0), ("monthly_active_users", "monthly", Shape::Line, 1.0)],
    ),
    (
        "Messages per day",
        "messages",
        &[
            ("daily_messages", "all", Shape::Bars, 1.0),
            ("daily_e2ee_messages", "end-to-end encrypted", Shape::Bars, 1.0),
            ("daily_sent_messages", "sent by local users", Shape::Line, 1.0),
            ("daily_sent_e2ee_messages", "sent, encrypted", Shape::Line, 1.0),
        ],
    ),
    (
        "Active users by type",
        "users",
        &[
            ("daily_user_type_native", "native", Shape::Bars, 1.0),
            ("daily_user_type_bridged", "bridged", Shape::Bars, 1.0),
            ("daily_user_type_guest", "guest", Shape::Bars, 1.0),
        ],
    ),
    (
        "30-day retained users (r30v2)",
        "users",
        &[
            ("r30v2_users_all", "all", Shape::Line, 1.0),
            ("r30v2_users_web", "web", Shape::Line, 1.0),
            ("r30v2_users_android", "android", Shape::Line, 1.0),
            ("r30v2_users_ios", "ios", Shape::Line, 1.0),
        ],
    ),
    // Synapse reports memory in KiB.
    ("Synapse memory", "MiB", &[("memory_rss", "peak resident memory", Shape::Line, 1024.0)]),
    ("Synapse CPU", "% of one core", &[("cpu_average", "average", Shape::Line, 1.0)]),
];

/// A daily series of one phone-home field.
fn field_series(server: &ServerStats, days: &[i64], &(field, label, shape, scale): &Trend) -> Series {
    Series {
        label: label.to_owned(),
        shape,
        values: days.iter().map(|d| server.daily.get(d).and_then(|r| r.number(field)).map(|v| v / scale)).collect(),
    }
}

pub(super) async fn overview(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(async {
        let summary = Summary::load(&state.store, Scope::Server, range.days(), now_ms()).await?;
        let selected = range.hs.as_deref().and_then(|hs| summary.servers.iter().find(|s| s.homeserver == hs));
        let server = selected.or(summary.servers.first());
        let homeservers = html! {
            label { "homeserver"
                select name="hs" {
                    @for s in &summary.servers {
                        option value=(s.homeserver) selected[server.is_some_and(|x| x.homeserver == s.homeserver)] { (s.homeserver) }
                    }
                }
            }
        };
        let days: Vec<i64> = (summary.first_day..=summary.last_day).collect();
        let labels: Vec<String> = days.iter().map(|&d| date(d).get(5..).unwrap_or_default().to_owned()).collect();
        let spec = |title: &str, y: &str, series: Vec<Series>| ChartSpec {
            title: title.to_owned(),
            y_label: y.to_owned(),
            day_labels: labels.clone(),
            series,
        };
        let content = html! {
            (range.filters(homeservers))
            @match server {
                None => div.empty #no-report {
                    "No phone-home report yet: run " code { "housekeep stats-endpoint -c config.yaml" }
                    " and put the lines it prints into Synapse's homeserver.yaml (Synapse reports every 3 hours). "
                    "The index's own figures are below."
                },
                Some(server) => {
                    @let latest = server.latest();
                    @let get = |field: &str| number(latest.and_then(|r| r.integer(field)));
                    h2 { (server.homeserver) span.muted { " · " (server.reports) " reports in these days" } }
                    div.cards #cards {
                        (card("users", &get("total_users")))
                        (card("users, not bridged", &get("total_nonbridged_users")))
                        (card("rooms", &get("total_room_count")))
                        (card("daily active users", &get("daily_active_users")))
                        (card("monthly active users", &get("monthly_active_users")))
                        (card("messages, last 24 h", &get("daily_messages")))
                        (card("sent by local users, last 24 h", &get("daily_sent_messages")))
                        (card("uptime", &latest.and_then(|r| r.integer("uptime_seconds")).map_or("–".to_owned(), |s| humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string())))
                    }
                    p.muted { "Latest report " (latest.map_or("–".to_owned(), |r| format_ms(r.timestamp.saturating_mul(1000)))) }
                    div.charts {
                        @for (title, unit, fields) in TRENDS {
                            (chart(&spec(title, unit, fields.iter().map(|f| field_series(server, &days, f)).collect())))
                        }
                    }
                    @if summary.servers.len() > 1 {
                        h2 { "Every homeserver reporting" }
                        table #homeservers {
                            tr { th { "homeserver" } th { "server_context" } th.num { "reports" } th.num { "users" } th.num { "daily active" } th { "latest" } }
                            @for s in &summary.servers {
                                @let r = s.latest();
                                tr {
                                    td { a href=(format!("/?hs={}&days={}", urlencode(&s.homeserver), range.days())) { (s.homeserver) } }
                                    td { (r.and_then(|r| r.text("server_context")).unwrap_or("–")) }
                                    td.num { (s.reports) }
                                    td.num { (number(r.and_then(|r| r.integer("total_users")))) }
                                    td.num { (number(r.and_then(|r| r.integer("daily_active_users")))) }
                                    td { (r.map_or("–".to_owned(), |r| format_ms(r.timestamp.saturating_mul(1000)))) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "housekeep's index" }
            div.cards #index-cards {
                (card("messages in these days", &summary.messages().to_string()))
                (card("active senders", &summary.active_senders.to_string()))
                (card("new rooms", &summary.moderation.new_rooms.to_string()))
                (card("media quarantined", &summary.moderation.quarantined.to_string()))
                (card("purges", &summary.moderation.purges.to_string()))
            }
            div.charts { (chart(&summary.chart())) }
        };
        Ok(layout(&state, "Overview", "/", &who, ON_REPORTS_AND_ACTIONS, content))
    }
    .await)
}

pub(super) async fn rooms(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(async {
        let (first, last) = crate::stats::summary::day_span(now_ms(), range.days());
        let mut rooms = state.store.top_by_messages(TopBy::Room, None, first, last, ROWS).await?;
        let q = range.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if let Some(q) = q {
            // By ID among the busiest, and by name or alias as Synapse searches them.
            let found = state.names.search(q).await.unwrap_or_default();
            let found_set: HashSet<&String> = found.iter().collect();
            let lower = q.to_lowercase();
            rooms.retain(|(room, _)| room.to_lowercase().contains(&lower) || found_set.contains(room));
            let listed: HashSet<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
            for room in found.iter().filter(|f| !listed.contains(*f)).take(SEARCH_EXTRA_ROOMS) {
                let days = state.store.activity_per_day(Some(room), first, last).await?;
                rooms.push((room.clone(), days.iter().map(|d| d.messages).sum()));
            }
            rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        let ids: Vec<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
        let names = state.names.names(&ids).await;
        let mut media = BTreeMap::new();
        for (room, _) in rooms.iter().take(ROOMS_WITH_MEDIA) {
            let kinds = state.store.room_media_by_kind(room).await?;
            media.insert(room.clone(), kinds.iter().map(|k| k.media).sum::<i64>());
        }
        let by_media = range.sort.as_deref() == Some("media");
        if by_media {
            rooms.sort_by_key(|(room, n)| (std::cmp::Reverse(media.get(room).copied().unwrap_or(-1)), std::cmp::Reverse(*n)));
        }
        let search = html! {
            label { "room" input type="search" name="q" placeholder="name, #alias or !ID" value=[q]; }
            label { "order"
                select name="sort" {
                    option value="messages" selected[!by_media] { "by messages" }
                    option value="media" selected[by_media] { "by media" }
                }
            }
        };
        let content = html! {
            (range.filters(search))
            @if rooms.is_empty() {
                div.empty { "No messages in these days" @if q.is_some() { " in a room matching that" } "." }
            } @else {
                table #rooms {
                    tr { th { "room" } th { "ID" } th.num { "messages" } th.num { "media (all time)" } }
                    @for (room, n) in &rooms {
                        tr {
                            td { (names.get(room).map_or("", String::as_str)) }
                            td { a.mono href=(format!("/rooms/{}?days={}", urlencode(room), range.days())) { (room) } }
                            td.num { (n) }
                            td.num { (media.get(room).map_or("–".to_owned(), |m| m.to_string())) }
                        }
                    }
                }
                p.muted { "The busiest " (ROWS) " rooms of these days by messages (and, for a search, up to " (SEARCH_EXTRA_ROOMS) " more rooms Synapse finds by name); media is counted for the first " (ROOMS_WITH_MEDIA) "." }
            }
        };
        Ok(layout(&state, "Rooms", "/rooms", &who, NEVER, content))
    }
    .await)
}

pub(super) async fn room(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Path(room_id): Path<String>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(
        async {
            let scope = Scope::Room { room_id: room_id.clone(), named: room_id.clone() };
            let summary = Summary::load(&state.store, scope, range.days(), now_ms()).await?;
            let kinds = state.store.room_media_by_kind(&room_id).await?;
            let name = state.names.names(std::slice::from_ref(&room_id)).await.remove(&room_id);
            let content = html! {
                @if let Some(name) = &name { p { "Named " strong { (name) } " on the homeserver." } }
                (range.filters(html! {}))
                div.charts { (chart(&summary.chart())) }
                h2 { "Busiest senders" }
                table {
                    tr { th { "sender" } th.num { "messages" } }
                    @for (sender, n) in &summary.top_senders { tr { td.mono { (sender) } td.num { (n) } } }
                }
                h2 { "Media by kind" }
                (kind_table(&kinds))
            };
            Ok(layout(&state, &format!("Room {room_id}"), "/rooms", &who, NEVER, content))
        }
        .await,
    )
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

pub(super) async fn media(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(async {
        let (first, last) = crate::stats::summary::day_span(now_ms(), range.days());
        let rooms = state.store.top_by_messages(TopBy::Room, None, first, last, MEDIA_PAGE_ROOMS).await?;
        let mut by_kind: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        let mut per_room = Vec::new();
        for (room, _) in &rooms {
            let kinds = state.store.room_media_by_kind(room).await?;
            for k in &kinds {
                let entry = by_kind.entry(k.kind.clone()).or_default();
                entry.0 += k.refs;
                entry.1 += k.media;
                entry.2 += k.bytes;
            }
            per_room.push((room.clone(), kinds.iter().map(|k| k.media).sum::<i64>(), kinds.iter().map(|k| k.bytes).sum::<i64>()));
        }
        let ids: Vec<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
        let names = state.names.names(&ids).await;
        let kinds: Vec<crate::store::KindCount> = by_kind
            .into_iter()
            .map(|(kind, (refs, media, bytes))| crate::store::KindCount { kind, refs, media, bytes })
            .collect();
        let quarantined = state.store.recent_quarantines(ROWS).await?;
        let content = html! {
            (range.filters(html! {}))
            h2 { "Media of the busiest rooms, by kind" }
            p.muted { "The " (MEDIA_PAGE_ROOMS) " rooms with the most messages in these days; a media posted in several of them counts in each." }
            (kind_table(&kinds))
            @if !per_room.is_empty() {
                h2 { "By room" }
                table {
                    tr { th { "room" } th { "ID" } th.num { "media" } th.num { "downloaded bytes" } }
                    @for (room, media, size) in &per_room {
                        tr {
                            td { (names.get(room).map_or("", String::as_str)) }
                            td { a.mono href=(format!("/rooms/{}", urlencode(room))) { (room) } }
                            td.num { (media) } td.num { (bytes(*size)) }
                        }
                    }
                }
            }
            h2 { "Quarantined by housekeep" }
            @if quarantined.is_empty() {
                div.empty { "Nothing quarantined yet." }
            } @else {
                table #quarantined {
                    tr { th { "media" } th { "when" } th { "by" } th { "why" } }
                    @for q in &quarantined {
                        tr { td.mono { (q.mxc) } td { (format_ms(q.at)) } td.mono { (q.by.as_deref().unwrap_or("–")) } td { (q.reason.as_deref().unwrap_or("")) } }
                    }
                }
            }
        };
        Ok(layout(&state, "Media", "/media", &who, ON_AUDIT, content))
    }
    .await)
}

fn state_class(state: JobState) -> String {
    format!("state-{}", state.as_str())
}

pub(super) async fn jobs(State(state): Shared, Extension(who): Extension<SignedIn>) -> Response {
    or_error_page(async {
        let jobs = state.store.recent_jobs(ROWS).await?;
        let content = html! {
            @if jobs.is_empty() {
                div.empty { "No jobs yet. Moderators start them in the admin room (" (state.prefix) "purge, " (state.prefix) "quarantine, " (state.prefix) "backfill)." }
            } @else {
                table #jobs {
                    tr { th { "job" } th { "kind" } th { "state" } th { "progress" } th.num { "failed" } th { "asked by" } th { "created" } th { "command" } }
                    @for job in &jobs {
                        tr data-job=(job.id) {
                            td { a.mono href=(format!("/jobs/{}", urlencode(&job.id))) { (job.id) } }
                            td { (job.kind) }
                            td class=(state_class(job.state)) { (job.state.as_str()) }
                            td {
                                progress max=(job.total_count.max(1)) value=(job.done_count.min(job.total_count.max(1))) {}
                                " " span.progress { (job.done_count) " / " (job.total_count) }
                            }
                            td.num { (job.failed_count) }
                            td.mono { (job.requested_by) }
                            td { (format_ms(job.created_at)) }
                            td.mono { (job.command_text) }
                        }
                    }
                }
            }
        };
        Ok(layout(&state, "Jobs", "/jobs", &who, ON_JOBS, content))
    }
    .await)
}

pub(super) async fn job(State(state): Shared, Extension(who): Extension<SignedIn>, Path(id): Path<String>) -> Response {
    or_error_page(async {
        let store = &state.store;
        let Some(job) = store.job(&id).await? else {
            return Ok((StatusCode::NOT_FOUND, layout(&state, "No such job", "/jobs", &who, NEVER, html! { p { "No job " code { (id) } "." } })).into_response());
        };
        let counts = store.job_item_counts(&id).await?;
        let failed = store.job_items_in_state(&id, crate::store::ItemState::Failed, ROWS).await?;
        let (actions, total) = store.job_audit(&id, ROWS).await?;
        let pretty = |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
        let content = html! {
            div.cards {
                (card("state", job.state.as_str()))
                (card("done", &format!("{} / {}", job.done_count, job.total_count)))
                (card("failed", &job.failed_count.to_string()))
                (card("batches", &job.batches.to_string()))
            }
            p { "Asked by " code { (job.requested_by) } " at " (format_ms(job.created_at)) ": " code { (job.command_text) } }
            @if let Some(by) = &job.confirmed_by { p { "Confirmed by " code { (by) } } }
            @if let Some(error) = &job.error { p.state-failed { "Error: " (error) } }
            h2 { "Items" }
            p { @for (s, n) in &counts { (n) " " (s.as_str()) "; " } }
            @if !failed.is_empty() {
                table { tr { th { "failed item" } th { "why" } }
                    @for item in &failed { tr { td.mono { (item.key) } td { (item.detail.as_deref().unwrap_or("")) } } } }
            }
            h2 { "Plan" } pre { (pretty(&job.plan)) }
            @if let Some(result) = &job.result { h2 { "Result" } pre { (pretty(result)) } }
            h2 { "Audited actions (" (total) ", newest " (actions.len()) " shown)" }
            (audit_table(&actions))
        };
        Ok(layout(&state, &format!("Job {id} ({})", job.kind), "/jobs", &who, ON_ACTIONS, content))
    }
    .await)
}

fn audit_table(records: &[crate::store::AuditRecord]) -> Markup {
    html! {
        table #audit {
            tr { th { "when" } th { "who" } th { "action" } th { "target" } th { "command" } th { "outcome" } }
            @for r in records {
                @let e = &r.entry;
                tr {
                    td { (format_ms(r.ts)) }
                    td.mono { (e.actor) }
                    td { (e.action) }
                    td.mono { (e.target.as_deref().unwrap_or("")) @if let Some(job) = &e.job_id { " " a href=(format!("/jobs/{}", urlencode(job))) { (job) } } }
                    td.mono { (e.command.as_deref().unwrap_or("")) }
                    td { (e.outcome) }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    before: Option<i64>,
}

pub(super) async fn audit(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(query): Query<AuditQuery>,
) -> Response {
    or_error_page(async {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (actor, action, since_text) = (text(&query.actor), text(&query.action), text(&query.since));
        let since = match since_text.as_deref().map(TimeSpec::from_str) {
            Some(Ok(spec)) => Some(Ok(spec.resolve(now_ms()))),
            Some(Err(error)) => Some(Err(error.to_string())),
            None => None,
        };
        let filter = AuditFilter {
            actor: actor.as_deref(),
            action: action.as_deref(),
            since: since.as_ref().and_then(|s| s.as_ref().ok().copied()),
            before_id: query.before,
        };
        let records = state.store.audit_page(&filter, ROWS).await?;
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("actor", &actor), ("action", &action), ("since", &since_text)] {
            if let Some(value) = value {
                next.append_pair(key, value);
            }
        }
        if let Some(last) = records.last() {
            next.append_pair("before", &last.id.to_string());
        }
        let next = next.finish();
        let content = html! {
            form.filters method="get" {
                label { "who" input type="text" name="actor" placeholder="@user:server" value=[actor.as_deref()]; }
                label { "action" input type="text" name="action" placeholder="command, confirm, quarantine.media…" value=[action.as_deref()]; }
                label { "since" input type="text" name="since" placeholder="7d or 2026-11-20" value=[since_text.as_deref()]; }
                button type="submit" { "Show" }
            }
            @if let Some(Err(error)) = &since { p.state-failed { "since: " (error) } }
            @if records.is_empty() {
                div.empty { "Nothing audited" @if filter.actor.is_some() || filter.action.is_some() || filter.since.is_some() { " that matches" } "." }
            } @else {
                (audit_table(&records))
                @if records.len() as i64 == ROWS { p { a #older href=(format!("/audit?{next}")) { "Older →" } } }
            }
        };
        Ok(layout(&state, "Audit log", "/audit", &who, ON_AUDIT, content))
    }
    .await)
}
