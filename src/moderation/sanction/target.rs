//! Who an account is, before a sanction touches it: a server admin, a
//! moderator, the bot itself, the rooms they administer. A sanction on any
//! of the first three is refused without `--force` (a typo must not lock a
//! moderator out, nor silence the bot), and the plan names all of it.

use futures::StreamExt;
use ruma::{OwnedRoomId, OwnedUserId, UserId};

use crate::homeserver::AccountStatus;
use crate::homeserver::power::{at_least, power_levels};
use crate::jobs::Services;
use crate::moderators::ModeratorRule;
use crate::notice::Notice;

/// Rooms of a target whose power levels are read for the plan: a spammer
/// is in a few; an account in thousands is named with the first ones.
const ROOMS_CHECKED: usize = 20;
/// The power level that makes someone a room's administrator.
const ROOM_ADMIN_LEVEL: i64 = 100;

/// What protects accounts from a sanction: who moderates (by the admin
/// room's rule), and which room that is.
#[derive(Clone, Debug)]
pub struct Protected {
    pub moderators: ModeratorRule,
    pub admin_room: OwnedRoomId,
}

/// A local account as a sanction's plan describes it.
#[derive(Debug, Clone)]
pub struct Target {
    pub user_id: OwnedUserId,
    /// A user of this homeserver.
    pub local: bool,
    /// `None`: Synapse has no such account (or the user is on another server).
    pub status: Option<AccountStatus>,
    pub is_bot: bool,
    pub is_moderator: bool,
    /// Rooms (of the first [`ROOMS_CHECKED`] they are in) where they have power level 100.
    pub administers: Vec<String>,
    /// Rooms they are joined to.
    pub joined_rooms: usize,
}

impl Protected {
    /// Reads who `user_id` is: their account, whether they moderate, and
    /// the rooms they administer.
    pub async fn look_up(&self, services: &Services, user_id: &UserId) -> anyhow::Result<Target> {
        let status = account(services, user_id).await?;
        let is_moderator = self.is_moderator(services, user_id).await.unwrap_or_else(|error| {
            // Not knowing is not a "no": the account is treated as a moderator.
            tracing::warn!(%user_id, error = format!("{error:#}"), "cannot tell whether the target moderates");
            true
        });
        let mut target = Target::new(services, user_id, status, is_moderator);
        if target.status.as_ref().is_some_and(|status| !status.deactivated) {
            (target.administers, target.joined_rooms) = administered_rooms(services, user_id).await?;
        }
        Ok(target)
    }

    /// Why `user_id` is protected now, if they are: asked again when a job
    /// runs, which may be long after its plan (someone made a moderator or
    /// a server admin meanwhile is not sanctioned on an old plan). Their
    /// rooms are not read; an unreadable admin room is an error.
    pub async fn protected_now(&self, services: &Services, user_id: &UserId) -> anyhow::Result<Vec<&'static str>> {
        let status = account(services, user_id).await?;
        let is_moderator = self.is_moderator(services, user_id).await?;
        Ok(Target::new(services, user_id, status, is_moderator).protected_as())
    }

    async fn is_moderator(&self, services: &Services, user_id: &UserId) -> anyhow::Result<bool> {
        self.moderators.check(user_id.as_str(), &services.homeserver, Some(&self.admin_room)).await
    }

    /// Why a sanction planned a while ago must not be applied now: the
    /// account became a moderator or a server admin since (and the plan
    /// had no `--force`).
    pub async fn refused_now(
        &self,
        services: &Services,
        sanction: super::Sanction,
        user_id: &str,
        force: bool,
    ) -> anyhow::Result<Option<String>> {
        if sanction.lifts() || force {
            return Ok(None);
        }
        let protected = self.protected_now(services, &UserId::parse(user_id)?).await?;
        Ok((!protected.is_empty()).then(|| {
            format!(
                "{user_id} is now {}, which the plan did not say: not {} (plan it again, with --force if you mean it)",
                protected.join(" and "),
                sanction.outcome()
            )
        }))
    }
}

/// Synapse's record of the account; `None` for a user of another server
/// (Synapse keeps accounts of its own users only) or one it does not have.
async fn account(services: &Services, user_id: &UserId) -> anyhow::Result<Option<AccountStatus>> {
    if user_id.server_name().as_str() != services.server_name() {
        return Ok(None);
    }
    Ok(services.homeserver.account_status(user_id.as_str()).await?)
}

