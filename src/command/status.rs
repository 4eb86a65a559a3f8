//! `!status`: the index, jobs and the homeserver at a glance.

use std::time::Duration;

use super::{AdminCommand, Context, Executed};
use crate::clock::now_ms;
use crate::notice::Notice;

/// A duration for people, to the second.
pub fn age(ms: i64) -> String {
    humantime::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64)).to_string()
}

/// Show the health of the index, backfill, jobs and the homeserver
///
/// Counts are the database's estimates (marked ≈), which take
/// milliseconds at any size; --exact counts every row.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct StatusArgs {
    /// Count every row (the index, the media queue) instead of the database's
    /// estimates: exact, but seconds on a big index
    #[arg(long)]
    pub exact: bool,
}

/// What start-up still waits for, as `/health` says it.
fn waiting(metrics: &crate::metrics::Metrics) -> String {
    let waits = metrics.waits();
    if waits.is_empty() {
        return "nothing".to_owned();
    }
    waits.iter().map(|(what, why)| format!("{what}: {why}")).collect::<Vec<_>>().join("; ")
}

impl AdminCommand for StatusArgs {
    const NAME: &'static str = "status";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        status(ctx, self.exact).await
    }
}

async fn status(ctx: &Context<'_>, exact: bool) -> anyhow::Result<Executed> {
    let services = ctx.services();
    let store = &services.store;
    let index = if exact {
        let summary = store.summary().await?;
        let newest = summary
            .newest_event_ts
            .map(|ts| format!("{} ago", age(now_ms().saturating_sub(ts))))
            .unwrap_or_else(|| "none yet".to_owned());
        format!(
            "{} events in {} rooms, {} media references to {} media; newest event {newest} (exact)",
            summary.events, summary.rooms, summary.media_refs, summary.distinct_media
        )
    } else {
        let estimate = store.summary_estimate().await?;
        let newest = estimate.newest_activity_day.map_or("none yet".to_owned(), crate::clock::date);
        format!(
            "≈ {} events, ≈ {} media references to ≈ {} media; newest message on {newest} \
             (the database's estimates; {}status --exact counts)",
            estimate.events,
            estimate.media_refs,
            estimate.media,
            ctx.prefix()
        )
    };
    let counts = store.job_counts().await?;
    let jobs = if counts.is_empty() {
        "none".to_owned()
    } else {
        counts.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect::<Vec<_>>().join(", ")
    };
    let backfill = match store.recent_jobs_of_kind("backfill", 1).await?.first() {
        Some(job) => format!(
            "job {} {} ({}/{} rooms); {}backfill status shows each room",
            job.id,
            job.state.as_str(),
            job.tally.as_ref().map_or(0, |t| t["rooms_done"].as_i64().unwrap_or(0)),
            job.total_count,
            ctx.prefix()
        ),
        None => format!("none yet ({}backfill --all reads every room's history)", ctx.prefix()),
    };
    let media = if exact {
        let media: Vec<String> =
            store.fetch_state_counts(None).await?.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect();
        if media.is_empty() { "none yet".to_owned() } else { media.join(", ") }
    } else {
        format!(
            "{} abandoned ({}status --exact counts every state)",
            store.abandoned_media_count().await?,
            ctx.prefix()
        )
    };
    let running: Vec<String> =
        ctx.jobs.running().into_iter().map(|(id, lane)| format!("{id} ({})", lane.as_str())).collect();
    let (homeserver, admin) = match services.homeserver.whoami().await {
        Ok(user) => {
            let admin = match services.homeserver.is_server_admin(&user).await {
                Ok(true) => "yes".to_owned(),
                Ok(false) => "no: purge and quarantine need it (README: \"Bot as server admin\")".to_owned(),
                Err(error) => format!("unknown ({error})"),
            };
            (format!("reachable, bot is {user}"), admin)
        }
        Err(error) => (format!("unreachable: {error}"), "unknown".to_owned()),
    };
    let lists = store.policy_lists().await?;
    let policy = if lists.is_empty() {
        "none watched".to_owned()
    } else {
        lists
            .iter()
            .map(|l| {
                format!(
                    "{} ({}): {} new rules, {} plans, {} run by itself",
                    crate::text::line(&l.name),
                    l.action,
                    l.rules_seen,
                    l.plans_made,
                    l.actions_run
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let reply = Notice::new()
        .title("housekeep status")
        .field("index", &index)
        .field("index lag", &format!("{:.1} s at the last transaction", services.metrics.index_lag_seconds.get()))
        .field("redactions waiting for the homeserver's word", &store.pending_redaction_checks().await?.to_string())
        .field("quarantined media", &store.quarantined_media_count().await?.to_string())
        .field("backfill", &backfill)
        .field("media downloads", &media)
        .field("jobs", &jobs)
        .field("running now", &if running.is_empty() { "none".to_owned() } else { running.join(", ") })
        .field("policy lists", &policy)
        .field("homeserver", &homeserver)
        .field("bot is server admin", &admin)
        .field("waiting for", &waiting(&services.metrics))
        .field("database", store.backend().as_str())
        .field("version", env!("CARGO_PKG_VERSION"));
    Ok(Executed::ok(reply))
}
