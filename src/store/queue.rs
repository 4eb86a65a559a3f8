//! Admission to the media download queue: which media an indexed batch
//! queues, how urgently, and which it leaves out.
//!
//! The queue exists for the hash blocklist: a file is checked against it
//! only once downloaded. Everything in an event is the sender's choice: how
//! many mxc URIs it holds (a 64 KiB event holds about 2,000), their server
//! names (wildcard DNS makes them unlimited, so counting by mxc server is
//! no bound), and, for a remote server, how many users send. What a sender
//! cannot choose is their own ID, and with it their server (the *origin*).
//! So:
//!
//! - Each media gets a [`QueuePriority`] from the strongest reference to it
//!   (a later stronger one raises it, never lowers it), and the worker takes
//!   the most urgent first, the longest-waiting first within a priority: a
//!   file posted as an attachment on this homeserver is hashed before any
//!   backlog of remote media or mentions.
//! - At most [`QueuePolicy::per_event`] media are queued per event, the
//!   strongest references first, counting only inline images and mentions
//!   (an event's named slots are a handful, all queued); the rest stay in
//!   `media_refs` (found by `!quarantine event|room|user`) but are not
//!   downloaded.
//! - Remote media and mentions ([`QueuePriority::is_capped`]) that are new
//!   to the queue count against their sender and their sender's server:
//!   at most [`QueuePolicy::per_sender`] and [`QueuePolicy::per_origin`] of
//!   them may wait (queued, or failed and due again) at once. Downloads that
//!   succeed free their place at once; junk frees it when abandoned. Media
//!   of this homeserver in a shared kind, named by one of its users, is
//!   never capped by sender: it is an upload, and the very thing the
//!   blocklist is for. What is past these caps is queued
//!   [`QueuePriority::Deferred`], after everything else, not dropped.
//!
//! Whatever a cap touched is returned as [`QueueSkip`]s, which the caller
//! logs and counts (`housekeep_media_queue_skipped_total`). A media the
//! per-event cap left out is queued by any later reference that is admitted.

use std::collections::HashMap;

use sqlx::{AnyConnection, AssertSqlSafe};

use super::sql::{Counted, in_json, json_array, values_placeholders};
use super::{Backend, Source};
use crate::extract::{Extracted, MXC_PREFIX, MediaKind};

/// Rows per INSERT statement, as for the other index rows.
const ROWS_PER_STATEMENT: usize = 500;
const QUEUE_HEAD: &str =
    "INSERT INTO media (server_name, media_id, next_attempt_at, priority, queued_sender, queued_origin) VALUES ";
const QUEUE_COLUMNS: usize = 6;
/// A stronger reference raises a waiting media's priority; nothing else
/// about a known media changes.
const QUEUE_TAIL: &str = " ON CONFLICT (server_name, media_id) DO UPDATE SET priority = excluded.priority \
     WHERE media.priority > excluded.priority AND media.fetch_state IN ('queued', 'failed')";
/// The rows of candidates (`$1`, a JSON array of `{"n": server, "i": id}`)
/// that the `media` table holds already: probed by primary key.
const KNOWN_SQLITE: &str = "SELECT m.server_name, m.media_id, m.priority, m.fetch_state FROM json_each($1) j \
     JOIN media m ON m.server_name = j.value ->> 'n' AND m.media_id = j.value ->> 'i'";
const KNOWN_POSTGRES: &str = "SELECT m.server_name, m.media_id, m.priority, m.fetch_state \
     FROM json_to_recordset($1::json) AS j(n text, i text) JOIN media m ON m.server_name = j.n AND m.media_id = j.i";
/// Capped media waiting per sender (`queued_sender`) or per origin
/// (`queued_origin`), for the senders or origins of a batch (`$1`, a JSON
/// array, see [`in_json`]), through the partial indexes `media_queued_*`.
/// The caps bound what is counted. The priorities are
/// [`QueuePriority::is_capped`]'s (a unit test keeps them in step).
const WAITING_HEAD: &str = " AS name, COUNT(*) AS n FROM media WHERE ";
const WAITING_TAIL: &str = " AND fetch_state IN ('queued', 'failed') AND priority IN (1, 3) GROUP BY 1";

