//! From a rule's targets to jobs, and the one notice that shows them.
//!
//! - user rule: `!cleanup` of each matching user (a local one also gets
//!   `policy.sanction`), up to [`MAX_CLEANUPS`]; past that, and for a
//!   server rule, a purge of what the users sent with their media
//!   quarantined, [`USERS_PER_PURGE`] users a job;
//! - room rule: the room takedown (blocked, purged, its media quarantined
//!   first);
//! - media rule: the quarantine of the media.
//!
//! Each job is keyed by the rule (list, slot, content hash) and its
//! number, so a rule handled again after a crash finds its jobs instead of
//! making new ones. A job's plan waits for ✅ (one ✅ on the notice
//! confirms every job in it) unless the list is `action: auto`, where
//! the runner's `--yes` rules apply: within `admin.confirm_threshold` and
//! undoable, it runs at once.

use ruma::{OwnedMxcUri, OwnedRoomId, OwnedRoomOrAliasId, OwnedUserId, UserId};

use super::targets::Matched;
use crate::command::Context;
use crate::config::{ListAction, PolicySanction};
use crate::grammar::{ActionFlags, RoomSelector, TimeSpec};
use crate::jobs::{Kind, PlanMode, PlanOutcome, PlanRequest};
use crate::moderation::cleanup::{CleanupArgs, CleanupKind};
use crate::moderation::purge::{PurgeArgs, PurgeKind, PurgeMediaAction, PurgeMethod};
use crate::moderation::quarantine::{QuarantineArgs, QuarantineKind, QuarantineTarget};
use crate::moderation::room::{RoomMediaAction, RoomTakedownKind, Takedown, TakedownArgs};
use crate::moderation::sanction::{Sanction, SanctionKind};
use crate::notice::Notice;
use crate::policy::{PolicyRule, RuleKind};
use crate::store::{Job, JobState, PolicyList, StoredRule};

/// Users one rule cleans up one by one (each a `!cleanup` job, with its
/// sanction); the rest are purged together.
pub(super) const MAX_CLEANUPS: usize = 10;
/// Users in one purge job.
pub(super) const USERS_PER_PURGE: usize = 500;
/// Media in one quarantine job.
const MEDIA_PER_QUARANTINE: usize = 1_000;
/// Rooms one room rule takes down; a rule matching more is refused (a
/// takedown cannot be undone, and one ✅ confirms every job of a notice).
pub(super) const MAX_TAKEDOWNS: usize = 5;
/// Local accounts one user rule may reach; a rule matching more is
/// refused (a glob over this server's users is a list's mistake or an attack).
pub(super) const MAX_LOCAL_USERS: usize = 50;

/// A planned job and what it is for.
pub(super) struct PlannedJob {
    pub job: Job,
    /// What it acts on, in a few words (`cleanup of @spam:example.org`).
    pub label: String,
    pub summary: Notice,
    /// The list is `auto` but this one waits: above the threshold, or it
    /// cannot be undone.
    pub waits_despite_auto: bool,
}

/// What planning a rule made.
#[derive(Default)]
pub(super) struct RulePlans {
    pub jobs: Vec<PlannedJob>,
    /// Targets left out, and why (protected accounts, nothing to do).
    pub notes: Vec<String>,
    /// The rule reaches too much to be planned at all (the first note says why).
    pub refused: bool,
}

/// Who and what no rule may touch, read once per rule (the admin room's
/// state, the watched lists): for its refusal and again for its plans.
pub(super) struct Guarded {
    /// The config's moderators and those with the power level in the admin room.
    pub moderators: Vec<OwnedUserId>,
    /// The admin room and every watched list, by ID and by the name it was watched as.
    pub rooms: Vec<OwnedRoomOrAliasId>,
}

/// Who and what a rule's jobs come from.
pub(super) struct Origin<'a> {
    pub ctx: &'a Context<'a>,
    pub list: &'a PolicyList,
    pub slot: &'a StoredRule,
    pub rule: &'a PolicyRule,
    /// Who and what no rule may touch, as the rule's refusal read it.
    pub guarded: &'a Guarded,
}

