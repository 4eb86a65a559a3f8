//! `!quarantine` and `!unquarantine`: select media from the index, plan,
//! and quarantine each one through Synapse's admin API as a job.
//!
//! Why not Synapse's own room quarantine: it scans the room's event JSON and
//! reads only `content.url` and `content.info.thumbnail_url`, so encrypted
//! attachments (`file.url`, `info.thumbnail_file.url`) and `<img>` in HTML
//! escape it. housekeep selects from its index, which has every reference
//! kind, and quarantines each media by ID.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::bot::BotContext;
use crate::bot::reply::Reply;
use crate::commands::{QuarantineTarget, UnquarantineTarget};
use crate::extract::mxc::parse_mxc;
use crate::homeserver::truthy;
use crate::jobs::Batch;
use crate::store::{ItemState, Job, JobItem, MediaRefSelection, RefsOf};

/// Media handled per batch (one checkpoint each).
const BATCH_SIZE: i64 = 20;
/// Admin API calls in flight at once.
const CONCURRENCY: usize = 4;
/// Sample media shown in a plan.
const SAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quarantine,
    Unquarantine,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quarantine => "quarantine",
            Self::Unquarantine => "unquarantine",
        }
    }

    fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "quarantine" => Some(Self::Quarantine),
            "unquarantine" => Some(Self::Unquarantine),
            _ => None,
        }
    }
}

/// What a plan selected, and the facts a moderator needs to confirm it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaPlan {
    /// Distinct media as `mxc://server/id`, in a stable order.
    pub media: Vec<String>,
    /// References per kind (one media can be referenced many times).
    pub refs_by_kind: BTreeMap<String, usize>,
    /// Distinct media per sender who referenced them.
    pub media_by_sender: BTreeMap<String, usize>,
    pub local: usize,
    pub remote: usize,
    /// Already quarantined by housekeep, per its records.
    pub already_quarantined: usize,
    /// Found only in the user's uploads, never referenced in an indexed event.
    pub uploads_only: usize,
}

/// Builds the plan from index rows, media named directly, and uploads.
/// Pure, so every count can be tested.
pub fn summarize(refs: &[MediaRefSelection], named: &[String], uploads: &[String], local_server: &str) -> MediaPlan {
    let mut plan = MediaPlan::default();
    let mut seen = BTreeSet::new();
    let mut quarantined = BTreeSet::new();
    let mut senders: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in refs {
        let mxc = format!("mxc://{}/{}", r.server_name, r.media_id);
        if !r.kind.is_empty() {
            *plan.refs_by_kind.entry(r.kind.clone()).or_default() += 1;
        }
        if !r.sender.is_empty() {
            senders.entry(&r.sender).or_default().insert(mxc.clone());
        }
        if r.quarantined_at.is_some() {
            quarantined.insert(mxc.clone());
        }
        if seen.insert(mxc.clone()) {
            plan.media.push(mxc);
        }
    }
    for mxc in named {
        if seen.insert(mxc.clone()) {
            plan.media.push(mxc.clone());
        }
    }
    for media_id in uploads {
        let mxc = format!("mxc://{local_server}/{media_id}");
        if seen.insert(mxc.clone()) {
            plan.media.push(mxc);
            plan.uploads_only += 1;
        }
    }
    plan.media_by_sender = senders.into_iter().map(|(sender, media)| (sender.to_owned(), media.len())).collect();
    plan.already_quarantined = quarantined.len();
    plan.local = plan.media.iter().filter(|m| mxc_server(m) == Some(local_server)).count();
    plan.remote = plan.media.len() - plan.local;
    plan
}

fn mxc_server(mxc: &str) -> Option<&str> {
    parse_mxc(mxc).ok().map(|m| m.server_name)
}

