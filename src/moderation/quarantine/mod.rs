//! `!quarantine` and `!unquarantine`: select media from the index, plan,
//! and quarantine (or release) each one through Synapse's admin API as a job.
//!
//! - `args.rs`: the grammar.
//! - `plan.rs`: the selection (shared media by default, mentions on request)
//!   and the plan a moderator reads.
//! - `kind.rs`: the job kinds that carry it out and report.
//! - `command.rs`: how the commands run (`impl AdminCommand`): a plan of
//!   `kind.rs`'s job kinds.
//!
//! Why not Synapse's own room quarantine alone: it scans the room's event
//! JSON and reads only `content.url` and `content.info.thumbnail_url`, so
//! encrypted attachments (`file.url`, `info.thumbnail_file.url`) and `<img>`
//! in HTML escape it. housekeep selects from its index, which has every
//! reference kind.

mod args;
mod command;
mod kind;
mod plan;

pub use args::{
    QUARANTINE_EXAMPLES, QuarantineArgs, QuarantineTarget, UNQUARANTINE_EXAMPLES, UnquarantineArgs, UnquarantineTarget,
    parse_sha256,
};
pub use kind::{QuarantineKind, UnquarantineKind, apply, refused_or_retry, shared_outside_room};
pub use plan::{Action, MediaPlan};