/// The rooms (of the first few they are in) where `user_id` has power level 100.
async fn administered_rooms(services: &Services, user_id: &UserId) -> anyhow::Result<(Vec<String>, usize)> {
    let rooms = services.homeserver.joined_rooms_of(user_id.as_str()).await?;
    let checked: Vec<_> = futures::stream::iter(rooms.iter().take(ROOMS_CHECKED).cloned())
        .map(|room: String| async move {
            let state = services.homeserver.admin_room_state(&room).await;
            (room, state)
        })
        .buffered(services.homeserver_concurrency.max(1))
        .collect()
        .await;
    let mut administers = Vec::new();
    for (room, state) in checked {
        // A room that vanished meanwhile says nothing about them.
        let Ok(state) = state else { continue };
        if at_least(&power_levels(&state), user_id, ROOM_ADMIN_LEVEL) {
            administers.push(room);
        }
    }
    Ok((administers, rooms.len()))
}

impl Target {
    /// Who they are, before their rooms are read.
    fn new(services: &Services, user_id: &UserId, status: Option<AccountStatus>, is_moderator: bool) -> Self {
        Self {
            user_id: user_id.to_owned(),
            local: user_id.server_name().as_str() == services.server_name(),
            status,
            is_bot: user_id == services.bot_user_id,
            is_moderator,
            administers: Vec::new(),
            joined_rooms: 0,
        }
    }

    /// Why a sanction on them needs `--force`, if it does.
    pub fn protected_as(&self) -> Vec<&'static str> {
        let mut why = Vec::new();
        if self.is_bot {
            why.push("housekeep's own bot");
        }
        if self.status.as_ref().is_some_and(|s| s.admin) {
            why.push("a server admin");
        }
        if self.is_moderator {
            why.push("a moderator");
        }
        why
    }

    /// Who they are, as plan fields.
    pub fn describe(&self, notice: Notice) -> Notice {
        let Some(status) = &self.status else {
            let account = if self.local { "Synapse has no such account" } else { "a user of another server" };
            let moderator = if self.is_moderator { " (a moderator)" } else { "" };
            return notice.field("account", &format!("{account}{moderator}"));
        };
        let mut standing = Vec::new();
        for (flag, word) in [
            (Some(status.admin), "server admin"),
            (Some(status.deactivated), "deactivated"),
            (status.suspended, "suspended"),
            (status.locked, "locked"),
            (status.shadow_banned, "shadow-banned"),
        ] {
            if flag == Some(true) {
                standing.push(word);
            }
        }
        if status.appservice_id.is_some() {
            standing.push("registered by an appservice");
        }
        if self.is_moderator {
            standing.push("moderator");
        }
        if self.is_bot {
            standing.push("housekeep's bot");
        }
        let standing = if standing.is_empty() { "an ordinary account".to_owned() } else { standing.join(", ") };
        let mut notice = notice.field("account", &standing);
        if let Some(created) = status.creation_ts {
            notice = notice.field("created", &crate::clock::format_ms(created.saturating_mul(1000)));
        }
        let rooms = match (self.joined_rooms, self.administers.len()) {
            (0, _) => "in no rooms".to_owned(),
            (joined, 0) => format!("in {joined} rooms, administers none{}", checked_note(joined)),
            (joined, n) => {
                format!("in {joined} rooms, administers {n}: {}{}", self.administers.join(", "), checked_note(joined))
            }
        };
        notice.field("rooms", &rooms)
    }
}

fn checked_note(joined: usize) -> String {
    if joined > ROOMS_CHECKED { format!(" (of the first {ROOMS_CHECKED} checked)") } else { String::new() }
}

/// The refusal for a user of another server, naming what works for them.
pub fn refuse_remote(user_id: &UserId, server_name: &str, prefix: &str) -> Option<Notice> {
    (user_id.server_name().as_str() != server_name).then(|| {
        Notice::new()
            .line(&format!(
                "{user_id} is a user of {}, not of this homeserver ({server_name}): account sanctions act on \
                 this homeserver's accounts only.",
                user_id.server_name()
            ))
            .line("What works for a user of another server:")
            .list([
                format!(
                    "{prefix}purge --all-rooms --user {user_id} --with-media quarantine: removes what they sent here"
                ),
                format!("{prefix}quarantine user {user_id}: stops this server serving media they shared"),
                format!("{prefix}cleanup {user_id}: both in one plan"),
                "a ban on a policy list (m.policy.rule.user) for ban bots to enforce in your rooms".to_owned(),
            ])
    })
}
