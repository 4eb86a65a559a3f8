//! `job_items`: what a job works through, one row per item, and how each went.
//!
//! Items are written at plan time ([`Store::insert_job_items`]) and their
//! outcomes with each batch's checkpoint: [`write_item_results`] runs inside
//! the checkpoint's transaction ([`Store::checkpoint_job`]), so the outcomes,
//! the job's cursor and its audit entries commit together.

use serde_json::Value;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::parse_json;
use crate::store::Store;
use crate::store::sql::{Counted, in_json, json_array, values_placeholders};

/// Items are deleted a chunk per statement: a million-item plan dropped in
/// one statement would hold SQLite's write lock for seconds.
const DELETE_ITEMS_CHUNK: &str = "DELETE FROM job_items WHERE job_id = $1 AND seq IN \
     (SELECT seq FROM job_items WHERE job_id = $1 ORDER BY seq LIMIT 5000)";
const INSERT_ITEMS_HEAD: &str = "INSERT INTO job_items (job_id, seq, item_key, item, state) VALUES ";
/// An item's outcome. A kind that finds its items as it goes (no list made
/// at plan time) inserts them here with their outcome.
const UPSERT_ITEM: &str = "INSERT INTO job_items (job_id, seq, item_key, item, state, detail) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, seq) DO UPDATE SET state = $5, detail = $6";
const SELECT_ITEMS: &str = "SELECT seq, item_key, item, state, detail FROM job_items WHERE job_id = $1";
const COUNT_ITEMS: &str =
    "SELECT state AS name, COUNT(*) AS n FROM job_items WHERE job_id = $1 GROUP BY state ORDER BY state";
/// Of the keys `$2` (a JSON array), those the job `$1` lists.
const SELECT_KEYS_AMONG: &str = "SELECT item_key FROM job_items WHERE job_id = $1 AND ";
/// Rows per multi-row item INSERT: 5 columns each, well under the bind limits.
const ITEM_ROWS_PER_STATEMENT: usize = 400;

/// How one job item went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Pending,
    Done,
    Skipped,
    Failed,
}

impl ItemState {
    pub const ALL: [Self; 4] = [Self::Pending, Self::Done, Self::Skipped, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| anyhow::anyhow!("unknown item state {text:?}"))
    }
}

/// A job item's outcome, committed with the batch's checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub seq: i64,
    pub key: String,
    /// The item itself (JSON); written when the item was not listed at plan time.
    pub item: Value,
    pub state: ItemState,
    pub detail: String,
}

/// A job item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobItem {
    pub seq: i64,
    pub key: String,
    pub item: Value,
    pub state: ItemState,
    pub detail: Option<String>,
}

/// A `job_items` row.
#[derive(sqlx::FromRow)]
struct ItemRow {
    seq: i64,
    item_key: String,
    item: Option<String>,
    state: String,
    detail: Option<String>,
}

impl TryFrom<ItemRow> for JobItem {
    type Error = anyhow::Error;

    fn try_from(row: ItemRow) -> anyhow::Result<Self> {
        Ok(Self {
            seq: row.seq,
            key: row.item_key,
            item: parse_json(row.item)?.unwrap_or(Value::Null),
            state: ItemState::parse(&row.state)?,
            detail: row.detail,
        })
    }
}

