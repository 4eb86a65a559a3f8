//! What `!room takedown` and `!room block|unblock` show before anything
//! happens: the room, its members, its aliases and the media the index
//! knows it shared.

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::args::{SetBlock, Takedown};
use crate::jobs::{PlanContext, Planned, Size};
use crate::notice::Notice;
use crate::store::{EventFilter, RefsOf, Scope};
use crate::text::line;

/// Members named in a plan, per side (local, remote); the rest are counted.
const NAMES_SHOWN: usize = 5;

pub(super) const LOCAL_ONLY: &str = "A takedown acts on this homeserver only: other servers in the room keep it, \
     its history and their members in it.";

/// Why the index keeps a purged room's rows, said in the plan and the result.
pub(super) const WHY_THE_INDEX_KEEPS: &str = "a purge erases events, not media files, and the index is then the \
     only record of which media the room shared (!quarantine room still finds it).";

/// The stored plan of a takedown; its media and the room itself are the job's items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakedownPlan {
    pub room_id: String,
    /// The room's name, as its state says (chosen by its members: shown through `text::line`).
    pub name: Option<String>,
    /// Whether the homeserver knows the room; one it does not can only be blocked.
    pub known: bool,
    pub block: bool,
    pub purge: bool,
    /// Told to the removed local members in a room the bot makes.
    pub message: Option<String>,
    pub reason: Option<String>,
    pub local_members: i64,
    pub remote_members: i64,
    /// The room's local aliases when planned (checked again after).
    pub aliases: Vec<String>,
    /// `--with-media quarantine`: the room's shared media goes first.
    pub with_media: bool,
    /// Media quarantined before the takedown (with `with_media`).
    pub media: i64,
    /// What the index held of the room when planned.
    pub indexed_events: i64,
    pub indexed_media: i64,
}

/// What a takedown job works through, in order: the media, then the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum TakedownItem {
    /// Quarantined whoever uploaded it (`owners: None` for `quarantine::apply`).
    Media { mxc: String },
    /// Synapse's delete of the room.
    Room { room_id: String },
}

/// The job item key of the room itself.
pub(super) fn room_key(room_id: &str) -> String {
    format!("room:{room_id}")
}

/// Who is in a room, split by server.
#[derive(Debug, Default)]
struct Members {
    local: Vec<String>,
    remote: Vec<String>,
}

