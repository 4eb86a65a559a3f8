//! The audit log, filtered by actor, action or job.

use super::*;

#[derive(Debug, Default, Deserialize)]
pub(in crate::web) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    before: Option<i64>,
}

pub(in crate::web) async fn audit(
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