/// Writes items' outcomes on the caller's connection: the transaction of
/// the checkpoint they belong to.
pub(super) async fn write_item_results(conn: &mut AnyConnection, id: &str, items: &[ItemResult]) -> anyhow::Result<()> {
    for result in items {
        sqlx::query(UPSERT_ITEM)
            .bind(id)
            .bind(result.seq)
            .bind(&result.key)
            .bind(result.item.to_string())
            .bind(result.state.as_str())
            .bind(&result.detail)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Appends planned items (`key`, JSON) after `first_seq`. A key the job
    /// lists already is left out. Returns how many were new.
    pub async fn insert_job_items(&self, id: &str, first_seq: i64, items: &[(String, Value)]) -> anyhow::Result<u64> {
        let mut inserted = 0;
        let mut seq = first_seq;
        for chunk in items.chunks(ITEM_ROWS_PER_STATEMENT) {
            let sql = format!(
                "{INSERT_ITEMS_HEAD}{} ON CONFLICT (job_id, item_key) DO NOTHING",
                values_placeholders(self.backend, chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (key, item) in chunk {
                query = query.bind(id).bind(seq).bind(key).bind(item.to_string()).bind(ItemState::Pending.as_str());
                seq += 1;
            }
            inserted += query.execute(&self.pool).await?.rows_affected();
        }
        Ok(inserted)
    }

    /// Drops the items of a plan that will never run (a dry run's).
    pub async fn delete_job_items(&self, id: &str) -> anyhow::Result<()> {
        while sqlx::query(DELETE_ITEMS_CHUNK).bind(id).execute(&self.pool).await?.rows_affected() > 0 {}
        Ok(())
    }

    /// Up to `limit` items after `after_seq`, in order.
    pub async fn next_job_items(&self, id: &str, after_seq: i64, limit: i64) -> anyhow::Result<Vec<JobItem>> {
        let sql = format!("{SELECT_ITEMS} AND seq > $2 ORDER BY seq LIMIT $3");
        let rows: Vec<ItemRow> =
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).bind(after_seq).bind(limit).fetch_all(&self.pool).await?;
        rows.into_iter().map(JobItem::try_from).collect()
    }

    /// How many of `keys` are items of the job (by the `(job_id, item_key)` index).
    pub async fn count_job_items_with_keys(&self, id: &str, keys: &[String]) -> anyhow::Result<i64> {
        Ok(self.job_item_keys_among(id, keys).await?.len() as i64)
    }

    /// Those of `keys` that are items of the job (by the `(job_id, item_key)` index).
    pub async fn job_item_keys_among(&self, id: &str, keys: &[String]) -> anyhow::Result<Vec<String>> {
        let sql = format!("{SELECT_KEYS_AMONG}{}", in_json(self.backend, "item_key", 2));
        let mut found = Vec::new();
        for chunk in keys.chunks(500) {
            let query = sqlx::query_scalar(AssertSqlSafe(sql.clone())).bind(id).bind(json_array(chunk));
            found.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(found)
    }

    /// Items in one state, in order, at most `limit`.
    pub async fn job_items_in_state(&self, id: &str, state: ItemState, limit: i64) -> anyhow::Result<Vec<JobItem>> {
        let sql = format!("{SELECT_ITEMS} AND state = $2 ORDER BY seq LIMIT $3");
        let rows: Vec<ItemRow> =
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).bind(state.as_str()).bind(limit).fetch_all(&self.pool).await?;
        rows.into_iter().map(JobItem::try_from).collect()
    }

    /// Items in one state whose key starts with `prefix` (`mxc://`: a
    /// purge's media), in order, at most `limit`.
    pub async fn job_items_in_state_with_prefix(
        &self,
        id: &str,
        state: ItemState,
        prefix: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<JobItem>> {
        // substr, not LIKE: no escaping of `%` and `_`, the same on both databases.
        let sql =
            format!("{SELECT_ITEMS} AND state = $2 AND substr(item_key, 1, length($3)) = $3 ORDER BY seq LIMIT $4");
        let rows: Vec<ItemRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .bind(state.as_str())
            .bind(prefix)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(JobItem::try_from).collect()
    }

    /// How many items are in each state.
    pub async fn job_item_counts(&self, id: &str) -> anyhow::Result<Vec<(ItemState, i64)>> {
        let rows: Vec<Counted> = sqlx::query_as(COUNT_ITEMS).bind(id).fetch_all(&self.pool).await?;
        rows.into_iter().map(|row| Ok((ItemState::parse(&row.name)?, row.n))).collect()
    }
}
