//! `bot_inbox`: events addressed to the bot, durable until handled.

use sqlx::AnyConnection;

use super::Store;
use super::audit::{AuditEntry, insert_audit};
use crate::clock::now_ms;

const INSERT_INBOX: &str = "INSERT INTO bot_inbox \
     (event_id, room_id, sender, kind, event_json, origin_server_ts, received_at, position) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING";
const SELECT_PENDING: &str = "SELECT event_id, room_id, sender, kind, event_json, origin_server_ts, attempts \
     FROM bot_inbox WHERE handled_at IS NULL AND next_attempt_at <= $2 ORDER BY received_at, position LIMIT $1";
const NEXT_DUE: &str = "SELECT MIN(next_attempt_at) FROM bot_inbox WHERE handled_at IS NULL AND next_attempt_at > $1";
const MARK_HANDLED: &str = "UPDATE bot_inbox SET handled_at = $2, outcome = $3 WHERE event_id = $1";
const RECORD_ATTEMPT: &str =
    "UPDATE bot_inbox SET attempts = attempts + 1, outcome = $2, next_attempt_at = $3 WHERE event_id = $1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxKind {
    /// A message in the admin room that starts with the command prefix.
    Command,
    /// A ✅ reaction in the admin room (confirms a plan).
    Reaction,
    /// An invite of the bot into some room.
    Invite,
    /// A rule event (or a redaction) in a watched policy list.
    PolicyRule,
    /// An `m.room.encrypted` event in the admin room (with end-to-end
    /// encryption on): decrypted by the bot, then a command, a ✅ or nothing.
    Encrypted,
}

impl InboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Reaction => "reaction",
            Self::Invite => "invite",
            Self::PolicyRule => "policy",
            Self::Encrypted => "encrypted",
        }
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "command" => Self::Command,
            "reaction" => Self::Reaction,
            "invite" => Self::Invite,
            "policy" => Self::PolicyRule,
            "encrypted" => Self::Encrypted,
            other => anyhow::bail!("unknown inbox kind {other:?}"),
        })
    }
}

/// A `bot_inbox` row as [`SELECT_PENDING`] reads it.
#[derive(sqlx::FromRow)]
struct PendingRow {
    event_id: String,
    room_id: String,
    sender: String,
    kind: String,
    event_json: String,
    origin_server_ts: i64,
    attempts: i64,
}

impl TryFrom<PendingRow> for PendingItem {
    type Error = anyhow::Error;

    fn try_from(row: PendingRow) -> anyhow::Result<Self> {
        Ok(PendingItem {
            item: InboxItem {
                event_id: row.event_id,
                room_id: row.room_id,
                sender: row.sender,
                kind: InboxKind::parse(&row.kind)?,
                event: serde_json::from_str(&row.event_json)?,
                origin_server_ts: row.origin_server_ts,
            },
            attempts: row.attempts,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboxItem {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub kind: InboxKind,
    pub event: serde_json::Value,
    pub origin_server_ts: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingItem {
    pub item: InboxItem,
    /// Earlier tries that failed (homeserver unreachable, …).
    pub attempts: i64,
}

pub(super) async fn insert_inbox(
    conn: &mut AnyConnection,
    items: &[InboxItem],
    received_at: i64,
) -> anyhow::Result<()> {
    for (position, item) in items.iter().enumerate() {
        sqlx::query(INSERT_INBOX)
            .bind(&item.event_id)
            .bind(&item.room_id)
            .bind(&item.sender)
            .bind(item.kind.as_str())
            .bind(item.event.to_string())
            .bind(item.origin_server_ts)
            .bind(received_at)
            .bind(position as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Unhandled items due now, oldest first.
    pub async fn pending_inbox(&self, limit: i64) -> anyhow::Result<Vec<PendingItem>> {
        let rows: Vec<PendingRow> =
            sqlx::query_as(SELECT_PENDING).bind(limit).bind(now_ms()).fetch_all(&self.pool).await?;
        rows.into_iter().map(PendingItem::try_from).collect()
    }

    /// When the next item waiting after a failure is due.
    pub async fn inbox_next_due(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(NEXT_DUE).bind(now_ms()).fetch_one(&self.pool).await?)
    }

    /// Marks an item handled and writes its audit entries, together: a
    /// command is audited once even if it is handled again after a crash.
    pub async fn mark_handled(&self, event_id: &str, outcome: &str, audit: &[AuditEntry]) -> anyhow::Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(MARK_HANDLED).bind(event_id).bind(now).bind(outcome).execute(&mut *tx).await?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An attempt failed: the item is due again at `next_attempt_at`.
    pub async fn record_attempt(&self, event_id: &str, error: &str, next_attempt_at: i64) -> anyhow::Result<()> {
        sqlx::query(RECORD_ATTEMPT).bind(event_id).bind(error).bind(next_attempt_at).execute(&self.pool).await?;
        Ok(())
    }

    /// Adds items outside an appservice transaction (tests, tools).
    pub async fn enqueue_inbox(&self, items: &[InboxItem]) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_inbox(&mut conn, items, now_ms()).await
    }
}