pub(super) async fn plan_takedown(
    ctx: &mut PlanContext<'_>,
    takedown: &Takedown,
) -> anyhow::Result<Planned<TakedownPlan>> {
    let services = ctx.services;
    let homeserver = &services.homeserver;
    let room_id = takedown.room_id.as_str();
    let args = &takedown.args;
    let admin = homeserver.is_server_admin(&services.bot_user_id).await?;
    let mut plan = TakedownPlan {
        room_id: room_id.to_owned(),
        block: args.block,
        purge: args.purge,
        message: args.message.clone(),
        with_media: args.with_media.is_some(),
        reason: takedown.reason.clone(),
        ..TakedownPlan::default()
    };
    let mut members = Members::default();
    let mut blocked_by = None;
    // Synapse tells all this to server admins only.
    if admin {
        let listed = homeserver.room_details(room_id).await?;
        plan.known = listed.is_some();
        plan.name = listed.and_then(|room| room.name);
        if let Some(joined) = homeserver.room_members(room_id).await? {
            for member in joined {
                let side = if member.server_name() == services.bot_user_id.server_name() {
                    &mut members.local
                } else {
                    &mut members.remote
                };
                side.push(member.to_string());
            }
        }
        (plan.local_members, plan.remote_members) = (members.local.len() as i64, members.remote.len() as i64);
        if plan.known {
            plan.aliases = homeserver.room_aliases(&takedown.room_id).await?;
        }
        let state = homeserver.room_block(room_id).await?;
        blocked_by = state.block.then(|| state.user_id.unwrap_or_else(|| "someone unknown".to_owned()));
    }
    let local = services.server_name();
    let of = RefsOf::Room(room_id);
    let media = services.store.media_selection_stats(of, Scope::Shared, local).await?;
    let filter = EventFilter { room_id: Some(room_id.to_owned()), ..EventFilter::default() };
    plan.indexed_events = services.store.event_selection_stats(&filter).await?.events;
    plan.indexed_media = media.media;
    let blocked = (!admin).then(|| "a room takedown needs Synapse's admin API".to_owned());
    if admin || ctx.dry_run {
        // The media first: the takedown's purge erases the events that
        // reference it (Synapse's own room quarantine could not find it
        // then). A room Synapse no longer knows may still have media in
        // the index, and the files are still served: quarantined all the same.
        if plan.with_media {
            let mut selected = std::pin::pin!(services.store.selected_media(of, Scope::Shared));
            while let Some(id) = selected.try_next().await? {
                let mxc = id.mxc();
                ctx.push_item(mxc.clone(), &TakedownItem::Media { mxc }).await?;
            }
            ctx.flush().await?;
            plan.media = ctx.items_written();
        }
        // A room the homeserver does not know has nothing to shut down: only a block is left to do.
        if !admin || plan.known || plan.block {
            ctx.push_item(room_key(room_id), &TakedownItem::Room { room_id: room_id.to_owned() }).await?;
        }
    }
    let summary = describe_takedown(&plan, &members, blocked_by.as_deref(), media.already_quarantined, admin);
    // A purge erases what the index holds of the room: that many events
    // count against `admin.confirm_threshold` as a `!purge` of them would.
    let size = Size { events: if plan.purge { plan.indexed_events } else { 0 }, media: plan.media };
    // It removes every local member and moves or deletes the aliases (a purge
    // deletes the room for good): never by --yes alone, whatever its size,
    // nor on an alias another server answered for.
    let irreversible = plan.known;
    Ok(Planned { plan, summary, size, blocked, irreversible })
}

/// The room as a moderator knows it: its name (if any) and ID.
pub(super) fn room_label(room_id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("\"{}\" ({room_id})", line(name)),
        None => room_id.to_owned(),
    }
}

