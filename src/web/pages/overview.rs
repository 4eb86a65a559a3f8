//! The overview: phone-home cards and trends as SVG charts.

use super::*;

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

pub(in crate::web) async fn overview(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(async {
        let summary = Summary::load_kept(&state.store, Scope::Server, range.days()).await?;
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
            @if let Some(note) = summary.kept_note() { p.muted #kept { (note) } }
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
                                    td { a href=(format!("/?hs={}&days={}", urlencode(&s.homeserver), range.days())) { (text::line(&s.homeserver)) } }
                                    td { (text::line(r.and_then(|r| r.text("server_context")).unwrap_or("–"))) }
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
