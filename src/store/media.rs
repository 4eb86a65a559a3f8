//! The `media` table and media selections from `media_refs`, for quarantine.
//!
//! Selections are counted and listed in SQL (`GROUP BY`, `DISTINCT`,
//! streamed rows), never loaded whole: a room can reference millions of media.
//!
//! **Shared or mentioned.** A media counts as *shared* where it was sent as
//! something people see: an attachment, its thumbnail, an encrypted file, a
//! sticker, an inline `<img>`, a room avatar, or a member avatar its owner
//! set on themselves. Anything else (an mxc URI pasted into a text or a
//! custom field, another user's avatar copied into an invite, every member's
//! profile picture when a whole room is selected) is a *mention*: Synapse
//! quarantines by content hash, so quarantining a mention could take down
//! media that belongs to someone else. Mentions are counted, and selected
//! only when asked for (`--include-mentions`).

use futures::{Stream, TryStreamExt};
use sqlx::AssertSqlSafe;

use super::Store;
use super::sql::Counted;
use crate::clock::now_ms;

/// Kinds that are shared wherever they appear.
pub(super) const SHARED_KINDS: &str =
    "'url', 'thumbnail', 'file', 'thumbnail_file', 'sticker', 'html_img', 'room_avatar'";

const MEDIA_STATE: &str = "SELECT quarantined_at FROM media WHERE server_name = $1 AND media_id = $2";
/// A media not known before waits in the queue from now, to be hashed (the
/// homeserver's 404 then says it is quarantined).
const SET_QUARANTINED: &str = "INSERT INTO media (server_name, media_id, quarantined_at, quarantined_by, quarantine_reason, \
     next_attempt_at) VALUES ($1, $2, $3, $4, $5, $3) ON CONFLICT (server_name, media_id) DO UPDATE SET \
     quarantined_at = excluded.quarantined_at, quarantined_by = excluded.quarantined_by, \
     quarantine_reason = excluded.quarantine_reason";
/// Released media is downloaded again if it could not be before (it was
/// quarantined): its hash is then known, and checked against the blocklist.
const CLEAR_QUARANTINED: &str = "UPDATE media SET quarantined_at = NULL, quarantined_by = NULL, quarantine_reason = NULL, \
     next_attempt_at = CASE WHEN fetch_state = 'unavailable' THEN $3 ELSE next_attempt_at END, \
     fetch_state = CASE WHEN fetch_state = 'unavailable' THEN 'queued' ELSE fetch_state END \
     WHERE server_name = $1 AND media_id = $2";
const COUNT_QUARANTINED: &str = "SELECT COUNT(*) FROM media WHERE quarantined_at IS NOT NULL";

