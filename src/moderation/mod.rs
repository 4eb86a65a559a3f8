//! Moderation actions on the homeserver, as job kinds: a selection from the
//! index, a plan, and checkpointed batches through the admin API. One folder
//! per command: its grammar, plan, job kind and result text live together.

pub mod cleanup;
pub mod purge;
pub mod quarantine;
pub mod room;
pub mod sanction;
