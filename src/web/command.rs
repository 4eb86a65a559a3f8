//! `!dashboard`: a one-time sign-in link to the web dashboard, or
//! `!dashboard logout-all` to end every session.

use clap::Subcommand;

use crate::command::{AdminCommand, Context, Executed};
use crate::notice::Notice;

/// Sign in to the web dashboard: the bot answers with a one-time link
///
/// The link signs in the moderator who asked, once, within five
/// minutes; opening it shows a button, so a link preview cannot use it
/// up. `logout-all` ends every dashboard session and voids unused links.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct DashboardArgs {
    #[command(subcommand)]
    pub action: Option<DashboardAction>,
}

#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum DashboardAction {
    /// End every dashboard session (all moderators') and void unused links
    LogoutAll,
}

impl AdminCommand for DashboardArgs {
    const NAME: &'static str = "dashboard";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        dashboard(ctx, self).await
    }
}

async fn dashboard(ctx: &Context<'_>, args: &DashboardArgs) -> anyhow::Result<Executed> {
    let store = &ctx.services().store;
    let item = ctx.item;
    let Some(public_url) = &ctx.rules.dashboard_url else {
        let reply = Notice::new()
            .line("The dashboard is off: set web.hostname and web.port in housekeep's config (and web.public_url behind a proxy), then restart.");
        return Ok(Executed::with_outcome(reply, "dashboard off"));
    };
    match args.action {
        Some(DashboardAction::LogoutAll) => {
            let ended = store.end_all_sessions().await?;
            let sessions = if ended == 1 { "session" } else { "sessions" };
            let reply = Notice::new()
                .line(&format!("Ended {ended} dashboard {sessions}; unused sign-in links no longer work."));
            Ok(Executed::with_outcome(reply, format!("ended {ended} sessions")))
        }
        None => {
            let link = super::issue_link(store, public_url, &item.sender).await?;
            let minutes = super::minutes(super::LINK_LIFETIME);
            let reply = Notice::new()
                .line(&format!("Sign-in link for {} (works once, for {minutes}):", item.sender))
                .line(link.as_str());
            // The outcome is audited; the link is not.
            Ok(Executed::with_outcome(reply, "sign-in link given"))
        }
    }
}