/// How urgently a media is downloaded: lower first. Stored as its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueuePriority {
    /// A shared kind (attachment, thumbnail, sticker, avatar, inline image)
    /// of media on this homeserver, from a live event: an upload, the files
    /// the blocklist is there to catch as they are posted.
    Local = 0,
    /// A shared kind of media on another server, from a live event.
    Remote = 1,
    /// A shared kind met by backfill. Backfill downloads its chunks' media
    /// itself; the worker takes what it left (failed, or interrupted) after
    /// the live queue, as before priorities existed.
    History = 2,
    /// Referenced only as a plain mxc string (kind `other`: custom fields,
    /// links, unknown event types): no client shows it as media.
    Mention = 3,
    /// Past its sender's or its server's cap: downloaded (and so checked
    /// against the blocklist) after everything else, never dropped. A few
    /// accounts of a big server must not keep that server's attachments
    /// from being hashed by filling its places with junk.
    Deferred = 4,
}

impl QueuePriority {
    pub const ALL: [Self; 5] = [Self::Local, Self::Remote, Self::History, Self::Mention, Self::Deferred];

    /// The priority of one reference. Local takes media of this homeserver
    /// *sent by one of its users*: anyone can name this server's media
    /// (made-up IDs cost a download and a 404 each), and only a local
    /// sender's naming is uncapped.
    pub fn of(
        kind: MediaKind,
        server_name: &str,
        local_server: Option<&str>,
        sender_origin: &str,
        source: Source,
    ) -> Self {
        if kind == MediaKind::Other {
            return Self::Mention;
        }
        let local = local_server.is_some_and(|local| local == server_name && local == sender_origin);
        match source {
            Source::Backfill => Self::History,
            Source::Live if local => Self::Local,
            Source::Live => Self::Remote,
        }
    }

    /// Whether media queued at this priority counts against its sender's
    /// and origin's caps: what a remote party can name without uploading
    /// anything here. (History is not: backfill was asked for by an
    /// operator and downloads each chunk's media before moving on.)
    pub fn is_capped(self) -> bool {
        matches!(self, Self::Remote | Self::Mention)
    }

    pub fn as_i64(self) -> i64 {
        self as i64
    }

    pub fn from_i64(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_i64() == n)
    }

    /// The `priority` label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
            Self::History => "history",
            Self::Mention => "mention",
            Self::Deferred => "deferred",
        }
    }
}

/// How the queue admits media; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePolicy {
    /// This homeserver's name: its media is local. `None`: all is remote.
    pub local_server: Option<String>,
    /// Media queued per event at most.
    pub per_event: usize,
    /// Capped media one sender may have waiting at once.
    pub per_sender: i64,
    /// Capped media the senders of one server may have waiting at once.
    pub per_origin: i64,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self { local_server: None, per_event: 32, per_sender: 100, per_origin: 1000 }
    }
}

/// Why media was indexed but not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Past [`QueuePolicy::per_event`] in its event.
    PerEvent,
    /// Its sender has [`QueuePolicy::per_sender`] media waiting.
    PerSender,
    /// Its sender's server has [`QueuePolicy::per_origin`] media waiting.
    PerOrigin,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerEvent => "per_event",
            Self::PerSender => "per_sender",
            Self::PerOrigin => "per_origin",
        }
    }
}

/// Media one cap left out of the queue: per event for [`SkipReason::PerEvent`],
/// per sender or origin and batch for the others. One log line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSkip {
    pub reason: SkipReason,
    /// How many media.
    pub count: u64,
    /// The (first) event whose media was left out.
    pub event_id: String,
    pub sender: String,
    /// The sender's server.
    pub origin: String,
    /// The first media left out, as an mxc URI.
    pub first: String,
}

/// One media an indexed batch would queue, at the strongest reference the
/// batch makes to it (the first such).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Candidate<'a> {
    pub server_name: &'a str,
    pub media_id: &'a str,
    pub priority: QueuePriority,
    pub event_id: &'a str,
    pub sender: &'a str,
    pub origin: &'a str,
}

impl Candidate<'_> {
    fn key(&self) -> (String, String) {
        (self.server_name.to_owned(), self.media_id.to_owned())
    }

    fn skip(&self, reason: SkipReason) -> QueueSkip {
        QueueSkip {
            reason,
            count: 1,
            event_id: self.event_id.to_owned(),
            sender: self.sender.to_owned(),
            origin: self.origin.to_owned(),
            first: format!("{MXC_PREFIX}{}/{}", self.server_name, self.media_id),
        }
    }
}

/// The server of a user ID. IDs are not validated at ingest (historical
/// ones break today's grammar): one without a server is its own origin.
pub fn origin_of(sender: &str) -> &str {
    sender.split_once(':').map_or(sender, |(_, server)| server)
}

