//! Redactions the index cannot judge by itself.
//!
//! Anyone can send a redaction of anyone's event; the homeserver stores and
//! forwards it, but applies it only if the redacter may (the power to redact
//! others, or — for events from other servers — the same server as the
//! target's sender). A redaction by the target's own sender is always
//! applied, and the index marks it at once. Any other is queued at ingest
//! (`redaction_checks`), and this worker asks the homeserver, as an admin,
//! whether the target is now redacted; only then is it marked. Until then the
//! target stays selectable by `!purge`: a spammer cannot hide their messages
//! from moderators by "redacting" them through a server that does not apply it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::jobs::Services;
use crate::metrics::VerdictLabel;
use crate::store::RedactionCheck;

const BATCH: i64 = 50;
const IDLE_POLL: Duration = Duration::from_secs(30);
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// Checks queued redactions until shutdown.
pub async fn run(services: Services, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let due = match services.store.due_redaction_checks(now_ms(), BATCH).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot read the redactions to check; retrying");
                Vec::new()
            }
        };
        for check in &due {
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(error) = judge(&services, check).await {
                tracing::warn!(error = format!("{error:#}"), "cannot record a redaction check; retrying later");
            }
        }
        if due.len() as i64 == BATCH {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn judge(services: &Services, check: &RedactionCheck) -> anyhow::Result<()> {
    let verdict = match services.homeserver.served_redacted(&check.room_id, &check.target_id).await {
        Ok(Some(true)) => {
            let marked = services.store.resolve_redaction_check(check, true).await?;
            tracing::debug!(target = check.target_id, marked, "the homeserver applied a redaction by someone else");
            "applied"
        }
        Ok(Some(false)) => {
            services.store.resolve_redaction_check(check, false).await?;
            tracing::info!(
                redaction = check.redaction_id,
                target = check.target_id,
                room = check.room_id,
                "a redaction the homeserver did not apply: the event stays in the index as not redacted"
            );
            "not_applied"
        }
        Ok(None) => {
            services.store.resolve_redaction_check(check, false).await?;
            tracing::info!(target = check.target_id, "a redaction of an event the homeserver does not know; dropped");
            "unknown_target"
        }
        Err(error) => {
            let delay = crate::clock::retry_delay(FIRST_RETRY, MAX_RETRY, check.attempts);
            tracing::info!(
                target = check.target_id,
                %error,
                ?delay,
                "cannot ask the homeserver whether it applied a redaction; the event stays selectable meanwhile"
            );
            let next = now_ms() + delay.as_millis() as i64;
            services.store.reschedule_redaction_check(&check.redaction_id, next, &error.to_string()).await?;
            return Ok(());
        }
    };
    services.metrics.redaction_verdicts.get_or_create(&VerdictLabel { verdict }).inc();
    Ok(())
}
