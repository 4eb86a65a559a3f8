//! Account sanctions: `!suspend`/`!unsuspend`, `!lock`/`!unlock`,
//! `!shadowban`/`!unshadowban` and `!deactivate`, on this homeserver's
//! accounts only, as one job kind with a plan, a confirmation and an audit
//! like every command that acts.
//!
//! - `args.rs`: the seven commands' grammar.
//! - `target.rs`: who the account is (server admin, moderator, the bot,
//!   rooms they administer): a sanction on any of them is refused without
//!   `--force`, and the plan says who they are.
//! - `kind.rs`: the job kind.
//! - `command.rs`: how the seven commands run (`impl AdminCommand`): the
//!   refusals (a remote account, the bot, a protected account without
//!   `--force`; `!cleanup` uses them too), then a plan of the job kind.
//!
//! Which sanction does what (Synapse 1.163):
//! - **suspend**: the user can still log in, read, and redact their own
//!   events, but not send, join, invite or change their profile. The
//!   lightest stop, and the one `!cleanup` applies first: a suspended
//!   spammer stops at once while housekeep can still redact as them.
//! - **lock**: every token of the account is refused (`M_USER_LOCKED`), so
//!   the user can do nothing, not even log in; their devices stay.
//! - **shadow-ban**: what the user sends seems to succeed and reaches nobody.
//! - **deactivate**: the account leaves every room and can never be used
//!   again; `--erase` also hides its messages from users who join later.
//!   It cannot be undone: always a plan and a confirmation (never `--yes`),
//!   by a second moderator where `admin.two_person_threshold` is set.

mod args;
mod command;
mod kind;
mod target;

use serde::{Deserialize, Serialize};

use crate::homeserver::{AccountStatus, HomeserverClient, HsError};

pub use args::{
    Applied, DeactivateArgs, LockArgs, SanctionArgs, ShadowbanArgs, SuspendArgs, UnlockArgs, UnshadowbanArgs,
    UnsuspendArgs,
};
pub use command::{refuse_protected, refuse_the_bot};
pub use kind::{SanctionKind, SanctionPlan, account_key, apply, audit_action};
pub use target::{Protected, Target, refuse_remote};

/// One change to an account's standing, applied or lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sanction {
    Suspend,
    Unsuspend,
    Lock,
    Unlock,
    Shadowban,
    Unshadowban,
    Deactivate { erase: bool },
}

