//! Which rooms a backfill reads: one, a list, or every room the homeserver
//! knows (Synapse's admin room list, paged) — not only rooms the bot is in.

use ruma::OwnedRoomOrAliasId;
use serde::{Deserialize, Serialize};

use super::args::BackfillStart;
use crate::clock::format_ms;
use crate::grammar::{RoomSelector, TimeSpec};
use crate::jobs::{PlanContext, Planned, Size};
use crate::notice::Notice;

/// How a backfill reads.
#[derive(Debug, Clone, Copy)]
pub struct BackfillSettings {
    pub chunk_events: u32,
    /// Events asked for per page (`backfill.page_events`, at most 1,000).
    pub page_events: u32,
    pub max_pages_per_room: u32,
    /// Rooms read at once (`backfill.parallel_rooms`).
    pub parallel_rooms: u32,
}

/// Rooms per page of the admin room list.
const ROOMS_PAGE: u32 = 500;

/// What a backfill is asked to read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRequest {
    pub rooms: Rooms,
    pub since: Option<TimeSpec>,
    pub full: bool,
    /// Read back only to the first page the index holds (a transaction gap
    /// is recent: past it, history is there), at most a few pages.
    pub gap_repair: bool,
    /// What asked for it, in words ("`!backfill --all`", "the first start").
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rooms {
    All,
    One(OwnedRoomOrAliasId),
    /// Room IDs (housekeep's own requests).
    These(Vec<String>),
}

impl BackfillRequest {
    pub fn from_command(start: &BackfillStart, text: &str) -> Self {
        Self {
            rooms: match &start.rooms {
                RoomSelector::AllRooms => Rooms::All,
                RoomSelector::Room(room) => Rooms::One(room.clone()),
            },
            since: start.since,
            full: start.full,
            gap_repair: false,
            why: text.to_owned(),
        }
    }
}

/// The stored plan (the rooms themselves are the job's items).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillPlan {
    pub rooms: i64,
    /// Events older than this are not read.
    pub since: Option<i64>,
    pub full: bool,
    #[serde(default)]
    pub gap_repair: bool,
    pub why: String,
}

/// One room to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillItem {
    pub room_id: String,
    pub name: Option<String>,
}

pub(super) async fn plan(
    ctx: &mut PlanContext<'_>,
    request: &BackfillRequest,
    settings: BackfillSettings,
) -> anyhow::Result<Planned<BackfillPlan>> {
    let services = ctx.services;
    let admin = services.homeserver.is_server_admin(&services.bot_user_id).await?;
    let scope = match &request.rooms {
        Rooms::All => {
            if admin {
                let mut from = 0;
                loop {
                    let (rooms, next) = services.homeserver.admin_rooms_page(from, ROOMS_PAGE).await?;
                    for room in rooms {
                        let item = BackfillItem { room_id: room.room_id.clone(), name: room.name };
                        ctx.push_item(room.room_id, &item).await?;
                    }
                    match next {
                        Some(next) => from = next,
                        None => break,
                    }
                }
            }
            "every room the homeserver knows".to_owned()
        }
        Rooms::One(room) => {
            let room_id = services.homeserver.resolve_room(room.as_str()).await?.to_string();
            ctx.push_item(room_id.clone(), &BackfillItem { room_id: room_id.clone(), name: None }).await?;
            format!("{room} ({room_id})")
        }
        Rooms::These(rooms) => {
            for room_id in rooms {
                ctx.push_item(room_id.clone(), &BackfillItem { room_id: room_id.clone(), name: None }).await?;
            }
            format!("{} rooms", rooms.len())
        }
    };
    ctx.flush().await?;
    let plan = BackfillPlan {
        rooms: ctx.items_written(),
        since: request.since.map(|t| t.resolve(ctx.now_ms)),
        full: request.full,
        gap_repair: request.gap_repair,
        why: request.why.clone(),
    };
    let mut summary = Notice::new().line(&format!(
        "Would read the history of {} rooms ({scope}) into the index, newest first, {} events a chunk; \
         each chunk's media is downloaded and hashed before it is checkpointed.",
        plan.rooms, settings.chunk_events
    ));
    summary = summary.field(
        "each room down to",
        &match (plan.since, plan.full) {
            (Some(since), _) => format!("{} (--since)", format_ms(since)),
            (None, true) => "its creation, rereading what the index holds (--full)".to_owned(),
            (None, false) if plan.gap_repair => "the first page the index already holds (a transaction gap)".to_owned(),
            (None, false) => "its creation, or to events the index already holds below".to_owned(),
        },
    );
    summary = summary.field("asked by", &plan.why);
    let blocked = (!admin).then(|| "backfill reads history through Synapse's admin API".to_owned());
    Ok(Planned { size: Size::default(), plan, summary, blocked, irreversible: false })
}
