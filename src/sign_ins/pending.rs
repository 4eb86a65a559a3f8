//! Browsers waiting at `/sign-in` for a moderator's `!dashboard <code>`.
//!
//! In memory only: a visitor nobody approved never writes to the database,
//! and a restart forgets every waiting browser (its page asks for a new
//! code). Bounded: at most [`MAX_WAITING`] codes, and [`MAX_PER_ADDRESS`]
//! per address (an IPv6 /64 counts as one); each lives [`CODE_LIFETIME`].
//!
//! A browser is bound to its code by a secret it holds in a cookie; only
//! the secret's SHA-256 is kept. Approving a code needs the code; being
//! signed in by it needs the secret too, so a code read over a moderator's
//! shoulder, or in the admin room, signs in nobody else.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::code::DeviceCode;
use crate::serve::address_key;

/// How long a code waits for a moderator's `!dashboard <code>`.
pub const CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How long an approved browser has to pick its session up (its page
/// holds a request open for it while open).
pub const PICK_UP_WITHIN: Duration = Duration::from_secs(60);
/// Codes waiting at once (about 300 bytes each).
pub const MAX_WAITING: usize = 10_000;
/// Codes waiting at once from one address: the next one displaces the oldest.
pub const MAX_PER_ADDRESS: usize = 10;
/// Expired codes are looked for at most this often (and whenever the store is full).
const SWEEP_EVERY_MS: i64 = 1_000;

/// A waiting browser as the moderator approving it is told: where from and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Browser {
    /// The peer's address (behind a reverse proxy: the proxy's).
    pub address: IpAddr,
    /// Its `User-Agent`, made safe to show and cut short.
    pub user_agent: String,
}

type SecretHash = [u8; 32];

fn secret_hash(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

#[derive(Debug)]
enum State {
    Waiting,
    /// A moderator's command is writing the session: not yet to be picked up.
    Approving,
    Approved {
        user_id: String,
        session_token: String,
        until: i64,
    },
}

struct Entry {
    secret: SecretHash,
    browser: Browser,
    /// What the per-address bound counts by.
    address_key: IpAddr,
    expires_at: i64,
    state: State,
    /// When its browser last asked for its session (its page polls while
    /// open): a code whose page is open is not pushed out by newer ones.
    polled_at: i64,
}

/// A code whose browser asked for its session this recently has its page
/// open (the page asks again at once after each long poll of up to 20 s,
/// or 5 s after an error).
const POLLED_RECENTLY_MS: i64 = 40_000;

impl Entry {
    fn lasts_until(&self) -> i64 {
        match &self.state {
            State::Approved { until, .. } => *until,
            State::Waiting | State::Approving => self.expires_at,
        }
    }
}

/// The code a browser shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub code: DeviceCode,
    pub expires_at: i64,
    /// A new secret for the browser's cookie; `None` when the browser's
    /// cookie already names this code (a reload shows the same code).
    pub new_secret: Option<String>,
    /// Another browser's code from the same address this one pushed out.
    pub displaced: Option<DeviceCode>,
}

/// [`MAX_WAITING`] codes wait already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// No browser waits with that code (never shown, expired, approved already, or voided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotWaiting;

/// What a browser asking for its session gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Approved: the session token for its cookie. Given once.
    SignedIn { user_id: String, session_token: String },
    /// Not approved yet.
    Waiting,
    /// Its code expired or was voided, or the secret names none.
    Gone,
}