/// Renders a plan for the chat.
pub fn describe(action: Action, target: &str, plan: &MediaPlan) -> Reply {
    let verb = action.as_str();
    let mut reply = Reply::new().line(&format!(
        "Would {verb} {} media ({} on this server, {} remote) selected by {target}.",
        plan.media.len(),
        plan.local,
        plan.remote
    ));
    if !plan.refs_by_kind.is_empty() {
        let kinds: Vec<String> = plan.refs_by_kind.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        reply = reply.field("references by kind", &kinds.join(", "));
    }
    if !plan.media_by_sender.is_empty() {
        let mut senders: Vec<(&String, &usize)> = plan.media_by_sender.iter().collect();
        senders.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = senders.iter().take(5).map(|(s, n)| format!("{s} {n}")).collect();
        let more = senders.len().saturating_sub(5);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        reply = reply.field("media by sender", &format!("{}{more}", shown.join(", ")));
    }
    if plan.uploads_only > 0 {
        reply = reply.field("uploaded but never referenced in an indexed event", &plan.uploads_only.to_string());
    }
    let quarantined = match action {
        Action::Quarantine => "already quarantined (housekeep's records; done again, harmlessly)",
        Action::Unquarantine => "quarantined per housekeep's records",
    };
    reply = reply.field(quarantined, &plan.already_quarantined.to_string());
    if !plan.media.is_empty() {
        reply = reply.field("samples", &plan.media.iter().take(SAMPLES).cloned().collect::<Vec<_>>().join(", "));
    }
    if action == Action::Quarantine {
        reply = reply.line(
            "Synapse quarantines by content hash: identical files uploaded by anyone else become unavailable too. \
             Media an admin marked protected stays available; the result lists it.",
        );
    }
    reply
}

/// Selects the media for `!quarantine`, resolving rooms through the homeserver.
/// `list_uploads`: ask Synapse for a local user's uploads (needs server admin).
pub async fn select(
    ctx: &BotContext,
    target: &QuarantineTarget,
    list_uploads: bool,
) -> anyhow::Result<(String, MediaPlan)> {
    let local = ctx.bot_user_id.server_name().as_str().to_owned();
    Ok(match target {
        QuarantineTarget::Media(mxcs) => {
            let named: Vec<String> = mxcs.iter().map(|m| m.to_string()).collect();
            let mut refs = Vec::new();
            for mxc in &named {
                let parsed = parse_mxc(mxc).map_err(|e| anyhow::anyhow!("{mxc}: {e}"))?;
                let quarantined_at = ctx.store.media_quarantined_at(parsed.server_name, parsed.media_id).await?;
                refs.push(MediaRefSelection {
                    server_name: parsed.server_name.to_owned(),
                    media_id: parsed.media_id.to_owned(),
                    kind: String::new(),
                    sender: String::new(),
                    quarantined_at,
                });
            }
            (format!("{} named media", named.len()), summarize(&refs, &named, &[], &local))
        }
        QuarantineTarget::Room(room) => {
            let room_id = ctx.homeserver.resolve_room(room.as_str()).await?;
            let refs = ctx.store.media_refs_of(RefsOf::Room(room_id.as_str())).await?;
            (format!("room {room}"), summarize(&refs, &[], &[], &local))
        }
        QuarantineTarget::User(user) => {
            let refs = ctx.store.media_refs_of(RefsOf::Sender(user.as_str())).await?;
            // Uploads are listed by Synapse for local users only.
            let uploads = if list_uploads && user.server_name().as_str() == local {
                ctx.homeserver.user_uploads(user.as_str()).await?
            } else {
                Vec::new()
            };
            (
                format!("user {user} (media they referenced anywhere, and their uploads)"),
                summarize(&refs, &[], &uploads, &local),
            )
        }
        QuarantineTarget::Event(event) => {
            let refs = ctx.store.media_refs_of(RefsOf::Event(event.as_str())).await?;
            (format!("event {event}"), summarize(&refs, &[], &[], &local))
        }
        QuarantineTarget::Hash(sha256) => {
            let refs = ctx.store.media_with_hash(sha256).await?;
            (format!("content hash {sha256} (known from pre-download)"), summarize(&refs, &[], &[], &local))
        }
    })
}

