//! The jobs list and one job's page with its live progress.

use super::*;

fn state_class(state: JobState) -> String {
    format!("state-{}", state.as_str())
}

pub(in crate::web) async fn jobs(State(state): Shared, Extension(who): Extension<SignedIn>) -> Response {
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
                            td.mono { (text::line(&job.requested_by)) }
                            td { (format_ms(job.created_at)) }
                            td.mono { (text::line(&job.command_text)) }
                        }
                    }
                }
            }
        };
        Ok(layout(&state, "Jobs", "/jobs", &who, ON_JOBS, content))
    }
    .await)
}

pub(in crate::web) async fn job(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Path(id): Path<String>,
) -> Response {
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
            p { "Asked by " code { (text::line(&job.requested_by)) } " at " (format_ms(job.created_at)) ": " code { (text::line(&job.command_text)) } }
            @if let Some(by) = &job.confirmed_by { p { "Confirmed by " code { (text::line(by)) } } }
            @if let Some(error) = &job.error { p.state-failed { "Error: " (text::line(error)) } }
            h2 { "Items" }
            p { @for (s, n) in &counts { (n) " " (s.as_str()) "; " } }
            @if !failed.is_empty() {
                table { tr { th { "failed item" } th { "why" } }
                    @for item in &failed { tr { td.mono { (text::line(&item.key)) } td { (text::line(item.detail.as_deref().unwrap_or(""))) } } } }
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
