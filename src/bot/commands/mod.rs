//! The admin room's command tree, and how each command is carried out.
//!
//! [`Command`] is a clap-derived enum; its variants' doc comments are the
//! help text, so `!help` cannot drift from the parser. Adding a command:
//! write its grammar (and, for one that acts, its job kind) in its own
//! folder, then add one variant here and one arm in [`execute`].
//!
//! Executors get a narrow context and return an [`Executed`]: the notice to
//! reply with and an outcome word for the audit log. Sending is the caller's.

mod audit;
mod dashboard;
mod help;
mod jobs;
mod plan;
mod status;

use clap::Subcommand;

pub use audit::{AuditArgs, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use dashboard::{DashboardAction, DashboardArgs};
pub use help::HelpArgs;
pub use jobs::{JobIdArg, MAX_JOB_ID_LEN, is_valid_job_id};

use super::Bot;
use crate::backfill::{BackfillArgs, BackfillKind, BackfillRequest};
use crate::clock::now_ms;
use crate::grammar::{ActionFlags, StatsArgs};
use crate::jobs::{ConfirmPolicy, PlanMode};
use crate::media::blocklist::BlocklistArgs;
use crate::moderation::purge::{PurgeArgs, PurgeKind};
use crate::moderation::quarantine::{QuarantineArgs, QuarantineKind, UnquarantineArgs, UnquarantineKind};
use crate::notice::{Image, Notice};
use crate::stats::summary::{Scope, Summary};
use crate::store::{AuditEntry, InboxItem};

/// One admin-room command, parsed. Variant doc comments are the one-line
/// descriptions `!help` lists (first line) and the intro of each command's
/// own help (the rest).
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// List the commands, or show the full help of one
    ///
    /// The same help comes with --help after any command.
    Help(HelpArgs),
    /// Show the health of the index, backfill, jobs and the homeserver
    ///
    /// Counts are the database's estimates (marked ≈), which take
    /// milliseconds at any size; --exact counts every row.
    Status(status::StatusArgs),
    /// Redact or delete events: in one room, or by sender/event across all rooms
    ///
    /// Selects events from the index by room, time, sender and event ID. Shows
    /// a plan first; nothing happens until !confirm <job> (or a ✅ reaction
    /// on the plan), unless --yes is given. A purge is local only: other
    /// servers in the room may still have the events (they receive
    /// redactions, but nothing makes them drop their copies).
    #[command(after_long_help = crate::moderation::purge::EXAMPLES)]
    Purge(PurgeArgs),
    /// Quarantine media: by mxc URI, or all media of a room, user, event or file hash
    ///
    /// Quarantined media is no longer served by this homeserver. Only media
    /// that was shared (an attachment, image, sticker or avatar) is selected;
    /// media merely mentioned (an mxc URI pasted into a text) is counted and
    /// left out unless --include-mentions is given. Shows a plan first;
    /// nothing happens until !confirm <job> (or a ✅ reaction on the plan),
    /// unless --yes is given.
    #[command(after_long_help = crate::moderation::quarantine::QUARANTINE_EXAMPLES)]
    Quarantine(QuarantineArgs),
    /// Lift a quarantine: by mxc URI, or all media of a room, user or file hash
    ///
    /// Shows a plan first; nothing happens until !confirm <job> (or a ✅
    /// reaction on the plan), unless --yes is given.
    #[command(after_long_help = crate::moderation::quarantine::UNQUARANTINE_EXAMPLES)]
    Unquarantine(UnquarantineArgs),
    /// Read room history into the index, or show/retry backfill progress
    ///
    /// Reads the history of one room, or of every room the homeserver knows
    /// (not only rooms the bot is in), newest first, and downloads and hashes
    /// every media it references. Read only: it starts at once, as a
    /// background job that moderation jobs never wait behind.
    #[command(after_long_help = crate::backfill::EXAMPLES)]
    Backfill(BackfillArgs),
    /// Block files by content hash: any download of one is quarantined at once
    #[command(after_long_help = crate::media::blocklist::EXAMPLES)]
    Blocklist(BlocklistArgs),
    /// Summarize activity (events, senders, media) with a chart
    #[command(after_long_help = crate::grammar::STATS_EXAMPLES)]
    Stats(StatsArgs),
    /// List recent and running jobs
    Jobs,
    /// Show one job: its plan, progress and result
    Job(JobIdArg),
    /// Run a planned job (same as a ✅ reaction on its plan)
    Confirm(JobIdArg),
    /// Cancel a planned or running job (a running one stops after its current batch)
    Cancel(JobIdArg),
    /// Show the audit log: who ran what, and how it went
    Audit(AuditArgs),
    /// Sign in to the web dashboard: the bot answers with a one-time link
    ///
    /// The link signs in the moderator who asked, once, within five
    /// minutes; opening it shows a button, so a link preview cannot use it
    /// up. `logout-all` ends every dashboard session and voids unused links.
    Dashboard(DashboardArgs),
    /// Run a synthetic job, to exercise the job framework (debug builds only)
    #[cfg(debug_assertions)]
    #[command(name = "testjob", hide = true)]
    TestJob(crate::jobs::testjob::TestJobArgs),
}

