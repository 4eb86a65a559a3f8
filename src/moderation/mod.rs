//! Moderation actions on the homeserver, as job kinds: selection from the
//! index, a plan, and checkpointed batches through the admin API.

pub mod purge;
pub mod quarantine;
