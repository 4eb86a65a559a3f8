//! What `!quarantine` and `!unquarantine` select, and the plan a moderator
//! confirms. Selections come from the index only (no event scans), are
//! counted in SQL and written as job items in chunks.

use std::collections::{BTreeMap, HashSet};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::args::{QuarantineTarget, UnquarantineTarget};
use crate::extract::mxc::parse_mxc;
use crate::homeserver::MediaInfo;
use crate::jobs::{PlanContext, Planned, Size};
use crate::notice::Notice;
use crate::store::{MediaId, MediaSelectionStats, RefsOf, Scope};

/// Who shared a media, when a job takes only media of its own sharers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub owners: Vec<String>,
}

/// Sample media shown in a plan.
const SAMPLES: usize = 5;
/// Local media referenced by the user but uploaded by someone else, named in
/// the plan with their uploader (one admin lookup each).
const MAX_UPLOADERS_NAMED: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

/// The stored plan: what was selected and why (the media list is in `job_items`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaPlan {
    pub target: String,
    pub reason: Option<String>,
    pub media: i64,
    pub local: i64,
    pub remote: i64,
    pub already_quarantined: i64,
    /// References per kind (one media can be referenced many times).
    pub refs_by_kind: BTreeMap<String, i64>,
    /// Found only in the user's uploads, never referenced in an indexed event.
    pub uploads_only: i64,
    /// Media only mentioned, left out (or, with `--include-mentions`, included).
    pub mentions: i64,
    pub include_mentions: bool,
    /// Media the selection's senders shared that someone else uploaded is included.
    #[serde(default)]
    pub include_others_uploads: bool,
    /// Local media the selected user referenced that someone else uploaded.
    pub uploaded_by_others: Vec<(String, String)>,
    pub uploaded_by_others_count: i64,
    /// A room selection's room: Synapse's room call may take its media in one go.
    #[serde(default)]
    pub room_id: Option<String>,
    /// A local user's selection (all their uploads listed): Synapse's user
    /// call may take their uploads in one go.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// One selection, whichever command it came from.
