//! Senders' access tokens for redacting as the sender.
//!
//! A token comes from Synapse's admin login API (no device is made) once per
//! sender per job, and is stored with the job: a job resumed after a crash
//! reuses it, so Synapse's transaction-ID dedupe (per access token, for
//! tokens without a device) can turn a redaction the dead process already
//! sent into the same redaction. That dedupe is only a cache in Synapse's
//! memory (kept 30 to 60 minutes, lost when Synapse restarts): what makes a
//! resumed redaction safe is the check, before each one, of whether the
//! event is redacted already. Tokens live no longer than the job is expected
//! to need and are revoked when it ends (or, if that fails, at the next
//! start). They never appear in logs, replies, `!job` or the audit log.

use std::time::Duration;

use tokio::sync::Mutex;

use crate::clock::now_ms;
use crate::homeserver::HomeserverClient;
use crate::jobs::Services;
use crate::store::{Job, JobToken};

/// The least a token is minted for, and the margin kept before its expiry:
/// a token closer than this to expiring is replaced (between batches).
const MIN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Per item still to do: generous next to the ~20 ms a redaction takes.
const PER_ITEM: Duration = Duration::from_millis(250);
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The tokens of one job, loaded from the database as needed.
pub(super) struct Tokens<'a> {
    services: &'a Services,
    job: &'a Job,
    cache: Mutex<Vec<JobToken>>,
}

impl<'a> Tokens<'a> {
    pub async fn load(services: &'a Services, job: &'a Job) -> anyhow::Result<Self> {
        let stored = services.store.job_tokens(&job.id).await?;
        Ok(Self { services, job, cache: Mutex::new(stored) })
    }

    /// A client acting as `sender`, with the job's token for them (minted
    /// now if the job has none that is valid long enough).
    pub async fn client_for(&self, sender: &str) -> anyhow::Result<HomeserverClient> {
        let mut cache = self.cache.lock().await;
        let margin = MIN_LIFETIME.as_millis() as i64;
        if let Some(token) = cache.iter().find(|t| t.user_id == sender && t.expires_at > now_ms() + margin) {
            return Ok(self.services.homeserver.with_token(token.token.clone()));
        }
        // A token about to expire is replaced, not revoked: a request of
        // this batch may still be using it, and it ends within the margin anyway.
        cache.retain(|t| t.user_id != sender);
        let remaining = (self.job.total_count - self.job.done_count - self.job.failed_count).max(0) as u32;
        let lifetime = (MIN_LIFETIME * 2 + PER_ITEM * remaining).min(MAX_LIFETIME);
        let token = self.services.homeserver.login_as(sender, lifetime).await?;
        let token = JobToken { user_id: sender.to_owned(), token, expires_at: now_ms() + lifetime.as_millis() as i64 };
        // Stored before first use: a crash after a redaction must find the token it used.
        self.services.store.save_job_token(&self.job.id, &token).await?;
        let client = self.services.homeserver.with_token(token.token.clone());
        cache.push(token);
        Ok(client)
    }
}

/// Revokes every token of a job and forgets it. A token the homeserver
/// could not be told about is kept, for the sweep at the next start.
pub(super) async fn revoke_all(services: &Services, job: &Job) -> anyhow::Result<()> {
    for token in services.store.job_tokens(&job.id).await? {
        revoke(services, &job.id, &token).await?;
    }
    Ok(())
}

/// Revokes the tokens left behind by jobs that ended: run at start-up.
pub async fn sweep_ended_jobs(services: &Services) -> anyhow::Result<usize> {
    let left = services.store.tokens_of_ended_jobs().await?;
    for (job_id, token) in &left {
        revoke(services, job_id, token).await?;
    }
    Ok(left.len())
}

async fn revoke(services: &Services, job_id: &str, token: &JobToken) -> anyhow::Result<()> {
    if token.expires_at > now_ms()
        && let Err(error) = services.homeserver.with_token(token.token.clone()).logout().await
    {
        tracing::warn!(
            user = token.user_id,
            job = job_id,
            %error,
            "could not revoke a sender token; kept to retry at the next start (it expires by itself meanwhile)"
        );
        return Ok(());
    }
    services.store.delete_job_token(job_id, &token.user_id).await
}
