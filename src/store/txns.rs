//! Appservice transactions: idempotent, all-or-nothing indexing of one
//! transaction's events.

use super::events::{IndexCounts, insert_batch};
use super::inbox::{InboxItem, insert_inbox};
use super::{Source, Store};
use crate::clock::now_ms;
use crate::extract::Extracted;

/// Claims the txn id first, so the SQLite transaction takes the write lock at
/// its first statement and waits on `busy_timeout` instead of failing to upgrade.
const CLAIM_TXN: &str = "INSERT INTO appservice_txns (txn_id, fingerprint, received_at, event_count) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (txn_id) DO NOTHING";
const SELECT_TXN_HASH: &str = "SELECT fingerprint FROM appservice_txns WHERE txn_id = $1";
const TXN_EXISTS: &str = "SELECT COUNT(*) FROM appservice_txns WHERE txn_id = $1";
/// Of the txn IDs `$1` (a JSON array), those that arrived.
const SELECT_SEEN: &str = "SELECT txn_id FROM appservice_txns WHERE ";
/// How far back a hole is looked for behind a new transaction.
const GAP_WINDOW: u64 = 64;
const UPDATE_TXN: &str =
    "UPDATE appservice_txns SET fingerprint = $2, received_at = $3, event_count = $4 WHERE txn_id = $1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Rows written and committed.
    Indexed(IndexCounts),
    /// The same txn id with the same body was already committed: a homeserver retry.
    AlreadyIndexed,
}

/// Whether `n - 1`, which never arrived, may be a transaction the
/// homeserver stranded: `seen` are the numbers below `n - 1` (at most
/// [`GAP_WINDOW`] back) that did arrive, and they must run without a hole
/// from the earliest of them up to `n - 2`, at least [`MIN_RUN`] of them.
/// A hole among them is another appservice's transaction, and so, most
/// likely, is this one. A short run says too little: the 503 that asks for
/// the resend starts Synapse's recoverer, and a transaction Synapse creates
/// while that recoverer finishes is itself stranded (seen in CI: a
/// tenant's first transactions beside another tenant's, one event then
/// missing for good). So the question is asked only on strong evidence.
fn hole_is_suspect(seen: &[u64], n: u64) -> bool {
    seen.len() as u64 >= MIN_RUN
        && seen.iter().min().is_some_and(|first| n >= first + 2 && seen.len() as u64 == n - 1 - first)
}

/// Transactions that must have arrived, without a hole, right before a
/// hole for it to be taken as stranded (see [`hole_is_suspect`]).
const MIN_RUN: u64 = 4;