/// The media of one event to queue: each media once, at its strongest
/// reference, strongest first (the event's order within a priority), at
/// most `per_event` of them. Also how many were left out.
pub(super) fn plan_event<'a>(
    event: &'a Extracted,
    policy: &QueuePolicy,
    source: Source,
) -> (Vec<Candidate<'a>>, Option<QueueSkip>) {
    let local = policy.local_server.as_deref();
    let (sender, event_id) = (event.event.sender.as_str(), event.event.event_id.as_str());
    let origin = origin_of(sender);
    let mut at: HashMap<(&str, &str), usize> = HashMap::with_capacity(event.media.len());
    let mut media: Vec<Candidate<'a>> = Vec::with_capacity(event.media.len());
    // Per media: whether every reference to it is an inline image or a mention.
    let mut kinds: HashMap<(&str, &str), bool> = HashMap::with_capacity(event.media.len());
    for r in &event.media {
        let inline_or_mention = matches!(r.kind, MediaKind::HtmlImg | MediaKind::Other);
        kinds
            .entry((r.server_name.as_str(), r.media_id.as_str()))
            .and_modify(|only| *only &= inline_or_mention)
            .or_insert(inline_or_mention);
    }
    for r in &event.media {
        let priority = QueuePriority::of(r.kind, &r.server_name, local, origin, source);
        match at.get(&(r.server_name.as_str(), r.media_id.as_str())) {
            Some(&i) => media[i].priority = media[i].priority.min(priority),
            None => {
                at.insert((&r.server_name, &r.media_id), media.len());
                media.push(Candidate {
                    server_name: &r.server_name,
                    media_id: &r.media_id,
                    priority,
                    event_id,
                    sender,
                    origin,
                });
            }
        }
    }
    // Stable: the event's own order within a priority.
    media.sort_by_key(|c| c.priority);
    // The named slots of an event (its attachment, thumbnail, file,
    // sticker, avatar: a handful at most, at fixed places) are all queued;
    // the cap counts inline images and mentions, which an event can hold by
    // the thousand, so junk there cannot crowd out an attachment.
    let capped = |c: &Candidate<'_>| matches!(kinds.get(&(c.server_name, c.media_id)), Some(true));
    let (named, mut rest): (Vec<_>, Vec<_>) = media.into_iter().partition(|c| !capped(c));
    let room = policy.per_event.saturating_sub(named.len());
    if rest.len() <= room {
        let mut all = named;
        all.extend(rest);
        all.sort_by_key(|c| c.priority);
        return (all, None);
    }
    let left_out = rest.split_off(room);
    let skip = QueueSkip { count: left_out.len() as u64, ..left_out[0].skip(SkipReason::PerEvent) };
    let mut all = named;
    all.extend(rest);
    all.sort_by_key(|c| c.priority);
    (all, Some(skip))
}

/// A batch's candidates, each media once at its strongest reference in the
/// batch (the first such), most urgent first, with the events' skips.
pub(super) fn plan_batch<'a>(
    batch: &'a [Extracted],
    policy: &QueuePolicy,
    source: Source,
) -> (Vec<Candidate<'a>>, Vec<QueueSkip>) {
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    let mut candidates: Vec<Candidate<'a>> = Vec::new();
    let mut skips = Vec::new();
    for event in batch {
        let (media, skip) = plan_event(event, policy, source);
        skips.extend(skip);
        for candidate in media {
            match at.get(&(candidate.server_name, candidate.media_id)) {
                Some(&i) if candidates[i].priority <= candidate.priority => {}
                Some(&i) => candidates[i] = candidate,
                None => {
                    at.insert((candidate.server_name, candidate.media_id), candidates.len());
                    candidates.push(candidate);
                }
            }
        }
    }
    candidates.sort_by_key(|c| c.priority);
    (candidates, skips)
}

/// What the `media` table holds of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Known {
    pub priority: QueuePriority,
    /// Queued, or failed and to be tried again.
    pub waiting: bool,
}

/// What the queue holds that admission depends on.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    /// Candidates with a `media` row already.
    pub known: HashMap<(String, String), Known>,
    /// Capped media waiting, per sender and per origin (those with none are absent).
    pub by_sender: HashMap<String, i64>,
    pub by_origin: HashMap<String, i64>,
}

