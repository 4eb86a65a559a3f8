//! The hash blocklist: files quarantined as soon as housekeep downloads one,
//! under whatever mxc URI and in whichever room they appear.
//!
//! Entries come from the config (`media.blocklist`, kept in step with the
//! file at each start) and from `!blocklist add|remove|list` (persisted and
//! audited). Every known media with a blocked hash (downloaded since, or
//! known when the hash was added) is quarantined by [`enforce`], through the
//! same code as `!quarantine` (protected media is reported, not
//! quarantined), audited, and announced in the admin room.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};

use crate::clock::now_ms;
use crate::command::{AdminCommand, Context, Executed};
use crate::config::BlocklistEntry;
use crate::jobs::Services;
use crate::metrics::BlocklistLabel;
use crate::moderation::quarantine::{self, Action, parse_sha256};
use crate::notice::Notice;
use crate::store::{AuditEntry, BlockedHash, ItemState};

/// Shown at the end of `!help blocklist`.
pub const EXAMPLES: &str = "\
Examples:
  !blocklist add 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 --reason \"known abuse\"
  !blocklist list
  !blocklist remove 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Entries `!blocklist list` shows.
const LISTED: i64 = 50;

/// Block files by content hash: any download of one is quarantined at once
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(after_long_help = EXAMPLES)]
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
        #[arg(long, value_name = "TEXT", value_parser = crate::grammar::parse_reason)]
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

impl AdminCommand for BlocklistArgs {
    const NAME: &'static str = "blocklist";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        let services = ctx.services();
        let store = &services.store;
        let actor = &ctx.item.sender;
        let audit = |action: &str, sha256: &str, outcome: &str| AuditEntry {
            target: Some(sha256.to_owned()),
            ..ctx.audit(action, outcome)
        };
        Ok(match &self.action {
            BlocklistAction::Add { sha256, reason } => {
                let entry = BlockedHash {
                    sha256: sha256.clone(),
                    reason: reason.clone(),
                    added_by: actor.to_owned(),
                    added_at: now_ms(),
                    source: "command".to_owned(),
                };
                store.block_hash(&entry).await?;
                // Copies known already are taken down too, by the media worker, woken for it.
                store.recheck_blocklist(sha256).await?;
                services.media_wake.notify_one();
                let known = store.media_count_with_hash(sha256).await?;
                let mut notice = Notice::new().line(&format!(
                    "Blocked {sha256}: any media housekeep downloads with this content is quarantined at once."
                ));
                if known > 0 {
                    notice = notice.line(&format!(
                        "{known} media with this hash are known already: they are being quarantined now \
                         (announced here when done)."
                    ));
                }
                Executed::with_outcome(notice, "blocked").audited(audit(
                    "blocklist.add",
                    sha256,
                    reason.as_deref().unwrap_or("added"),
                ))
            }
            BlocklistAction::Remove { sha256 } => {
                if store.unblock_hash(sha256).await? {
                    let notice = Notice::new().line(&format!(
                        "Unblocked {sha256}. What was quarantined stays so; {}unquarantine hash {sha256} lifts that.",
                        services.prefix
                    ));
                    Executed::with_outcome(notice, "unblocked").audited(audit("blocklist.remove", sha256, "removed"))
                } else {
                    Executed::with_outcome(
                        Notice::new().line(&format!("{sha256} is not on the blocklist.")),
                        "not listed",
                    )
                }
            }
            BlocklistAction::List => {
                let entries = store.blocklist(LISTED).await?;
                if entries.is_empty() {
                    return Ok(Executed::ok(Notice::new().line("The blocklist is empty.")));
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
                Executed::ok(
                    Notice::new().title(&format!("Blocked hashes, newest first ({})", entries.len())).list(lines),
                )
            }
        })
    }
}

/// Media checked per round of [`enforce`].
const ENFORCE_PAGE: i64 = 100;
/// Media named in one announcement; the rest are counted.
const ANNOUNCED: usize = 10;