impl Store {
    /// Indexes one appservice transaction, and queues the events addressed to
    /// the bot, in one database transaction; returns only after the commit, so
    /// the caller may acknowledge it.
    ///
    /// A txn id seen before with the same events (`fingerprint`) is a retry
    /// and writes nothing. The same id with *other* events means the
    /// homeserver's counter restarted (a reset database, a re-registration):
    /// those events are new and are indexed, never dropped. Event inserts are
    /// idempotent either way.
    pub async fn index_transaction(
        &self,
        txn_id: &str,
        fingerprint: &str,
        events: &[Extracted],
        inbox: &[InboxItem],
        backfill: Option<(&[String], &str)>,
    ) -> anyhow::Result<TxnOutcome> {
        let (_gate, mut tx) = self.begin_bulk_write().await?;
        let now = now_ms();
        let count = events.len() as i64;
        let claimed = sqlx::query(CLAIM_TXN)
            .bind(txn_id)
            .bind(fingerprint)
            .bind(now)
            .bind(count)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            let previous: String = sqlx::query_scalar(SELECT_TXN_HASH).bind(txn_id).fetch_one(&mut *tx).await?;
            if previous == fingerprint {
                tx.commit().await?;
                return Ok(TxnOutcome::AlreadyIndexed);
            }
            tracing::warn!(
                txn_id,
                "transaction id reused with other events; indexing them (was the homeserver reset?)"
            );
            sqlx::query(UPDATE_TXN).bind(txn_id).bind(fingerprint).bind(now).bind(count).execute(&mut *tx).await?;
        }
        let counts = insert_batch(&mut tx, self.backend, events, Source::Live, now, &self.media_queue).await?;
        insert_inbox(&mut tx, inbox, now).await?;
        // Rooms to read back (a gap behind this transaction): asked for in the
        // same commit, so an acknowledged transaction never loses its repair.
        if let Some((rooms, reason)) = backfill {
            super::backfill::request_in(&mut tx, rooms, reason, now).await?;
        }
        tx.commit().await?;
        Ok(TxnOutcome::Indexed(counts))
    }

    /// For a numeric txn id `n`: `Some(n - 1)` when `n - 1` never arrived
    /// although the transactions before it did, each of them. Synapse can
    /// strand a transaction created while it recovers from an outage, and
    /// sends it only after the next failure; see the caller. It numbers the
    /// transactions of all its appservices from one sequence: with another
    /// appservice on the server the numbers we were sent have holes all
    /// along, and a hole tells nothing (`None`).
    pub async fn missing_predecessor(&self, txn_id: &str) -> anyhow::Result<Option<u64>> {
        let Some(n) = txn_id.parse::<u64>().ok().filter(|n| *n >= 3) else { return Ok(None) };
        let count = |id: u64| async move {
            anyhow::Ok(sqlx::query_scalar::<_, i64>(TXN_EXISTS).bind(id.to_string()).fetch_one(&self.pool).await?)
        };
        if count(n - 1).await? > 0 || count(n).await? > 0 {
            return Ok(None);
        }
        let earlier: Vec<String> = (n.saturating_sub(GAP_WINDOW).max(1)..n - 1).map(|id| id.to_string()).collect();
        let sql = format!("{SELECT_SEEN}{}", super::sql::in_json(self.backend, "txn_id", 1));
        let seen: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(super::sql::json_array(&earlier))
            .fetch_all(&self.pool)
            .await?;
        let seen: Vec<u64> = seen.iter().filter_map(|id| id.parse().ok()).collect();
        Ok(hole_is_suspect(&seen, n).then_some(n - 1))
    }

    /// Indexes events outside any appservice transaction (backfill), in one
    /// database transaction.
    pub async fn index_events(&self, events: &[Extracted], source: Source) -> anyhow::Result<IndexCounts> {
        let (_gate, mut tx) = self.begin_bulk_write().await?;
        let counts = insert_batch(&mut tx, self.backend, events, source, now_ms(), &self.media_queue).await?;
        tx.commit().await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_is_suspect_only_behind_numbers_without_holes() {
        // 1 to 4 arrived, 5 did not: 6 may be behind a stranded one.
        assert!(hole_is_suspect(&[1, 2, 3, 4], 6));
        // Too few to tell (a new install's first, another appservice's hole).
        assert!(!hole_is_suspect(&[1, 2], 4));
        assert!(!hole_is_suspect(&[1], 3));
        // Nothing seen before: nothing to go by.
        assert!(!hole_is_suspect(&[], 4));
        // 2 went to another appservice: so, likely, did 6.
        assert!(!hole_is_suspect(&[1, 3, 4, 5], 7));
        // The window's far edge: a full window of ours (n - 64 .. n - 2).
        let n = 1_000;
        let window: Vec<u64> = (n - GAP_WINDOW..n - 1).collect();
        assert!(hole_is_suspect(&window, n));
        // One of them missing in the middle is a hole; so is n - 2.
        let middle: Vec<u64> = window.iter().copied().filter(|id| *id != n - 30).collect();
        assert!(!hole_is_suspect(&middle, n));
        assert!(!hole_is_suspect(&window[..window.len() - 1], n), "n - 2 missing too");
        // Missing the window's first is no hole: ours may start later.
        assert!(hole_is_suspect(&window[1..], n));
    }
}
