//! `!purge`: select events from the index, plan, and redact or delete them
//! as a job.
//!
//! How each event is redacted, least invasive first (reported per room):
//! 1. by housekeep's bot, if it has the power to redact in the room (joined
//!    through the admin API first if it is not a member);
//! 2. otherwise, for a sender on this homeserver, as the sender, with a
//!    short-lived token from Synapse's admin login API (no device is made;
//!    everyone may redact their own events);
//! 3. otherwise the event is not redacted and the result says why.
//!
//! Synapse's user-redact API is not used: it redacts every event of the
//! user in a time window (their joins too) and redacts again on a rerun.
//! `delete` uses `purge_history`, which can only cut a room's history before
//! a time; any other selection is redacted instead, and the plan says so.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::quarantine;
use crate::bot::BotContext;
use crate::bot::auth::{level, power_level};
use crate::bot::reply::Reply;
use crate::commands::{PurgeArgs, PurgeMethod, RoomSelector};
use crate::jobs::Batch;
use crate::store::{EventFilter, ItemState, Job, JobItem, SelectedEvent, now_ms};

const BATCH_SIZE: i64 = 20;
const CONCURRENCY: usize = 4;
/// How long a token from the admin login API stays valid.
const SENDER_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const LOCAL_ONLY: &str = "A purge is local only: other servers in these rooms may still have these events.";

/// A purge plan: what is selected and what will be done to it.
#[derive(Debug, Clone, Default)]
pub struct PurgePlan {
    pub events: Vec<SelectedEvent>,
    pub state_excluded: i64,
    pub media: Vec<String>,
    /// `purge_history` cut for a whole-room `--before` delete.
    pub history_cut: Option<(String, i64)>,
    pub method: &'static str,
    pub notes: Vec<String>,
}

impl PurgePlan {
    /// What the job works through: events (or one history cut), then media.
    pub fn items(&self) -> Vec<String> {
        let mut items: Vec<String> = match &self.history_cut {
            Some((room, before)) => vec![format!("history {room} {before}")],
            None => self.events.iter().map(|e| format!("event {} {} {}", e.room_id, e.event_id, e.sender)).collect(),
        };
        items.extend(self.media.iter().map(|m| format!("media {m}")));
        items
    }
}

/// Builds the plan from the index (rooms resolved through the homeserver).
pub async fn plan(ctx: &BotContext, args: &PurgeArgs) -> anyhow::Result<PurgePlan> {
    let now = now_ms();
    let room_id = match &args.rooms {
        RoomSelector::Room(room) => Some(ctx.homeserver.resolve_room(room.as_str()).await?.to_string()),
        RoomSelector::AllRooms => None,
    };
    let filter = EventFilter {
        room_id: room_id.clone(),
        before: args.before.as_ref().map(|t| t.resolve(now)),
        after: args.after.as_ref().map(|t| t.resolve(now)),
        senders: args.users.iter().map(|u| u.to_string()).collect(),
        event_ids: args.events.iter().map(|e| e.to_string()).collect(),
    };
    let events = ctx.store.select_events(&filter).await?;
    let state_excluded = ctx.store.count_state_events(&filter).await?;
    let mut plan = PurgePlan { events, state_excluded, method: "redact", ..PurgePlan::default() };
    if args.method == PurgeMethod::Delete {
        let whole_room_cut = filter.after.is_none() && filter.senders.is_empty() && filter.event_ids.is_empty();
        match (&room_id, filter.before) {
            (Some(room), Some(before)) if whole_room_cut => {
                plan.method = "delete";
                // purge_history keeps the event it cuts at (the newest one up to
                // its timestamp): cut at the first event after the selection, so
                // every selected event goes. With none after it, the room's
                // newest event stays, as Synapse never deletes that one.
                let cut = ctx.store.first_event_at_or_after(room, before).await?;
                plan.history_cut = Some((room.clone(), cut.unwrap_or(before)));
                plan.notes.push(format!(
                    "delete: Synapse's purge_history removes these events from its database; state events stay{}.",
                    if cut.is_none() { ", and so does the room's newest event (Synapse always keeps it)" } else { "" }
                ));
            }
            _ => plan.notes.push(
                "delete: Synapse can only delete a whole room's history before a time (--before without --user, \
                 --event or --after), so these events are redacted instead. Synapse erases redacted content from \
                 its database after its redaction_retention_period (7 days by default)."
                    .to_owned(),
            ),
        }
    }
    if args.with_media.is_some() {
        let ids: Vec<String> = plan.events.iter().map(|e| e.event_id.clone()).collect();
        plan.media = ctx.store.media_of_events(&ids).await?;
    }
    Ok(plan)
}