/// Which candidates to write: every new or raised media within the caps.
/// A capped media new to the queue takes one place of its sender's and its
/// origin's; a raised one moves no place (it is waiting already, under
/// whoever queued it). Also what the caps left out, one skip per sender or
/// origin, in the batch's order.
pub(super) fn admit<'a>(
    candidates: Vec<Candidate<'a>>,
    waiting: &Waiting,
    policy: &QueuePolicy,
) -> (Vec<Candidate<'a>>, Vec<QueueSkip>) {
    let mut by_sender: HashMap<&str, i64> = HashMap::new();
    let mut by_origin: HashMap<&str, i64> = HashMap::new();
    let mut skips: Vec<QueueSkip> = Vec::new();
    let mut skip_at: HashMap<(SkipReason, &str), usize> = HashMap::new();
    let mut admitted = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if let Some(known) = waiting.known.get(&candidate.key()) {
            if known.waiting && known.priority > candidate.priority {
                admitted.push(candidate);
            }
            continue;
        }
        if !candidate.priority.is_capped() {
            admitted.push(candidate);
            continue;
        }
        let sender = by_sender
            .entry(candidate.sender)
            .or_insert_with(|| waiting.by_sender.get(candidate.sender).copied().unwrap_or(0));
        let origin = by_origin
            .entry(candidate.origin)
            .or_insert_with(|| waiting.by_origin.get(candidate.origin).copied().unwrap_or(0));
        let over = if *sender >= policy.per_sender {
            Some((SkipReason::PerSender, candidate.sender))
        } else if *origin >= policy.per_origin {
            Some((SkipReason::PerOrigin, candidate.origin))
        } else {
            None
        };
        match over {
            None => {
                *sender += 1;
                *origin += 1;
                admitted.push(candidate);
            }
            Some(key) => {
                match skip_at.get(&key) {
                    Some(&i) => skips[i].count += 1,
                    None => {
                        skip_at.insert(key, skips.len());
                        skips.push(candidate.skip(key.0));
                    }
                }
                admitted.push(Candidate { priority: QueuePriority::Deferred, ..candidate });
            }
        }
    }
    (admitted, skips)
}

/// A `media` row as [`KNOWN_SQLITE`] reads it.
#[derive(sqlx::FromRow)]
struct KnownRow {
    server_name: String,
    media_id: String,
    priority: i64,
    fetch_state: String,
}

/// A candidate as [`KNOWN_SQLITE`] reads it (`$1`).
#[derive(serde::Serialize)]
struct KeyJson<'a> {
    n: &'a str,
    i: &'a str,
}

/// What a batch may queue, and what the caps left out.
#[derive(Debug, Default)]
pub(super) struct Admitted<'a> {
    /// New media and media raised to a stronger priority, by key: one
    /// order for every writer (concurrent PostgreSQL transactions locking
    /// the same rows in different orders could deadlock).
    pub queue: Vec<Candidate<'a>>,
    pub skipped: Vec<QueueSkip>,
}

/// Decides what a batch queues, reading the queue inside the caller's
/// database transaction only when the batch names capped media. On SQLite
/// call it after the transaction's first write: a transaction that reads
/// first cannot always take the write lock later.
pub(super) async fn admit_batch<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: &'a [Extracted],
    source: Source,
    policy: &QueuePolicy,
) -> anyhow::Result<Admitted<'a>> {
    let (candidates, mut skipped) = plan_batch(batch, policy, source);
    if candidates.is_empty() {
        return Ok(Admitted { queue: Vec::new(), skipped });
    }
    let waiting = read_waiting(conn, backend, &candidates).await?;
    let (mut queue, over) = admit(candidates, &waiting, policy);
    skipped.extend(over);
    queue.sort_unstable_by_key(|c| (c.server_name, c.media_id));
    Ok(Admitted { queue, skipped })
}

