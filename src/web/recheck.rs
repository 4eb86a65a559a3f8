//! Whether a signed-in user is still a moderator. A session starts with a
//! moderator's `!dashboard <code>`, and its user is checked again against
//! the same rule (`crate::moderators`) at most every
//! `web.recheck_moderator_every` (5 minutes by default), per user: by the
//! first request after that, and by every open `/live` stream, so a page
//! left open is checked too. One who is no longer a moderator is signed out
//! everywhere (`sign_in::end_demoted`).
//!
//! A homeserver that does not answer is no demotion: the session goes on,
//! the failure is logged, and the user is asked about again a little later.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::now_ms;
use crate::homeserver::{HomeserverClient, RetryPolicy};
use crate::moderators::{AdminRoom, ModeratorRule};

/// Users remembered at once; past it the memory starts over (each user is
/// then asked about at their next request).
const MAX_USERS: usize = 10_000;
/// How long a request waits for the homeserver's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed check, the next try is at most this far off.
const RETRY_AFTER: Duration = Duration::from_secs(30);

pub(super) struct ModeratorRecheck {
    rule: ModeratorRule,
    homeserver: HomeserverClient,
    admin_room: AdminRoom,
    every: Duration,
    /// When each user last found a moderator is to be asked about again.
    next_check: Mutex<HashMap<String, i64>>,
}

impl ModeratorRecheck {
    pub(super) fn new(
        rule: ModeratorRule,
        homeserver: HomeserverClient,
        admin_room: AdminRoom,
        every: Duration,
    ) -> Self {
        // One try: a page waits for the answer, and a failure is retried later anyway.
        let homeserver = homeserver.with_retry(RetryPolicy::ONCE);
        Self { rule, homeserver, admin_room, every, next_check: Mutex::default() }
    }

    /// How often a user is checked again.
    pub(super) fn every(&self) -> Duration {
        self.every
    }

    /// `false` only when the rule says `user_id` is not a moderator (now).
    pub(super) async fn still_moderator(&self, user_id: &str) -> bool {
        let now = now_ms();
        {
            let mut next_check = self.next_check.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if next_check.get(user_id).is_some_and(|at| *at > now) {
                return true;
            }
            if next_check.len() >= MAX_USERS {
                next_check.clear();
            }
            // Taken now: requests meanwhile are let through, not asked again.
            next_check.insert(user_id.to_owned(), now.saturating_add(self.every.as_millis() as i64));
        }
        let asked =
            tokio::time::timeout(ASK_TIMEOUT, self.rule.check(user_id, &self.homeserver, self.admin_room.get()));
        let failed = match asked.await {
            Ok(Ok(true)) => return true,
            Ok(Ok(false)) => {
                self.forget(user_id);
                return false;
            }
            Ok(Err(error)) => format!("{error:#}"),
            Err(_) => format!("the homeserver did not answer within {ASK_TIMEOUT:?}"),
        };
        let retry = self.every.min(RETRY_AFTER);
        tracing::warn!(
            user_id,
            error = failed,
            ?retry,
            "cannot check whether a dashboard user is still a moderator; their session goes on, asking again later"
        );
        let mut next_check = self.next_check.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        next_check.insert(user_id.to_owned(), now_ms().saturating_add(retry.as_millis() as i64));
        true
    }

    fn forget(&self, user_id: &str) {
        self.next_check.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(user_id);
    }
}