/// `n` names of a list, and how many more there are.
fn some_of(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(NAMES_SHOWN).map(String::as_str).collect();
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

fn describe_takedown(
    plan: &TakedownPlan,
    members: &Members,
    blocked_by: Option<&str>,
    media_quarantined_already: i64,
    admin: bool,
) -> Notice {
    let room = room_label(&plan.room_id, plan.name.as_deref());
    let mut notice = Notice::new().line(&format!("Would take down {room} on this homeserver."));
    if admin && !plan.known {
        let then = if plan.block {
            "it is only blocked, so nobody here can join it or be invited to it"
        } else {
            "add --block to keep anyone here from joining it"
        };
        notice =
            notice.line(&format!("This homeserver does not know the room: there is nothing to shut down; {then}."));
    }
    if admin && plan.known {
        let side = |list: &[String]| {
            if list.is_empty() { "0".to_owned() } else { format!("{} ({})", list.len(), some_of(list)) }
        };
        notice = notice
            .field("local members (removed)", &side(&members.local))
            .field("remote members (stay, on their servers)", &side(&members.remote));
        let aliases = if plan.aliases.is_empty() {
            "none".to_owned()
        } else {
            let fate = match (plan.message.is_some(), plan.purge) {
                (true, _) => "moved to the room the message is posted in",
                (false, true) => "deleted with the purge",
                (false, false) => "kept, pointing at the emptied room (add --purge to delete them)",
            };
            // Chosen by the room's members: each on one line, cut, and a few of them.
            let shown: Vec<String> = plan.aliases.iter().map(|alias| line(alias)).collect();
            format!("{}: {fate}", some_of(&shown))
        };
        notice = notice.field("local aliases", &aliases);
    } else if !admin {
        notice = notice.field("members and aliases", "unknown: Synapse shows them to server admins only");
    }
    let media = match (plan.indexed_media, plan.with_media) {
        (0, _) if plan.indexed_events == 0 => "unknown: housekeep's index holds nothing of this room".to_owned(),
        (0, _) => "none shared, per housekeep's index".to_owned(),
        (found, false) => format!("{found} shared, per housekeep's index: not touched (add --with-media quarantine)"),
        (found, true) => format!(
            "{found} shared, per housekeep's index ({media_quarantined_already} quarantined already): each \
             quarantined before the takedown, whoever uploaded it (Synapse quarantines every copy of the file)"
        ),
    };
    notice = notice.field("media", &media);
    let block = match (plan.block, blocked_by) {
        (true, None) => {
            "yes: nobody on this server can join it or be invited again (!room unblock lifts it)".to_owned()
        }
        (true, Some(by)) => format!("yes (blocked already, by {})", line(by)),
        (false, Some(by)) => format!("no (blocked already, by {}; it stays blocked)", line(by)),
        (false, None) => "no: local users can join it again later (add --block)".to_owned(),
    };
    notice = notice.field("block", &block);
    // A room Synapse does not know has no history to purge and nobody to tell.
    if admin && !plan.known {
        return notice.line(LOCAL_ONLY);
    }
    notice = notice.field(
        "purge",
        if plan.purge {
            "yes: Synapse erases the room's events and state from its database (media files stay)"
        } else {
            "no: the room's history stays in Synapse's database (add --purge)"
        },
    );
    let message = match &plan.message {
        Some(text) => format!(
            "\"{}\": housekeep's bot makes a room, moves the removed local members there and posts it",
            line(text)
        ),
        None => "none: the local members are removed without a word (add --message)".to_owned(),
    };
    notice = notice.field("message", &message);
    if plan.purge {
        notice = notice.line(&format!(
            "After the purge, housekeep's index keeps this room's events and their media references: \
             {WHY_THE_INDEX_KEEPS}"
        ));
    }
    notice.line(LOCAL_ONLY)
}

/// The stored plan of a block or an unblock; the room is the job's one item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPlan {
    pub room_id: String,
    pub name: Option<String>,
    /// `true` to block, `false` to unblock.
    pub block: bool,
    pub reason: Option<String>,
}

/// The job item of a block or an unblock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BlockItem {
    pub room_id: String,
    pub block: bool,
}