impl Origin<'_> {
    /// The key of the rule's `n`th job. It starts with `$` as a command's
    /// event ID does: the runner then waits for its plan to be posted
    /// before it runs it, so its progress comes after the plan.
    fn job_key(&self, n: usize) -> String {
        format!("{}policy-{}-{n}", crate::jobs::PLANNED_KEY_PREFIX, super::rule_key(self.slot))
    }

    fn auto(&self) -> bool {
        ListAction::parse(&self.list.action) == Some(ListAction::Auto)
    }

    fn flags(&self) -> ActionFlags {
        let reason = format!(
            "policy list {}: {}",
            crate::text::line(&self.list.name),
            self.rule.reason.as_deref().map_or("no reason given".to_owned(), crate::text::line)
        );
        ActionFlags { reason: Some(reason.chars().take(500).collect()), dry_run: false, yes: self.auto() }
    }

    fn since(&self) -> Option<TimeSpec> {
        self.ctx.rules.policy_config.lookback.map(TimeSpec::Ago)
    }

    async fn plan<K: Kind>(
        &self,
        n: usize,
        label: String,
        args: &K::Args,
        plans: &mut RulePlans,
    ) -> anyhow::Result<()> {
        let services = self.ctx.services();
        let Some((_, admin_room)) = &services.operators else { anyhow::bail!("no admin room to post plans in") };
        let request = PlanRequest {
            command_event_id: self.job_key(n),
            room_id: admin_room.room_id.clone(),
            requested_by: services.bot_user_id.to_string(),
            command_text: format!(
                "policy list {}: {} rule {} ({})",
                crate::text::line(&self.list.name),
                self.rule.kind(),
                crate::text::line(&self.rule.entity.to_string()),
                crate::text::line(self.rule.recommendation.as_str()),
            ),
            mode: if self.auto() { PlanMode::Yes } else { PlanMode::Confirm },
            expiry: self.ctx.rules.confirm_expiry,
            policy: self.ctx.rules.policy,
        };
        match self.ctx.jobs.plan::<K>(request, args).await? {
            PlanOutcome::Job { job, summary, yes_refused, .. } => {
                let waits_despite_auto = self.auto() && (yes_refused || job.state == JobState::Planned);
                plans.jobs.push(PlannedJob { job: *job, label, summary, waits_despite_auto });
            }
            PlanOutcome::Nothing { .. } => plans.notes.push(format!("{label}: nothing to do")),
            PlanOutcome::Blocked { why, .. } => plans.notes.push(format!("{label}: cannot run ({why})")),
        }
        Ok(())
    }
}

/// Plans the jobs for what `origin`'s rule matched.
pub(super) async fn plan(origin: &Origin<'_>, matched: &[Matched]) -> anyhow::Result<RulePlans> {
    let mut plans = RulePlans::default();
    match origin.rule.kind() {
        RuleKind::User => plan_users(origin, matched, &mut plans).await?,
        RuleKind::Server => {
            let users: Vec<OwnedUserId> = matched.iter().filter_map(|m| UserId::parse(m.id.as_str()).ok()).collect();
            plan_purges(origin, &users, 0, &mut plans).await?;
        }
        RuleKind::Room if matched.len() > MAX_TAKEDOWNS => {
            plans.notes.push(format!(
                "Refused: it matches {} rooms here (more than {MAX_TAKEDOWNS}); a takedown cannot be undone, \
                 so nothing was planned. {}room takedown each room a moderator means.",
                matched.len(),
                origin.ctx.prefix()
            ));
            plans.refused = true;
        }
        RuleKind::Room => {
            for (n, room) in matched.iter().enumerate() {
                let Ok(room_id) = OwnedRoomId::try_from(room.id.as_str()) else { continue };
                // A rule may name the admin room or a list by an alias the
                // rule's refusal could not know: checked again once resolved.
                if origin.guarded.rooms.iter().any(|p| p.as_str() == room_id.as_str()) {
                    plans.notes.push(format!("{room_id} left alone: housekeep works from it"));
                    continue;
                }
                let args = Takedown {
                    room_id: room_id.clone(),
                    args: TakedownArgs {
                        room: OwnedRoomOrAliasId::from(room_id.clone()),
                        block: true,
                        purge: true,
                        message: None,
                        with_media: Some(RoomMediaAction::Quarantine),
                    },
                    reason: origin.flags().reason,
                };
                origin.plan::<RoomTakedownKind>(n, format!("takedown of {room_id}"), &args, &mut plans).await?;
            }
        }
        RuleKind::Media => {
            let media = not_copied(origin, matched, &mut plans).await?;
            for (n, chunk) in media.chunks(MEDIA_PER_QUARANTINE).enumerate() {
                let args = QuarantineArgs {
                    target: QuarantineTarget::Media(chunk.to_vec()),
                    include_mentions: true,
                    include_others_uploads: true,
                    flags: origin.flags(),
                };
                let label = match chunk {
                    [one] => format!("quarantine of {one}"),
                    many => format!("quarantine of {} media", many.len()),
                };
                origin.plan::<QuarantineKind>(n, label, &args, &mut plans).await?;
            }
        }
    }
    Ok(plans)
}

