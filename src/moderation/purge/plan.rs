//! What `!purge` selects, and the plan a moderator confirms.

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::args::{PurgeArgs, PurgeMethod};
use crate::clock::format_ms;
use crate::grammar::RoomSelector;
use crate::jobs::{PlanContext, Planned, Size};
use crate::notice::Notice;
use crate::store::{EventFilter, EventSelectionStats};

pub(super) const LOCAL_ONLY: &str = "A purge is local only: other servers in these rooms may still have these events.";

/// The stored plan: what is selected and what will be done to it (the
/// events and media themselves are the job's items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgePlan {
    /// The method that will be used (a `delete` Synapse cannot do is a `redact`).
    pub method: PurgeMethod,
    pub reason: Option<String>,
    pub events: i64,
    pub rooms: i64,
    pub senders: i64,
    /// Media the events shared, quarantined after them (`--with-media`).
    pub media: i64,
    /// Media the events only mentioned, left alone.
    pub mentions_left_out: i64,
    /// Media shared by the selected events but uploaded by someone else is quarantined too.
    #[serde(default)]
    pub include_others_uploads: bool,
    pub state_excluded: i64,
    /// `purge_history` of one room before this time, instead of redactions.
    pub history_cut: Option<HistoryCut>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCut {
    pub room_id: String,
    /// The selection: non-state events sent before this.
    pub before: i64,
    /// `purge_up_to_event_id`: Synapse deletes what came before it in the room.
    pub cut_event_id: String,
}

/// What a purge job works through, in order: events (or one history cut), then media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum PurgeItem {
    Event {
        room_id: String,
        event_id: String,
        sender: String,
    },
    History {
        room_id: String,
        cut_event_id: String,
    },
    /// `owners`: who shared it; it is quarantined only if one of them
    /// uploaded it (local) or is on its server (remote). `None`: anyone's.
    Media {
        mxc: String,
        owners: Option<Vec<String>>,
    },
}

impl PurgeItem {
    pub(crate) fn room(&self) -> Option<&str> {
        match self {
            Self::Event { room_id, .. } | Self::History { room_id, .. } => Some(room_id),
            Self::Media { .. } => None,
        }
    }
}

pub(crate) async fn plan(ctx: &mut PlanContext<'_>, args: &PurgeArgs) -> anyhow::Result<Planned<PurgePlan>> {
    let services = ctx.services;
    let room_id = match &args.rooms {
        RoomSelector::Room(room) => Some(services.homeserver.resolve_room(room.as_str()).await?.to_string()),
        RoomSelector::AllRooms => None,
    };
    let filter = EventFilter {
        room_id: room_id.clone(),
        before: args.before.as_ref().map(|t| t.resolve(ctx.now_ms)),
        after: args.after.as_ref().map(|t| t.resolve(ctx.now_ms)),
        senders: args.users.iter().map(|u| u.to_string()).collect(),
        event_ids: args.events.iter().map(|e| e.to_string()).collect(),
        include_redacted: false,
    };
    let stats = services.store.event_selection_stats(&filter).await?;
    let mut plan = PurgePlan {
        method: PurgeMethod::Redact,
        reason: args.flags.reason.clone(),
        events: stats.events,
        rooms: stats.rooms,
        senders: stats.senders,
        media: 0,
        mentions_left_out: 0,
        include_others_uploads: args.include_others_uploads,
        state_excluded: stats.state_excluded,
        history_cut: None,
    };
    let mut notes = Vec::new();
    if args.method == PurgeMethod::Delete {
        let whole_room_cut = filter.after.is_none() && filter.senders.is_empty() && filter.event_ids.is_empty();
        match (&room_id, filter.before) {
            (Some(room), Some(before)) if whole_room_cut && stats.events > 0 => {
                plan.method = PurgeMethod::Delete;
                // purge_history keeps the event it cuts at and deletes what
                // came before it in the room's order: cut at the first event
                // after the selection, so every selected event goes. With
                // none after it, cut at the newest selected event, which
                // stays (Synapse never deletes a room's newest event).
                let after = services.store.first_event_at_or_after(room, before).await?;
                let cut = match &after {
                    Some(cut) => cut.clone(),
                    None => services.store.last_event_before(room, before).await?.expect("the selection is not empty"),
                };
                plan.history_cut = Some(HistoryCut { room_id: room.clone(), before, cut_event_id: cut.0 });
                notes.push(format!(
                    "delete: Synapse's purge_history removes these events from its database; state events stay{}. \
                     Afterwards housekeep asks Synapse about each selected event and forgets only those it deleted.",
                    if after.is_none() {
                        ", and so does the newest event (Synapse always keeps a room's newest)"
                    } else {
                        ""
                    }
                ));
            }
            _ => notes.push(
                "delete: Synapse can only delete a whole room's history before a time (--before without --user, \
                 --event or --after), so these events are redacted instead. Synapse erases redacted content from \
                 its database after its redaction_retention_period (7 days by default)."
                    .to_owned(),
            ),
        }
    }
    let admin = services.homeserver.is_server_admin(&services.bot_user_id).await?;
    let with_media = args.with_media.is_some();
    let blocked = (!admin).then(|| "purge needs Synapse's admin API".to_owned());
    // Write nothing that cannot run, and nothing for an empty selection.
    if stats.events > 0 && (admin || ctx.dry_run) {
        if let Some(cut) = &plan.history_cut {
            let item = PurgeItem::History { room_id: cut.room_id.clone(), cut_event_id: cut.cut_event_id.clone() };
            ctx.push_item(format!("history:{}", cut.room_id), &item).await?;
        } else {
            let mut events = std::pin::pin!(services.store.selected_events(&filter));
            while let Some(event) = events.try_next().await? {
                let item =
                    PurgeItem::Event { room_id: event.room_id, event_id: event.event_id.clone(), sender: event.sender };
                ctx.push_item(event.event_id, &item).await?;
            }
        }
        // Media after every event (redactions first, then the quarantine),
        // from a second pass over the selection in SQL: bounded, each media
        // once, and shared if any selected event shared it.
        if with_media {
            ctx.flush().await?;
            let before = ctx.items_written();
            let mut media = std::pin::pin!(services.store.media_of_selection(&filter));
            while let Some(found) = media.try_next().await? {
                if found.shared {
                    let mxc = found.media.mxc();
                    let owners = (!args.include_others_uploads).then_some(found.senders);
                    ctx.push_item(mxc.clone(), &PurgeItem::Media { mxc, owners }).await?;
                } else {
                    plan.mentions_left_out += 1;
                }
            }
            ctx.flush().await?;
            plan.media = ctx.items_written() - before;
        }
    }
    let summary = describe(&plan, &stats, with_media, &notes);
    Ok(Planned { size: Size { events: plan.events, media: plan.media }, plan, summary, blocked, irreversible: false })
}

