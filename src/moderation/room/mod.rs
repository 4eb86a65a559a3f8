//! `!room takedown|block|unblock`: act on a whole room through Synapse's
//! admin API, as jobs with a plan, confirmation and audit like `!purge`.
//!
//! - `args.rs`: the grammar, and what the job kinds are given (`Takedown`,
//!   `SetBlock`).
//! - `plan.rs`: what a moderator reads first: the room, its local and
//!   remote members, its local aliases, the media the index knows it
//!   shared; the job's items (that media, then the room).
//! - `kind.rs`: the job kinds: quarantine the media, then Synapse's room
//!   delete, started once and polled; block and unblock; the results.
//! - `command.rs`: how `!room` runs (`impl AdminCommand`): it resolves the
//!   room once and refuses the admin room (housekeep needs it) before
//!   planning.

mod args;
mod command;
mod kind;
mod plan;

pub use args::{EXAMPLES, RoomAction, RoomArgs, RoomMediaAction, SetBlock, Takedown, TakedownArgs};
pub use kind::{RoomBlockKind, RoomTakedownKind};
pub use plan::{BlockPlan, TakedownPlan};