/// Writes what [`admit_batch`] admitted; new media waits from `now`.
/// Returns how many media were queued or raised.
pub(super) async fn write_queue(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &[Candidate<'_>],
    now: i64,
) -> anyhow::Result<u64> {
    let mut written = 0;
    for chunk in queue.chunks(ROWS_PER_STATEMENT) {
        let sql = format!("{QUEUE_HEAD}{}{QUEUE_TAIL}", values_placeholders(backend, chunk.len(), QUEUE_COLUMNS));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for c in chunk {
            query = query
                .bind(c.server_name)
                .bind(c.media_id)
                .bind(now)
                .bind(c.priority.as_i64())
                .bind(c.sender)
                .bind(c.origin);
        }
        written += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}

/// What [`admit_batch`] admitted as the JSON rows PostgreSQL's one-statement
/// ingest reads (`INSERT_BATCH_POSTGRES`'s `$5`).
pub(super) fn queue_json(queue: &[Candidate<'_>]) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct Row<'a> {
        n: &'a str,
        m: &'a str,
        p: i64,
        s: &'a str,
        o: &'a str,
    }
    let rows: Vec<Row> = queue
        .iter()
        .map(|c| Row { n: c.server_name, m: c.media_id, p: c.priority.as_i64(), s: c.sender, o: c.origin })
        .collect();
    Ok(serde_json::to_string(&rows)?)
}

/// Reads what admission needs, only for capped candidates (the others are
/// written whatever the queue holds): which are known, and how much their
/// senders and origins have waiting. Three statements, whatever the batch.
async fn read_waiting(
    conn: &mut AnyConnection,
    backend: Backend,
    candidates: &[Candidate<'_>],
) -> anyhow::Result<Waiting> {
    let mut waiting = Waiting::default();
    let capped: Vec<&Candidate> = candidates.iter().filter(|c| c.priority.is_capped()).collect();
    if capped.is_empty() {
        return Ok(waiting);
    }
    let keys: Vec<KeyJson> = capped.iter().map(|c| KeyJson { n: c.server_name, i: c.media_id }).collect();
    let sql = match backend {
        Backend::Sqlite => KNOWN_SQLITE,
        Backend::Postgres => KNOWN_POSTGRES,
    };
    let rows: Vec<KnownRow> = sqlx::query_as(sql).bind(serde_json::to_string(&keys)?).fetch_all(&mut *conn).await?;
    for row in rows {
        // A priority this build does not know (a newer one wrote it) is
        // treated as the weakest: any reference may raise it.
        let priority = QueuePriority::from_i64(row.priority).unwrap_or(QueuePriority::Mention);
        let known = Known { priority, waiting: matches!(row.fetch_state.as_str(), "queued" | "failed") };
        waiting.known.insert((row.server_name, row.media_id), known);
    }
    let new: Vec<&&Candidate> = capped.iter().filter(|c| !waiting.known.contains_key(&c.key())).collect();
    if new.is_empty() {
        return Ok(waiting);
    }
    let mut senders: Vec<&str> = new.iter().map(|c| c.sender).collect();
    let mut origins: Vec<&str> = new.iter().map(|c| c.origin).collect();
    waiting.by_sender = count_waiting(conn, backend, "queued_sender", &mut senders).await?;
    waiting.by_origin = count_waiting(conn, backend, "queued_origin", &mut origins).await?;
    Ok(waiting)
}

/// Capped media waiting per value of `column` (`queued_sender` or `queued_origin`) among `keys`.
async fn count_waiting(
    conn: &mut AnyConnection,
    backend: Backend,
    column: &'static str,
    keys: &mut Vec<&str>,
) -> anyhow::Result<HashMap<String, i64>> {
    keys.sort_unstable();
    keys.dedup();
    let sql = format!("SELECT {column}{WAITING_HEAD}{}{WAITING_TAIL}", in_json(backend, column, 1));
    let rows: Vec<Counted> = sqlx::query_as(AssertSqlSafe(sql)).bind(json_array(keys)).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|row| (row.name, row.n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract_value;
    use proptest::prelude::*;
    use serde_json::json;

    const LOCAL: &str = "here.example";

    fn policy() -> QueuePolicy {
        QueuePolicy { local_server: Some(LOCAL.into()), per_event: 4, per_sender: 3, per_origin: 5 }
    }

    fn event(id: &str, sender: &str, content: serde_json::Value) -> Extracted {
        extract_value(&json!({
            "event_id": id, "room_id": "!r", "sender": sender, "origin_server_ts": 1,
            "type": "m.room.message", "content": content,
        }))
        .unwrap()
    }

    /// An event mentioning `n` media of `server` in a custom field.
    fn mentions(id: &str, sender: &str, server: &str, n: usize) -> Extracted {
        let junk: Vec<String> = (0..n).map(|i| format!("mxc://{server}/m{i}")).collect();
        event(id, sender, json!({"body": "x", "junk": junk}))
    }

    fn keys(candidates: &[Candidate]) -> Vec<(String, QueuePriority)> {
        candidates.iter().map(|c| (format!("{}/{}", c.server_name, c.media_id), c.priority)).collect()
    }

    #[test]
    fn priority_is_the_reference_kind_the_media_server_and_the_source() {
        use QueuePriority::*;
        let of = |kind, server, source| QueuePriority::of(kind, server, Some(LOCAL), LOCAL, source);
        for kind in MediaKind::ALL.into_iter().filter(|k| *k != MediaKind::Other) {
            assert_eq!(of(kind, LOCAL, Source::Live), Local, "{kind}");
            assert_eq!(of(kind, "elsewhere.example", Source::Live), Remote, "{kind}");
            assert_eq!(of(kind, LOCAL, Source::Backfill), History, "{kind}");
            // A remote sender naming this server's media (made-up IDs cost a
            // download each) is capped like any remote reference.
            let from_afar = QueuePriority::of(kind, LOCAL, Some(LOCAL), "evil.example", Source::Live);
            assert_eq!(from_afar, Remote, "{kind}");
        }
        assert_eq!(of(MediaKind::Other, LOCAL, Source::Live), Mention);
        assert_eq!(of(MediaKind::Other, "elsewhere.example", Source::Backfill), Mention);
        // Not knowing the server name, nothing is taken for local.
        assert_eq!(QueuePriority::of(MediaKind::Url, LOCAL, None, LOCAL, Source::Live), Remote);
        // The stored numbers are the order.
        let numbers: Vec<i64> = QueuePriority::ALL.iter().map(|p| p.as_i64()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4]);
        assert!(QueuePriority::ALL.iter().all(|p| QueuePriority::from_i64(p.as_i64()) == Some(*p)));
    }

    #[test]
    fn the_cap_queries_count_exactly_the_capped_priorities() {
        let capped: Vec<String> =
            QueuePriority::ALL.iter().filter(|p| p.is_capped()).map(|p| p.as_i64().to_string()).collect();
        let list = format!("priority IN ({})", capped.join(", "));
        assert!(WAITING_TAIL.contains(&list), "{list}");
    }

    #[test]
    fn both_dialects_queue_the_same_way() {
        // PostgreSQL's one-statement ingest writes the queue as write_queue does.
        let tail = QUEUE_TAIL.trim();
        assert!(super::super::events::INSERT_BATCH_POSTGRES.contains(tail), "{tail}");
    }

    #[test]
    fn an_event_queues_its_strongest_references_first_up_to_the_cap() {
        // Mentions first in the event, then an attachment with a thumbnail.
        let mut junk: Vec<String> = (0..6).map(|i| format!("mxc://evil.example/j{i}")).collect();
        junk.push(format!("mxc://{LOCAL}/file"));
        let content = json!({
            "junk": junk, "msgtype": "m.image", "body": "x", "url": format!("mxc://{LOCAL}/file"),
            "info": {"thumbnail_url": "mxc://remote.example/thumb"},
        });
        let e = event("$e", &format!("@a:{LOCAL}"), content);
        let (queued, skip) = plan_event(&e, &policy(), Source::Live);
        // The file is named twice (url and a mention): once, as the attachment.
        assert_eq!(
            keys(&queued),
            [
                (format!("{LOCAL}/file"), QueuePriority::Local),
                ("remote.example/thumb".into(), QueuePriority::Remote),
                ("evil.example/j0".into(), QueuePriority::Mention),
                ("evil.example/j1".into(), QueuePriority::Mention),
            ]
        );
        let skip = skip.expect("four left out");
        assert_eq!((skip.reason, skip.count, skip.first.as_str()), (SkipReason::PerEvent, 4, "mxc://evil.example/j2"));
        assert_eq!((skip.event_id.as_str(), skip.origin.as_str()), ("$e", LOCAL));
        // The cap counts inline images and mentions: an attachment after a
        // thousand of them is queued all the same.
        let mut flood: Vec<String> = (0..1000).map(|i| format!("<img src=\"mxc://{LOCAL}/i{i}\">")).collect();
        flood.push(String::new());
        let late = event(
            "$late",
            &format!("@a:{LOCAL}"),
            json!({"msgtype": "m.image", "body": "x", "format": "org.matrix.custom.html",
                   "formatted_body": flood.join(""), "url": format!("mxc://{LOCAL}/blocked")}),
        );
        let (queued, skip) = plan_event(&late, &policy(), Source::Live);
        assert!(queued.iter().any(|c| c.media_id == "blocked"), "{:?}", keys(&queued));
        assert_eq!(queued.len(), policy().per_event);
        assert_eq!(skip.map(|s| s.count), Some(1000 - (policy().per_event as u64 - 1)));
        // Under the cap nothing is left out.
        let four = mentions("$f", "@a:hs", "x.example", 4);
        let (queued, skip) = plan_event(&four, &policy(), Source::Live);
        assert_eq!((queued.len(), skip), (4, None));
    }

    #[test]
    fn a_batch_names_each_media_once_at_its_strongest_reference() {
        let batch = [
            mentions("$1", "@a:remote.example", LOCAL, 2),
            event(
                "$2",
                "@b:here.example",
                json!({"msgtype": "m.image", "body": "x", "url": format!("mxc://{LOCAL}/m1")}),
            ),
        ];
        let (candidates, skips) = plan_batch(&batch, &policy(), Source::Live);
        assert!(skips.is_empty());
        assert_eq!(
            keys(&candidates),
            [(format!("{LOCAL}/m1"), QueuePriority::Local), (format!("{LOCAL}/m0"), QueuePriority::Mention)]
        );
        // The attachment's event and sender, not the first mention's.
        assert_eq!((candidates[0].event_id, candidates[0].sender), ("$2", "@b:here.example"));
    }

    #[test]
    fn one_sender_and_one_origin_get_only_their_places_in_the_queue() {
        let policy = policy();
        // @a already has 1 waiting; their server 2 (@a's and another's).
        let waiting = Waiting {
            by_sender: HashMap::from([("@a:evil.example".into(), 1)]),
            by_origin: HashMap::from([("evil.example".into(), 2)]),
            ..Default::default()
        };
        let batch = [
            mentions("$a", "@a:evil.example", "x.example", 4),
            mentions("$b", "@b:evil.example", "y.example", 4),
            mentions("$c", "@c:good.example", "z.example", 4),
        ];
        let (candidates, _) = plan_batch(&batch, &policy, Source::Live);
        let (admitted, skips) = admit(candidates, &waiting, &policy);
        // @a: 2 more (cap 3); @b: 1 (the origin's 5th); @c: 3 (their cap).
        // The rest is deferred, behind everything else, not dropped.
        let (deferred, admitted): (Vec<_>, Vec<_>) =
            admitted.into_iter().partition(|c| c.priority == QueuePriority::Deferred);
        assert_eq!(deferred.len(), 6);
        let admitted: Vec<(&str, &str)> = admitted.iter().map(|c| (c.sender, c.media_id)).collect();
        assert_eq!(
            admitted,
            [
                ("@a:evil.example", "m0"),
                ("@a:evil.example", "m1"),
                ("@b:evil.example", "m0"),
                ("@c:good.example", "m0"),
                ("@c:good.example", "m1"),
                ("@c:good.example", "m2"),
            ]
        );
        let skips: Vec<(SkipReason, u64, &str, &str)> =
            skips.iter().map(|s| (s.reason, s.count, s.sender.as_str(), s.first.as_str())).collect();
        assert_eq!(
            skips,
            [
                (SkipReason::PerSender, 2, "@a:evil.example", "mxc://x.example/m2"),
                (SkipReason::PerOrigin, 3, "@b:evil.example", "mxc://y.example/m1"),
                (SkipReason::PerSender, 1, "@c:good.example", "mxc://z.example/m3"),
            ]
        );
    }

    #[test]
    fn local_uploads_are_never_capped_and_known_media_takes_no_place() {
        let policy = QueuePolicy { per_sender: 0, per_origin: 0, ..policy() };
        let local = |id: &str, media: &str| {
            event(
                id,
                &format!("@a:{LOCAL}"),
                json!({"msgtype": "m.image", "body": "x", "url": format!("mxc://{LOCAL}/{media}")}),
            )
        };
        let remote = |id: &str, media: &str| {
            event(
                id,
                "@a:evil.example",
                json!({"msgtype": "m.image", "body": "x", "url": format!("mxc://r.example/{media}")}),
            )
        };
        let batch = [local("$1", "up"), remote("$2", "raised"), remote("$3", "same"), remote("$4", "fetched")];
        let known = |priority, waiting| Known { priority, waiting };
        let waiting = Waiting {
            known: HashMap::from([
                (("r.example".into(), "raised".into()), known(QueuePriority::Mention, true)),
                (("r.example".into(), "same".into()), known(QueuePriority::Remote, true)),
                (("r.example".into(), "fetched".into()), known(QueuePriority::Mention, false)),
            ]),
            ..Default::default()
        };
        let (candidates, _) = plan_batch(&batch, &policy, Source::Live);
        let (admitted, skips) = admit(candidates, &waiting, &policy);
        // The upload; the mention now seen as an attachment (raised). Not
        // one already waiting as strong, nor one downloaded already.
        assert_eq!(
            keys(&admitted),
            [(format!("{LOCAL}/up"), QueuePriority::Local), ("r.example/raised".into(), QueuePriority::Remote)]
        );
        assert!(skips.is_empty(), "{skips:?}");
    }

    #[test]
    fn origins_are_the_senders_server() {
        assert_eq!(origin_of("@a:evil.example"), "evil.example");
        assert_eq!(origin_of("@a:evil.example:8448"), "evil.example:8448");
        assert_eq!(origin_of("no-server"), "no-server");
    }

    proptest! {
        /// Whatever a batch holds: no event queues more than its cap, no
        /// sender or origin more than its places, nothing twice, local
        /// uploads always, and every media left out is counted.
        #[test]
        fn caps_hold_and_nothing_goes_uncounted(
            events in prop::collection::vec(
                (0..4usize, 0..3usize, prop::collection::vec((0..3usize, 0..12usize, any::<bool>()), 0..20)),
                1..12,
            ),
            per_event in 1..6usize,
            per_sender in 0..6i64,
            per_origin in 0..9i64,
        ) {
            let policy = QueuePolicy { local_server: Some(LOCAL.into()), per_event, per_sender, per_origin };
            let servers = [LOCAL, "r1.example", "r2.example"];
            let batch: Vec<Extracted> = events.iter().enumerate().map(|(n, (user, origin, media))| {
                let sender = format!("@u{user}:{}", ["o1.example", "o2.example", LOCAL][*origin]);
                let urls: Vec<String> = media.iter().filter(|m| m.2).map(|(s, id, _)| format!("mxc://{}/i{id}", servers[*s])).collect();
                let junk: Vec<String> = media.iter().filter(|m| !m.2).map(|(s, id, _)| format!("mxc://{}/i{id}", servers[*s])).collect();
                let html: String = urls.iter().map(|u| format!("<img src=\"{u}\">")).collect();
                event(&format!("${n}"), &sender, json!({"body": "x", "formatted_body": html, "junk": junk}))
            }).collect();
            let (candidates, event_skips) = plan_batch(&batch, &policy, Source::Live);
            let planned = candidates.len() as u64;
            let uncapped = candidates.iter().filter(|c| !c.priority.is_capped()).count();
            let (admitted, cap_skips) = admit(candidates, &Waiting::default(), &policy);

            let mut keys: Vec<_> = admitted.iter().map(|c| (c.server_name, c.media_id)).collect();
            keys.sort_unstable();
            keys.dedup();
            prop_assert_eq!(keys.len(), admitted.len(), "a media twice");
            let mut per_event_queued: HashMap<&str, usize> = HashMap::new();
            let mut per_sender_queued: HashMap<&str, i64> = HashMap::new();
            let mut per_origin_queued: HashMap<&str, i64> = HashMap::new();
            for c in &admitted {
                *per_event_queued.entry(c.event_id).or_default() += 1;
                if c.priority.is_capped() {
                    *per_sender_queued.entry(c.sender).or_default() += 1;
                    *per_origin_queued.entry(c.origin).or_default() += 1;
                }
            }
            prop_assert!(per_event_queued.values().all(|n| *n <= per_event));
            prop_assert!(per_sender_queued.values().all(|n| *n <= per_sender));
            prop_assert!(per_origin_queued.values().all(|n| *n <= per_origin));
            // Caps defer only capped media (never drop it), and count each one.
            let deferred = admitted.iter().filter(|c| c.priority == QueuePriority::Deferred).count() as u64;
            prop_assert_eq!(cap_skips.iter().map(|s| s.count).sum::<u64>(), deferred);
            prop_assert_eq!(admitted.len() as u64, planned);
            let kept_uncapped =
                admitted.iter().filter(|c| !c.priority.is_capped() && c.priority != QueuePriority::Deferred).count();
            prop_assert_eq!(kept_uncapped, uncapped);
            // Per event: what an event names, minus what it queues, is its skip.
            for (n, e) in batch.iter().enumerate() {
                let mut distinct: Vec<_> = e.media.iter().map(|m| (&m.server_name, &m.media_id)).collect();
                distinct.sort_unstable();
                distinct.dedup();
                let skipped = event_skips.iter().find(|s| s.event_id == format!("${n}")).map_or(0, |s| s.count);
                prop_assert_eq!(skipped as usize, distinct.len().saturating_sub(per_event));
            }
        }
    }
}
