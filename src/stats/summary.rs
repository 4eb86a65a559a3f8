//! A stats summary: what the phone-home reports and the index say about a
//! span of UTC days, for the whole server or one room; rendered as text and
//! HTML (a [`Notice`]), as JSON (payload field names), and as a chart.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::chart::{ChartSpec, Series, Shape};
use super::report::Report;
use crate::clock::format_ms;
use crate::notice::Notice;
use crate::store::{DayActivity, ModerationTotals, Store, TopBy};

use crate::clock::{DAY_MS, date};
/// Rooms and senders listed by volume.
const TOP: i64 = 5;
/// Homeservers shown (those that reported most): anyone with the secret can
/// report under any name.
const MAX_HOMESERVERS: i64 = 20;

/// What a summary is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Server,
    /// One room (its ID, and how the moderator named it).
    Room {
        room_id: String,
        named: String,
    },
}

impl Scope {
    fn room_id(&self) -> Option<&str> {
        match self {
            Self::Server => None,
            Self::Room { room_id, .. } => Some(room_id),
        }
    }
}

/// One homeserver's reports over the span.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStats {
    pub homeserver: String,
    /// The last report of each UTC day that has one, by day number.
    pub daily: BTreeMap<i64, Report>,
    /// Reports whose own time is in the span.
    pub reports: i64,
}

impl ServerStats {
    pub fn latest(&self) -> Option<&Report> {
        self.daily.values().next_back()
    }

