//! `!dashboard <code>`: signs in the browser showing that code at the
//! dashboard's `/sign-in` as the moderator who sent it; `!dashboard` alone
//! says where to get a code; `!dashboard logout-all` ends every session.
//! No secret is ever posted in the room: a code only names a waiting
//! browser, and signs in nothing but that browser (`crate::sign_ins`).

use clap::Subcommand;

use crate::clock::now_ms;
use crate::command::{AdminCommand, Context, Executed};
use crate::metrics::{Metrics, SessionEndLabel};
use crate::notice::Notice;
use crate::sign_ins::{Browser, CODE_LIFETIME, DeviceCode, SignIns, new_token, token_hash};
use crate::store::Store;

/// Sign in to the web dashboard: open its /sign-in page, then send the code it shows
///
/// `!dashboard` alone says where the dashboard is. `!dashboard WDJB-MJHT`
/// signs in the browser that shows the code WDJB-MJHT as you: once, within
/// five minutes of the page showing it. Send only a code your own browser
/// shows: whoever shows it is signed in as you. `logout-all` ends every
/// dashboard session and turns away browsers waiting with a code.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DashboardArgs {
    #[command(subcommand)]
    pub action: Option<DashboardAction>,
    /// The code the sign-in page shows (any case; the dash, or a space, may be left out)
    #[arg(value_name = "CODE", num_args = 0..=2)]
    pub code: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum DashboardAction {
    /// End every dashboard session (all moderators') and turn away waiting browsers
    LogoutAll,
}

impl AdminCommand for DashboardArgs {
    const NAME: &'static str = "dashboard";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        let Some(sign_ins) = &ctx.rules.dashboard else {
            let reply = Notice::new()
                .line("The dashboard is off: set web.hostname and web.port in housekeep's config (and web.public_url behind a proxy), then restart.");
            return Ok(Executed::with_outcome(reply, "dashboard off"));
        };
        match (&self.action, self.code.as_slice()) {
            (Some(DashboardAction::LogoutAll), _) => logout_all(ctx, sign_ins).await,
            (None, []) => Ok(Executed::with_outcome(how_to_sign_in(ctx, sign_ins), "told how to sign in")),
            (None, typed) => sign_in(ctx, sign_ins, &typed.join("")).await,
        }
    }
}

fn how_to_sign_in(ctx: &Context<'_>, sign_ins: &SignIns) -> Notice {
    let minutes = super::minutes(CODE_LIFETIME);
    Notice::new()
        .line(&format!(
            "To sign in to the dashboard, open {} in your browser: it shows a code.",
            sign_ins.sign_in_url()
        ))
        .line(&format!("Then send {}dashboard CODE here with that code, within {minutes}.", ctx.prefix()))
        .line("Send only a code your own browser shows: whoever shows it is signed in as you.")
}

async fn sign_in(ctx: &Context<'_>, sign_ins: &SignIns, typed: &str) -> anyhow::Result<Executed> {
    let Ok(code) = typed.parse::<DeviceCode>() else {
        let mut reply = Notice::new().line(&format!(
            "“{}” is not a sign-in code: codes are 8 letters like WDJB-MJHT.",
            crate::text::shown(typed, 40)
        ));
        if strsim::jaro_winkler(&typed.to_ascii_lowercase(), "logout-all") > 0.8 {
            reply = reply.line(&format!("To end every session: {}dashboard logout-all", ctx.prefix()));
        }
        return Ok(Executed::with_outcome(reply.append(how_to_sign_in(ctx, sign_ins)), "not a code"));
    };
    let user_id = ctx.item.sender.as_str();
    let browser = match approve(&ctx.services().store, sign_ins, code, user_id).await? {
        Approval::SignedIn(browser) => browser,
        Approval::NotWaiting => {
            let reply = Notice::new()
                .line(&format!(
                    "No browser is waiting with code {code}: a code works once, for {}.",
                    super::minutes(CODE_LIFETIME)
                ))
                .line(&format!(
                    "Open {} and send the code it shows: {}dashboard CODE",
                    sign_ins.sign_in_url(),
                    ctx.prefix()
                ));
            return Ok(Executed::with_outcome(reply, "no browser waits with that code"));
        }
        Approval::WentMeanwhile => {
            let reply = Notice::new().line(&format!(
                "Code {code} stopped working while its session was written (expired, or logout-all): nobody was signed in."
            ));
            return Ok(Executed::with_outcome(reply, "the code went meanwhile"));
        }
    };
    tracing::info!(user_id, address = %browser.address, "approved a dashboard sign-in");
    let lifetime = humantime::format_duration(sign_ins.session_lifetime);
    let reply = Notice::new()
        .line(&format!("Signed in {user_id} on the browser that showed {code}:"))
        .line(&where_from(&browser))
        .line(&format!(
            "Its page opens the dashboard in a moment; the session lasts {lifetime}. \
             Not your browser? Send {}dashboard logout-all.",
            ctx.prefix()
        ));
    let audit = crate::store::AuditEntry {
        target: Some(format!("browser at {}", browser.address)),
        ..ctx.audit("dashboard.sign_in", "signed in")
    };
    Ok(Executed::with_outcome(reply, "signed in a browser").audited(audit))
}

