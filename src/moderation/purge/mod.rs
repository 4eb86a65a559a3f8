//! `!purge`: select events from the index, plan, and redact or delete them
//! as a job.
//!
//! - `args.rs`: the grammar.
//! - `plan.rs`: the selection, counted in SQL and streamed into job items,
//!   and the plan a moderator reads.
//! - `kind.rs`: the job kind: redact as the bot or as the sender, delete
//!   history, quarantine the media; the result.
//! - `tokens.rs`: senders' access tokens, minted once per job, kept for
//!   resume, revoked at the end.
//! - `command.rs`: how `!purge` runs (`impl AdminCommand`): a plan of
//!   `kind.rs`'s job kind.

mod args;
mod command;
mod kind;
mod plan;
mod tokens;

pub use args::{EXAMPLES, PurgeArgs, PurgeMediaAction, PurgeMethod};
pub(crate) use kind::report;
pub use kind::{PurgeCursor, PurgeKind, PurgeTally};
pub use plan::PurgePlan;
pub(crate) use plan::{plan, push_uploads};
pub use tokens::sweep_ended_jobs as sweep_tokens;
