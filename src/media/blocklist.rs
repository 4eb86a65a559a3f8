//! The hash blocklist: files quarantined as soon as housekeep downloads one,
//! under whatever mxc URI and in whichever room they appear.
//!
//! Entries come from the config (`media.blocklist`, kept in step with the
//! file at each start) and from `!blocklist add|remove|list` (persisted and
//! audited). A blocked download is quarantined through the same code as
//! `!quarantine` (protected media is reported, not quarantined), audited, and
//! announced in the admin room.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use clap::{Args, Subcommand};

use crate::clock::now_ms;
use crate::config::BlocklistEntry;
use crate::jobs::Services;
use crate::moderation::quarantine::{self, Action, parse_sha256};
use crate::notice::Notice;
use crate::store::{AuditEntry, BlockedHash, ItemState, MediaId};

/// Shown at the end of `!help blocklist`.
pub const EXAMPLES: &str = "\
Examples:
  !blocklist add 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 --reason \"known abuse\"
  !blocklist list
  !blocklist remove 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Entries `!blocklist list` shows.
const LISTED: i64 = 50;

/// A parsed `!blocklist`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct BlocklistArgs {
    #[command(subcommand)]
    pub action: BlocklistAction,
}

#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum BlocklistAction {
    /// Block a file by its SHA-256: any download of it is quarantined at once
    Add {
        /// The file's SHA-256: 64 hexadecimal characters
        #[arg(value_name = "SHA256", value_parser = parse_sha256)]
        sha256: String,
        /// Why (kept with the entry and in the audit log)
        #[arg(long, value_name = "TEXT", value_parser = crate::commands::parse_reason)]
        reason: Option<String>,
    },
    /// Unblock a file (what was quarantined stays quarantined)
    Remove {
        #[arg(value_name = "SHA256", value_parser = parse_sha256)]
        sha256: String,
    },
    /// List the blocked hashes, newest first
    List,
}

/// Puts the config file's entries in the table, replacing the ones it had.
pub async fn load_config(services: &Services, entries: &[BlocklistEntry]) -> anyhow::Result<()> {
    let now = now_ms();
    let entries: Vec<BlockedHash> = entries
        .iter()
        .map(|e| BlockedHash {
            sha256: e.sha256.to_ascii_lowercase(),
            reason: e.reason.clone(),
            added_by: "the config file (media.blocklist)".to_owned(),
            added_at: now,
            source: "config".to_owned(),
        })
        .collect();
    services.store.set_config_blocklist(&entries).await
}

/// Runs `!blocklist` for `actor`: the reply, an outcome word, and the audit entry of the change.
pub async fn execute(
    services: &Services,
    actor: &str,
    args: &BlocklistArgs,
) -> anyhow::Result<(Notice, String, Option<AuditEntry>)> {
    let store = &services.store;
    let audit = |action: &str, sha256: &str, outcome: &str| AuditEntry {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: Some(sha256.to_owned()),
        outcome: outcome.to_owned(),
        ..AuditEntry::default()
    };
    Ok(match &args.action {
        BlocklistAction::Add { sha256, reason } => {
            let entry = BlockedHash {
                sha256: sha256.clone(),
                reason: reason.clone(),
                added_by: actor.to_owned(),
                added_at: now_ms(),
                source: "command".to_owned(),
            };
            store.block_hash(&entry).await?;
            let known = store.media_count_with_hash(sha256).await?;
            let mut notice = Notice::new().line(&format!(
                "Blocked {sha256}: any media housekeep downloads with this content is quarantined at once."
            ));
            if known > 0 {
                notice = notice.line(&format!(
                    "{known} media with this hash are known already; {}quarantine hash {sha256} quarantines them.",
                    services.prefix
                ));
            }
            (notice, "blocked".to_owned(), Some(audit("blocklist.add", sha256, reason.as_deref().unwrap_or("added"))))
        }
        BlocklistAction::Remove { sha256 } => {
            if store.unblock_hash(sha256).await? {
                let notice = Notice::new().line(&format!(
                    "Unblocked {sha256}. What was quarantined stays so; {}unquarantine hash {sha256} lifts that.",
                    services.prefix
                ));
                (notice, "unblocked".to_owned(), Some(audit("blocklist.remove", sha256, "removed")))
            } else {
                (Notice::new().line(&format!("{sha256} is not on the blocklist.")), "not listed".to_owned(), None)
            }
        }
        BlocklistAction::List => {
            let entries = store.blocklist(LISTED).await?;
            if entries.is_empty() {
                return Ok((Notice::new().line("The blocklist is empty."), "ok".to_owned(), None));
            }
            let lines = entries.iter().map(|e| {
                format!(
                    "{} by {} ({}){}",
                    e.sha256,
                    e.added_by,
                    e.source,
                    e.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
                )
            });
            (
                Notice::new().title(&format!("Blocked hashes, newest first ({})", entries.len())).list(lines),
                "ok".to_owned(),
                None,
            )
        }
    })
}

/// After a download: a blocked hash is quarantined by itself, audited and announced.
pub async fn check_download(services: &Services, media: &MediaId, sha256: &str) {
    let entry = match services.store.blocked_hash(sha256).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(mxc = media.mxc(), error = format!("{error:#}"), "cannot read the blocklist");
            return;
        }
    };
    let mxc = media.mxc();
    let actor = format!("{} (hash blocklist)", services.bot_user_id);
    let reason = entry.reason.clone().unwrap_or_else(|| "content hash on the blocklist".to_owned());
    // Anyone's upload: a blocked file is taken down wherever it came from.
    // An outage is waited out for a while; past that the operators are told.
    let quarantine = || quarantine::apply(services, &actor, Some(&reason), Action::Quarantine, &mxc, None);
    let retries = ExponentialBuilder::default().with_min_delay(Duration::from_secs(2)).with_max_times(8);
    let (state, detail) = match quarantine
        .retry(retries)
        .notify(|error, wait| {
            tracing::info!(
                mxc,
                error = format!("{error:#}"),
                ?wait,
                "cannot quarantine a blocklisted file yet; retrying"
            );
        })
        .await
    {
        Ok(outcome) => outcome,
        Err(error) => {
            (ItemState::Failed, format!("{error:#}; {}quarantine hash {sha256} tries again", services.prefix))
        }
    };
    tracing::warn!(mxc, sha256, state = state.as_str(), detail, "a blocklisted file was downloaded; quarantining it");
    if state == ItemState::Done {
        services.metrics.blocklist_quarantined.inc();
    }
    let audit = AuditEntry {
        actor: actor.clone(),
        action: "blocklist.quarantine".to_owned(),
        target: Some(mxc.clone()),
        outcome: format!("{}: {detail} (sha256 {sha256}, blocked by {})", state.as_str(), entry.added_by),
        ..AuditEntry::default()
    };
    if let Err(error) = services.store.audit(audit).await {
        tracing::warn!(mxc, error = format!("{error:#}"), "cannot audit a blocklist quarantine");
    }
    let verb = match state {
        ItemState::Done => "Quarantined",
        _ => "Could not quarantine",
    };
    let notice = Notice::new()
        .line(&format!("{verb} {mxc} by itself: its content hash is on the blocklist."))
        .field("sha256", sha256)
        .field("blocked by", &entry.added_by)
        .field("reason", &reason)
        .field("outcome", &format!("{}: {detail}", state.as_str()));
    services.tell_operators(&format!("blocklist-{}-{}", media.server_name, media.media_id), &notice).await;
}
