//! What the dashboard and the `!dashboard` command share in memory: the
//! browsers waiting at `/sign-in` for a moderator's approval (a device-code
//! flow, like OAuth's device grant, RFC 8628), and a signal that sessions
//! ended. The bot and the dashboard run in one process; `service` hands
//! both the same [`SignIns`], so an approval reaches the waiting page at
//! once, and nothing an anonymous visitor does is written anywhere but here.
//!
//! 1. `GET /sign-in` shows a browser a [`DeviceCode`] and gives it a secret
//!    cookie (only the secret's hash is kept).
//! 2. A moderator sends `!dashboard <code>` in the admin room: the command
//!    writes a session for the moderator and hands its token to the
//!    waiting entry ([`SignIns::reserve`], then [`SignIns::complete`]).
//! 3. The page, holding a request open until then, gets the session cookie: only the
//!    browser holding the secret ([`SignIns::claim`]), and once.

pub mod code;
mod pending;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use url::Url;

use crate::clock::now_ms;
use crate::metrics::Metrics;

pub use code::{DeviceCode, NotACode};
pub use pending::{Browser, CODE_LIFETIME, Claim, Full, MAX_PER_ADDRESS, MAX_WAITING, NotWaiting, Shown};

/// 256 random bits, hex: session tokens and browser secrets.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the database keeps of a session token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The dashboard's sign-ins, as the dashboard and `!dashboard` share them.
pub struct SignIns {
    /// The dashboard's URL (`web.public_url`): the bot names its `/sign-in`.
    pub public_url: Url,
    /// How long a session lasts (`web.session_lifetime`).
    pub session_lifetime: Duration,
    pending: Mutex<pending::Pending>,
    /// Bumped when a browser may pick up a session, or every code was voided:
    /// waiting pages look again.
    approvals: watch::Sender<u64>,
    /// Bumped when sessions end (sign-out, `logout-all`, a demotion): open
    /// `/live` streams check theirs.
    sessions_ended: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SignIns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIns")
            .field("public_url", &self.public_url.as_str())
            .field("session_lifetime", &self.session_lifetime)
            .field("waiting", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl SignIns {
    pub fn new(public_url: Url, session_lifetime: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            public_url,
            session_lifetime,
            pending: Mutex::default(),
            approvals: watch::Sender::new(0),
            sessions_ended: watch::Sender::new(0),
            metrics,
        }
    }

    /// Where moderators open the dashboard to get a code.
    pub fn sign_in_url(&self) -> Url {
        self.public_url.join("sign-in").expect("a relative path")
    }

    fn lock(&self) -> MutexGuard<'_, pending::Pending> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, outcome: &'static str, by: u64) {
        if by > 0 {
            self.metrics.dashboard_sign_ins.get_or_create(&crate::metrics::SignInLabel { outcome }).inc_by(by);
        }
    }

    /// The code for a browser: its own while it lasts (`secret`, from its
    /// cookie), else a new one with a new secret.
    pub fn show(&self, secret: Option<&str>, browser: Browser) -> Result<Shown, Full> {
        let now = now_ms();
        let mut pending = self.lock();
        let expired = pending.sweep(now);
        let shown = pending.show(secret, browser.clone(), now);
        let waiting = pending.len();
        drop(pending);
        if expired > 0 {
            tracing::info!(expired, "dashboard sign-in codes expired without a moderator's approval");
            self.count("expired", expired as u64);
        }
        match &shown {
            Ok(Shown { new_secret: Some(_), displaced, .. }) => {
                self.count("code_shown", 1);
                if let Some(displaced) = displaced {
                    tracing::info!(
                        %displaced, address = %browser.address,
                        "dashboard sign-in code displaced: {MAX_PER_ADDRESS} more recent ones wait from the same address"
                    );
                    self.count("displaced", 1);
                }
            }
            Ok(_) => {}
            Err(Full) => {
                tracing::warn!(waiting, address = %browser.address, "dashboard sign-in refused: {MAX_WAITING} codes wait already");
                self.count("refused_full", 1);
            }
        }
        shown
    }

    /// `!dashboard <code>`, first step: the browser waiting with `code`,
    /// held while its session is written.
    pub fn reserve(&self, code: DeviceCode) -> Result<Browser, NotWaiting> {
        let reserved = self.lock().reserve(code, now_ms());
        if reserved.is_err() {
            self.count("unknown_code", 1);
        }
        reserved
    }

    /// The session for a reserved code is written; `false` if the code
    /// went meanwhile (the caller ends the session).
    pub fn complete(&self, code: DeviceCode, user_id: &str, session_token: String) -> bool {
        let completed = self.lock().complete(code, user_id, session_token, now_ms());
        if completed {
            self.count("approved", 1);
            self.approvals.send_modify(|n| *n = n.wrapping_add(1));
        }
        completed
    }

    /// The session for a reserved code could not be written: it waits again.
    pub fn cancel(&self, code: DeviceCode) {
        self.lock().cancel(code);
    }

    /// Whether the browser holding `secret` is signed in now.
    pub fn claim(&self, secret: &str) -> Claim {
        let claim = self.lock().claim(secret, now_ms());
        if matches!(claim, Claim::SignedIn { .. }) {
            self.count("signed_in", 1);
        }
        claim
    }

    /// Changes when a waiting page should look again.
    pub fn approvals(&self) -> watch::Receiver<u64> {
        self.approvals.subscribe()
    }

    /// Voids every waiting code (`!dashboard logout-all`); how many.
    pub fn void_all(&self) -> usize {
        let voided = self.lock().clear();
        self.count("voided", voided as u64);
        self.approvals.send_modify(|n| *n = n.wrapping_add(1));
        voided
    }

    /// Says that sessions ended (in the database already).
    pub fn sessions_ended(&self) {
        self.sessions_ended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes when sessions end.
    pub fn ended_sessions(&self) -> watch::Receiver<u64> {
        self.sessions_ended.subscribe()
    }
}