/// What came of a moderator's code.
pub(super) enum Approval {
    /// The browser waiting with it may pick up its session now.
    SignedIn(Browser),
    /// No browser waits with the code.
    NotWaiting,
    /// The code expired, or was voided, while the session was written.
    WentMeanwhile,
}

/// Starts a session for `user_id` (a moderator: the bot checked) and hands
/// it to the browser waiting with `code`. An error leaves the browser
/// waiting (the inbox retries the command).
pub(super) async fn approve(
    store: &Store,
    sign_ins: &SignIns,
    code: DeviceCode,
    user_id: &str,
) -> anyhow::Result<Approval> {
    let Ok(browser) = sign_ins.reserve(code) else { return Ok(Approval::NotWaiting) };
    let token = new_token();
    let now = now_ms();
    let expires_at = now.saturating_add(sign_ins.session_lifetime.as_millis() as i64);
    if let Err(error) = store.start_session(&token_hash(&token), user_id, now, expires_at).await {
        sign_ins.cancel(code);
        return Err(error);
    }
    if !sign_ins.complete(code, user_id, token.clone()) {
        store.end_session(&token_hash(&token)).await?;
        return Ok(Approval::WentMeanwhile);
    }
    Ok(Approval::SignedIn(browser))
}

/// Ends every session and turns away every waiting browser; how many of each.
pub(super) async fn end_everything(
    store: &Store,
    sign_ins: &SignIns,
    metrics: &Metrics,
) -> anyhow::Result<(u64, usize)> {
    // Waiting browsers first: an approval racing this command then either
    // fails to complete (and ends the session it wrote) or wrote its
    // session before the DELETE below, which ends it.
    let voided = sign_ins.void_all();
    let ended = store.end_all_sessions().await?;
    // Open pages of those sessions stop updating now, not at their next load.
    sign_ins.sessions_ended();
    metrics.dashboard_sessions_ended.get_or_create(&SessionEndLabel { reason: "logout_all" }).inc_by(ended);
    Ok((ended, voided))
}

/// The browser as the moderator can recognise it (or not: then it is not theirs).
fn where_from(browser: &Browser) -> String {
    let agent = if browser.user_agent.is_empty() { "no User-Agent" } else { browser.user_agent.as_str() };
    format!("{} ({agent})", browser.address)
}

async fn logout_all(ctx: &Context<'_>, sign_ins: &SignIns) -> anyhow::Result<Executed> {
    let services = ctx.services();
    let (ended, voided) = end_everything(&services.store, sign_ins, &services.metrics).await?;
    let sessions = if ended == 1 { "session" } else { "sessions" };
    let browsers = if voided == 1 { "browser" } else { "browsers" };
    let reply = Notice::new().line(&format!(
        "Ended {ended} dashboard {sessions}; {voided} {browsers} waiting with a sign-in code turned away."
    ));
    Ok(Executed::with_outcome(reply, format!("ended {ended} sessions")))
}
