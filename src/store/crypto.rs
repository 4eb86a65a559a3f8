//! The bot device's end-to-end encryption state (issue 35) as rows:
//! `(kind, key) -> value`, the values being matrix-sdk-crypto's pickles as
//! JSON. `crypto::store` decides the kinds and what goes in them; here is
//! only how they are kept: each change set in one commit, so that a room
//! key is either kept whole with everything that came with it or not at all.
//!
//! The values hold the device's private keys and the room keys moderators
//! shared with it: they are never logged, and only this module and
//! `crypto::store` read them.

use super::Store;

/// One thing the crypto machine keeps.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CryptoRow {
    pub kind: String,
    pub key: String,
    pub value: String,
}

/// Deliberately says nothing of `value`: it may be a private key.
impl std::fmt::Debug for CryptoRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoRow").field("kind", &self.kind).field("key", &self.key).finish_non_exhaustive()
    }
}

/// One change of a change set.
#[derive(Clone, PartialEq, Eq)]
pub enum CryptoWrite {
    /// Keep this row, replacing one of the same kind and key.
    Put(CryptoRow),
    /// Forget one row.
    Delete { kind: String, key: String },
}

impl std::fmt::Debug for CryptoWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Put(row) => f.debug_tuple("Put").field(row).finish(),
            Self::Delete { kind, key } => f.debug_struct("Delete").field("kind", kind).field("key", key).finish(),
        }
    }
}

impl Store {
    /// Everything kept, in `(kind, key)` order.
    pub async fn crypto_rows(&self) -> anyhow::Result<Vec<CryptoRow>> {
        Ok(sqlx::query_as("SELECT kind, key, value FROM crypto_store ORDER BY kind, key").fetch_all(&self.pool).await?)
    }

    /// The rows of one kind, in key order.
    pub async fn crypto_rows_of(&self, kind: &str) -> anyhow::Result<Vec<CryptoRow>> {
        Ok(sqlx::query_as("SELECT kind, key, value FROM crypto_store WHERE kind = $1 ORDER BY key")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?)
    }

    /// How many rows of one kind are kept.
    pub async fn count_crypto_rows(&self, kind: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM crypto_store WHERE kind = $1")
            .bind(kind)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Applies one change set, in order, in one commit.
    pub async fn write_crypto(&self, writes: &[CryptoWrite]) -> anyhow::Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for write in writes {
            match write {
                CryptoWrite::Put(row) => {
                    sqlx::query(
                        "INSERT INTO crypto_store (kind, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(&row.kind)
                    .bind(&row.key)
                    .bind(&row.value)
                    .execute(&mut *tx)
                    .await?;
                }
                CryptoWrite::Delete { kind, key } => {
                    sqlx::query("DELETE FROM crypto_store WHERE kind = $1 AND key = $2")
                        .bind(kind)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets every row (the device is gone: a new one starts empty); how many.
    pub async fn forget_crypto(&self) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM crypto_store").execute(&self.pool).await?.rows_affected())
    }
}
