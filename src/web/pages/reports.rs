//! Event reports users filed: open ones first (or every state), by sender
//! or room, with what became of each and the job that handled it.

use super::*;
use crate::store::{KeptReport, ReportFilter};

#[derive(Debug, Default, Deserialize)]
pub(in crate::web) struct ReportsQuery {
    /// `all`: every state; otherwise open ones only.
    state: Option<String>,
    sender: Option<String>,
    room: Option<String>,
}

pub(in crate::web) async fn reports(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(query): Query<ReportsQuery>,
) -> Response {
    or_error_page(async {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (sender, room) = (text(&query.sender), text(&query.room));
        let all = query.state.as_deref() == Some("all");
        let filter = ReportFilter { all, sender: sender.clone(), room_id: room.clone() };
        let reports = state.store.kept_reports(&filter, ROWS).await?;
        let lists = state.store.policy_lists().await?;
        let content = html! {
            form.filters method="get" {
                label { "state" select name="state" {
                    option value="open" selected[!all] { "open" }
                    option value="all" selected[all] { "all" }
                } }
                label { "sender" input type="text" name="sender" placeholder="@user:server" value=[sender.as_deref()]; }
                label { "room" input type="text" name="room" placeholder="!room:server" value=[room.as_deref()]; }
                button type="submit" { "Show" }
            }
            @if reports.is_empty() {
                div.empty { "No " @if !all { "open " } "reports" @if sender.is_some() || room.is_some() { " that match" } "." }
            } @else {
                (reports_table(&reports))
            }
            h2 { "Policy lists" }
            @if lists.is_empty() {
                div.empty { "No policy lists are watched (" code { "!policy watch <room>" } ")." }
            } @else {
                (lists_table(&lists))
            }
        };
        Ok(layout(&state, "Reports", "/reports", &who, ON_REPORTS, content))
    }
    .await)
}

/// The watched ban lists and what their rules made. A list's name is what
/// a moderator or the config called it; its ID comes from the room.
fn lists_table(lists: &[crate::store::PolicyList]) -> Markup {
    html! {
        table #policy-lists {
            tr { th { "list" } th { "action" } th { "new rules" } th { "plans made" } th { "run by itself" } th { "rules read" } }
            @for list in lists {
                tr {
                    td { (text::line(&list.name)) " " span.mono { (text::line(&list.room_id)) } }
                    td { (list.action) }
                    td.num { (list.rules_seen) }
                    td.num { (list.plans_made) }
                    td.num { (list.actions_run) }
                    td { @if let Some(at) = list.baseline_at { (format_ms(at)) } @else { "not yet" } }
                }
            }
        }
    }
}

/// Everything in a report but its number came from people (the reason)
/// or remote servers (IDs, names): one line each, cut, nothing hidden.
fn reports_table(reports: &[KeptReport]) -> Markup {
    html! {
        table #reports {
            tr { th { "report" } th { "state" } th { "reported" } th { "by" } th { "sender" } th { "room" } th { "reason" } th { "handled" } }
            @for kept in reports {
                @let r = &kept.report;
                tr {
                    td.num { (r.report_id) }
                    td class=(format!("state-{}", kept.state)) { (kept.state) }
                    td { (format_ms(r.received_ts)) }
                    td.mono { (text::line(&r.reporter)) }
                    td.mono { (text::line(r.sender.as_deref().unwrap_or("–"))) }
                    td { (text::shown(r.room_name.as_deref().unwrap_or(""), 80)) " " span.mono { (text::line(&r.room_id)) } }
                    td { (text::shown(r.reason.as_deref().unwrap_or(""), 200)) }
                    td {
                        @if let Some(by) = &kept.state_by { span.mono { (text::line(by)) } }
                        @if let Some(job) = &kept.job_id { " " a href=(format!("/jobs/{}", urlencode(job))) { (job) } }
                        @if let Some(why) = &kept.state_reason { " " (text::shown(why, 200)) }
                    }
                }
            }
        }
    }
}