pub fn describe(plan: &PurgePlan, with_media: bool) -> Reply {
    let rooms = count_by(plan.events.iter().map(|e| e.room_id.as_str()));
    let senders = count_by(plan.events.iter().map(|e| e.sender.as_str()));
    let verb = if plan.history_cut.is_some() { "delete" } else { "redact" };
    let mut reply = Reply::new().line(&format!(
        "Would {verb} {} events in {} rooms (method: {}).",
        plan.events.len(),
        rooms.len(),
        plan.method
    ));
    reply = reply.field("by room", &top(&rooms)).field("by sender", &top(&senders));
    if let (Some(first), Some(last)) = (plan.events.first(), plan.events.last()) {
        reply = reply.field("from", &rfc3339(first.origin_server_ts)).field("to", &rfc3339(last.origin_server_ts));
    }
    reply = reply.field(
        "state events matching, left alone",
        &format!("{} (state is never purged; already-redacted events and redactions are skipped)", plan.state_excluded),
    );
    let media = if with_media {
        format!("{} referenced, quarantined after the events", plan.media.len())
    } else {
        "not touched (add --with-media quarantine)".to_owned()
    };
    reply = reply.field("media", &media);
    if plan.history_cut.is_none() {
        reply = reply.line(
            "Each event is redacted by housekeep's bot where it may redact (it joins through the admin API if needed), \
             otherwise, for senders on this server, as the sender; the result reports the way per room.",
        );
    }
    for note in &plan.notes {
        reply = reply.line(note);
    }
    reply.line(LOCAL_ONLY)
}

fn count_by<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key.to_owned()).or_default() += 1;
    }
    counts
}

fn top(counts: &BTreeMap<String, usize>) -> String {
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = sorted.iter().take(5).map(|(k, n)| format!("{k} {n}")).collect();
    let more = sorted.len().saturating_sub(5);
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn plan_json(plan: &PurgePlan, reason: Option<&str>) -> Value {
    json!({
        "method": plan.method,
        "reason": reason,
        "events": plan.events.len(),
        "media": plan.media.len(),
        "state_excluded": plan.state_excluded,
        "history_cut": plan.history_cut,
    })
}

/// How housekeep may redact in one room.
#[derive(Debug, Clone)]
enum Way {
    /// The bot has the power (it may still have to join).
    Bot { joined: bool },
    /// The bot has no power there: redact as each local sender.
    AsSender { required: i64 },
}

async fn way_in(ctx: &BotContext, room_id: &str) -> anyhow::Result<Way> {
    let state = ctx.homeserver.admin_room_state(room_id).await?;
    let bot = ctx.bot_user_id.as_str();
    let joined = state
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["state_key"] == bot && e["content"]["membership"] == "join");
    let levels = state
        .iter()
        .find(|e| e["type"] == "m.room.power_levels" && e["state_key"] == "")
        .map(|e| e["content"].clone())
        .unwrap_or(Value::Null);
    let level_or = |v: &Value, default: i64| level(v).unwrap_or(default);
    let redact = level_or(&levels["redact"], 50);
    let send =
        levels["events"].get("m.room.redaction").map_or(level_or(&levels["events_default"], 0), |v| level_or(v, 0));
    let required = redact.max(send);
    Ok(if power_level(bot, &state) >= required { Way::Bot { joined } } else { Way::AsSender { required } })
}