#[derive(Default)]
pub(super) struct Pending {
    by_code: HashMap<DeviceCode, Entry>,
    by_secret: HashMap<SecretHash, DeviceCode>,
    /// Each address's codes, oldest first.
    by_address: HashMap<IpAddr, VecDeque<DeviceCode>>,
    swept_at: i64,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    /// The code for the browser holding `secret`, or a new code and secret
    /// for a browser without a live one.
    pub fn show(&mut self, secret: Option<&str>, browser: Browser, now: i64) -> Result<Shown, Full> {
        if let Some(code) = secret.and_then(|secret| self.by_secret.get(&secret_hash(secret))).copied()
            && let Some(entry) = self.live(code, now)
        {
            return Ok(Shown { code, expires_at: entry.expires_at, new_secret: None, displaced: None });
        }
        if self.by_code.len() >= MAX_WAITING {
            // At most once a second even now: a flood of refused requests
            // must not make each one walk every entry.
            self.sweep(now);
            if self.by_code.len() >= MAX_WAITING {
                return Err(Full);
            }
        }
        let address_key = address_key(browser.address);
        // The oldest code of the address whose page is not open any more
        // makes room; while every one of them is being waited on, no new
        // one is given (a flood from one address cannot push out a
        // moderator's open page).
        let displaced = match self.by_address.get(&address_key) {
            Some(codes) if codes.len() >= MAX_PER_ADDRESS => {
                let idle = codes.iter().copied().find(|code| {
                    self.by_code.get(code).is_none_or(|entry| now.saturating_sub(entry.polled_at) >= POLLED_RECENTLY_MS)
                });
                match idle {
                    Some(code) => Some(code),
                    None => return Err(Full),
                }
            }
            _ => None,
        };
        if let Some(oldest) = displaced {
            self.remove(oldest);
        }
        let secret = super::new_token();
        let code = std::iter::repeat_with(DeviceCode::random)
            .find(|code| !self.by_code.contains_key(code))
            .expect("an endless supply");
        let expires_at = now.saturating_add(CODE_LIFETIME.as_millis() as i64);
        let entry = Entry {
            secret: secret_hash(&secret),
            browser,
            address_key,
            expires_at,
            state: State::Waiting,
            polled_at: now,
        };
        self.by_secret.insert(entry.secret, code);
        self.by_address.entry(address_key).or_default().push_back(code);
        self.by_code.insert(code, entry);
        Ok(Shown { code, expires_at, new_secret: Some(secret), displaced })
    }

    /// A moderator's `!dashboard <code>`, first step: the browser waiting
    /// with `code`, held while its session is written ([`Pending::complete`]
    /// or [`Pending::cancel`] next). A code is approved once.
    pub fn reserve(&mut self, code: DeviceCode, now: i64) -> Result<Browser, NotWaiting> {
        let entry = self.live_mut(code, now).ok_or(NotWaiting)?;
        if !matches!(entry.state, State::Waiting) {
            return Err(NotWaiting);
        }
        entry.state = State::Approving;
        Ok(entry.browser.clone())
    }

    /// The session for a reserved code is written: its browser may pick it
    /// up. `false` if the code went meanwhile (voided by `logout-all`, or
    /// expired): then nobody will, and the caller ends the session.
    pub fn complete(&mut self, code: DeviceCode, user_id: &str, session_token: String, now: i64) -> bool {
        let Some(entry) = self.live_mut(code, now) else { return false };
        if !matches!(entry.state, State::Approving) {
            return false;
        }
        let until = now.saturating_add(PICK_UP_WITHIN.as_millis() as i64);
        entry.state = State::Approved { user_id: user_id.to_owned(), session_token, until };
        true
    }

    /// The session for a reserved code could not be written: it waits again.
    pub fn cancel(&mut self, code: DeviceCode) {
        if let Some(entry) = self.by_code.get_mut(&code)
            && matches!(entry.state, State::Approving)
        {
            entry.state = State::Waiting;
        }
    }

    /// The browser holding `secret` asks whether it is signed in.
    pub fn claim(&mut self, secret: &str, now: i64) -> Claim {
        let Some(code) = self.by_secret.get(&secret_hash(secret)).copied() else { return Claim::Gone };
        let Some(entry) = self.live_mut(code, now) else { return Claim::Gone };
        entry.polled_at = now;
        match entry.state {
            State::Waiting | State::Approving => Claim::Waiting,
            State::Approved { .. } => match self.remove(code).map(|entry| entry.state) {
                Some(State::Approved { user_id, session_token, .. }) => Claim::SignedIn { user_id, session_token },
                _ => unreachable!("approved a moment ago"),
            },
        }
    }

    /// Voids every code (`!dashboard logout-all`); how many there were.
    pub fn clear(&mut self) -> usize {
        let voided = self.by_code.len();
        self.by_code.clear();
        self.by_secret.clear();
        self.by_address.clear();
        voided
    }

    /// Forgets expired codes, at most once a [`SWEEP_EVERY_MS`]; how many.
    pub fn sweep(&mut self, now: i64) -> usize {
        if now.saturating_sub(self.swept_at) < SWEEP_EVERY_MS {
            return 0;
        }
        self.swept_at = now;
        let expired: Vec<DeviceCode> =
            self.by_code.iter().filter(|(_, entry)| entry.lasts_until() <= now).map(|(code, _)| *code).collect();
        for code in &expired {
            self.remove(*code);
        }
        expired.len()
    }

