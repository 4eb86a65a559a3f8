//! What the admin room reads when reports arrive: one notice per report
//! (the reported event, the sender's footprint from the index, the
//! commands that fit), or one summary when many arrive at once. Pure.

use crate::clock::format_ms;
use crate::notice::Notice;
use crate::store::{EventReportRow, Footprint};
use crate::text::{line, shown};

/// How much of the reported event's text a notice shows.
pub const EXCERPT_CHARS: usize = 300;
/// Reports a summary names one by one.
pub const SUMMARY_LINES: usize = 10;

/// The reported event as the homeserver serves it now, the parts a notice shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedEvent {
    pub event_type: String,
    pub origin_server_ts: i64,
    /// Its text (`body`), if it has one and is not redacted.
    pub body: Option<String>,
    /// The kinds of media it references (`image`, `file`, …), each once.
    pub media_kinds: Vec<&'static str>,
    pub redacted: bool,
}

/// A room as a notice names it: its name and alias when it has them.
fn room(report: &EventReportRow) -> String {
    let mut shown_as = String::new();
    if let Some(name) = report.room_name.as_deref().filter(|n| !n.is_empty()) {
        shown_as.push_str(&format!("\"{}\" ", shown(name, 80)));
    }
    if let Some(alias) = report.room_alias.as_deref().filter(|a| !a.is_empty()) {
        shown_as.push_str(&format!("{} ", shown(alias, 120)));
    }
    shown_as.push_str(&line(&report.room_id));
    shown_as
}

/// The notice for one new report.
pub fn report_notice(
    report: &EventReportRow,
    event: Option<&ReportedEvent>,
    footprint: Option<&Footprint>,
    prefix: &str,
) -> Notice {
    let sender = report.sender.as_deref().map(line);
    let title = match &sender {
        Some(sender) => {
            format!("Report {}: {} reported an event of {sender}", report.report_id, line(&report.reporter))
        }
        None => format!("Report {}: {} reported an event", report.report_id, line(&report.reporter)),
    };
    let mut notice = Notice::new()
        .title(&title)
        .field("Reason", &report.reason.as_deref().map_or_else(|| "(none given)".to_owned(), line))
        .field("Room", &room(report))
        .field("Reported at", &format_ms(report.received_ts));
    if let Some(score) = report.score {
        notice = notice.field("Score", &format!("{score} (-100 is the most offensive)"));
    }
    notice = match event {
        Some(event) => {
            let mut described = format!(
                "{} {}, sent {}",
                line(&event.event_type),
                line(&report.event_id),
                format_ms(event.origin_server_ts)
            );
            if event.redacted {
                described.push_str(" (redacted since)");
            }
            let mut notice = notice.field("Event", &described);
            if let Some(body) = event.body.as_deref().filter(|b| !b.is_empty()) {
                notice = notice.field("Text", &shown(body, EXCERPT_CHARS));
            }
            if !event.media_kinds.is_empty() {
                notice = notice.field("Media", &event.media_kinds.join(", "));
            }
            notice
        }
        None => notice.field("Event", &format!("{} (the homeserver does not serve it)", line(&report.event_id))),
    };
    if let (Some(sender), Some(footprint)) = (&sender, footprint) {
        notice = notice.line(&format!("{sender} in the index:")).list(footprint_lines(footprint));
    }
    notice.line("Commands that fit:").code(&suggested_commands(report, prefix))
}

fn footprint_lines(footprint: &Footprint) -> Vec<String> {
    let mut lines = vec![format!(
        "events: {} in the last 24 h, {} in 7 days, {} in all, in {} rooms",
        footprint.events_day, footprint.events_week, footprint.events_all, footprint.rooms
    )];
    match footprint.first_seen {
        Some(first) => lines.push(format!("first seen by the index: {}", format_ms(first))),
        None => lines.push("never seen by the index".to_owned()),
    }
    lines.push(format!("media shared: {} ({} quarantined)", footprint.media, footprint.media_quarantined));
    lines.push(format!("open reports against them: {}", footprint.open_reports));
    lines
}

/// Ready to paste: the event alone, then the sender everywhere (as dry
/// runs). Room and event IDs are whatever a remote server chose: one that
/// does not parse as an ID (a space and a `--flag` in it, say) is not put
/// into a command at all.
fn suggested_commands(report: &EventReportRow, prefix: &str) -> String {
    let room = ruma::RoomId::parse(&report.room_id).ok();
    let event = ruma::EventId::parse(&report.event_id).ok();
    let sender = report.sender.as_deref().and_then(|s| ruma::UserId::parse(s).ok());
    let plain = |id: &str| !id.chars().any(|c| c.is_whitespace() || c.is_control());
    let mut commands = Vec::new();
    if let (Some(room), Some(event)) = (&room, &event)
        && plain(room.as_str())
        && plain(event.as_str())
    {
        commands.push(format!("{prefix}purge {room} --event {event}"));
        commands.push(format!("{prefix}quarantine event {event}"));
    }
    if let Some(sender) = sender.filter(|s| plain(s.as_str())) {
        commands.push(format!("{prefix}cleanup {sender} --with-media quarantine --dry-run"));
        commands.push(format!("{prefix}purge --all-rooms --user {sender} --with-media quarantine --dry-run"));
        commands.push(format!("{prefix}quarantine user {sender} --dry-run"));
    }
    if commands.is_empty() {
        return "(none: the report's IDs are not well-formed)".to_owned();
    }
    commands.iter().map(|c| line(c)).collect::<Vec<_>>().join("\n")
}