/// Quarantines every known media whose hash is blocked and that the
/// blocklist was not enforced on yet: the files downloaded since, and every
/// copy known when a hash is added. Works from committed state, so nothing is
/// missed after a crash or an outage: what is not done yet is found again by
/// the next call (the media worker calls it whenever it is woken, and at
/// least once a minute). Each media is
/// quarantined through the same code as `!quarantine` (protected media is
/// reported, not quarantined), audited, and announced in the admin room, one
/// notice per hash and round. An outage stops the round with an error.
pub async fn enforce(services: &Services) -> anyhow::Result<usize> {
    let actor = format!("{} (hash blocklist)", services.bot_user_id);
    let mut enforced = 0;
    loop {
        let page = services.store.blocked_unchecked(ENFORCE_PAGE).await?;
        if page.is_empty() {
            return Ok(enforced);
        }
        let mut by_hash: BTreeMap<String, (BlockedHash, Vec<Enforced>)> = BTreeMap::new();
        for (media, sha256) in page {
            let mxc = media.mxc();
            let Some(entry) = services.store.blocked_hash(&sha256).await? else {
                // Unblocked meanwhile.
                services.store.mark_blocklist_checked(&media).await?;
                continue;
            };
            let reason = entry.reason.clone().unwrap_or_else(|| "content hash on the blocklist".to_owned());
            // Anyone's upload: a blocked file is taken down wherever it came from.
            let (state, detail) =
                quarantine::apply(services, &actor, Some(&reason), Action::Quarantine, &mxc, None).await?;
            let outcome = match state {
                ItemState::Done => "quarantined",
                ItemState::Skipped => "skipped",
                _ => "failed",
            };
            tracing::warn!(mxc, sha256, outcome, detail, "a file whose hash is on the blocklist");
            services.metrics.blocklist.get_or_create(&BlocklistLabel { outcome }).inc();
            let audit = AuditEntry {
                actor: actor.clone(),
                action: "blocklist.quarantine".to_owned(),
                target: Some(mxc.clone()),
                outcome: format!("{}: {detail} (sha256 {sha256}, blocked by {})", state.as_str(), entry.added_by),
                ..AuditEntry::default()
            };
            services.store.audit(audit).await?;
            // Refusals too: they are reported, and asking again would not change them.
            services.store.mark_blocklist_checked(&media).await?;
            by_hash.entry(sha256).or_insert_with(|| (entry, Vec::new())).1.push((mxc, state, detail));
            enforced += 1;
        }
        for (sha256, (entry, outcomes)) in by_hash {
            announce(services, &sha256, &entry, &outcomes).await;
        }
    }
}

/// What enforcing the blocklist did to one media: its mxc, outcome, and why.
type Enforced = (String, ItemState, String);

/// One notice for what a round did to the copies of one blocked file.
async fn announce(services: &Services, sha256: &str, entry: &BlockedHash, outcomes: &[Enforced]) {
    let quarantined = outcomes.iter().filter(|(_, state, _)| *state == ItemState::Done).count();
    let mut notice = Notice::new()
        .line(&format!(
            "Quarantined {quarantined} of {} media by itself: their content hash is on the blocklist.",
            outcomes.len()
        ))
        .field("sha256", sha256)
        .field("blocked by", &entry.added_by);
    if let Some(reason) = &entry.reason {
        notice = notice.field("reason", reason);
    }
    let listed =
        outcomes.iter().take(ANNOUNCED).map(|(mxc, state, detail)| format!("{mxc}: {}: {detail}", state.as_str()));
    notice = notice.list(listed);
    if outcomes.len() > ANNOUNCED {
        notice = notice.line(&format!("… and {} more (the audit log has each).", outcomes.len() - ANNOUNCED));
    }
    let key =
        format!("blocklist-{}-{}", &sha256[..16.min(sha256.len())], outcomes[0].0.rsplit('/').next().unwrap_or(""));
    services.tell_operators(&key, &notice).await;
}