impl Command {
    /// The command's name as typed after the prefix (`"purge"`, `"testjob"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Help(_) => "help",
            Command::Status(_) => "status",
            Command::Purge(_) => "purge",
            Command::Quarantine(_) => "quarantine",
            Command::Unquarantine(_) => "unquarantine",
            Command::Backfill(_) => "backfill",
            Command::Blocklist(_) => "blocklist",
            Command::Stats(_) => "stats",
            Command::Jobs => "jobs",
            Command::Job(_) => "job",
            Command::Confirm(_) => "confirm",
            Command::Cancel(_) => "cancel",
            Command::Audit(_) => "audit",
            Command::Dashboard(_) => "dashboard",
            #[cfg(debug_assertions)]
            Command::TestJob(_) => "testjob",
        }
    }

    /// The `--reason/--dry-run/--yes` flags of a command that changes
    /// something on the homeserver: it goes through plan → confirm (unless
    /// `--yes`). `None` for every other command.
    pub fn action_flags(&self) -> Option<&ActionFlags> {
        match self {
            Command::Purge(args) => Some(&args.flags),
            Command::Quarantine(args) => Some(&args.flags),
            Command::Unquarantine(args) => Some(&args.flags),
            #[cfg(debug_assertions)]
            Command::TestJob(args) => Some(&args.flags),
            Command::Help(_)
            | Command::Status(_)
            | Command::Backfill(_)
            | Command::Blocklist(_)
            | Command::Stats(_)
            | Command::Jobs
            | Command::Job(_)
            | Command::Confirm(_)
            | Command::Cancel(_)
            | Command::Audit(_)
            | Command::Dashboard(_) => None,
        }
    }
}

/// What an executor produced.
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

    /// The command could not be carried out; nothing was changed.
    pub fn failed(command: &Command, error: &anyhow::Error) -> Self {
        let reply = Notice::new().line(&format!("Could not run {}: {error:#}. Nothing was changed.", command.name()));
        Self::with_outcome(reply, format!("error: {error:#}"))
    }
}

pub async fn execute(bot: &Bot, item: &InboxItem, command: &Command) -> anyhow::Result<Executed> {
    Ok(match command {
        Command::Help(args) => help::help(bot, args),
        Command::Status(args) => status::status(bot, args.exact).await?,
        Command::Jobs => jobs::jobs(bot).await?,
        Command::Job(arg) => jobs::job(bot, &arg.id).await?,
        Command::Confirm(arg) => confirm(bot, item, &arg.id).await?,
        Command::Cancel(arg) => jobs::cancel(bot, item, &arg.id).await?,
        Command::Audit(args) => audit::audit(bot, args).await?,
        Command::Dashboard(args) => dashboard::dashboard(bot, item, args).await?,
        Command::Purge(args) => plan::plan_action::<PurgeKind>(bot, item, command, args).await?,
        Command::Quarantine(args) => plan::plan_action::<QuarantineKind>(bot, item, command, args).await?,
        Command::Unquarantine(args) => plan::plan_action::<UnquarantineKind>(bot, item, command, args).await?,
        #[cfg(debug_assertions)]
        Command::TestJob(args) if args.background => {
            plan::plan_action::<crate::jobs::testjob::TestJob<true>>(bot, item, command, args).await?
        }
        #[cfg(debug_assertions)]
        Command::TestJob(args) => {
            plan::plan_action::<crate::jobs::testjob::TestJob<false>>(bot, item, command, args).await?
        }
        // Read only: starts at once, no confirmation.
        Command::Backfill(BackfillArgs::Start(start)) => {
            let text = item.event.pointer("/content/body").and_then(serde_json::Value::as_str).unwrap_or_default();
            let request = BackfillRequest::from_command(start, text);
            plan::plan::<BackfillKind>(bot, item, "backfill", &request, PlanMode::Yes, ConfirmPolicy::NONE).await?
        }
        Command::Backfill(BackfillArgs::Status) => Executed::ok(crate::backfill::status(bot.services()).await?),
        Command::Backfill(BackfillArgs::RetryFailed) => {
            Executed::ok(crate::backfill::retry_failed(bot.services()).await?)
        }
        Command::Blocklist(args) => {
            let (reply, outcome, audit) = crate::media::blocklist::execute(bot.services(), &item.sender, args).await?;
            let mut executed = Executed::with_outcome(reply, outcome);
            executed.audit.extend(audit.map(|entry| AuditEntry {
                event_id: Some(item.event_id.clone()),
                room_id: Some(item.room_id.clone()),
                ..entry
            }));
            executed
        }
        Command::Stats(args) => {
            let scope = match &args.room {
                None => Scope::Server,
                Some(room) => Scope::Room {
                    room_id: bot.services().homeserver.resolve_room(room.as_str()).await?.to_string(),
                    named: room.to_string(),
                },
            };
            let summary = Summary::load(&bot.services().store, scope, args.days, now_ms()).await?;
            let (reply, image) = crate::stats::post::render(&summary, &bot.prefix).await;
            Executed { image, ..Executed::ok(reply) }
        }
    })
}

pub use jobs::confirm;

#[cfg(test)]
mod tests;
