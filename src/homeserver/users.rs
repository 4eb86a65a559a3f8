//! Local accounts through Synapse's admin API: what state an account is in,
//! and the sanctions a moderator applies and lifts (suspend, lock,
//! shadow-ban, deactivate). Each call sets a state rather than toggling
//! one, so sending it again after a restart changes nothing.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::flag;
use super::{HomeserverClient, HsError};

/// An account as Synapse's `GET /_synapse/admin/v2/users/<user>` shows it:
/// the fields a sanction's plan reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AccountStatus {
    #[serde(deserialize_with = "flag::required")]
    pub admin: bool,
    #[serde(deserialize_with = "flag::required")]
    pub deactivated: bool,
    #[serde(default, deserialize_with = "flag::option")]
    pub locked: Option<bool>,
    #[serde(default, deserialize_with = "flag::option")]
    pub shadow_banned: Option<bool>,
    /// Absent before Synapse 1.116.
    #[serde(default, deserialize_with = "flag::option")]
    pub suspended: Option<bool>,
    /// Set for accounts an appservice registered (bridges, bots).
    #[serde(default)]
    pub appservice_id: Option<String>,
    /// When the account was made, in seconds since 1970 (Synapse keeps seconds here).
    #[serde(default)]
    pub creation_ts: Option<i64>,
}

impl HomeserverClient {
    /// A local account's state; `None` when Synapse has no such user.
    pub async fn account_status(&self, user_id: &str) -> Result<Option<AccountStatus>, HsError> {
        let segments = ["_synapse", "admin", "v2", "users", user_id];
        match self.send::<(), AccountStatus>(Method::GET, &segments, None).await {
            Ok(status) => Ok(Some(status)),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `PUT /_synapse/admin/v1/suspend/<user>`: a suspended user can read
    /// and redact their own events, but not send, join, invite or change
    /// their profile.
    pub async fn set_suspended(&self, user_id: &str, suspended: bool) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "suspend", user_id];
        self.send::<_, Value>(Method::PUT, &segments, Some(&json!({ "suspend": suspended }))).await?;
        Ok(())
    }

    /// `PUT /_synapse/admin/v2/users/<user>` `{"locked": …}`: every token of
    /// a locked account is refused (`M_USER_LOCKED`). That endpoint creates
    /// an account that does not exist: callers check it exists first.
    pub async fn set_locked(&self, user_id: &str, locked: bool) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v2", "users", user_id];
        self.send::<_, Value>(Method::PUT, &segments, Some(&json!({ "locked": locked }))).await?;
        Ok(())
    }

    /// `POST`/`DELETE /_synapse/admin/v1/users/<user>/shadow_ban`: what a
    /// shadow-banned user sends seems to succeed and reaches nobody.
    pub async fn set_shadow_banned(&self, user_id: &str, banned: bool) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "users", user_id, "shadow_ban"];
        let method = if banned { Method::POST } else { Method::DELETE };
        self.send::<Value, Value>(method, &segments, Some(&json!({}))).await?;
        Ok(())
    }

    /// `POST /_synapse/admin/v1/deactivate/<user>`: the account leaves every
    /// room and can never log in again; `erase` also marks its messages
    /// erased for users who join later (GDPR erasure).
    pub async fn deactivate(&self, user_id: &str, erase: bool) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "deactivate", user_id];
        self.send::<_, Value>(Method::POST, &segments, Some(&json!({ "erase": erase }))).await?;
        Ok(())
    }

    /// The rooms a local user is joined to (`GET /_synapse/admin/v1/users/<user>/joined_rooms`).
    pub async fn joined_rooms_of(&self, user_id: &str) -> Result<Vec<String>, HsError> {
        #[derive(Deserialize)]
        struct Joined {
            joined_rooms: Vec<String>,
        }
        let segments = ["_synapse", "admin", "v1", "users", user_id, "joined_rooms"];
        Ok(self.send::<(), Joined>(Method::GET, &segments, None).await?.joined_rooms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_reads_on_either_database_and_any_version() {
        let status: AccountStatus = serde_json::from_value(json!({
            "name": "@a:hs", "admin": 0, "deactivated": 1, "locked": false, "suspended": 1,
            "shadow_banned": null, "appservice_id": null, "creation_ts": 1_700_000_000
        }))
        .unwrap();
        assert!(!status.admin && status.deactivated);
        assert_eq!((status.locked, status.suspended, status.shadow_banned), (Some(false), Some(true), None));
        let old: AccountStatus = serde_json::from_value(json!({"admin": false, "deactivated": false})).unwrap();
        assert_eq!(old.suspended, None, "a Synapse before 1.116 says nothing");
        assert!(serde_json::from_value::<AccountStatus>(json!({"deactivated": false})).is_err(), "admin is required");
    }
}