/// Which references a selection starts from. Each goes through one index.
#[derive(Debug, Clone, Copy)]
pub enum RefsOf<'a> {
    Room(&'a str),
    Sender(&'a str),
    Event(&'a str),
    /// Media whose content hash housekeep learned (pre-download).
    Hash(&'a str),
}

/// Shared media only, or mentions too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Shared,
    All,
}

/// What a selection holds, counted in SQL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSelectionStats {
    /// References per kind, mentions included (one media can be referenced many times).
    pub refs_by_kind: Vec<(String, i64)>,
    /// Distinct media selected in the scope.
    pub media: i64,
    /// Of those, on this homeserver.
    pub local: i64,
    /// Of those, quarantined per housekeep's records.
    pub already_quarantined: i64,
    /// Distinct media only mentioned (not selected unless the scope is `All`).
    pub mentions_only: i64,
    /// A few of them.
    pub mention_samples: Vec<String>,
    /// Who referenced the selected media: the top senders and how many there are.
    pub top_senders: Vec<(String, i64)>,
    pub senders: i64,
}

/// `WHERE` pieces over `media_refs r` for a selection: the start, and the shared-only filter.
fn start_condition(of: RefsOf<'_>) -> (&'static str, &str) {
    match of {
        RefsOf::Room(room) => ("r.room_id = $1", room),
        RefsOf::Sender(sender) => ("r.sender = $1", sender),
        RefsOf::Event(event) => ("r.event_id = $1", event),
        RefsOf::Hash(sha256) => (
            "EXISTS (SELECT 1 FROM media h WHERE h.server_name = r.server_name AND h.media_id = r.media_id \
              AND h.sha256 = $1)",
            sha256,
        ),
    }
}

fn scope_condition(of: RefsOf<'_>, scope: Scope) -> String {
    match (scope, of) {
        (Scope::All, _) | (Scope::Shared, RefsOf::Hash(_)) => "1 = 1".to_owned(),
        // A whole room's member avatars are its members' profile pictures, not its content.
        (Scope::Shared, RefsOf::Room(_)) => format!("r.kind IN ({SHARED_KINDS})"),
        (Scope::Shared, RefsOf::Sender(_) | RefsOf::Event(_)) => format!(
            "(r.kind IN ({SHARED_KINDS}) OR (r.kind = 'member_avatar' AND EXISTS \
             (SELECT 1 FROM events e WHERE e.event_id = r.event_id AND e.state_key = r.sender)))"
        ),
    }
}

/// One media, named by server and ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::FromRow)]
pub struct MediaId {
    pub server_name: String,
    pub media_id: String,
}

impl MediaId {
    pub fn mxc(&self) -> String {
        format!("mxc://{}/{}", self.server_name, self.media_id)
    }
}

/// How many distinct media a selection references and how many of them are
/// shared (the rest only mentioned); of each, how many are local and how
/// many quarantined already.
#[derive(sqlx::FromRow)]
struct SelectedCounts {
    seen: i64,
    shared: i64,
    local_seen: i64,
    local_shared: i64,
    quarantined_seen: i64,
    quarantined_shared: i64,
}

/// One of a selection's top senders, and how many senders it has in all.
#[derive(sqlx::FromRow)]
struct TopSender {
    name: String,
    n: i64,
    senders: i64,
}

/// See [`Store::senders_of_same_file`]: the hash given, else the index's own.
const SENDERS_OF_SAME_FILE: &str = "SELECT DISTINCT r.sender FROM media m \
     JOIN media_refs r ON r.server_name = m.server_name AND r.media_id = m.media_id \
     WHERE m.sha256 = COALESCE($3, (SELECT sha256 FROM media WHERE server_name = $1 AND media_id = $2)) \
     LIMIT $4";

/// See [`Store::copies_of`].
const COPIES_OF: &str = "SELECT COUNT(*) FROM media m \
     WHERE m.sha256 = (SELECT sha256 FROM media WHERE server_name = $1 AND media_id = $2) \
     AND NOT (m.server_name = $1 AND m.media_id = $2)";

/// See [`Store::rooms_of_same_file`].
const ROOMS_OF_SAME_FILE: &str = "SELECT DISTINCT r.room_id FROM media_refs r \
     WHERE (r.server_name = $1 AND r.media_id = $2) \
        OR (r.server_name, r.media_id) IN (SELECT server_name, media_id FROM media \
            WHERE sha256 = COALESCE($3, (SELECT sha256 FROM media WHERE server_name = $1 AND media_id = $2))) \
     LIMIT $4";

impl Store {
    /// Counts a selection (see the module docs for shared and mentioned).
    pub async fn media_selection_stats(
        &self,
        of: RefsOf<'_>,
        scope: Scope,
        local_server: &str,
    ) -> anyhow::Result<MediaSelectionStats> {
        let (start, value) = start_condition(of);
        let selected = scope_condition(of, scope);
        let shared = scope_condition(of, Scope::Shared);
        let pool = &self.pool;
        let mut stats = MediaSelectionStats::default();

        let sql = format!(
            "SELECT r.kind AS name, COUNT(*) AS n FROM media_refs r WHERE {start} GROUP BY r.kind ORDER BY r.kind"
        );
        let kinds = sqlx::query_as::<_, Counted>(AssertSqlSafe(sql)).bind(value).fetch_all(pool).await?;
        stats.refs_by_kind = kinds.into_iter().map(Into::into).collect();

        // One pass over the selection's media (the index holds a room's or a
        // sender's references in media order: no sort, no hash), each media
        // marked shared or not, and joined by its key to the `media` row if
        // that is quarantined.
        let is_shared = format!("MAX(CASE WHEN {shared} THEN 1 ELSE 0 END)");
        let sql = format!(
            "SELECT COUNT(*) AS seen, COALESCE(SUM(m.shared), 0) AS shared, \
             COALESCE(SUM(CASE WHEN m.server_name = $2 THEN 1 ELSE 0 END), 0) AS local_seen, \
             COALESCE(SUM(CASE WHEN m.server_name = $2 THEN m.shared ELSE 0 END), 0) AS local_shared, \
             COALESCE(SUM(CASE WHEN q.media_id IS NOT NULL THEN 1 ELSE 0 END), 0) AS quarantined_seen, \
             COALESCE(SUM(CASE WHEN q.media_id IS NOT NULL THEN m.shared ELSE 0 END), 0) AS quarantined_shared \
             FROM (SELECT r.server_name, r.media_id, {is_shared} AS shared FROM media_refs r WHERE {start} \
                   GROUP BY r.server_name, r.media_id) m \
             LEFT JOIN media q ON q.server_name = m.server_name AND q.media_id = m.media_id \
                  AND q.quarantined_at IS NOT NULL"
        );
        let counts: SelectedCounts =
            sqlx::query_as(AssertSqlSafe(sql)).bind(value).bind(local_server).fetch_one(pool).await?;
        (stats.media, stats.local, stats.already_quarantined) = match scope {
            Scope::All => (counts.seen, counts.local_seen, counts.quarantined_seen),
            Scope::Shared => (counts.shared, counts.local_shared, counts.quarantined_shared),
        };
        stats.mentions_only = counts.seen - counts.shared;
        if stats.mentions_only > 0 {
            let sql = format!(
                "SELECT r.server_name, r.media_id FROM media_refs r WHERE {start} \
                 GROUP BY r.server_name, r.media_id HAVING {is_shared} = 0 ORDER BY 1, 2 LIMIT 5"
            );
            let samples = sqlx::query_as::<_, MediaId>(AssertSqlSafe(sql)).bind(value).fetch_all(pool).await?;
            stats.mention_samples = samples.iter().map(MediaId::mxc).collect();
        }

        // The top senders, each row carrying how many there are in all.
        let sql = format!(
            "SELECT s.name, s.n, COUNT(*) OVER () AS senders FROM \
             (SELECT d.sender AS name, COUNT(*) AS n FROM (SELECT DISTINCT r.sender, r.server_name, r.media_id \
              FROM media_refs r WHERE {start} AND {selected}) d GROUP BY d.sender) s \
             ORDER BY s.n DESC, s.name LIMIT 5"
        );
        let top = sqlx::query_as::<_, TopSender>(AssertSqlSafe(sql)).bind(value).fetch_all(pool).await?;
        stats.senders = top.first().map_or(0, |row| row.senders);
        stats.top_senders = top.into_iter().map(|row| (row.name, row.n)).collect();
        Ok(stats)
    }

    /// The distinct media of a selection, in a stable order, streamed.
    pub fn selected_media<'a>(
        &'a self,
        of: RefsOf<'a>,
        scope: Scope,
    ) -> impl Stream<Item = anyhow::Result<MediaId>> + Send + 'a {
        let (start, value) = start_condition(of);
        let sql = format!(
            "SELECT DISTINCT r.server_name, r.media_id FROM media_refs r WHERE {start} AND {} ORDER BY 1, 2",
            scope_condition(of, scope)
        );
        sqlx::query_as(AssertSqlSafe(sql)).bind(value.to_owned()).fetch(&self.pool).map_err(Into::into)
    }

    /// The rooms where this media, or a copy of its file (same hash), is
    /// referenced in any indexed event: at most `limit`.
    pub async fn rooms_of_same_file(
        &self,
        server_name: &str,
        media_id: &str,
        sha256: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<String>> {
        self.of_same_file(ROOMS_OF_SAME_FILE, server_name, media_id, sha256, limit).await
    }

    /// Who shared, in any indexed event, a copy of the file with the same
    /// content as `server_name/media_id` (by the hash the media worker
    /// took, or `sha256` when the homeserver told it): at most `limit`.
    /// Synapse quarantines every copy of a file by its hash, so these
    /// are the users a quarantine of this media would also reach.
    pub async fn senders_of_same_file(
        &self,
        server_name: &str,
        media_id: &str,
        sha256: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<String>> {
        self.of_same_file(SENDERS_OF_SAME_FILE, server_name, media_id, sha256, limit).await
    }

    /// `sql` (rooms or senders of a file's copies: `$1` server, `$2` media
    /// ID, `$3` a known hash or NULL, `$4` the limit) for this media.
    async fn of_same_file(
        &self,
        sql: &'static str,
        server_name: &str,
        media_id: &str,
        sha256: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<String>> {
        let query = sqlx::query_scalar(sql).bind(server_name).bind(media_id).bind(sha256).bind(limit);
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// How many other media have the same file as this one, by the hash
    /// the media worker took (0 when it has not hashed this one).
    pub async fn copies_of(&self, server_name: &str, media_id: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(COPIES_OF).bind(server_name).bind(media_id).fetch_one(&self.pool).await?)
    }

    /// Distinct media with this content hash (known from pre-download),
    /// referenced or not.
    pub fn media_with_hash<'a>(&'a self, sha256: &'a str) -> impl Stream<Item = anyhow::Result<MediaId>> + Send + 'a {
        sqlx::query_as("SELECT server_name, media_id FROM media WHERE sha256 = $1 ORDER BY 1, 2")
            .bind(sha256)
            .fetch(&self.pool)
            .map_err(Into::into)
    }

    /// When housekeep last quarantined this media, if it is quarantined.
    pub async fn media_quarantined_at(&self, server_name: &str, media_id: &str) -> anyhow::Result<Option<i64>> {
        let at: Option<Option<i64>> =
            sqlx::query_scalar(MEDIA_STATE).bind(server_name).bind(media_id).fetch_optional(&self.pool).await?;
        Ok(at.flatten())
    }

    /// Records quarantines (who, why, when), or their lifting with `by:
    /// None`, in one transaction (one commit for a job's whole batch).
    pub async fn set_media_quarantine(
        &self,
        media: &[(&str, &str)],
        by: Option<(&str, Option<&str>)>,
    ) -> anyhow::Result<()> {
        if media.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for (server_name, media_id) in media {
            let query = match by {
                Some((actor, reason)) => {
                    sqlx::query(SET_QUARANTINED).bind(*server_name).bind(*media_id).bind(now).bind(actor).bind(reason)
                }
                None => sqlx::query(CLEAR_QUARANTINED).bind(*server_name).bind(*media_id).bind(now),
            };
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Who posted media of `server_name` in a room (by the `media_refs_room`
    /// index), at most `limit` of them.
    pub async fn media_senders_in_room(
        &self,
        room_id: &str,
        server_name: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT sender FROM media_refs WHERE room_id = $1 AND server_name = $2 ORDER BY sender LIMIT $3",
        )
        .bind(room_id)
        .bind(server_name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn quarantined_media_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(COUNT_QUARANTINED).fetch_one(&self.pool).await?)
    }
}

/// Media of one room by reference kind.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KindCount {
    pub kind: String,
    pub refs: i64,
    pub media: i64,
    /// Of the media housekeep downloaded (pre-download or backfill).
    pub bytes: i64,
}

/// A quarantine housekeep recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub mxc: String,
    pub at: i64,
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// A [`QuarantineRecord`] as `media` holds it.
#[derive(sqlx::FromRow)]
struct QuarantineRow {
    #[sqlx(flatten)]
    media: MediaId,
    quarantined_at: i64,
    quarantined_by: Option<String>,
    quarantine_reason: Option<String>,
}

impl From<QuarantineRow> for QuarantineRecord {
    fn from(row: QuarantineRow) -> Self {
        Self { mxc: row.media.mxc(), at: row.quarantined_at, by: row.quarantined_by, reason: row.quarantine_reason }
    }
}

impl Store {
    /// A room's media by reference kind (the room index of `media_refs`).
    pub async fn room_media_by_kind(&self, room_id: &str) -> anyhow::Result<Vec<KindCount>> {
        Ok(sqlx::query_as(
            "SELECT kind, CAST(SUM(refs) AS BIGINT) AS refs, COUNT(*) AS media, \
               CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM (\
               SELECT r.kind AS kind, COUNT(*) AS refs, MAX(m.size) AS size FROM media_refs r \
               LEFT JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id \
               WHERE r.room_id = $1 GROUP BY r.kind, r.server_name, r.media_id) per_media \
             GROUP BY kind ORDER BY kind",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The newest quarantines housekeep recorded (the partial index on `quarantined_at`).
    pub async fn recent_quarantines(&self, limit: i64) -> anyhow::Result<Vec<QuarantineRecord>> {
        let rows = sqlx::query_as::<_, QuarantineRow>(
            "SELECT server_name, media_id, quarantined_at, quarantined_by, quarantine_reason FROM media \
             WHERE quarantined_at IS NOT NULL ORDER BY quarantined_at DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 500))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
