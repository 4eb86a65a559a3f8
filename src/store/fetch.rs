//! The media download queue (the `media` table's fetch state) and the hash
//! blocklist.

use sqlx::AssertSqlSafe;

use super::sql::{Counted, in_json, json_array};
use super::{MediaId, QueuePriority, Store};
use crate::clock::now_ms;

/// One priority's due media, longest-waiting first: a range of `media_due`
/// (priority, next_attempt_at), read in order and stopped at the limit,
/// however long the queue. (One statement over all priorities would have
/// to step over every media of a priority that is not due yet, failed
/// ones waiting for their retry, before reaching the next priority.)
const DUE: &str = "SELECT server_name, media_id, fetch_failures AS failures FROM media \
     WHERE fetch_state IN ('queued', 'failed') AND priority = $1 AND next_attempt_at <= $2 \
     ORDER BY next_attempt_at LIMIT $3";
/// When the longest-waiting media of a priority was queued (or is due
/// again): one end of the same range.
const HEAD: &str = "SELECT MIN(next_attempt_at) FROM media WHERE fetch_state IN ('queued', 'failed') AND priority = $1";
const FETCHED: &str = "UPDATE media SET fetch_state = 'fetched', sha256 = $3, size = $4, mimetype = $5, \
     fetched_at = $6, last_error = NULL WHERE server_name = $1 AND media_id = $2";
const FAILED: &str = "UPDATE media SET fetch_failures = fetch_failures + 1, last_error = $3, next_attempt_at = $4, \
     fetch_state = CASE WHEN fetch_failures + 1 >= $5 THEN 'abandoned' ELSE 'failed' END \
     WHERE server_name = $1 AND media_id = $2";
/// A failure that does not count towards abandoning (see
/// [`Store::record_not_yet_uploaded`]).
const NOT_YET: &str = "UPDATE media SET fetch_state = 'failed', last_error = $3, next_attempt_at = $4 \
     WHERE server_name = $1 AND media_id = $2";
const UNAVAILABLE: &str =
    "UPDATE media SET fetch_state = 'unavailable', last_error = $3 WHERE server_name = $1 AND media_id = $2";
const STATE: &str =
    "SELECT fetch_state, fetch_failures AS failures FROM media WHERE server_name = $1 AND media_id = $2";
const RETRY_FAILED: &str = "UPDATE media SET fetch_state = 'queued', fetch_failures = 0, next_attempt_at = $1 \
     WHERE fetch_state IN ('failed', 'abandoned')";
/// Media with a blocked hash that the blocklist was not enforced on yet.
/// Driven from the (small) blocklist through `media_sha256`.
const BLOCKED_UNCHECKED: &str = "SELECT m.server_name, m.media_id, m.sha256 AS detail FROM hash_blocklist b \
     JOIN media m ON m.sha256 = b.sha256 WHERE m.quarantined_at IS NULL AND m.blocklist_checked_at IS NULL \
     ORDER BY m.sha256, m.server_name, m.media_id LIMIT $1";
const BLOCKLIST_CHECKED: &str = "UPDATE media SET blocklist_checked_at = $3 WHERE server_name = $1 AND media_id = $2";
const BLOCKLIST_RECHECK: &str = "UPDATE media SET blocklist_checked_at = NULL WHERE sha256 = $1";
const ABANDONED: &str = "SELECT server_name, media_id, last_error AS detail FROM media \
     WHERE fetch_state = 'abandoned' ORDER BY 1, 2 LIMIT $1";
const BLOCKLIST_ADD: &str = "INSERT INTO hash_blocklist (sha256, reason, added_by, added_at, source) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO UPDATE SET reason = $2, added_by = $3, added_at = $4, source = $5";
/// The config file's entries never replace a moderator's: removing the hash
/// from the file later must not drop what `!blocklist add` put there.
const BLOCKLIST_ADD_CONFIG: &str = "INSERT INTO hash_blocklist (sha256, reason, added_by, added_at, source) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING";
const BLOCKLIST_REMOVE: &str = "DELETE FROM hash_blocklist WHERE sha256 = $1";
const BLOCKLIST_GET: &str = "SELECT sha256, reason, added_by, added_at, source FROM hash_blocklist WHERE sha256 = $1";
const BLOCKLIST_LIST: &str =
    "SELECT sha256, reason, added_by, added_at, source FROM hash_blocklist ORDER BY added_at DESC, sha256 LIMIT $1";