/// The same selection for `!unquarantine` (no `event` form).
pub async fn select_unquarantine(
    ctx: &BotContext,
    target: &UnquarantineTarget,
    list_uploads: bool,
) -> anyhow::Result<(String, MediaPlan)> {
    let as_quarantine = match target {
        UnquarantineTarget::Media(m) => QuarantineTarget::Media(m.clone()),
        UnquarantineTarget::Room(r) => QuarantineTarget::Room(r.clone()),
        UnquarantineTarget::User(u) => QuarantineTarget::User(u.clone()),
        UnquarantineTarget::Hash(h) => QuarantineTarget::Hash(h.clone()),
    };
    select(ctx, &as_quarantine, list_uploads).await
}

/// The plan stored with the job: the counts (the media list is in `job_items`).
pub fn plan_json(action: Action, target: &str, reason: Option<&str>, plan: &MediaPlan) -> Value {
    json!({
        "action": action.as_str(),
        "target": target,
        "reason": reason,
        "media": plan.media.len(),
        "local": plan.local,
        "remote": plan.remote,
        "already_quarantined": plan.already_quarantined,
        "refs_by_kind": plan.refs_by_kind,
        "uploads_only": plan.uploads_only,
    })
}

/// One batch: the next media after the cursor, `CONCURRENCY` at a time.
/// Quarantining is idempotent, so a batch redone after a crash is harmless.
pub async fn run_batch(ctx: &BotContext, job: &Job) -> anyhow::Result<Batch> {
    let action = Action::from_kind(&job.kind).ok_or_else(|| anyhow::anyhow!("not a quarantine job"))?;
    let after = job.cursor.as_ref().and_then(Value::as_i64).unwrap_or(-1);
    let items = ctx.store.next_job_items(&job.id, after, BATCH_SIZE).await?;
    let Some(last) = items.last().map(|i| i.seq) else {
        return Ok(Batch { cursor: json!(after), finished: true, ..Batch::default() });
    };
    let outcomes: Vec<(JobItem, ItemState, String)> = futures::stream::iter(items)
        .map(|item| async move {
            let (state, detail) = apply(ctx, job, action, &item.item).await;
            (item, state, detail)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut batch = Batch::from_outcomes(job, last, outcomes, |_| format!("{}.media", action.as_str()));
    let remaining = ctx.store.next_job_items(&job.id, last, 1).await?;
    batch.finished = remaining.is_empty();
    Ok(batch)
}

/// Quarantines or releases one media and records it; never fails the batch:
/// a failure (after the client's retries) becomes the item's outcome.
pub(crate) async fn apply(ctx: &BotContext, job: &Job, action: Action, mxc: &str) -> (ItemState, String) {
    let Ok(parsed) = parse_mxc(mxc) else {
        return (ItemState::Failed, "not a valid mxc URI".to_owned());
    };
    let (server, media_id) = (parsed.server_name, parsed.media_id);
    // Synapse answers 200 for protected media but keeps serving it: look first,
    // so protected media is neither reported nor recorded as quarantined.
    if action == Action::Quarantine
        && server == ctx.bot_user_id.server_name().as_str()
        && let Ok(Some(info)) = ctx.homeserver.media_info(server, media_id).await
        && truthy(&info["safe_from_quarantine"])
    {
        return (ItemState::Skipped, "protected: Synapse keeps serving it".to_owned());
    }
    let called = match action {
        Action::Quarantine => ctx.homeserver.quarantine_media(server, media_id).await,
        Action::Unquarantine => ctx.homeserver.unquarantine_media(server, media_id).await,
    };
    if let Err(error) = called {
        return (ItemState::Failed, error.to_string());
    }
    let actor = job.confirmed_by.as_deref().unwrap_or(&job.requested_by);
    let record = match action {
        Action::Quarantine => Some((actor, job.plan["reason"].as_str())),
        Action::Unquarantine => None,
    };
    if let Err(error) = ctx.store.set_media_quarantine(server, media_id, record).await {
        tracing::warn!(mxc, error = format!("{error:#}"), "quarantine done but not recorded in the media table");
    }
    (ItemState::Done, format!("{}d", action.as_str()))
}

/// The result reply, in the shape of Synapse's admin API answers.
pub async fn describe_result(ctx: &BotContext, job: &Job, status: &str) -> anyhow::Result<Reply> {
    let action = Action::from_kind(&job.kind).unwrap_or(Action::Quarantine);
    let done = ctx.store.job_items_in_state(&job.id, ItemState::Done, 10).await?;
    let skipped = ctx.store.job_items_in_state(&job.id, ItemState::Skipped, 10).await?;
    let failed = ctx.store.job_items_in_state(&job.id, ItemState::Failed, 5).await?;
    let count_key = format!("{}d_count", action.as_str());
    let mut reply = Reply::new()
        .title(&format!("Job {} ({}) {status}", job.id, job.kind))
        .field(&count_key, &job.done_count.to_string())
        .field("status", status);
    if !done.is_empty() {
        let more = if job.done_count > done.len() as i64 {
            format!(" … ({} in all)", job.done_count)
        } else {
            String::new()
        };
        let ids: Vec<&str> = done.iter().map(|i| i.item.as_str()).collect();
        reply = reply.field("media", &format!("{}{more}", ids.join(", ")));
    }
    if action == Action::Quarantine {
        reply = reply.field("already quarantined before", &job.plan["already_quarantined"].to_string());
    }
    if !skipped.is_empty() {
        let list: Vec<String> =
            skipped.iter().map(|i| format!("{} ({})", i.item, i.detail.as_deref().unwrap_or(""))).collect();
        reply = reply.field("not quarantined", &list.join(", "));
    }
    reply = reply.field("failed", &job.failed_count.to_string());
    if !failed.is_empty() {
        reply = reply.list(failed.iter().map(|i| format!("{}: {}", i.item, i.detail.as_deref().unwrap_or(""))));
    }
    Ok(reply.line(&format!("{}job {} lists every media and its outcome.", ctx.prefix, job.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(server: &str, id: &str, kind: &str, sender: &str, quarantined: bool) -> MediaRefSelection {
        MediaRefSelection {
            server_name: server.into(),
            media_id: id.into(),
            kind: kind.into(),
            sender: sender.into(),
            quarantined_at: quarantined.then_some(1),
        }
    }

    #[test]
    fn counts_distinct_media_kinds_senders_and_locality() {
        let refs = [
            r("hs", "a", "url", "@x:hs", false),
            r("hs", "a", "thumbnail", "@y:hs", false),
            r("hs", "b", "file", "@x:hs", true),
            r("remote.org", "c", "html_img", "@x:hs", false),
        ];
        let plan = summarize(&refs, &[], &["a".into(), "u".into()], "hs");
        assert_eq!(plan.media, ["mxc://hs/a", "mxc://hs/b", "mxc://remote.org/c", "mxc://hs/u"]);
        assert_eq!(plan.refs_by_kind.values().sum::<usize>(), 4);
        assert_eq!(plan.media_by_sender["@x:hs"], 3);
        assert_eq!(plan.media_by_sender["@y:hs"], 1);
        assert_eq!((plan.local, plan.remote, plan.already_quarantined, plan.uploads_only), (3, 1, 1, 1));
        let text = describe(Action::Quarantine, "room !r", &plan).plain;
        assert!(text.contains("Would quarantine 4 media (3 on this server, 1 remote)"), "{text}");
        assert!(text.contains("content hash"), "{text}");
    }

    #[test]
    fn an_empty_selection_is_an_empty_plan() {
        let plan = summarize(&[], &[], &[], "hs");
        assert!(plan.media.is_empty());
        assert!(describe(Action::Unquarantine, "event $e", &plan).plain.starts_with("Would unquarantine 0 media"));
    }
}
