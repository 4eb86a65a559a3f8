//! `!reports` (what users reported, open ones first) and `!report <id>`
//! (one report in full, or `dismiss` it).

use clap::{Args, Subcommand, value_parser};
use ruma::{OwnedRoomOrAliasId, OwnedUserId};

use super::notice::summary_line;
use crate::clock::{format_ms, now_ms};
use crate::command::{AdminCommand, Context, Executed, audit_for};
use crate::grammar::{parse_room, parse_user};
use crate::notice::Notice;
use crate::store::{KeptReport, ReportFilter};
use crate::text::{line, shown};

/// Shown at the end of `!help reports`.
pub const REPORTS_EXAMPLES: &str = "\
Examples:
  !reports
  !reports --all --user @spammer:example.org
  !reports --room #lobby:example.org --limit 50";

/// Shown at the end of `!help report`.
pub const REPORT_EXAMPLES: &str = "\
Examples:
  !report 12
  !report 12 dismiss --reason \"not spam, a joke between friends\"
  !report 12 dismiss --delete";

/// Default and largest `!reports --limit`.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 200;

/// List event reports users filed, newest first (open ones unless --all)
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(after_long_help = REPORTS_EXAMPLES)]
pub struct ReportsArgs {
    /// Also reports handled or dismissed
    #[arg(long)]
    pub all: bool,
    /// Only reports of events this user sent (a user ID or matrix.to link)
    #[arg(long, value_name = "USER", value_parser = parse_user)]
    pub user: Option<OwnedUserId>,
    /// Only reports in this room (an ID, an alias or a matrix.to link)
    #[arg(long, value_name = "ROOM", value_parser = parse_room)]
    pub room: Option<OwnedRoomOrAliasId>,
    /// How many to show (1-200)
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        default_value_t = DEFAULT_LIMIT,
        value_parser = value_parser!(u32).range(1..=i64::from(MAX_LIMIT)),
    )]
    pub limit: u32,
}

/// Show one event report with the sender's footprint, or dismiss it
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(after_long_help = REPORT_EXAMPLES)]
pub struct ReportArgs {
    /// The report's number (as `!reports` and the report's notice show it)
    #[arg(value_name = "ID", value_parser = value_parser!(i64).range(0..))]
    pub id: i64,
    #[command(subcommand)]
    pub action: Option<ReportAction>,
}

#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum ReportAction {
    /// Close the report without acting on it (housekeep's record; Synapse's stays unless --delete)
    Dismiss {
        /// Why, for the audit log and whoever reads the report later
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Also delete Synapse's copy of the report (housekeep's record and the audit log keep it)
        #[arg(long)]
        delete: bool,
    },
}

impl AdminCommand for ReportsArgs {
    const NAME: &'static str = "reports";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        let services = ctx.services();
        let room_id = match &self.room {
            Some(room) => Some(services.homeserver.resolve_room(room.as_str()).await?.to_string()),
            None => None,
        };
        let filter = ReportFilter { all: self.all, sender: self.user.as_ref().map(ToString::to_string), room_id };
        let reports = services.store.kept_reports(&filter, i64::from(self.limit)).await?;
        if reports.is_empty() {
            let which = if self.all { "reports" } else { "open reports" };
            return Ok(Executed::ok(Notice::new().line(&format!("No {which} match."))));
        }
        let which = if self.all { "Reports" } else { "Open reports" };
        let title = format!("{which}, newest first ({}):", reports.len());
        let lines = reports.iter().map(listed);
        Ok(Executed::ok(Notice::new().title(&title).list(lines).line(&format!(
            "{}report <id> shows one; {}report <id> dismiss closes it.",
            services.prefix, services.prefix
        ))))
    }
}

/// One report as a line of `!reports`.
fn listed(kept: &KeptReport) -> String {
    format!("{} [{}] {}", kept.report.report_id, kept.state, summary_line(&kept.report))
}