const BLOCKLIST_DROP_CONFIG: &str = "DELETE FROM hash_blocklist WHERE source = 'config'";
const COUNT_WITH_HASH: &str = "SELECT COUNT(*) FROM media WHERE sha256 = $1";

/// Where a media stands in the download queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchState {
    Queued,
    Fetched,
    /// Failed; tried again at its `next_attempt_at`.
    Failed,
    /// Failed as often as allowed; `!backfill retry-failed` queues it again.
    Abandoned,
    /// The homeserver answers 404: quarantined, or gone. Not retried.
    Unavailable,
}

impl FetchState {
    pub const ALL: [Self; 5] = [Self::Queued, Self::Fetched, Self::Failed, Self::Abandoned, Self::Unavailable];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Fetched => "fetched",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
            Self::Unavailable => "unavailable",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| anyhow::anyhow!("unknown fetch state {text:?}"))
    }
}

impl TryFrom<String> for FetchState {
    type Error = anyhow::Error;

    fn try_from(text: String) -> anyhow::Result<Self> {
        Self::parse(&text)
    }
}

/// A media due for download, and how often it failed before.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueMedia {
    #[sqlx(flatten)]
    pub media: MediaId,
    pub failures: i64,
}

/// What a download learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub sha256: String,
    pub size: i64,
    pub mimetype: Option<String>,
}

/// A blocklisted hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BlockedHash {
    pub sha256: String,
    pub reason: Option<String>,
    pub added_by: String,
    pub added_at: i64,
    pub source: String,
}

/// A media's place in the queue.
#[derive(sqlx::FromRow)]
struct StateRow {
    #[sqlx(try_from = "String")]
    fetch_state: FetchState,
    failures: i64,
}

/// A media and one more column of it (`AS detail`): its last error, its hash.
#[derive(sqlx::FromRow)]
struct MediaWith<T> {
    #[sqlx(flatten)]
    media: MediaId,
    detail: T,
}

/// The head of one priority's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueHead {
    pub priority: QueuePriority,
    /// When its longest-waiting media was queued or is due again; `None`
    /// when nothing of this priority waits.
    pub oldest: Option<i64>,
}

impl QueueHead {
    /// How long its oldest due media has waited at `now` (zero when none is due).
    pub fn age_ms(&self, now: i64) -> i64 {
        self.oldest.map_or(0, |oldest| now.saturating_sub(oldest).max(0))
    }
}

impl Store {
    /// Media due for download now, at most `limit`: the most urgent
    /// priority first, the longest-waiting first within a priority.
    pub async fn due_media(&self, limit: i64) -> anyhow::Result<Vec<DueMedia>> {
        let now = now_ms();
        let mut due: Vec<DueMedia> = Vec::new();
        for priority in QueuePriority::ALL {
            let left = limit - due.len() as i64;
            if left <= 0 {
                break;
            }
            let page: Vec<DueMedia> =
                sqlx::query_as(DUE).bind(priority.as_i64()).bind(now).bind(left).fetch_all(&self.pool).await?;
            due.extend(page);
        }
        Ok(due)
    }

    /// The head of each priority's queue, most urgent first.
    pub async fn media_queue_heads(&self) -> anyhow::Result<Vec<QueueHead>> {
        let mut heads = Vec::with_capacity(QueuePriority::ALL.len());
        for priority in QueuePriority::ALL {
            let oldest = sqlx::query_scalar(HEAD).bind(priority.as_i64()).fetch_one(&self.pool).await?;
            heads.push(QueueHead { priority, oldest });
        }
        Ok(heads)
    }

