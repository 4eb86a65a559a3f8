//! The `sanction` job kind: one account, one sanction, one item keyed by
//! the account (two jobs never act on one account at once).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::args::SanctionArgs;
use super::target::Protected;
use super::{Sanction, Target};
use crate::homeserver::HsError;
use crate::jobs::{Batch, ItemCursor, Kind, Lane, PlanContext, Planned, RunContext, Services, Size, Tally, TypedJob};
use crate::notice::Notice;
use crate::store::{ItemResult, ItemState, JobState};

/// The stored plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionPlan {
    pub user_id: String,
    pub sanction: Sanction,
    pub reason: Option<String>,
    /// Asked for with `--force`: applied to a server admin or a moderator too.
    #[serde(default)]
    pub force: bool,
}

/// How the one item went, for the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionTally {
    pub state: Option<ItemState>,
    pub detail: String,
}

impl Tally for SanctionTally {
    fn add(&mut self, other: Self) {
        if other.state.is_some() {
            *self = other;
        }
    }
}

pub struct SanctionKind {
    pub protected: Protected,
}

/// The item key of an account: the same in every job that acts on it.
pub fn account_key(user_id: &str) -> String {
    format!("account:{user_id}")
}

#[async_trait]
impl Kind for SanctionKind {
    const NAME: &'static str = "sanction";
    const LANE: Lane = Lane::Moderation;
    type Args = SanctionArgs;
    type Plan = SanctionPlan;
    type Cursor = ItemCursor;
    type Tally = SanctionTally;

    async fn plan(&self, ctx: &mut PlanContext<'_>, args: &SanctionArgs) -> anyhow::Result<Planned<SanctionPlan>> {
        let services = ctx.services;
        let target = self.protected.look_up(services, &args.user).await?;
        let plan = SanctionPlan {
            user_id: args.user.to_string(),
            sanction: args.sanction,
            reason: args.flags.reason.clone(),
            force: args.force,
        };
        let (summary, acts) = describe(&target, args.sanction, args.force, &services.prefix);
        if acts {
            ctx.push_item(account_key(&plan.user_id), &plan.user_id).await?;
        }
        let admin = services.homeserver.is_server_admin(&services.bot_user_id).await?;
        let blocked = (!admin).then(|| "account sanctions need Synapse's admin API".to_owned());
        Ok(Planned { plan, summary, size: Size::default(), blocked, irreversible: args.sanction.irreversible() })
    }

    async fn run_batch(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>) -> anyhow::Result<Batch<Self>> {
        let mut batch = Batch::<Self>::new(job.cursor);
        let plan = &job.plan;
        for item in ctx.next_items::<String>(job.cursor.0, 1).await? {
            let (state, detail) =
                match self.protected.refused_now(ctx.services, plan.sanction, &item.item, plan.force).await? {
                    Some(refusal) => (ItemState::Failed, refusal),
                    None => apply(ctx.services, plan.sanction, &item.item).await?,
                };
            batch.tally = SanctionTally { state: Some(state), detail: detail.clone() };
            batch.cursor = ItemCursor(item.seq);
            let result = ItemResult { seq: item.seq, key: item.key, item: item.item.into(), state, detail };
            batch.item(ctx.job, result, &audit_action(job.plan.sanction));
        }
        batch.finished = true;
        Ok(batch)
    }

    async fn result(&self, ctx: &RunContext<'_>, job: &TypedJob<Self>, state: JobState) -> anyhow::Result<Notice> {
        let plan = &job.plan;
        let notice = Notice::new().title(&format!("Job {} (sanction) {}", job.record.id, state.as_str()));
        Ok(match job.tally.state {
            Some(ItemState::Failed) => {
                notice.line(&format!("{} could not be {}: {}", plan.user_id, plan.sanction.outcome(), job.tally.detail))
            }
            Some(_) => {
                let mut notice = notice.line(&format!("{}: {}.", plan.user_id, job.tally.detail));
                if let Some(inverse) = plan.sanction.inverse() {
                    let prefix = &ctx.services.prefix;
                    notice = notice.line(&format!("{prefix}{} {} undoes it.", inverse.command(), plan.user_id));
                }
                notice
            }
            None => notice.line(&format!("{} was not changed.", plan.user_id)),
        })
    }
}

/// The audit action of a sanction (`sanction.suspend`).
pub fn audit_action(sanction: Sanction) -> String {
    format!("sanction.{}", sanction.command())
}

/// The plan's text, and whether there is anything to do.
pub fn describe(target: &Target, sanction: Sanction, force: bool, prefix: &str) -> (Notice, bool) {
    let user = &target.user_id;
    let mut notice = Notice::new().line(&format!("Would make {user} {}: {}.", sanction.outcome(), sanction.effect()));
    notice = target.describe(notice);
    let protected = target.protected_as();
    if !protected.is_empty() && !sanction.lifts() && force {
        notice = notice.line(&format!(
            "--force: {user} is {}, and will be {} all the same.",
            protected.join(" and "),
            sanction.outcome()
        ));
    }
    if matches!(sanction, Sanction::Lock | Sanction::Deactivate { .. }) {
        notice = notice.line(&format!(
            "To remove what they sent as well, use {prefix}cleanup {user} --{} instead: once {} they cannot redact, so \
             housekeep cannot redact as them in rooms where its bot has no power.",
            sanction.command(),
            sanction.outcome()
        ));
    }
    let acts = match &target.status {
        None => {
            notice = notice.line(&format!("Synapse has no account {user}."));
            false
        }
        Some(status) if sanction.in_effect(status) => {
            notice = notice.line(&format!("{user} is {} already.", sanction.outcome()));
            false
        }
        Some(status) if status.deactivated && !matches!(sanction, Sanction::Deactivate { .. }) => {
            notice = notice.line(&format!("{user} is deactivated: no other sanction changes anything."));
            false
        }
        Some(_) => true,
    };
    (notice, acts)
}

/// Applies a sanction to one account, checking its state first: an account
/// in that state already (by anyone, or by this job before a restart) is
/// skipped. A refusal is the outcome; an outage is an error (retried).
pub async fn apply(services: &Services, sanction: Sanction, user_id: &str) -> anyhow::Result<(ItemState, String)> {
    let homeserver = &services.homeserver;
    let outcome = async {
        let Some(status) = homeserver.account_status(user_id).await? else {
            return Ok((ItemState::Failed, "Synapse has no such account".to_owned()));
        };
        if sanction.in_effect(&status) {
            return Ok((ItemState::Skipped, format!("{} already", sanction.outcome())));
        }
        sanction.apply(homeserver, user_id).await?;
        Ok::<_, HsError>((ItemState::Done, format!("now {}", sanction.outcome())))
    };
    match outcome.await {
        Ok(outcome) => Ok(outcome),
        Err(error) if error.is_retryable() => Err(error.into()),
        Err(error) => Ok((ItemState::Failed, format!("Synapse refused: {error}"))),
    }
}