pub(super) enum Selection<'a> {
    Media(&'a [ruma::OwnedMxcUri]),
    Room(&'a ruma::OwnedRoomOrAliasId),
    User(&'a ruma::OwnedUserId),
    Event(&'a ruma::OwnedEventId),
    Hash(&'a str),
}

impl<'a> From<&'a QuarantineTarget> for Selection<'a> {
    fn from(target: &'a QuarantineTarget) -> Self {
        match target {
            QuarantineTarget::Media(m) => Self::Media(m),
            QuarantineTarget::Room(r) => Self::Room(r),
            QuarantineTarget::User(u) => Self::User(u),
            QuarantineTarget::Event(e) => Self::Event(e),
            QuarantineTarget::Hash(h) => Self::Hash(h),
        }
    }
}

impl<'a> From<&'a UnquarantineTarget> for Selection<'a> {
    fn from(target: &'a UnquarantineTarget) -> Self {
        match target {
            UnquarantineTarget::Media(m) => Self::Media(m),
            UnquarantineTarget::Room(r) => Self::Room(r),
            UnquarantineTarget::User(u) => Self::User(u),
            UnquarantineTarget::Hash(h) => Self::Hash(h),
        }
    }
}

/// Writes the selection's media as job items and describes the plan.
pub(super) async fn plan(
    ctx: &mut PlanContext<'_>,
    action: Action,
    selection: Selection<'_>,
    include_mentions: bool,
    include_others_uploads: bool,
    reason: Option<&str>,
) -> anyhow::Result<Planned<MediaPlan>> {
    let services = ctx.services;
    let local = services.server_name().to_owned();
    let admin = services.homeserver.is_server_admin(&services.bot_user_id).await?;
    let scope = if include_mentions { Scope::All } else { Scope::Shared };
    let mut plan = MediaPlan {
        reason: reason.map(str::to_owned),
        include_mentions,
        include_others_uploads,
        ..MediaPlan::default()
    };
    // Who a user or event selection takes media of (see `kind::Owners`).
    let owned = |owners: Vec<String>| (!include_others_uploads).then_some(Owned { owners });
    let mut samples = Vec::new();
    let mut stats = MediaSelectionStats::default();
    match selection {
        Selection::Media(mxcs) => {
            plan.target = format!("{} named media", mxcs.len());
            for mxc in mxcs {
                let parsed = parse_mxc(mxc.as_str()).map_err(|e| anyhow::anyhow!("{mxc}: {e}"))?;
                let media =
                    MediaId { server_name: parsed.server_name.to_owned(), media_id: parsed.media_id.to_owned() };
                stats.media += 1;
                stats.local += i64::from(media.server_name == local);
                if services.store.media_quarantined_at(&media.server_name, &media.media_id).await?.is_some() {
                    stats.already_quarantined += 1;
                }
                push(ctx, &media, &None, &mut samples).await?;
            }
        }
        Selection::Room(room) => {
            let room_id = services.homeserver.resolve_room(room.as_str()).await?;
            plan.target = format!("room {room}");
            if action == Action::Quarantine {
                plan.room_id = Some(room_id.to_string());
            }
            let of = RefsOf::Room(room_id.as_str());
            stats = services.store.media_selection_stats(of, scope, &local).await?;
            let mut media = std::pin::pin!(services.store.selected_media(of, scope));
            while let Some(id) = media.try_next().await? {
                push(ctx, &id, &None, &mut samples).await?;
            }
        }
        Selection::User(user) => {
            plan.target = format!("user {user} (media they shared anywhere, and their uploads)");
            let of = RefsOf::Sender(user.as_str());
            stats = services.store.media_selection_stats(of, scope, &local).await?;
            // Local media they referenced: which of it did they not upload themselves?
            let mut referenced_local = HashSet::new();
            let owners = owned(vec![user.to_string()]);
            let mut media = std::pin::pin!(services.store.selected_media(of, scope));
            while let Some(id) = media.try_next().await? {
                if id.server_name == local {
                    referenced_local.insert(id.media_id.clone());
                }
                push(ctx, &id, &owners, &mut samples).await?;
            }
            // Synapse lists uploads of local users only, and to admins only.
            if admin && user.server_name().as_str() == local {
                ctx.flush().await?;
                let before = ctx.items_written();
                let mut from = 0;
                loop {
                    let (page, next) = services.homeserver.user_uploads_page(user.as_str(), from).await?;
                    for media_id in page.into_iter().map(|upload| upload.media_id) {
                        referenced_local.remove(&media_id);
                        push(ctx, &MediaId { server_name: local.clone(), media_id }, &None, &mut samples).await?;
                    }
                    match next {
                        Some(next) => from = next,
                        None => break,
                    }
                }
                ctx.flush().await?;
                if action == Action::Quarantine {
                    plan.user_id = Some(user.to_string());
                }
                plan.uploads_only = ctx.items_written() - before;
                plan.uploaded_by_others_count = referenced_local.len() as i64;
                let mut others: Vec<&String> = referenced_local.iter().collect();
                others.sort();
                for media_id in others.into_iter().take(MAX_UPLOADERS_NAMED) {
                    let uploader = match services.homeserver.media_info(&local, media_id).await? {
                        Some(info) => info.user_id.unwrap_or_else(|| "someone unknown".to_owned()),
                        None => "nobody Synapse knows (not on this server)".to_owned(),
                    };
                    plan.uploaded_by_others.push((format!("mxc://{local}/{media_id}"), uploader));
                }
            }
        }
        Selection::Event(event) => {
            plan.target = format!("event {event}");
            let of = RefsOf::Event(event.as_str());
            stats = services.store.media_selection_stats(of, scope, &local).await?;
            let owners = owned(stats.top_senders.iter().map(|(sender, _)| sender.clone()).collect());
            let mut media = std::pin::pin!(services.store.selected_media(of, scope));
            while let Some(id) = media.try_next().await? {
                push(ctx, &id, &owners, &mut samples).await?;
            }
        }
        Selection::Hash(sha256) => {
            plan.target = format!("content hash {sha256} (known from pre-download)");
            let mut media = std::pin::pin!(services.store.media_with_hash(sha256));
            while let Some(id) = media.try_next().await? {
                stats.media += 1;
                stats.local += i64::from(id.server_name == local);
                if services.store.media_quarantined_at(&id.server_name, &id.media_id).await?.is_some() {
                    stats.already_quarantined += 1;
                }
                push(ctx, &id, &None, &mut samples).await?;
            }
        }
    }
    ctx.flush().await?;
    plan.media = ctx.items_written();
    // Uploads add local media the stats did not see.
    plan.local = stats.local + plan.uploads_only;
    plan.remote = plan.media - plan.local;
    plan.already_quarantined = stats.already_quarantined;
    plan.refs_by_kind = stats.refs_by_kind.iter().cloned().collect();
    plan.mentions = stats.mentions_only;
    let summary = describe(action, &plan, &stats, &samples);
    let blocked = (!admin).then(|| {
        "Synapse's media admin API needs the bot to be a server admin, and it also lists a user's unsent uploads"
            .to_owned()
    });
    Ok(Planned { size: Size { events: 0, media: plan.media }, plan, summary, blocked, irreversible: false })
}

/// Adds one media to the job's items, keeping the first few as samples.
async fn push(
    ctx: &mut PlanContext<'_>,
    media: &MediaId,
    owned: &Option<Owned>,
    samples: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mxc = media.mxc();
    if samples.len() < SAMPLES && !samples.contains(&mxc) {
        samples.push(mxc.clone());
    }
    ctx.push_item(mxc, owned).await
}

/// Renders a plan for people.
fn describe(action: Action, plan: &MediaPlan, stats: &MediaSelectionStats, samples: &[String]) -> Notice {
    let verb = action.as_str();
    let mut notice = Notice::new().line(&format!(
        "Would {verb} {} media ({} on this server, {} remote) selected by {}.",
        plan.media, plan.local, plan.remote, plan.target
    ));
    if !plan.refs_by_kind.is_empty() {
        let kinds: Vec<String> = plan.refs_by_kind.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        notice = notice.field("references by kind", &kinds.join(", "));
    }
    if !stats.top_senders.is_empty() {
        let shown: Vec<String> = stats.top_senders.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let more = stats.senders - stats.top_senders.len() as i64;
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        notice = notice.field("media by sender", &format!("{}{more}", shown.join(", ")));
    }
    if plan.uploads_only > 0 {
        notice = notice.field("uploaded but never referenced in an indexed event", &plan.uploads_only.to_string());
    }
    if plan.mentions > 0 {
        let what = if plan.include_mentions {
            "included (--include-mentions)".to_owned()
        } else {
            "left out; add --include-mentions to include them".to_owned()
        };
        notice = notice.field(
            "only mentioned (an mxc URI in a text or field, or a member's profile picture), not shared",
            &format!("{} media, {what}; e.g. {}", plan.mentions, stats.mention_samples.join(", ")),
        );
    }
    if plan.uploaded_by_others_count > 0 {
        let named: Vec<String> =
            plan.uploaded_by_others.iter().map(|(mxc, uploader)| format!("{mxc} uploaded by {uploader}")).collect();
        let more = plan.uploaded_by_others_count - plan.uploaded_by_others.len() as i64;
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let what = if plan.include_others_uploads {
            "shared by this user but uploaded by someone else (included: --include-others-uploads)"
        } else {
            "shared by this user but uploaded by someone else (left alone; --include-others-uploads takes them)"
        };
        notice = notice.field(what, &format!("{}{more}", named.join(", ")));
    }
    let quarantined = match action {
        Action::Quarantine => "already quarantined (housekeep's records; done again, harmlessly)",
        Action::Unquarantine => "quarantined per housekeep's records",
    };
    notice = notice.field(quarantined, &plan.already_quarantined.to_string());
    if !samples.is_empty() {
        notice = notice.field("samples", &samples.join(", "));
    }
    if action == Action::Quarantine {
        notice = notice.line(
            "Synapse quarantines by content hash: identical files uploaded by anyone else become unavailable too. \
             Media an admin marked protected stays available; the result lists it.",
        );
    }
    notice
}

/// Whether Synapse keeps serving this media whatever we ask (protected).
pub(super) fn is_protected(info: &MediaInfo) -> bool {
    info.safe_from_quarantine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_says_what_is_left_out_and_whose_uploads_are_in() {
        let plan = MediaPlan {
            target: "user @s:hs (…)".into(),
            media: 4,
            local: 3,
            remote: 1,
            already_quarantined: 1,
            refs_by_kind: [("url".to_owned(), 3), ("other".to_owned(), 2)].into(),
            uploads_only: 1,
            mentions: 2,
            uploaded_by_others: vec![("mxc://hs/v".into(), "@victim:hs".into())],
            uploaded_by_others_count: 1,
            ..MediaPlan::default()
        };
        let stats = MediaSelectionStats {
            top_senders: vec![("@s:hs".into(), 3)],
            senders: 2,
            mention_samples: vec!["mxc://hs/m".into()],
            ..MediaSelectionStats::default()
        };
        let text = describe(Action::Quarantine, &plan, &stats, &["mxc://hs/a".into()]).plain;
        assert!(text.contains("Would quarantine 4 media (3 on this server, 1 remote)"), "{text}");
        assert!(text.contains("2 media, left out; add --include-mentions"), "{text}");
        assert!(text.contains("mxc://hs/v uploaded by @victim:hs"), "{text}");
        assert!(text.contains("media by sender: @s:hs 3 and 1 more"), "{text}");
        assert!(text.contains("content hash"), "{text}");
        let text = describe(Action::Unquarantine, &MediaPlan::default(), &MediaSelectionStats::default(), &[]).plain;
        assert!(text.starts_with("Would unquarantine 0 media"), "{text}");
        assert!(!text.contains("only mentioned"), "{text}");
    }
}