impl Sanction {
    /// The command that applies it (`"suspend"`), also its audit action's suffix.
    pub fn command(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Unsuspend => "unsuspend",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::Shadowban => "shadowban",
            Self::Unshadowban => "unshadowban",
            Self::Deactivate { .. } => "deactivate",
        }
    }

    /// What the account is once it is applied.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Suspend => "suspended",
            Self::Unsuspend => "no longer suspended",
            Self::Lock => "locked",
            Self::Unlock => "unlocked",
            Self::Shadowban => "shadow-banned",
            Self::Unshadowban => "no longer shadow-banned",
            Self::Deactivate { erase: false } => "deactivated",
            Self::Deactivate { erase: true } => "deactivated and erased",
        }
    }

    /// What it does, for the plan.
    pub fn effect(self) -> &'static str {
        match self {
            Self::Suspend => {
                "they can still log in, read and redact their own events, but cannot send, join, invite or change \
                 their profile"
            }
            Self::Lock => "every token of theirs is refused: they cannot log in or do anything; their devices stay",
            Self::Shadowban => "what they send seems to succeed but reaches nobody",
            Self::Unsuspend | Self::Unlock | Self::Unshadowban => "they can use their account as before",
            Self::Deactivate { erase: false } => {
                "they leave every room and can never use the account again. This cannot be undone"
            }
            Self::Deactivate { erase: true } => {
                "they leave every room and can never use the account again, and their messages are hidden from \
                 users who join later (erasure). This cannot be undone"
            }
        }
    }

    /// Lifting a sanction: harmless on anyone, so no one is protected from it.
    pub fn lifts(self) -> bool {
        matches!(self, Self::Unsuspend | Self::Unlock | Self::Unshadowban)
    }

    /// Cannot be undone: never run by `--yes` alone.
    pub fn irreversible(self) -> bool {
        matches!(self, Self::Deactivate { .. })
    }

    /// The command that undoes it, if any.
    pub fn inverse(self) -> Option<Self> {
        match self {
            Self::Suspend => Some(Self::Unsuspend),
            Self::Unsuspend => Some(Self::Suspend),
            Self::Lock => Some(Self::Unlock),
            Self::Unlock => Some(Self::Lock),
            Self::Shadowban => Some(Self::Unshadowban),
            Self::Unshadowban => Some(Self::Shadowban),
            Self::Deactivate { .. } => None,
        }
    }

    /// Whether the account is in this sanction's state already. A Synapse
    /// too old to say counts as not.
    pub fn in_effect(self, status: &AccountStatus) -> bool {
        match self {
            Self::Suspend => status.suspended == Some(true),
            Self::Unsuspend => status.suspended == Some(false),
            Self::Lock => status.locked == Some(true),
            Self::Unlock => status.locked == Some(false),
            Self::Shadowban => status.shadow_banned == Some(true),
            Self::Unshadowban => status.shadow_banned == Some(false),
            // Erasure of a deactivated account is asked for again: Synapse
            // does not show whether it was erased.
            Self::Deactivate { erase } => status.deactivated && !erase,
        }
    }

    /// Applies it through Synapse's admin API. Each call sets a state, so
    /// a resend after a restart changes nothing.
    pub async fn apply(self, homeserver: &HomeserverClient, user_id: &str) -> Result<(), HsError> {
        match self {
            Self::Suspend | Self::Unsuspend => homeserver.set_suspended(user_id, self == Self::Suspend).await,
            Self::Lock | Self::Unlock => homeserver.set_locked(user_id, self == Self::Lock).await,
            Self::Shadowban | Self::Unshadowban => homeserver.set_shadow_banned(user_id, self == Self::Shadowban).await,
            Self::Deactivate { erase } => homeserver.deactivate(user_id, erase).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Sanction; 8] = [
        Sanction::Suspend,
        Sanction::Unsuspend,
        Sanction::Lock,
        Sanction::Unlock,
        Sanction::Shadowban,
        Sanction::Unshadowban,
        Sanction::Deactivate { erase: false },
        Sanction::Deactivate { erase: true },
    ];

    #[test]
    fn every_sanction_but_deactivation_has_an_inverse_that_lifts_or_applies_it() {
        for sanction in ALL {
            match sanction.inverse() {
                Some(inverse) => {
                    assert_eq!(inverse.inverse(), Some(sanction));
                    assert_ne!(inverse.lifts(), sanction.lifts(), "{sanction:?}");
                    assert!(!sanction.irreversible());
                }
                None => assert!(sanction.irreversible() && !sanction.lifts()),
            }
        }
    }

    #[test]
    fn in_effect_reads_the_accounts_state() {
        let status = AccountStatus { suspended: Some(true), locked: Some(false), ..AccountStatus::default() };
        assert!(Sanction::Suspend.in_effect(&status) && !Sanction::Unsuspend.in_effect(&status));
        assert!(Sanction::Unlock.in_effect(&status) && !Sanction::Lock.in_effect(&status));
        assert!(!Sanction::Shadowban.in_effect(&status) && !Sanction::Unshadowban.in_effect(&status), "unknown");
        let gone = AccountStatus { deactivated: true, ..AccountStatus::default() };
        assert!(Sanction::Deactivate { erase: false }.in_effect(&gone));
        assert!(!Sanction::Deactivate { erase: true }.in_effect(&gone), "erasure is asked for again");
    }

    #[test]
    fn a_plan_stores_the_sanction_as_words() {
        let json = serde_json::to_value(Sanction::Deactivate { erase: true }).unwrap();
        assert_eq!(json, serde_json::json!({"deactivate": {"erase": true}}));
        assert_eq!(serde_json::to_value(Sanction::Shadowban).unwrap(), "shadowban");
    }
}