    /// The mean of a field over the days that have it.
    fn mean(&self, field: &str) -> Option<f64> {
        let values: Vec<f64> = self.daily.values().filter_map(|r| r.number(field)).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// The sum of a field over the days that have it (saturating: counts are
    /// at most 2^53 each, but never trust a sum).
    fn sum(&self, field: &str) -> Option<i64> {
        let values: Vec<i64> = self.daily.values().filter_map(|r| r.integer(field)).collect();
        (!values.is_empty()).then(|| values.iter().fold(0i64, |a, &b| a.saturating_add(b)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub scope: Scope,
    /// The days covered, oldest first (days since 1970, UTC).
    pub first_day: i64,
    pub last_day: i64,
    /// The index's activity on each day that had any.
    pub activity: Vec<DayActivity>,
    pub active_senders: i64,
    pub top_rooms: Vec<(String, i64)>,
    pub top_senders: Vec<(String, i64)>,
    pub moderation: ModerationTotals,
    /// Phone-home reports, per homeserver (none for a room).
    pub servers: Vec<ServerStats>,
    pub generated_at: i64,
    /// Set when the figures were kept by the store (a big server: see
    /// `store::kept`) and are older than a moment: when they were computed.
    pub kept_since: Option<i64>,
}

/// The last `days` UTC days up to and including the one of `now_ms`.
pub fn day_span(now_ms: i64, days: u32) -> (i64, i64) {
    let last = crate::clock::utc_day(now_ms);
    (last - i64::from(days.max(1)) + 1, last)
}

/// Each homeserver's reports per day, from the last report of each day (the
/// one with the latest own timestamp; the store hands over only those) and
/// the number of reports per homeserver.
pub fn daily_reports(stored: Vec<crate::store::StoredReport>, counts: &[(String, i64)]) -> Vec<ServerStats> {
    let mut servers: BTreeMap<String, BTreeMap<i64, (i64, Report)>> = BTreeMap::new();
    for (homeserver, _) in counts {
        servers.insert(homeserver.clone(), BTreeMap::new());
    }
    for row in stored {
        // Only the homeservers counted (the most reporting ones).
        let Some(days) = servers.get_mut(&row.homeserver) else { continue };
        let Some(report) = Report::from_stored(&row.raw) else {
            tracing::info!(homeserver = row.homeserver, ts = row.report_ts, "a stored report no longer reads; skipped");
            continue;
        };
        let day = crate::clock::utc_day(row.report_ts.saturating_mul(1000));
        if days.get(&day).is_none_or(|(ts, _)| *ts < row.report_ts) {
            days.insert(day, (row.report_ts, report));
        }
    }
    servers
        .into_iter()
        .map(|(homeserver, days)| {
            let reports = counts.iter().find(|(h, _)| *h == homeserver).map_or(0, |(_, n)| *n);
            ServerStats {
                homeserver,
                daily: days.into_iter().map(|(day, (_, report))| (day, report)).collect(),
                reports,
            }
        })
        .collect()
}

/// What a summary reads from the index: all of it but the phone-home
/// reports. On a big server this is what takes seconds, and what the store
/// keeps (see [`Summary::load_kept`]).
#[derive(Debug, Clone, PartialEq)]
struct IndexFigures {
    first_day: i64,
    last_day: i64,
    activity: Vec<DayActivity>,
    active_senders: i64,
    top_rooms: Vec<(String, i64)>,
    top_senders: Vec<(String, i64)>,
    moderation: ModerationTotals,
}

impl IndexFigures {
    async fn load(store: &Store, room: Option<&str>, days: u32, now_ms: i64) -> anyhow::Result<Self> {
        let (first_day, last_day) = day_span(now_ms, days);
        let activity = store.activity_per_day(room, first_day, last_day).await?;
        let active_senders = store.active_senders(room, first_day, last_day).await?;
        let top_rooms = match room {
            None => store.top_by_messages(TopBy::Room, None, first_day, last_day, TOP).await?,
            Some(_) => Vec::new(),
        };
        let top_senders = store.top_by_messages(TopBy::Sender, room, first_day, last_day, TOP).await?;
        let (from_ms, to_ms) = (first_day * DAY_MS, (last_day + 1) * DAY_MS);
        let moderation = store.moderation_totals(room, from_ms, to_ms).await?;
        Ok(Self { first_day, last_day, activity, active_senders, top_rooms, top_senders, moderation })
    }

    /// The phone-home reports of these days (none for a room).
    async fn reports(&self, store: &Store, scope: &Scope) -> anyhow::Result<Vec<ServerStats>> {
        if scope.room_id().is_some() {
            return Ok(Vec::new());
        }
        let (from_s, to_s) = (self.first_day * DAY_MS / 1000, (self.last_day + 1) * DAY_MS / 1000);
        let counts = store.stats_report_counts(from_s, to_s, MAX_HOMESERVERS).await?;
        let names: Vec<&str> = counts.iter().map(|(name, _)| name.as_str()).collect();
        Ok(daily_reports(store.stats_reports(from_s, to_s, &names).await?, &counts))
    }
}

impl Summary {
    /// Reads everything a summary needs: per-day rows of the activity rollup,
    /// a day's last report per homeserver, and counts over the media table.
    pub async fn load(store: &Store, scope: Scope, days: u32, now_ms: i64) -> anyhow::Result<Self> {
        let figures = IndexFigures::load(store, scope.room_id(), days, now_ms).await?;
        let servers = figures.reports(store, &scope).await?;
        Ok(Self::of(scope, figures, servers, now_ms, None))
    }

    /// The summary of `scope` over the last `days` up to now, with the
    /// index's figures as the store keeps them when adding them up is slow
    /// (a big server: see `store::kept`; they may be minutes old, and the
    /// summary says so). Phone-home reports are read fresh: they are few.
    pub async fn load_kept(store: &Store, scope: Scope, days: u32) -> anyhow::Result<Self> {
        let key = match scope.room_id() {
            None => format!("summary of the server, {days} days"),
            Some(room) => format!("summary of room {room}, {days} days"),
        };
        let room = scope.room_id().map(str::to_owned);
        let figure = store
            .kept_or_computed(key, move |store| {
                let room = room.clone();
                async move { IndexFigures::load(&store, room.as_deref(), days, crate::clock::now_ms()).await }
            })
            .await?;
        let figures = figure.value.as_ref().clone();
        let servers = figures.reports(store, &scope).await?;
        Ok(Self::of(scope, figures, servers, crate::clock::now_ms(), figure.kept_since))
    }

    fn of(
        scope: Scope,
        figures: IndexFigures,
        servers: Vec<ServerStats>,
        now_ms: i64,
        kept_since: Option<i64>,
    ) -> Self {
        let IndexFigures { first_day, last_day, activity, active_senders, top_rooms, top_senders, moderation } =
            figures;
        Self {
            scope,
            first_day,
            last_day,
            activity,
            active_senders,
            top_rooms,
            top_senders,
            moderation,
            servers,
            generated_at: now_ms,
            kept_since,
        }
    }

    /// Says how old kept figures are, in words.
    pub fn kept_note(&self) -> Option<String> {
        crate::store::kept::age_note(self.kept_since)
    }

    fn days(&self) -> impl Iterator<Item = i64> + '_ {
        self.first_day..=self.last_day
    }

    fn day_of(&self, day: i64) -> DayActivity {
        self.activity.iter().find(|a| a.day == day).copied().unwrap_or(DayActivity { day, ..DayActivity::default() })
    }

    /// Messages in the index over the days covered.
    pub fn messages(&self) -> i64 {
        self.activity.iter().map(|a| a.messages).sum()
    }

    fn title(&self) -> String {
        let span = format!("{} to {} (UTC)", date(self.first_day), date(self.last_day));
        match &self.scope {
            Scope::Server => format!("Stats, {span}"),
            Scope::Room { named, .. } => format!("Stats of {named}, {span}"),
        }
    }

    /// For people: text and HTML.
    pub fn notice(&self, prefix: &str) -> Notice {
        let mut notice = Notice::new().title(&self.title());
        if let Some(note) = self.kept_note() {
            notice = notice.line(&note);
        }
        if matches!(self.scope, Scope::Server) {
            if self.servers.is_empty() {
                notice = notice.line(&format!(
                    "No phone-home report from Synapse in these days. To have them: run `housekeep stats-endpoint \
                     -c config.yaml` and put the lines it prints into homeserver.yaml (report_stats and \
                     report_stats_endpoint), then restart Synapse; it reports every 3 hours. {prefix}stats shows \
                     what the index knows meanwhile."
                ));
            }
            for server in &self.servers {
                notice = server_lines(notice, server);
            }
        }
        let busiest = self.activity.iter().max_by_key(|a| (a.messages, -a.day));
        let mut index = format!(
            "{} messages, {} active senders, {} redactions",
            self.messages(),
            self.active_senders,
            self.activity.iter().map(|a| a.redactions).sum::<i64>()
        );
        if let Some(busiest) = busiest.filter(|a| a.messages > 0) {
            index.push_str(&format!("; busiest day {} ({} messages)", date(busiest.day), busiest.messages));
        }
        notice = notice.line("From housekeep's index (by the senders' clocks):").field("activity", &index);
        let per_day: Vec<String> =
            self.days().map(|day| format!("{} {}", month_day(day), self.day_of(day).messages)).collect();
        notice = notice.field("messages per day", &per_day.join(", "));
        if !self.top_rooms.is_empty() {
            notice = notice.field("busiest rooms", &listing(&self.top_rooms));
        }
        if !self.top_senders.is_empty() {
            notice = notice.field("busiest senders", &listing(&self.top_senders));
        }
        let m = &self.moderation;
        if matches!(self.scope, Scope::Server) {
            notice = notice.field("new rooms", &m.new_rooms.to_string());
        }
        notice = notice
            .field("media hashed (all time)", &format!("{} ({})", m.media_hashed, bytes(m.media_bytes)))
            .field("quarantined", &m.quarantined.to_string());
        if matches!(self.scope, Scope::Server) {
            notice = notice.field("purges", &format!("{} jobs, {} events", m.purges, m.purged_events));
        }
        notice
    }

    /// For machines: the aggregates, phone-home fields by their payload names.
    pub fn json(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|server| {
                let daily: Vec<Value> = server
                    .daily
                    .iter()
                    .map(|(day, report)| {
                        let mut fields = report.fields.clone();
                        fields.insert("date".to_owned(), json!(date(*day)));
                        Value::Object(fields)
                    })
                    .collect();
                json!({
                    "homeserver": server.homeserver,
                    "reports": server.reports,
                    "latest": server.latest().map(|r| Value::Object(r.fields.clone())),
                    "mean": means(server),
                    "sum": sums(server),
                    "e2ee_message_share": e2ee_share(server),
                    "daily": daily,
                })
            })
            .collect();
        let daily: Vec<Value> = self
            .days()
            .map(|day| {
                let a = self.day_of(day);
                json!({"date": date(day), "messages": a.messages, "redactions": a.redactions,
                       "active_senders": a.active_senders})
            })
            .collect();
        let top = |list: &[(String, i64)], key: &str| -> Vec<Value> {
            list.iter().map(|(name, n)| json!({key: name, "messages": n})).collect()
        };
        let m = &self.moderation;
        json!({
            "from": date(self.first_day),
            "to": date(self.last_day),
            "days": self.last_day - self.first_day + 1,
            "room_id": self.scope.room_id(),
            "homeservers": servers,
            "index": {
                "messages": self.messages(),
                "redactions": self.activity.iter().map(|a| a.redactions).sum::<i64>(),
                "active_senders": self.active_senders,
                "new_rooms": m.new_rooms,
                "media_hashed": m.media_hashed,
                "media_bytes": m.media_bytes,
                "quarantined": m.quarantined,
                "purges": m.purges,
                "purged_events": m.purged_events,
                "top_rooms": top(&self.top_rooms, "room_id"),
                "top_senders": top(&self.top_senders, "sender"),
                "daily": daily,
            },
        })
    }

    /// The chart: messages per day and active senders (the index), and each
    /// homeserver's daily active users (phone-home) where reported.
    pub fn chart(&self) -> ChartSpec {
        let days: Vec<i64> = self.days().collect();
        let mut series = vec![
            Series {
                label: "messages (index)".to_owned(),
                shape: Shape::Bars,
                values: days.iter().map(|&d| Some(self.day_of(d).messages as f64)).collect(),
            },
            Series {
                label: "active senders (index)".to_owned(),
                shape: Shape::Line,
                values: days.iter().map(|&d| Some(self.day_of(d).active_senders as f64)).collect(),
            },
        ];
        for server in self.servers.iter().take(2) {
            series.push(Series {
                label: format!("daily active users ({}, Synapse)", server.homeserver),
                shape: Shape::Line,
                values: days.iter().map(|d| server.daily.get(d).and_then(|r| r.number("daily_active_users"))).collect(),
            });
        }
        ChartSpec {
            title: self.title(),
            y_label: "messages, senders, users per day".to_owned(),
            day_labels: days.iter().map(|&d| month_day(d)).collect(),
            series,
        }
    }
}

/// The phone-home lines of one homeserver.
fn server_lines(mut notice: Notice, server: &ServerStats) -> Notice {
    let Some(latest) = server.latest() else { return notice };
    let get = |field: &str| latest.integer(field).map_or("?".to_owned(), |n| n.to_string());
    notice = notice.line(&format!(
        "{} (Synapse's phone-home, {} reports; latest {}):",
        server.homeserver,
        server.reports,
        format_ms(latest.timestamp.saturating_mul(1000))
    ));
    notice = notice
        .field("users", &format!("{} ({} not bridged)", get("total_users"), get("total_nonbridged_users")))
        .field(
            "rooms",
            &format!(
                "{} ({} active, {} of them end-to-end encrypted, in the last 24 hours)",
                get("total_room_count"),
                get("daily_active_rooms"),
                get("daily_active_e2ee_rooms")
            ),
        )
        .field(
            "daily / monthly active users",
            &format!(
                "{} / {} (mean DAU {})",
                get("daily_active_users"),
                get("monthly_active_users"),
                server.mean("daily_active_users").map_or("?".to_owned(), |m| format!("{m:.1}"))
            ),
        );
    let messages = server.sum("daily_messages");
    let share = match e2ee_share(server) {
        Some(share) => format!("{:.0} % end-to-end encrypted", share * 100.0),
        None => "encryption share unknown".to_owned(),
    };
    notice = notice.field(
        "messages",
        &format!(
            "{} in these days ({} sent by local users), {share}",
            messages.map_or("?".to_owned(), |n| n.to_string()),
            server.sum("daily_sent_messages").map_or("?".to_owned(), |n| n.to_string())
        ),
    );
    notice = notice.field(
        "active users by type (last 24 hours)",
        &format!(
            "native {}, bridged {}, guest {}",
            get("daily_user_type_native"),
            get("daily_user_type_bridged"),
            get("daily_user_type_guest")
        ),
    );
    if latest.integer("r30v2_users_all").is_some() {
        notice = notice.field(
            "30-day retained users (r30v2)",
            &format!(
                "{} (web {}, android {}, ios {}, electron {})",
                get("r30v2_users_all"),
                get("r30v2_users_web"),
                get("r30v2_users_android"),
                get("r30v2_users_ios"),
                get("r30v2_users_electron")
            ),
        );
    }
    let memory = latest.integer("memory_rss").map_or("?".to_owned(), |kib| bytes(kib.saturating_mul(1024)));
    let cpu = latest.number("cpu_average").map_or("?".to_owned(), |c| format!("{c:.0} %"));
    notice.field("Synapse process", &format!("memory {memory}, CPU {cpu}"))
}

/// The share of messages end-to-end encrypted over the days, if known.
fn e2ee_share(server: &ServerStats) -> Option<f64> {
    match (server.sum("daily_messages"), server.sum("daily_e2ee_messages")) {
        (Some(all), Some(e2ee)) if all > 0 => Some((e2ee as f64 / all as f64).clamp(0.0, 1.0)),
        _ => None,
    }
}

/// Sums of the per-day (`daily_*`) fields over the days.
fn sums(server: &ServerStats) -> Value {
    let names: std::collections::BTreeSet<&str> = server
        .daily
        .values()
        .flat_map(|r| r.fields.keys())
        .filter(|name| name.starts_with("daily_"))
        .map(String::as_str)
        .collect();
    let mut sums = Map::new();
    for name in names {
        if let Some(sum) = server.sum(name) {
            sums.insert(name.to_owned(), json!(sum));
        }
    }
    Value::Object(sums)
}

/// Mean of each numeric field over the days.
fn means(server: &ServerStats) -> Value {
    let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for report in server.daily.values() {
        for (name, value) in &report.fields {
            if let Some(n) = value.as_f64()
                && name != "timestamp"
            {
                let entry = sums.entry(name.as_str()).or_default();
                entry.0 += n;
                entry.1 += 1;
            }
        }
    }
    let mut means = Map::new();
    for (name, (sum, count)) in sums {
        means.insert(name.to_owned(), json!(sum / count as f64));
    }
    Value::Object(means)
}

fn listing(list: &[(String, i64)]) -> String {
    list.iter().map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
}

/// `12-02` for a day number.
fn month_day(day: i64) -> String {
    let date = date(day);
    date.get(5..).map(str::to_owned).unwrap_or(date)
}

/// Bytes for people: `1.5 MiB`.
pub(crate) fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredReport;

    fn stored(homeserver: &str, ts: i64, received: i64, users: i64) -> StoredReport {
        let raw = json!({"homeserver": homeserver, "timestamp": ts, "total_users": users,
                         "daily_active_users": users / 2, "daily_messages": 10, "daily_e2ee_messages": 5})
        .to_string();
        StoredReport { homeserver: homeserver.to_owned(), report_ts: ts, received_at: received, raw }
    }

    #[test]
    fn the_last_report_of_each_day_is_chosen_and_counted() {
        let day = 20_424;
        let s = day * 86_400;
        let reports = vec![
            stored("a.org", s + 3 * 3600, 1, 10),
            stored("a.org", s + 21 * 3600, 2, 12),
            stored("a.org", s + 9 * 3600, 3, 11),
            stored("a.org", s + 86_400 + 3600, 4, 13),
            stored("b.org", s + 3600, 5, 99),
            stored("c.org", s + 3600, 6, 1),
        ];
        let counts = vec![("a.org".to_owned(), 4), ("b.org".to_owned(), 1)];
        for order in [reports.clone(), reports.iter().rev().cloned().collect()] {
            let servers = daily_reports(order, &counts);
            assert_eq!(servers.len(), 2, "c.org is not among the counted ones");
            let a = &servers[0];
            assert_eq!((a.homeserver.as_str(), a.reports), ("a.org", 4));
            assert_eq!(a.daily[&day].integer("total_users"), Some(12), "the day's last report");
            assert_eq!(a.daily[&(day + 1)].integer("total_users"), Some(13));
            assert_eq!(a.latest().unwrap().integer("total_users"), Some(13));
            assert_eq!(a.mean("daily_active_users"), Some(6.0));
            assert_eq!(servers[1].daily[&day].integer("total_users"), Some(99));
        }
    }

    #[test]
    fn sums_saturate() {
        let day = 20_424;
        let big = (1i64 << 53).to_string();
        let raw = |ts: i64| {
            format!(
                r#"{{"homeserver": "a.org", "timestamp": {ts}, "daily_messages": {big}, "daily_e2ee_messages": 1}}"#
            )
        };
        let stored: Vec<StoredReport> = (0..2000)
            .map(|n| StoredReport {
                homeserver: "a.org".to_owned(),
                report_ts: (day + n) * 86_400,
                received_at: 0,
                raw: raw((day + n) * 86_400),
            })
            .collect();
        let servers = daily_reports(stored, &[("a.org".to_owned(), 2000)]);
        assert_eq!(servers[0].sum("daily_messages"), Some(i64::MAX));
        assert!(e2ee_share(&servers[0]).unwrap() >= 0.0);
    }

    #[test]
    fn day_spans_end_today_and_dates_read_as_dates() {
        let now = 1_795_168_800_250; // 2026-11-20T10:00:00Z
        let (first, last) = day_span(now, 7);
        assert_eq!((date(first), date(last)), ("2026-11-14".to_owned(), "2026-11-20".to_owned()));
        assert_eq!(day_span(now, 1).0, day_span(now, 1).1);
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12), "12 B");
    }

    fn summary(servers: Vec<ServerStats>) -> Summary {
        let (first_day, last_day) = day_span(1_795_168_800_250, 3);
        Summary {
            scope: Scope::Server,
            first_day,
            last_day,
            activity: vec![DayActivity { day: last_day - 1, messages: 40, redactions: 2, active_senders: 3 }],
            active_senders: 4,
            top_rooms: vec![("!busy:hs".to_owned(), 40)],
            top_senders: vec![("@a:hs".to_owned(), 30)],
            moderation: ModerationTotals { new_rooms: 1, media_hashed: 3, media_bytes: 2048, ..Default::default() },
            servers,
            generated_at: 1_795_168_800_250,
            kept_since: None,
        }
    }

    #[test]
    fn without_reports_the_summary_says_how_to_get_them_and_shows_the_index() {
        let text = summary(Vec::new()).notice("!").plain;
        assert!(text.contains("No phone-home report"), "{text}");
        assert!(text.contains("housekeep stats-endpoint"), "{text}");
        assert!(text.contains("40 messages, 4 active senders, 2 redactions; busiest day 2026-11-19"), "{text}");
        assert!(text.contains("messages per day: 11-18 0, 11-19 40, 11-20 0"), "{text}");
        assert!(text.contains("busiest rooms: !busy:hs 40"), "{text}");
        assert!(text.contains("media hashed (all time): 3 (2.0 KiB)"), "{text}");
        assert!(!text.contains("Figures as of"), "computed when asked: {text}");
    }

    #[test]
    fn kept_figures_say_how_old_they_are() {
        let mut kept = summary(Vec::new());
        kept.kept_since = Some(1_795_168_800_250);
        let text = kept.notice("!").plain;
        assert!(
            text.contains(
                "Figures as of 2026-11-20T10:00:00Z: on a server this big they are kept and recomputed every 5 minutes."
            ),
            "{text}"
        );
    }

    #[test]
    fn reports_become_lines_json_fields_and_a_series() {
        let day = day_span(1_795_168_800_250, 1).0;
        let servers = daily_reports(vec![stored("a.org", day * 86_400 + 60, 1, 8)], &[("a.org".to_owned(), 1)]);
        let summary = summary(servers);
        let text = summary.notice("!").plain;
        assert!(text.contains("a.org (Synapse's phone-home, 1 reports"), "{text}");
        assert!(text.contains("users: 8 (? not bridged)"), "{text}");
        assert!(text.contains("50 % end-to-end encrypted"), "{text}");
        let json = summary.json();
        assert_eq!(json["homeservers"][0]["latest"]["total_users"], 8, "payload names");
        assert_eq!(json["homeservers"][0]["daily"][0]["date"], "2026-11-20");
        assert_eq!(json["homeservers"][0]["sum"]["daily_messages"], 10);
        assert_eq!(json["homeservers"][0]["e2ee_message_share"], 0.5);
        assert_eq!(json["index"]["daily"][1]["messages"], 40);
        assert_eq!(json["days"], 3);
        let chart = summary.chart();
        assert_eq!(chart.series.len(), 3);
        assert_eq!(chart.series[2].values, vec![None, None, Some(4.0)], "DAU where reported");
        assert_eq!(chart.day_labels, vec!["11-18", "11-19", "11-20"]);
    }
}