    /// When the next queued or failed media is due, if any is.
    pub async fn next_media_due(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.media_queue_heads().await?.iter().filter_map(|head| head.oldest).min())
    }

    /// The media that the given events reference and that still wait for a
    /// download (queued, or failed and due again).
    pub async fn unfetched_media_of_events(&self, event_ids: &[String]) -> anyhow::Result<Vec<DueMedia>> {
        let mut due = Vec::new();
        let sql = format!(
            "SELECT DISTINCT m.server_name, m.media_id, m.fetch_failures AS failures FROM media_refs r \
             JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id \
             WHERE {} AND m.fetch_state IN ('queued', 'failed') AND m.next_attempt_at <= $2",
            in_json(self.backend, "r.event_id", 1)
        );
        for chunk in event_ids.chunks(500) {
            let query =
                sqlx::query_as::<_, DueMedia>(AssertSqlSafe(sql.clone())).bind(json_array(chunk)).bind(now_ms());
            due.extend(query.fetch_all(&self.pool).await?);
        }
        due.sort_by(|a, b| a.media.cmp(&b.media));
        due.dedup_by(|a, b| a.media == b.media);
        Ok(due)
    }

    pub async fn record_fetched(&self, media: &MediaId, fetched: &Fetched) -> anyhow::Result<()> {
        sqlx::query(FETCHED)
            .bind(&media.server_name)
            .bind(&media.media_id)
            .bind(&fetched.sha256)
            .bind(fetched.size)
            .bind(&fetched.mimetype)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A failed download: tried again at `next_attempt_at`, or abandoned
    /// once it failed `max_attempts` times. Returns the new state.
    pub async fn record_fetch_failure(
        &self,
        media: &MediaId,
        error: &str,
        next_attempt_at: i64,
        max_attempts: i64,
    ) -> anyhow::Result<FetchState> {
        sqlx::query(FAILED)
            .bind(&media.server_name)
            .bind(&media.media_id)
            .bind(error)
            .bind(next_attempt_at)
            .bind(max_attempts)
            .execute(&self.pool)
            .await?;
        Ok(self.fetch_state(media).await?.map_or(FetchState::Failed, |(state, _)| state))
    }

    /// This homeserver's media whose ID was made but whose content is not
    /// uploaded yet (`M_NOT_YET_UPLOADED`): tried again at `next_attempt_at`
    /// without counting towards abandoning it. Its uploader can post it
    /// first and upload later; giving up before the upload would leave the
    /// file that then appears behind the post unhashed. (Synapse forgets an
    /// ID never uploaded to after a day, then answers 404: unavailable.)
    pub async fn record_not_yet_uploaded(
        &self,
        media: &MediaId,
        error: &str,
        next_attempt_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(NOT_YET)
            .bind(&media.server_name)
            .bind(&media.media_id)
            .bind(error)
            .bind(next_attempt_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The homeserver does not serve it (404): quarantined, or gone.
    pub async fn record_unavailable(&self, media: &MediaId, reason: &str) -> anyhow::Result<()> {
        sqlx::query(UNAVAILABLE)
            .bind(&media.server_name)
            .bind(&media.media_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn fetch_state(&self, media: &MediaId) -> anyhow::Result<Option<(FetchState, i64)>> {
        let row: Option<StateRow> =
            sqlx::query_as(STATE).bind(&media.server_name).bind(&media.media_id).fetch_optional(&self.pool).await?;
        Ok(row.map(|row| (row.fetch_state, row.failures)))
    }

    /// Queues every failed and abandoned download again, from scratch.
    pub async fn retry_failed_media(&self) -> anyhow::Result<u64> {
        Ok(sqlx::query(RETRY_FAILED).bind(now_ms()).execute(&self.pool).await?.rows_affected())
    }

    /// How many downloads are abandoned (through `media_abandoned`).
    pub async fn abandoned_media_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM media WHERE fetch_state = 'abandoned'")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Abandoned downloads with their last error, at most `limit`.
    pub async fn abandoned_media(&self, limit: i64) -> anyhow::Result<Vec<(MediaId, Option<String>)>> {
        let rows: Vec<MediaWith<Option<String>>> = sqlx::query_as(ABANDONED).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|row| (row.media, row.detail)).collect())
    }

    /// How many media are in each fetch state, over all, or referenced in one room.
    pub async fn fetch_state_counts(&self, room_id: Option<&str>) -> anyhow::Result<Vec<(FetchState, i64)>> {
        let rows = match room_id {
            None => {
                sqlx::query_as::<_, Counted>(
                    "SELECT fetch_state AS name, COUNT(*) AS n FROM media GROUP BY fetch_state ORDER BY 1",
                )
                .fetch_all(&self.pool)
                .await?
            }
            Some(room) => {
                sqlx::query_as(
                    "SELECT m.fetch_state AS name, COUNT(*) AS n FROM media m JOIN (SELECT DISTINCT server_name, media_id \
                     FROM media_refs WHERE room_id = $1) r ON r.server_name = m.server_name AND r.media_id = m.media_id \
                     GROUP BY m.fetch_state ORDER BY 1",
                )
                .bind(room)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter().map(|row| Ok((FetchState::parse(&row.name)?, row.n))).collect()
    }

    /// Adds (or updates) a blocklisted hash.
    pub async fn block_hash(&self, entry: &BlockedHash) -> anyhow::Result<()> {
        sqlx::query(BLOCKLIST_ADD)
            .bind(&entry.sha256)
            .bind(&entry.reason)
            .bind(&entry.added_by)
            .bind(entry.added_at)
            .bind(&entry.source)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes a hash; whether it was there.
    pub async fn unblock_hash(&self, sha256: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query(BLOCKLIST_REMOVE).bind(sha256).execute(&self.pool).await?.rows_affected() == 1)
    }

    pub async fn blocked_hash(&self, sha256: &str) -> anyhow::Result<Option<BlockedHash>> {
        Ok(sqlx::query_as(BLOCKLIST_GET).bind(sha256).fetch_optional(&self.pool).await?)
    }

    pub async fn blocklist(&self, limit: i64) -> anyhow::Result<Vec<BlockedHash>> {
        Ok(sqlx::query_as(BLOCKLIST_LIST).bind(limit).fetch_all(&self.pool).await?)
    }

    /// Replaces the config file's entries (`source = config`) with `entries`.
    pub async fn set_config_blocklist(&self, entries: &[BlockedHash]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(BLOCKLIST_DROP_CONFIG).execute(&mut *tx).await?;
        for entry in entries {
            sqlx::query(BLOCKLIST_ADD_CONFIG)
                .bind(&entry.sha256)
                .bind(&entry.reason)
                .bind(&entry.added_by)
                .bind(entry.added_at)
                .bind("config")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` media whose hash is blocked, not quarantined, and not
    /// checked against the blocklist yet: `(media, sha256)`.
    pub async fn blocked_unchecked(&self, limit: i64) -> anyhow::Result<Vec<(MediaId, String)>> {
        let rows: Vec<MediaWith<String>> = sqlx::query_as(BLOCKED_UNCHECKED).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|row| (row.media, row.detail)).collect())
    }

    /// The blocklist was enforced on this media (whatever the outcome).
    pub async fn mark_blocklist_checked(&self, media: &MediaId) -> anyhow::Result<()> {
        sqlx::query(BLOCKLIST_CHECKED)
            .bind(&media.server_name)
            .bind(&media.media_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every media with this hash is checked against the blocklist again
    /// (the hash was just blocked).
    pub async fn recheck_blocklist(&self, sha256: &str) -> anyhow::Result<()> {
        sqlx::query(BLOCKLIST_RECHECK).bind(sha256).execute(&self.pool).await?;
        Ok(())
    }

    /// How many known media have this content hash.
    pub async fn media_count_with_hash(&self, sha256: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(COUNT_WITH_HASH).bind(sha256).fetch_one(&self.pool).await?)
    }
}