/// One batch of items after the cursor.
pub async fn run_batch(ctx: &BotContext, job: &Job) -> anyhow::Result<Batch> {
    let after = job.cursor.as_ref().and_then(Value::as_i64).unwrap_or(-1);
    let items = ctx.store.next_job_items(&job.id, after, BATCH_SIZE).await?;
    let Some(last) = items.last().map(|i| i.seq) else {
        return Ok(Batch { cursor: json!(after), finished: true, ..Batch::default() });
    };
    // Per batch: the way in each room (one state read each) and sender tokens.
    let mut ways: HashMap<String, Way> = HashMap::new();
    for item in &items {
        if let Some(("event", rest)) = item.item.split_once(' ')
            && let Some((room, _)) = rest.split_once(' ')
            && !ways.contains_key(room)
        {
            let mut way = way_in(ctx, room).await?;
            if let Way::Bot { joined: false } = way {
                way = match ctx.homeserver.admin_join(room, ctx.bot_user_id.as_str()).await {
                    Ok(()) => Way::Bot { joined: true },
                    Err(error) => {
                        // Power but no way in: fall back to the senders.
                        tracing::info!(room, %error, "cannot join the room through the admin API; redacting as the senders");
                        Way::AsSender { required: 0 } // 0: "could not join"
                    }
                };
            }
            ways.insert(room.to_owned(), way);
        }
    }
    let tokens = tokio::sync::Mutex::new(HashMap::<String, String>::new());
    let (ways, tokens) = (&ways, &tokens);
    let outcomes: Vec<(JobItem, ItemState, String)> = futures::stream::iter(items)
        .map(|item| async move {
            let (state, detail) = apply(ctx, job, &item.item, ways, tokens).await;
            (item, state, detail)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut batch = Batch::from_outcomes(job, last, outcomes, |item| {
        format!("purge.{}", item.item.split(' ').next().unwrap_or("item"))
    });
    batch.finished = ctx.store.next_job_items(&job.id, last, 1).await?.is_empty();
    Ok(batch)
}

async fn apply(
    ctx: &BotContext,
    job: &Job,
    item: &str,
    ways: &HashMap<String, Way>,
    tokens: &tokio::sync::Mutex<HashMap<String, String>>,
) -> (ItemState, String) {
    let parts: Vec<&str> = item.split(' ').collect();
    let result = match parts.as_slice() {
        ["event", room, event, sender] => redact(ctx, job, room, event, sender, ways, tokens).await,
        ["media", mxc] => return quarantine::apply(ctx, job, quarantine::Action::Quarantine, mxc).await,
        ["history", room, before] => delete_history(ctx, room, before.parse().unwrap_or(0)).await,
        _ => Err(anyhow::anyhow!("unknown purge item")),
    };
    result.unwrap_or_else(|error| (ItemState::Failed, format!("{error:#}")))
}

async fn redact(
    ctx: &BotContext,
    job: &Job,
    room: &str,
    event: &str,
    sender: &str,
    ways: &HashMap<String, Way>,
    tokens: &tokio::sync::Mutex<HashMap<String, String>>,
) -> anyhow::Result<(ItemState, String)> {
    // Redacted already (by a batch redone after a crash, or by someone else).
    if ctx.store.is_event_redacted(event).await? {
        return Ok((ItemState::Skipped, "already redacted".to_owned()));
    }
    let reason = job.plan["reason"].as_str();
    let txn_id = format!("housekeep-purge-{}-{}", job.id, event.trim_start_matches('$'));
    let local = sender.rsplit_once(':').map(|(_, server)| server) == Some(ctx.bot_user_id.server_name().as_str());
    let (client, how) = match ways.get(room) {
        Some(Way::Bot { .. }) => (ctx.homeserver.clone(), "redacted by housekeep"),
        Some(Way::AsSender { .. }) if local => {
            let token = {
                let mut tokens = tokens.lock().await;
                match tokens.get(sender) {
                    Some(token) => token.clone(),
                    None => {
                        let token = ctx.homeserver.login_as(sender, SENDER_TOKEN_LIFETIME).await?;
                        tokens.insert(sender.to_owned(), token.clone());
                        token
                    }
                }
            };
            (ctx.homeserver.with_token(token), "redacted as the sender (admin login)")
        }
        Some(Way::AsSender { required }) => {
            let why = match required {
                0 => "housekeep could not join this room".to_owned(),
                _ => format!("housekeep needs to be a member with power level {required} to redact here"),
            };
            return Ok((ItemState::Failed, format!("{why}, and the sender is on another server")));
        }
        None => anyhow::bail!("no way planned for room {room}"),
    };
    // The index may not know yet: a batch redone after a crash can meet an
    // event it redacted just before, and a sender's new token does not
    // share the old one's transaction IDs. Ask the homeserver.
    if client.is_redacted(room, event).await? {
        ctx.store.mark_event_redacted(event, now_ms()).await?;
        return Ok((ItemState::Skipped, "already redacted".to_owned()));
    }
    client.redact(room, event, &txn_id, reason).await?;
    ctx.store.mark_event_redacted(event, now_ms()).await?;
    Ok((ItemState::Done, how.to_owned()))
}

async fn delete_history(ctx: &BotContext, room: &str, before: i64) -> anyhow::Result<(ItemState, String)> {
    let purge_id = ctx.homeserver.purge_history(room, before).await?;
    for _ in 0..1200 {
        match ctx.homeserver.purge_history_status(&purge_id).await?.as_str() {
            "complete" => {
                let forgotten = ctx.store.forget_events_before(room, before).await?;
                return Ok((
                    ItemState::Done,
                    format!("deleted {forgotten} events from this homeserver (purge_history)"),
                ));
            }
            "failed" => return Ok((ItemState::Failed, "Synapse's purge_history failed".to_owned())),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    anyhow::bail!("purge_history {purge_id} still running after 10 minutes")
}

/// The result: `purged_count`, `method`, `status`, the way used per room,
/// and the local-only warning.
pub async fn describe_result(ctx: &BotContext, job: &Job, status: &str) -> anyhow::Result<Reply> {
    let (mut purged, mut already, mut media) = (0i64, 0i64, 0i64);
    let mut ways: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut problems = Vec::new();
    for state in [ItemState::Done, ItemState::Skipped, ItemState::Failed] {
        for item in ctx.store.job_items_in_state(&job.id, state, i64::MAX).await? {
            let detail = item.detail.clone().unwrap_or_default();
            let parts: Vec<&str> = item.item.split(' ').collect();
            match (parts.as_slice(), state) {
                (["event", room, ..], ItemState::Done) => {
                    purged += 1;
                    *ways.entry((*room).to_owned()).or_default().entry(detail).or_default() += 1;
                }
                (["history", room, ..], ItemState::Done) => {
                    purged += detail.split_whitespace().nth(1).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
                    *ways.entry((*room).to_owned()).or_default().entry(detail).or_default() += 1;
                }
                (["event", ..], ItemState::Skipped) => already += 1,
                (["media", ..], ItemState::Done) => media += 1,
                (_, ItemState::Failed) if problems.len() < 10 => problems.push(format!("{}: {detail}", item.item)),
                _ => {}
            }
        }
    }
    let mut reply = Reply::new()
        .title(&format!("Job {} (purge) {status}", job.id))
        .field("purged_count", &purged.to_string())
        .field("method", job.plan["method"].as_str().unwrap_or("redact"))
        .field("status", status)
        .field("already redacted (by someone, or by this job before a restart)", &already.to_string())
        .field("failed", &job.failed_count.to_string());
    if job.plan["media"].as_u64().unwrap_or(0) > 0 {
        reply = reply.field("media quarantined", &media.to_string());
    }
    let per_room: Vec<String> = ways
        .iter()
        .map(|(room, how)| {
            let how: Vec<String> = how.iter().map(|(way, n)| format!("{n} {way}")).collect();
            format!("{room}: {}", how.join(", "))
        })
        .collect();
    reply = reply.line("By room:").list(per_room).list(problems);
    Ok(reply.line(LOCAL_ONLY))
}