impl AdminCommand for ReportArgs {
    const NAME: &'static str = "report";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        let services = ctx.services();
        let Some(kept) = services.store.kept_report(self.id).await? else {
            let reply = Notice::new()
                .line(&format!("housekeep has no report {}. {}reports lists the open ones.", self.id, services.prefix));
            return Ok(Executed::with_outcome(reply, "no such report"));
        };
        match &self.action {
            None => {
                let notice = super::watch::full_notice(services, &kept.report).await?;
                Ok(Executed::ok(notice.field("State", &state(&kept))))
            }
            Some(ReportAction::Dismiss { reason, delete }) => {
                let sender = &ctx.item.sender;
                let dismissed = services.store.dismiss_report(self.id, sender, reason.as_deref(), now_ms()).await?;
                let (mut reply, mut outcome) = if dismissed {
                    (Notice::new().line(&format!("Report {} dismissed.", self.id)), "dismissed".to_owned())
                } else {
                    let reply = Notice::new().line(&format!("Report {} is not open: {}.", self.id, state(&kept)));
                    if !*delete {
                        return Ok(Executed::with_outcome(reply, format!("report {} not open", self.id)));
                    }
                    // Closed already, but Synapse's copy may still be there
                    // (a delete that failed before): that part is done now.
                    (reply, "not open".to_owned())
                };
                if *delete {
                    match services.homeserver.delete_event_report(self.id).await {
                        Ok(()) => {
                            reply =
                                reply.line("Synapse's copy is deleted; housekeep's record and the audit log keep it.");
                            outcome.push_str(", deleted from Synapse");
                        }
                        Err(error) => {
                            tracing::warn!(report = self.id, %error, "cannot delete an event report from Synapse");
                            reply =
                                reply.line(&format!("Synapse's copy could not be deleted ({error}); it stays there."));
                            outcome.push_str(", not deleted from Synapse");
                        }
                    }
                }
                let target = format!("report {}", self.id);
                let entry = crate::store::AuditEntry {
                    target: Some(target),
                    ..audit_for(ctx.item, "report.dismiss", None, &outcome)
                };
                Ok(Executed::with_outcome(reply, outcome).audited(entry))
            }
        }
    }
}

/// A report's state in words.
fn state(kept: &KeptReport) -> String {
    let by = kept.state_by.as_deref().map(|by| format!(" by {}", line(by))).unwrap_or_default();
    let at = kept.state_at.map(|at| format!(" at {}", format_ms(at))).unwrap_or_default();
    let why = kept.state_reason.as_deref().map(|why| format!(": {}", shown(why, 200))).unwrap_or_default();
    let job = kept.job_id.as_deref().map(|job| format!(" (job {job})")).unwrap_or_default();
    format!("{}{by}{at}{job}{why}", kept.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::test_support::{err, ok};

    /// The two commands, as the chat front-end would have them.
    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Report(ReportArgs),
        Reports(ReportsArgs),
    }

    #[test]
    fn report_takes_an_id_and_perhaps_a_dismissal() {
        let Tree::Report(args) = ok::<Tree>("!report 12 dismiss --reason \"a joke\" --delete") else { panic!() };
        assert_eq!(args.id, 12);
        assert_eq!(args.action, Some(ReportAction::Dismiss { reason: Some("a joke".into()), delete: true }));
        let Tree::Report(args) = ok::<Tree>("!report 7") else { panic!() };
        assert_eq!(args.action, None);
        for bad in ["!report", "!report twelve", "!report -3", "!report 1 forget"] {
            let error = err::<Tree>(bad);
            assert!(error.usage.as_deref().is_some_and(|u| u.contains("report")), "{bad}: {error}");
        }
    }

    #[test]
    fn reports_filters_and_a_bounded_limit() {
        let Tree::Reports(args) = ok::<Tree>("!reports --all --user @s:x.org --room !r:x.org --limit 50") else {
            panic!()
        };
        assert!(args.all && args.limit == 50);
        assert_eq!(args.user.unwrap().as_str(), "@s:x.org");
        let Tree::Reports(args) = ok::<Tree>("!reports") else { panic!() };
        assert_eq!((args.all, args.limit), (false, DEFAULT_LIMIT));
        err::<Tree>("!reports --limit 0");
        err::<Tree>("!reports --limit 201");
        err::<Tree>("!reports --user nobody");
    }
}