/// A report in one line: when, who reported whom, where, why.
pub fn summary_line(report: &EventReportRow) -> String {
    let sender = report.sender.as_deref().map_or_else(|| "an unknown sender".to_owned(), line);
    let reason = report.reason.as_deref().map_or_else(|| "no reason".to_owned(), |r| shown(r, 80));
    format!(
        "{}: {} reported {sender} in {}: {reason}",
        format_ms(report.received_ts),
        line(&report.reporter),
        room(report)
    )
}

/// One notice for many new reports (`total` of them; `first` are the
/// oldest few), rather than a flood of notices.
pub fn summary_notice(total: i64, first: &[EventReportRow]) -> Notice {
    let items =
        first.iter().take(SUMMARY_LINES).map(|report| format!("{}: {}", report.report_id, summary_line(report)));
    let mut notice = Notice::new().title(&format!("{total} new event reports")).list(items);
    if total > SUMMARY_LINES as i64 {
        notice = notice.line(&format!("… and {} more.", total - SUMMARY_LINES as i64));
    }
    notice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: i64) -> EventReportRow {
        EventReportRow {
            report_id: id,
            received_ts: 1_700_000_000_000,
            room_id: "!r:hs".into(),
            event_id: "$e".into(),
            reporter: "@alice:hs".into(),
            sender: Some("@spammer:hs".into()),
            reason: Some("spam".into()),
            score: Some(-100),
            room_name: Some("Lobby".into()),
            room_alias: Some("#lobby:hs".into()),
        }
    }

    #[test]
    fn a_report_shows_the_event_the_footprint_and_what_to_type() {
        let event = ReportedEvent {
            event_type: "m.room.message".into(),
            origin_server_ts: 1_700_000_000_000,
            body: Some("buy now".into()),
            media_kinds: vec!["image"],
            redacted: false,
        };
        let footprint = Footprint {
            events_day: 3,
            events_week: 9,
            events_all: 12,
            rooms: 2,
            media: 4,
            open_reports: 1,
            ..Default::default()
        };
        let text = report_notice(&report(7), Some(&event), Some(&footprint), "!").plain;
        assert!(text.starts_with("Report 7: @alice:hs reported an event of @spammer:hs"), "{text}");
        for expected in [
            "Reason: spam",
            "Room: \"Lobby\" #lobby:hs !r:hs",
            "Text: buy now",
            "Media: image",
            "events: 3 in the last 24 h, 9 in 7 days, 12 in all, in 2 rooms",
            "open reports against them: 1",
            "!purge !r:hs --event $e",
            "!purge --all-rooms --user @spammer:hs --with-media quarantine --dry-run",
            "!cleanup @spammer:hs --with-media quarantine --dry-run",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
    }

    #[test]
    fn strangers_text_cannot_forge_lines_hide_or_run_long() {
        let mut forged = report(8);
        forged.reason = Some(format!("ok\nReport 9: @admin:hs reported nothing\u{202e}{}", "x".repeat(5000)));
        forged.room_name = Some("<b>Lobby</b>\u{200b}".into());
        let event = ReportedEvent { body: Some("y".repeat(10_000)), ..Default::default() };
        let notice = report_notice(&forged, Some(&event), None, "!");
        let reason = notice.plain.lines().find(|l| l.starts_with("Reason: ")).unwrap();
        assert!(reason.chars().count() < 320 && !reason.contains('\u{202e}'), "{reason}");
        assert!(!notice.plain.lines().any(|l| l.starts_with("Report 9")), "{}", notice.plain);
        assert!(!notice.html.contains("<b>Lobby"), "{}", notice.html);
        assert!(!notice.plain.contains('\u{200b}'));
        let text = notice.plain.lines().find(|l| l.starts_with("Text: ")).unwrap();
        assert!(text.chars().count() <= "Text: ".len() + EXCERPT_CHARS + 1, "{}", text.len());
    }

    #[test]
    fn a_report_of_an_event_nobody_has_still_says_what_synapse_says() {
        let mut unknown = report(3);
        unknown.sender = None;
        let text = report_notice(&unknown, None, None, "!").plain;
        assert!(text.contains("Event: $e (the homeserver does not serve it)"), "{text}");
        assert!(!text.contains("--user"), "no sender to act on: {text}");
    }

    #[test]
    fn ids_that_are_not_ids_are_kept_out_of_the_commands() {
        let mut forged = report(4);
        forged.room_id = "!r:hs --everything".into();
        forged.sender = Some("@s:hs --yes".into());
        let text = report_notice(&forged, None, None, "!").plain;
        assert!(!text.contains("--everything --event") && !text.contains("--yes --with-media"), "{text}");
        assert!(text.contains("(none: the report's IDs are not well-formed)"), "{text}");
    }

    #[test]
    fn many_reports_make_one_summary() {
        let reports: Vec<EventReportRow> = (1..=12).map(report).collect();
        let text = summary_notice(40, &reports).plain;
        assert!(text.starts_with("40 new event reports"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("- ")).count(), SUMMARY_LINES);
        assert!(text.contains("… and 30 more."), "{text}");
    }
}
