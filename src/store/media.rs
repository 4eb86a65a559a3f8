//! The `media` table and media selections from `media_refs`, for quarantine.

use sqlx::Row;

use super::{Store, now_ms};

/// Every reference to media in a room / by a sender / in an event, with the
/// media's quarantine state. Each goes through one index of `media_refs`.
const REFS_BY_ROOM: &str = "SELECT r.server_name, r.media_id, r.kind, r.sender, m.quarantined_at \
     FROM media_refs r LEFT JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id \
     WHERE r.room_id = $1";
const REFS_BY_SENDER: &str = "SELECT r.server_name, r.media_id, r.kind, r.sender, m.quarantined_at \
     FROM media_refs r LEFT JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id \
     WHERE r.sender = $1";
const REFS_BY_EVENT: &str = "SELECT r.server_name, r.media_id, r.kind, r.sender, m.quarantined_at \
     FROM media_refs r LEFT JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id \
     WHERE r.event_id = $1";
const MEDIA_BY_HASH: &str = "SELECT server_name, media_id, quarantined_at FROM media WHERE sha256 = $1";
const MEDIA_STATE: &str = "SELECT quarantined_at FROM media WHERE server_name = $1 AND media_id = $2";
const SET_QUARANTINED: &str = "INSERT INTO media (server_name, media_id, quarantined_at, quarantined_by, quarantine_reason) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (server_name, media_id) DO UPDATE SET \
     quarantined_at = excluded.quarantined_at, quarantined_by = excluded.quarantined_by, \
     quarantine_reason = excluded.quarantine_reason";
const CLEAR_QUARANTINED: &str = "UPDATE media SET quarantined_at = NULL, quarantined_by = NULL, quarantine_reason = NULL \
     WHERE server_name = $1 AND media_id = $2";
const COUNT_QUARANTINED: &str = "SELECT COUNT(*) FROM media WHERE quarantined_at IS NOT NULL";

/// One reference to one media, as a quarantine plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRefSelection {
    pub server_name: String,
    pub media_id: String,
    /// Empty for media known only from the `media` table or named directly.
    pub kind: String,
    pub sender: String,
    pub quarantined_at: Option<i64>,
}

/// Which references to select.
#[derive(Debug, Clone, Copy)]
pub enum RefsOf<'a> {
    Room(&'a str),
    Sender(&'a str),
    Event(&'a str),
}

impl Store {
    pub async fn media_refs_of(&self, of: RefsOf<'_>) -> anyhow::Result<Vec<MediaRefSelection>> {
        let (sql, value) = match of {
            RefsOf::Room(room) => (REFS_BY_ROOM, room),
            RefsOf::Sender(sender) => (REFS_BY_SENDER, sender),
            RefsOf::Event(event) => (REFS_BY_EVENT, event),
        };
        let rows = sqlx::query(sql).bind(value).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(MediaRefSelection {
                    server_name: row.try_get(0)?,
                    media_id: row.try_get(1)?,
                    kind: row.try_get(2)?,
                    sender: row.try_get(3)?,
                    quarantined_at: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Media whose content hash is known (from pre-download) to be `sha256`.
    pub async fn media_with_hash(&self, sha256: &str) -> anyhow::Result<Vec<MediaRefSelection>> {
        let rows = sqlx::query(MEDIA_BY_HASH).bind(sha256).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(MediaRefSelection {
                    server_name: row.try_get(0)?,
                    media_id: row.try_get(1)?,
                    kind: String::new(),
                    sender: String::new(),
                    quarantined_at: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// When housekeep last quarantined this media, if it is quarantined.
    pub async fn media_quarantined_at(&self, server_name: &str, media_id: &str) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query(MEDIA_STATE).bind(server_name).bind(media_id).fetch_optional(&self.pool).await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.flatten())
    }

    /// Records a quarantine (who, why, when), or its lifting with `by: None`.
    pub async fn set_media_quarantine(
        &self,
        server_name: &str,
        media_id: &str,
        by: Option<(&str, Option<&str>)>,
    ) -> anyhow::Result<()> {
        match by {
            Some((actor, reason)) => {
                sqlx::query(SET_QUARANTINED)
                    .bind(server_name)
                    .bind(media_id)
                    .bind(now_ms())
                    .bind(actor)
                    .bind(reason)
                    .execute(&self.pool)
                    .await?
            }
            None => sqlx::query(CLEAR_QUARANTINED).bind(server_name).bind(media_id).execute(&self.pool).await?,
        };
        Ok(())
    }

    pub async fn quarantined_media_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query(COUNT_QUARANTINED).fetch_one(&self.pool).await?.try_get(0)?)
    }
}