/// Adds every media `user_id` (a local user) uploaded to this homeserver
/// as a media item, quarantined after the events; returns how many it
/// added that the plan did not hold already. Only their own uploads: the
/// owners check runs again for each when the job reaches it.
pub(crate) async fn push_uploads(ctx: &mut PlanContext<'_>, user_id: &str) -> anyhow::Result<i64> {
    ctx.flush().await?;
    let before = ctx.items_written();
    let server = ctx.services.server_name().to_owned();
    let mut from = 0;
    loop {
        let (page, next) = ctx.services.homeserver.user_uploads_page(user_id, from).await?;
        for upload in page {
            let mxc = format!("mxc://{server}/{}", upload.media_id);
            let item = PurgeItem::Media { mxc: mxc.clone(), owners: Some(vec![user_id.to_owned()]) };
            ctx.push_item(mxc, &item).await?;
        }
        match next {
            Some(next) => from = next,
            None => break,
        }
    }
    ctx.flush().await?;
    Ok(ctx.items_written() - before)
}

fn top(list: &[(String, i64)], all: i64) -> String {
    let shown: Vec<String> = list.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let more = all - list.len() as i64;
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

fn describe(plan: &PurgePlan, stats: &EventSelectionStats, with_media: bool, notes: &[String]) -> Notice {
    let verb = if plan.history_cut.is_some() { "delete" } else { "redact" };
    let mut notice = Notice::new().line(&format!(
        "Would {verb} {} events in {} rooms (method: {}).",
        plan.events,
        plan.rooms,
        plan.method.as_str()
    ));
    notice = notice
        .field("by room", &top(&stats.top_rooms, stats.rooms))
        .field("by sender", &top(&stats.top_senders, stats.senders));
    if let (Some(first), Some(last)) = (stats.first_ts, stats.last_ts) {
        notice = notice.field("from", &format_ms(first)).field("to", &format_ms(last));
    }
    notice = notice.field(
        "state events matching, left alone",
        &format!("{} (state is never purged; already-redacted events and redactions are skipped)", plan.state_excluded),
    );
    let media = if with_media {
        let mut text = format!("{} shared, quarantined after the events", plan.media);
        if !plan.include_others_uploads {
            text.push_str(
                " (those a sender shared but someone else uploaded are left alone: Synapse quarantines by \
                 content hash; add --include-others-uploads to take them too)",
            );
        }
        if plan.mentions_left_out > 0 {
            text.push_str(&format!(
                "; {} only mentioned (an mxc URI in a text or field) left alone",
                plan.mentions_left_out
            ));
        }
        text
    } else {
        "not touched (add --with-media quarantine)".to_owned()
    };
    notice = notice.field("media", &media);
    if plan.history_cut.is_none() {
        notice = notice.line(
            "Each event is redacted by housekeep's bot where it may redact (it joins through the admin API if needed), \
             otherwise, for senders on this server, as the sender; the result reports the way per room.",
        );
    }
    for note in notes {
        notice = notice.line(note);
    }
    notice.line(LOCAL_ONLY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_with_any_timestamp() {
        let plan = PurgePlan {
            method: PurgeMethod::Redact,
            reason: None,
            events: 2,
            rooms: 1,
            senders: 1,
            media: 0,
            mentions_left_out: 0,
            include_others_uploads: false,
            state_excluded: 3,
            history_cut: None,
        };
        // origin_server_ts is whatever the sending server says.
        let stats = EventSelectionStats {
            events: 2,
            rooms: 1,
            senders: 1,
            first_ts: Some(-5),
            last_ts: Some((1 << 53) - 1),
            top_rooms: vec![("!r".into(), 2)],
            top_senders: vec![("@s:hs".into(), 2)],
            state_excluded: 3,
        };
        let text = describe(&plan, &stats, false, &[]).plain;
        assert!(text.contains("Would redact 2 events in 1 rooms (method: redact)."), "{text}");
        assert!(text.contains("from: 1969-12-31T23:59:59Z"), "{text}");
        assert!(text.contains("to: 9007199254740991 ms since 1970"), "{text}");
        assert!(text.contains("local only"), "{text}");
    }
}