/// The media a rule named whose file is not also another media: Synapse
/// quarantines every copy of a file by its content hash, and a spammer's
/// copy of a moderator's avatar, listed, must not take the original down.
/// Those are left out and named (`!quarantine media` takes them anyway).
async fn not_copied(
    origin: &Origin<'_>,
    matched: &[Matched],
    plans: &mut RulePlans,
) -> anyhow::Result<Vec<OwnedMxcUri>> {
    let store = &origin.ctx.services().store;
    let mut media = Vec::new();
    for found in matched {
        let mxc = OwnedMxcUri::from(found.id.as_str());
        let (Ok(server), Ok(id)) = (mxc.server_name(), mxc.media_id()) else { continue };
        let copies = store.copies_of(server.as_str(), id).await?;
        if copies > 0 {
            plans.notes.push(format!(
                "{mxc} left alone: the same file is {copies} other media here (a quarantine takes every copy); \
                 {}quarantine media {mxc} takes them all",
                origin.ctx.prefix()
            ));
            continue;
        }
        media.push(mxc);
    }
    Ok(media)
}

/// A user rule: `!cleanup` for each of the first [`MAX_CLEANUPS`] users,
/// a purge for the rest. Every matched user is checked first: a server
/// admin, a moderator, an appservice's user or the bot is never planned
/// for by a list (`!cleanup --force` is a moderator's call), and a rule
/// reaching more than [`MAX_LOCAL_USERS`] local accounts is refused whole.
async fn plan_users(origin: &Origin<'_>, matched: &[Matched], plans: &mut RulePlans) -> anyhow::Result<()> {
    let services = origin.ctx.services();
    let sanctions = origin.ctx.jobs.kind::<SanctionKind>()?;
    let users: Vec<OwnedUserId> = matched.iter().filter_map(|m| UserId::parse(m.id.as_str()).ok()).collect();
    let local = |user: &UserId| user.server_name().as_str() == services.server_name();
    let locals = users.iter().filter(|user| local(user)).count();
    if locals > MAX_LOCAL_USERS {
        plans.notes.push(format!(
            "Refused: it matches {locals} accounts of this homeserver (more than {MAX_LOCAL_USERS}); \
             nothing was planned. {}cleanup each account a moderator means.",
            services.prefix
        ));
        plans.refused = true;
        return Ok(());
    }
    // Remote users can be moderators only where the config allows them;
    // the admin room's state said who, when the rule was checked.
    let moderators = &origin.guarded.moderators;
    let mut kept = Vec::new();
    for user in users {
        let why = if *user == services.bot_user_id {
            Ok(vec!["housekeep's bot"])
        } else if local(&user) {
            sanctions.protected.protected_now(services, &user).await
        } else {
            Ok(if moderators.contains(&user) { vec!["a moderator"] } else { Vec::new() })
        };
        match why {
            Ok(why) if why.is_empty() => kept.push(user),
            Ok(why) => plans.notes.push(format!("{user} left alone: {}", why.join(" and "))),
            Err(error) => {
                plans.notes.push(format!("{user} left alone: cannot tell whether they are protected ({error:#})"))
            }
        }
    }
    let split = kept.len().min(MAX_CLEANUPS);
    let (each, rest) = kept.split_at(split);
    for (n, user) in each.iter().enumerate() {
        let sanction = match origin.ctx.rules.policy_config.sanction {
            _ if !local(user) => None,
            PolicySanction::None => None,
            PolicySanction::Suspend => Some(Sanction::Suspend),
            PolicySanction::Lock => Some(Sanction::Lock),
            PolicySanction::Deactivate => Some(Sanction::Deactivate { erase: false }),
        };
        let args = CleanupArgs {
            user: user.clone(),
            since: origin.since(),
            sanction,
            with_media: true,
            force: false,
            flags: origin.flags(),
        };
        origin.plan::<CleanupKind>(n, format!("cleanup of {user}"), &args, plans).await?;
    }
    if !rest.is_empty() {
        plans.notes.push(format!(
            "{} more users matched: purged together (their events redacted, their media quarantined), without sanctions",
            rest.len()
        ));
        plan_purges(origin, rest, MAX_CLEANUPS, plans).await?;
    }
    Ok(())
}

/// Purges of what `users` sent, with their media quarantined, in jobs of
/// [`USERS_PER_PURGE`] users; job numbers from `first`.
async fn plan_purges(
    origin: &Origin<'_>,
    users: &[OwnedUserId],
    first: usize,
    plans: &mut RulePlans,
) -> anyhow::Result<()> {
    for (n, chunk) in users.chunks(USERS_PER_PURGE).enumerate() {
        let args = PurgeArgs {
            rooms: RoomSelector::AllRooms,
            before: None,
            after: origin.since(),
            users: chunk.to_vec(),
            events: Vec::new(),
            method: PurgeMethod::default(),
            with_media: Some(PurgeMediaAction::Quarantine),
            include_others_uploads: false,
            everything: false,
            flags: origin.flags(),
        };
        let label = match chunk {
            [one] => format!("purge of {one}"),
            many => format!("purge of {} users", many.len()),
        };
        origin.plan::<PurgeKind>(first + n, label, &args, plans).await?;
    }
    Ok(())
}
