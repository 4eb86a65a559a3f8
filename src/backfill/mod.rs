//! Backfill: every room's history in the index, and its media downloaded.
//!
//! Real-time indexing sees only what happens after housekeep starts; every
//! command is only as good as the index. A backfill reads the history of
//! every room the homeserver knows (not only rooms the bot is in) through
//! Synapse's admin API, as a background job on the runner: moderation jobs
//! never wait behind it for longer than one of its chunks.
//!
//! - `args.rs`: `!backfill` (grammar).
//! - `plan.rs`: which rooms.
//! - `kind.rs`: the job kind: pages, chunks, media, where a walk stops.
//! - `status.rs`: `!backfill status`, `!backfill retry-failed`.
//! - `command.rs`: how `!backfill` runs (`impl AdminCommand`): a job of
//!   `kind.rs`, or `status.rs`'s answers.
//!
//! housekeep starts backfills by itself too: on the first start with an
//! empty index (`backfill.on_first_start`), and for the rooms around a
//! transaction that never arrived (a gap the appservice accepted), which are
//! read back only to the first page the index already holds.

mod args;
mod command;
mod kind;
mod plan;
mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use args::{BackfillArgs, BackfillStart, EXAMPLES};
pub use kind::BackfillKind;
pub use plan::BackfillSettings;
pub use plan::{BackfillRequest, Rooms};
pub use status::{retry_failed, status};

use sha2::{Digest, Sha256};

use crate::jobs::{ConfirmPolicy, Jobs, PlanMode, PlanOutcome, PlanRequest};
use crate::store::is_gap_reason;

/// How often asked-for rooms are looked for.
const REQUESTS_POLL: Duration = Duration::from_secs(10);

/// The request for every room (the first start's): a room ID no room has.
const ALL_ROOMS: &str = "*";

/// Starts a backfill housekeep asks for itself, reporting in `room_id`.
/// `false`: it could not start yet (the bot is not a server admin).
async fn start(jobs: &Jobs, room_id: &str, key: String, request: BackfillRequest) -> anyhow::Result<bool> {
    let services = jobs.services();
    let plan = PlanRequest {
        command_event_id: key,
        room_id: room_id.to_owned(),
        requested_by: services.bot_user_id.to_string(),
        command_text: request.why.clone(),
        mode: PlanMode::Yes,
        expiry: Duration::from_secs(600),
        policy: ConfirmPolicy::NONE,
    };
    Ok(match jobs.plan::<BackfillKind>(plan, &request).await? {
        PlanOutcome::Job { job, .. } => {
            tracing::info!(job = job.id, rooms = job.total_count, why = request.why, "backfill started");
            jobs.wake();
            true
        }
        PlanOutcome::Nothing { .. } => {
            tracing::info!(why = request.why, "backfill: no rooms to read");
            true
        }
        PlanOutcome::Blocked { .. } => false,
    })
}

/// On the first start with an empty index, asks for every room to be
/// backfilled; it starts as soon as it can (once the bot is a server admin).
/// Called before the appservice listener opens: the first transaction (the
/// bot's own join, say) must not make the index look used already.
pub async fn first_start(store: &crate::store::Store) -> anyhow::Result<()> {
    if store.index_is_empty().await? {
        let why = "the first start with an empty index (backfill.on_first_start)";
        store.request_backfill(&[ALL_ROOMS.to_owned()], why).await?;
    }
    Ok(())
}

/// At most three reasons, and how many more: it is shown in every notice.
fn summarize(reasons: &[&str]) -> String {
    let shown = reasons.iter().take(3).copied().collect::<Vec<_>>().join("; ");
    match reasons.len() {
        0..=3 => shown,
        n => format!("{shown}; and {} more", n - 3),
    }
}

/// Reads back the rooms asked for (the first start, transaction gaps,
/// retry-failed) until shutdown.
pub async fn run_requests(jobs: Arc<Jobs>, admin_room: String, shutdown: CancellationToken) {
    let store = &jobs.services().store;
    let mut told_blocked = false;
    loop {
        match store.backfill_requests(1_000).await {
            Ok(requests) if !requests.is_empty() => {
                let rooms: Vec<String> = requests.iter().map(|(room, _, _)| room.clone()).collect();
                let mut reasons: Vec<&str> = requests.iter().map(|(_, why, _)| why.as_str()).collect();
                reasons.sort_unstable();
                reasons.dedup();
                let all = rooms.iter().any(|room| room == ALL_ROOMS);
                let request = BackfillRequest {
                    rooms: if all { Rooms::All } else { Rooms::These(rooms.clone()) },
                    since: None,
                    full: false,
                    gap_repair: !all && reasons.iter().all(|why| is_gap_reason(why)),
                    why: summarize(&reasons),
                };
                // Named by the requests themselves: after a crash between
                // starting the job and dropping the requests, the same job
                // is found again instead of a second one started.
                let mut hasher = Sha256::new();
                for (room, _, at) in &requests {
                    hasher.update(format!("{room}\n{at}\n").as_bytes());
                }
                let key = format!("housekeep:backfill-request:{}", &hex::encode(hasher.finalize())[..24]);
                match start(&jobs, &admin_room, key, request).await {
                    Ok(true) => {
                        told_blocked = false;
                        for room in &rooms {
                            if let Err(error) = store.drop_backfill_request(room).await {
                                tracing::warn!(error = format!("{error:#}"), "cannot drop a backfill request");
                            }
                        }
                    }
                    Ok(false) => {
                        if !told_blocked {
                            tracing::warn!(
                                rooms = rooms.len(),
                                "a backfill waits for the bot to be a server admin (see the README); \
                                 it starts by itself once it is"
                            );
                            told_blocked = true;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "cannot start a requested backfill; will retry")
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot read backfill requests; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REQUESTS_POLL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
