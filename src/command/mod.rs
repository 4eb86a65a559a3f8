//! What one admin-room command is, whatever front-end parses it.
//!
//! Each command's args type (the clap grammar, in the command's own folder)
//! implements [`AdminCommand`]: its name, whether it acts, and how it runs.
//! Its help is the args type's doc comment and `#[command(...)]` attributes,
//! beside the grammar. The chat front-end's registry
//! (`bot::commands`) lists the types, one line each, and does the rest:
//! parsing, authorizing, staleness, replying, auditing.
//!
//! A command that changes something on the homeserver goes through a job
//! kind: its `run` is one call to [`Context::plan_action`], which plans, stores
//! the plan and answers with what happens next (`plan.rs`).
//!
//! This folder also holds the runner's own commands, which every deployment
//! has whatever else it runs: `!status`, `!jobs`/`!job`/`!confirm`/`!cancel`
//! and `!audit` (and the debug-only `!testjob`).

mod audit;
mod jobs;
mod plan;
mod status;
#[cfg(debug_assertions)]
pub mod testjob;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::grammar::ActionFlags;
use crate::jobs::{ConfirmPolicy, Jobs, Services};
use crate::notice::{Image, Notice};
use crate::store::{AuditEntry, InboxItem};

pub use audit::{AuditArgs, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use jobs::{CancelArgs, ConfirmArgs, JobArgs, JobIdArg, JobsArgs, MAX_JOB_ID_LEN, confirm, is_valid_job_id};
pub use status::{StatusArgs, age};

/// One admin-room command: implemented by its parsed args.
pub trait AdminCommand {
    /// The name typed after the prefix (`"purge"`); also its name in `!help`
    /// and in the audit log.
    const NAME: &'static str;

    /// The `--reason/--dry-run/--yes` flags of a command that changes
    /// something on the homeserver: it goes through plan → confirm (unless
    /// `--yes`), and is not run when it reaches housekeep long after it was
    /// sent. `None` (the default) for every other command.
    fn action_flags(&self) -> Option<&ActionFlags> {
        None
    }

    /// Carries the command out. Sending the reply is the caller's; an error
    /// the homeserver will repeat (a 4xx) is shown to the moderator, any
    /// other is retried with the inbox item.
    fn run(&self, ctx: &Context<'_>) -> impl Future<Output = anyhow::Result<Executed>> + Send;
}

/// What a command runs with: the runner (and through it the store and the
/// homeserver), the message that carried it, and the admin room's rules.
pub struct Context<'a> {
    pub jobs: &'a Arc<Jobs>,
    /// The command message, as the inbox holds it.
    pub item: &'a InboxItem,
    pub rules: &'a Rules,
}

/// The admin room's rules for commands that act, and where the dashboard is.
#[derive(Clone, Debug)]
pub struct Rules {
    /// How long a plan waits for its confirmation.
    pub confirm_expiry: Duration,
    /// Which selections `--yes` may run, and which need a second moderator.
    pub policy: ConfirmPolicy,
    /// The dashboard's sign-ins, when it is on: `!dashboard <code>`
    /// approves a browser waiting there.
    pub dashboard: Option<Arc<crate::sign_ins::SignIns>>,
    /// What a policy list's rules turn into (`policy.*`).
    pub policy_config: Arc<crate::config::PolicyConfig>,
}

impl Context<'_> {
    pub fn services(&self) -> &Services {
        self.jobs.services()
    }

    /// The chat command prefix, for hints in replies.
    pub fn prefix(&self) -> &str {
        &self.services().prefix
    }

    /// The text of the command message.
    pub fn text(&self) -> &str {
        self.item.event.pointer("/content/body").and_then(Value::as_str).unwrap_or_default()
    }

    /// An audit entry about the command message.
    pub fn audit(&self, action: &str, outcome: &str) -> AuditEntry {
        audit_for(self.item, action, None, outcome)
    }
}

/// An audit entry about an inbox item (a command, a ✅, an invite).
pub fn audit_for(item: &InboxItem, action: &str, command: Option<&str>, outcome: &str) -> AuditEntry {
    AuditEntry {
        actor: item.sender.clone(),
        room_id: Some(item.room_id.clone()),
        event_id: Some(item.event_id.clone()),
        action: action.to_owned(),
        command: command.map(str::to_owned),
        outcome: outcome.to_owned(),
        ..AuditEntry::default()
    }
}

/// What a command produced.
pub struct Executed {
    pub reply: Notice,
    /// One word or phrase for the audit log and the inbox row.
    pub outcome: String,
    /// A job whose plan this reply shows (its event ID is recorded for ✅).
    pub plan_job: Option<String>,
    /// What the command changed, audited with the command itself (once, even
    /// if it is handled again after a crash).
    pub audit: Vec<AuditEntry>,
    /// A picture posted after the reply (`!stats`' chart).
    pub image: Option<Image>,
}

impl Executed {
    pub fn ok(reply: Notice) -> Self {
        Self::with_outcome(reply, "ok")
    }

    pub fn with_outcome(reply: Notice, outcome: impl Into<String>) -> Self {
        Self { reply, outcome: outcome.into(), plan_job: None, audit: Vec::new(), image: None }
    }

    /// The command `name` could not be carried out; nothing was changed.
    pub fn failed(name: &str, error: &anyhow::Error) -> Self {
        let reply = Notice::new().line(&format!("Could not run {name}: {error:#}. Nothing was changed."));
        Self::with_outcome(reply, format!("error: {error:#}"))
    }

    /// Adds an entry to audit with the command.
    pub fn audited(mut self, entry: AuditEntry) -> Self {
        self.audit.push(entry);
        self
    }
}