pub(super) async fn plan_block(ctx: &mut PlanContext<'_>, set: &SetBlock) -> anyhow::Result<Planned<BlockPlan>> {
    let services = ctx.services;
    let homeserver = &services.homeserver;
    let room_id = set.room_id.as_str();
    let admin = homeserver.is_server_admin(&services.bot_user_id).await?;
    let mut plan = BlockPlan { room_id: room_id.to_owned(), block: set.block, reason: set.reason.clone(), name: None };
    let verb = if set.block { "block" } else { "unblock" };
    let mut state = None;
    if admin {
        plan.name = homeserver.room_details(room_id).await?.and_then(|room| room.name);
        state = Some(homeserver.room_block(room_id).await?);
    }
    let room = room_label(room_id, plan.name.as_deref());
    let mut notice = Notice::new();
    match &state {
        Some(now) if now.block == set.block => {
            let by = now.user_id.as_deref().map(|by| format!(", by {}", line(by))).unwrap_or_default();
            let state = if now.block { "blocked" } else { "not blocked" };
            notice = notice.line(&format!("{room} is {state} already{by}: nothing to {verb}."));
        }
        _ => {
            notice = notice.line(&format!("Would {verb} {room} on this homeserver."));
            if let Some(now) = &state
                && now.block
            {
                let by = now.user_id.as_deref().unwrap_or("someone unknown");
                notice = notice.field("blocked now by", &line(by));
            }
            notice = notice.line(if set.block {
                "Blocked, nobody on this server can join the room or be invited to it, and this server will not \
                 join it over federation. Its members stay and nothing is deleted: !room takedown removes them."
            } else {
                "Unblocked, local users can join the room again."
            });
            if admin || ctx.dry_run {
                ctx.push_item(room_key(room_id), &BlockItem { room_id: room_id.to_owned(), block: set.block }).await?;
            }
        }
    }
    let blocked = (!admin).then(|| format!("{verb}ing a room needs Synapse's admin API"));
    Ok(Planned { plan, summary: notice, size: Size::default(), blocked, irreversible: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known_room() -> TakedownPlan {
        TakedownPlan {
            room_id: "!r:hs".into(),
            name: Some("Bazaar\u{202e}gpj.exe".into()),
            known: true,
            aliases: vec!["#bazaar:hs".into()],
            indexed_events: 10,
            indexed_media: 2,
            ..TakedownPlan::default()
        }
    }

    fn members(local: usize, remote: usize) -> Members {
        Members {
            local: (0..local).map(|i| format!("@l{i}:hs")).collect(),
            remote: (0..remote).map(|i| format!("@r{i}:elsewhere")).collect(),
        }
    }

    #[test]
    fn a_known_room_shows_members_aliases_media_and_what_stays() {
        let text = describe_takedown(&known_room(), &members(7, 1), None, 0, true).plain;
        assert!(text.contains("Would take down \"Bazaar\u{FFFD}gpj.exe\" (!r:hs)"), "a name cannot reorder: {text}");
        assert!(
            text.contains("local members (removed): 7 (@l0:hs, @l1:hs, @l2:hs, @l3:hs, @l4:hs and 2 more)"),
            "{text}"
        );
        assert!(text.contains("remote members (stay, on their servers): 1 (@r0:elsewhere)"), "{text}");
        assert!(text.contains("#bazaar:hs: kept, pointing at the emptied room"), "{text}");
        assert!(text.contains("media: 2 shared, per housekeep's index: not touched (add --with-media"), "{text}");
        assert!(text.contains("block: no: local users can join it again later"), "{text}");
        assert!(!text.contains("After the purge"), "{text}");
        assert!(text.ends_with(LOCAL_ONLY), "{text}");
    }

    #[test]
    fn the_aliases_fate_follows_message_and_purge() {
        let purged = TakedownPlan { purge: true, ..known_room() };
        let text = describe_takedown(&purged, &members(1, 0), None, 0, true).plain;
        assert!(text.contains("#bazaar:hs: deleted with the purge") && text.contains("After the purge"), "{text}");
        let told = TakedownPlan { purge: true, message: Some("closed".into()), ..known_room() };
        let text = describe_takedown(&told, &members(1, 0), None, 0, true).plain;
        assert!(text.contains("#bazaar:hs: moved to the room the message is posted in"), "{text}");
        assert!(text.contains("message: \"closed\": housekeep's bot makes a room"), "{text}");
    }

    #[test]
    fn an_unknown_room_can_only_be_blocked_and_a_non_admin_bot_knows_little() {
        let unknown = TakedownPlan { room_id: "!gone:hs".into(), block: true, ..TakedownPlan::default() };
        let text = describe_takedown(&unknown, &Members::default(), Some("@mod:hs"), 0, true).plain;
        assert!(text.contains("does not know the room: there is nothing to shut down; it is only blocked"), "{text}");
        assert!(text.contains("block: yes (blocked already, by @mod:hs)"), "{text}");
        assert!(text.contains("media: unknown: housekeep's index holds nothing of this room"), "{text}");
        assert!(!text.contains("local members") && !text.contains("purge:"), "nothing to say about those: {text}");
        let text = describe_takedown(&known_room(), &Members::default(), None, 0, false).plain;
        assert!(text.contains("members and aliases: unknown: Synapse shows them to server admins only"), "{text}");
    }
}
