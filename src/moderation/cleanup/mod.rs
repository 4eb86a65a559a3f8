//! `!cleanup <user>`: the ban-time playbook in one plan. Stop the account,
//! redact everything it sent in every indexed room, quarantine its media,
//! and apply the final sanction: one confirmation, one job whose parts run
//! in order, each reported in the result.
//!
//! The order is chosen so that nothing stops the cleanup halfway:
//! 1. **stop** (`--suspend`, `--lock`, `--deactivate`): the account is
//!    suspended at once. A suspended user cannot send, but may still redact
//!    their own events, so housekeep can redact as them where its bot
//!    has no power;
//! 2. **events**: the `!purge --all-rooms --user` selection (`--since`),
//!    redacted as `!purge` does;
//! 3. **media** (`--with-media quarantine`): what their events shared and,
//!    for a local user, everything they uploaded, quarantined after the
//!    events;
//! 4. **final sanction**: `--lock` or `--deactivate` last, because a locked
//!    or deactivated account's token can no longer redact. A suspension
//!    housekeep added only to stop a `--lock`ed account meanwhile is
//!    lifted once the lock holds (unlocking later must not leave a
//!    surprise suspension).
//!
//! A user of another server gets steps 2 and 3 (no sanction applies to
//! them here). The parts are one job rather than three linked ones: one
//! plan hash, one confirmation, one progress message, one cancel, and a
//! restart resumes at the part it was in.

mod args;
mod command;
mod kind;

pub use args::{CleanupArgs, EXAMPLES};
pub use kind::{CleanupKind, CleanupPlan};