    /// The entry for `code` while it lasts; an expired one is removed.
    fn live(&mut self, code: DeviceCode, now: i64) -> Option<&Entry> {
        self.live_mut(code, now).map(|entry| &*entry)
    }

    fn live_mut(&mut self, code: DeviceCode, now: i64) -> Option<&mut Entry> {
        if self.by_code.get(&code)?.lasts_until() <= now {
            self.remove(code);
            return None;
        }
        self.by_code.get_mut(&code)
    }

    fn remove(&mut self, code: DeviceCode) -> Option<Entry> {
        let entry = self.by_code.remove(&code)?;
        self.by_secret.remove(&entry.secret);
        if let Some(codes) = self.by_address.get_mut(&entry.address_key) {
            codes.retain(|c| *c != code);
            if codes.is_empty() {
                self.by_address.remove(&entry.address_key);
            }
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn browser(address: &str) -> Browser {
        Browser { address: address.parse().unwrap(), user_agent: "test".to_owned() }
    }

    /// A new code and its browser's secret, from `address`.
    fn shown(pending: &mut Pending, address: &str, now: i64) -> (DeviceCode, String) {
        let shown = pending.show(None, browser(address), now).unwrap();
        (shown.code, shown.new_secret.unwrap())
    }

    fn approve(pending: &mut Pending, code: DeviceCode, now: i64) -> Result<Browser, NotWaiting> {
        let browser = pending.reserve(code, now)?;
        assert!(pending.complete(code, "@mod:hs", format!("session-{code}"), now));
        Ok(browser)
    }

    #[test]
    fn an_approved_code_signs_in_its_own_browser_once() {
        let mut pending = Pending::default();
        let (code, secret) = shown(&mut pending, "192.0.2.1", 0);
        let (_other, someone_else) = shown(&mut pending, "192.0.2.2", 0);
        assert_eq!(pending.claim(&secret, 1_000), Claim::Waiting, "nobody approved it yet");
        assert_eq!(approve(&mut pending, code, 2_000), Ok(browser("192.0.2.1")), "the moderator is told where");
        assert_eq!(pending.claim(&someone_else, 3_000), Claim::Waiting, "another browser's secret: its own code");
        assert_eq!(pending.claim("made-up", 3_000), Claim::Gone, "a secret housekeep never gave");
        let signed_in = Claim::SignedIn { user_id: "@mod:hs".to_owned(), session_token: format!("session-{code}") };
        assert_eq!(pending.claim(&secret, 3_000), signed_in);
        assert_eq!(pending.claim(&secret, 3_001), Claim::Gone, "given once");
        assert_eq!(pending.reserve(code, 3_002), Err(NotWaiting), "approved once");
        assert_eq!(pending.len(), 1, "only the other browser waits");
    }

    #[test]
    fn a_code_is_approved_once_and_not_while_its_session_is_written() {
        let mut pending = Pending::default();
        let (code, secret) = shown(&mut pending, "192.0.2.1", 0);
        pending.reserve(code, 1).unwrap();
        assert_eq!(pending.reserve(code, 2), Err(NotWaiting), "a second moderator at the same time");
        assert_eq!(pending.claim(&secret, 3), Claim::Waiting, "no session to pick up before it is written");
        pending.cancel(code);
        assert_eq!(pending.claim(&secret, 4), Claim::Waiting);
        approve(&mut pending, code, 5).expect("waits again after a failed write");
        assert_eq!(pending.reserve(code, 6), Err(NotWaiting));
    }

    #[test]
    fn codes_expire_after_five_minutes_and_approvals_after_one() {
        let mut pending = Pending::default();
        let (late, late_secret) = shown(&mut pending, "192.0.2.1", 0);
        assert_eq!(pending.reserve(late, 5 * MINUTE), Err(NotWaiting), "expired");
        assert_eq!(pending.claim(&late_secret, 5 * MINUTE), Claim::Gone);
        let (code, secret) = shown(&mut pending, "192.0.2.1", 0);
        approve(&mut pending, code, 5 * MINUTE - 1).unwrap();
        assert_eq!(pending.claim(&secret, 6 * MINUTE - 1), Claim::Gone, "not picked up within a minute");
        // A session written while the code expired is not handed out.
        let (code, _) = shown(&mut pending, "192.0.2.1", 10 * MINUTE);
        pending.reserve(code, 15 * MINUTE - 1).unwrap();
        assert!(!pending.complete(code, "@mod:hs", "s".to_owned(), 15 * MINUTE));
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn a_reload_shows_the_same_code_until_it_expires() {
        let mut pending = Pending::default();
        let (code, secret) = shown(&mut pending, "192.0.2.1", 0);
        let again = pending.show(Some(&secret), browser("192.0.2.1"), MINUTE).unwrap();
        assert_eq!((again.code, again.new_secret, again.expires_at), (code, None, 5 * MINUTE));
        let later = pending.show(Some(&secret), browser("192.0.2.1"), 5 * MINUTE).unwrap();
        assert_ne!(later.code, code, "a new code once the old one expired");
        assert!(later.new_secret.is_some());
        let forged = pending.show(Some("forged"), browser("192.0.2.1"), 5 * MINUTE).unwrap();
        assert_ne!(forged.code, later.code);
    }

    #[test]
    fn one_address_pushes_out_only_its_own_oldest_codes() {
        let mut pending = Pending::default();
        let (elsewhere, _) = shown(&mut pending, "2001:db8:1::1", 0);
        // One /64: a flood from it displaces its own codes, oldest first,
        // once their pages stopped asking for their sessions.
        let shown_at: Vec<(DeviceCode, String)> =
            (0..MAX_PER_ADDRESS).map(|n| shown(&mut pending, &format!("2001:db8:2::{n:x}"), n as i64)).collect();
        let mut codes: Vec<DeviceCode> = shown_at.iter().map(|(code, _)| *code).collect();
        let later = POLLED_RECENTLY_MS + 100;
        // The page of the second one is open: it asks for its session.
        assert_eq!(pending.claim(&shown_at[1].1, later - 1), Claim::Waiting);
        for n in 0..3 {
            let next = pending.show(None, browser("2001:db8:2:0:ffff::1"), later + n).unwrap();
            let expected = if n == 0 { codes[0] } else { codes[n as usize + 1] };
            assert_eq!(next.displaced, Some(expected), "the oldest whose page is not open");
            codes.push(next.code);
        }
        assert_eq!(pending.len(), MAX_PER_ADDRESS + 1);
        assert!(pending.reserve(elsewhere, later + 10).is_ok(), "another address's code is untouched");
        assert!(pending.reserve(codes[1], later + 10).is_ok(), "an open page's code stays");
        assert_eq!(pending.reserve(codes[0], later + 10), Err(NotWaiting), "displaced");

        // Every page of the address open: no new code rather than pushing one out.
        let mut crowded = Pending::default();
        for n in 0..MAX_PER_ADDRESS {
            shown(&mut crowded, &format!("2001:db8:3::{n:x}"), 0);
        }
        assert_eq!(crowded.show(None, browser("2001:db8:3::ffff"), 10), Err(Full));
    }

    #[test]
    fn a_full_store_refuses_new_codes_until_some_expire() {
        let mut pending = Pending::default();
        for n in 0..MAX_WAITING {
            let address = IpAddr::from(std::net::Ipv4Addr::from(n as u32));
            pending.show(None, Browser { address, user_agent: String::new() }, 0).unwrap();
        }
        assert_eq!(pending.show(None, browser("198.51.100.1"), MINUTE), Err(Full));
        let shown = pending.show(None, browser("198.51.100.1"), 5 * MINUTE).unwrap();
        assert_eq!(pending.len(), 1, "the expired ones went: {shown:?}");
    }

    #[test]
    fn logout_all_voids_every_code() {
        let mut pending = Pending::default();
        let (code, secret) = shown(&mut pending, "192.0.2.1", 0);
        let (approved, approved_secret) = shown(&mut pending, "192.0.2.1", 0);
        approve(&mut pending, approved, 1).unwrap();
        let (writing, _) = shown(&mut pending, "192.0.2.1", 0);
        pending.reserve(writing, 1).unwrap();
        assert_eq!(pending.clear(), 3);
        assert_eq!(pending.reserve(code, 2), Err(NotWaiting));
        assert_eq!(pending.claim(&secret, 2), Claim::Gone);
        assert_eq!(pending.claim(&approved_secret, 2), Claim::Gone, "an approved, unclaimed sign-in too");
        assert!(!pending.complete(writing, "@mod:hs", "s".to_owned(), 2), "and one being written");
    }
}
