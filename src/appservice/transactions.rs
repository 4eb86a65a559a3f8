//! `PUT /_matrix/app/v1/transactions/{txnId}`: the homeserver's event stream.
//!
//! A transaction is acknowledged only after its rows are committed; any error
//! before that answers non-200 so the homeserver resends the same transaction.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::route::Admission;
use super::{AppState, MatrixError};
use crate::clock::now_ms;
use crate::extract::{ExtractError, Extracted, extract_value};
use crate::metrics::{KindLabel, RejectReason, TxnOutcome as TxnMetric};
use crate::store::{InboxItem, TxnOutcome};

/// The transaction body. Events stay raw here and are read one by one, so one
/// bad event never sinks the whole transaction.
#[derive(Deserialize)]
pub(crate) struct Transaction<'a> {
    #[serde(borrow)]
    pub(crate) events: Vec<&'a RawValue>,
    /// Ephemeral events (typing, receipts, presence): accepted, not indexed.
    #[serde(default)]
    ephemeral: Vec<IgnoredAny>,
    /// The same under MSC2409's unstable name; a homeserver may send both keys.
    #[serde(default, rename = "de.sorunome.msc2409.ephemeral")]
    unstable_ephemeral: Vec<IgnoredAny>,
    /// To-device messages (MSC2409): handed to the bot's crypto machine
    /// when end-to-end encryption is on; never indexed.
    #[serde(default, borrow, rename = "de.sorunome.msc2409.to_device")]
    to_device: Vec<&'a RawValue>,
    /// MSC3202 (unstable names, what Synapse 1.163 sends): device list
    /// changes, one-time key counts and unused fallback key types.
    #[serde(default, borrow, rename = "org.matrix.msc3202.device_lists")]
    device_lists: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "org.matrix.msc3202.device_one_time_keys_count")]
    one_time_keys_count: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "org.matrix.msc3202.device_unused_fallback_key_types")]
    unused_fallback_key_types: Option<&'a RawValue>,
}

impl<'a> Transaction<'a> {
    /// What the bot's crypto machine takes from this transaction.
    fn crypto_changes(&self) -> crate::crypto::SyncChanges<'a> {
        crate::crypto::SyncChanges {
            to_device: self.to_device.clone(),
            device_lists: self.device_lists,
            one_time_keys_count: self.one_time_keys_count,
            unused_fallback_key_types: self.unused_fallback_key_types,
        }
    }
}

/// Transactions remembered as refused once because of a hole behind them.
const MAX_REMEMBERED_GAPS: usize = 1024;

pub async fn put_transaction(
    State(state): State<AppState>,
    Path(txn_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, MatrixError> {
    let answer = take_transaction(&state, txn_id.clone(), body).await;
    // Any error answer starts the homeserver's recoverer, whose end may
    // strand a transaction: the nudge flushes it once things are quiet
    // (the nudge's own refusal excepted).
    if let (Err(_), Some(nudge)) = (&answer, &state.nudge) {
        nudge.error_answered(&txn_id);
    }
    answer
}

async fn take_transaction(
    state: &AppState,
    txn_id: String,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, MatrixError> {
    let started = Instant::now();
    // Opaque to us, but stored as text: a NUL or an ID longer than any
    // homeserver makes would fail the commit with an unhelpful 500. (Synapse
    // retries any non-2xx, but it numbers its transactions 1, 2, 3…: only a
    // holder of the hs_token could send such an ID, and it gets the reason.)
    if txn_id.is_empty() || !crate::extract::storable(&txn_id) {
        state.metrics.reject(RejectReason::BadTransaction);
        state.metrics.transaction(TxnMetric::Rejected);
        let shown = &txn_id[..txn_id.floor_char_boundary(64)];
        tracing::info!(txn_id = shown, len = txn_id.len(), "transaction ID refused");
        return Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            format!("invalid transaction ID: empty, over {} bytes, or with a NUL", crate::extract::MAX_ID_LEN),
        ));
    }
    let body = body.map_err(|rejection| {
        state.metrics.reject(RejectReason::BadTransaction);
        state.metrics.transaction(TxnMetric::Rejected);
        tracing::info!(txn_id, %rejection, "transaction body refused");
        MatrixError::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", rejection.body_text())
    })?;
    let transaction = parse_transaction(&body).inspect_err(|error| {
        state.metrics.reject(RejectReason::BadTransaction);
        state.metrics.transaction(TxnMetric::Rejected);
        tracing::info!(txn_id, error = %error.error, "malformed transaction refused");
    })?;

    // First, whatever comes of the events: Synapse never sends a
    // transaction's to-device messages again (a retry after an error, or
    // after either refusal below, comes without them), and a room
    // key in it must be there before the bot decrypts a command that came
    // with it. Should one come twice, its Olm ratchet has moved on: the
    // machine refuses the copy.
    feed_crypto(state, &txn_id, &transaction).await;
    // Counted as they come: a resend comes without them.
    let ephemeral = transaction.ephemeral.len() + transaction.unstable_ephemeral.len() + transaction.to_device.len();
    state.metrics.ephemeral_received.inc_by(ephemeral as u64);
    // Before the hole check: this refusal has the homeserver resend from
    // its oldest unsent transaction too, a hole behind this one included.
    let nudges = nudge_tokens(state, &transaction.events);
    if let Some(nudge) = &state.nudge
        && nudge.refuse_once(&txn_id, nudges.iter().map(String::as_str))
    {
        state.metrics.transaction(TxnMetric::Failed);
        tracing::info!(
            txn_id,
            "the bot's nudge arrived: its transaction is refused once, so that the homeserver sends first \
             any transaction it stranded while it recovered"
        );
        return Err(MatrixError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_UNKNOWN",
            "housekeep refuses the transaction of its nudge once: resend from the oldest unsent one",
        ));
    }
    let gap = refuse_once_behind_a_gap(state, &txn_id).await?;
    let Events { extracted, inbox } = extract_all(state, &txn_id, &transaction.events);
    state.metrics.events_received.inc_by(transaction.events.len() as u64);
    if let Some(crypto) = state.crypto.get() {
        let encryption = extracted.iter().map(|e| &e.event).filter(|e| e.event_type == "m.room.encryption");
        for event in encryption.filter(|e| e.state_key.as_deref() == Some("")) {
            crypto.encryption_changed(&event.room_id);
        }
    }
    let fingerprint = fingerprint(&extracted, transaction.events.len());

    // Behind a gap the appservice accepted, the missing transaction's events
    // are lost to the live index: the rooms of this one are read back.
    let gap_rooms: Vec<String> = match gap {
        Some(_) => {
            let mut rooms: Vec<String> = extracted.iter().map(|e| e.event.room_id.clone()).collect();
            rooms.sort_unstable();
            rooms.dedup();
            rooms
        }
        None => Vec::new(),
    };
    let gap_reason = gap.map(crate::store::gap_reason);
    let backfill = gap_reason.as_deref().map(|reason| (gap_rooms.as_slice(), reason));
    let indexed = state.store.index_transaction(&txn_id, &fingerprint, &extracted, &inbox, backfill).await;
    if indexed.is_ok() {
        state.metrics.done_waiting("database");
    }
    if let (Ok(_), Some(nudge)) = (&indexed, &state.nudge) {
        nudge.transaction_arrived(nudges.iter().map(String::as_str));
    }
    match indexed {
        Ok(TxnOutcome::Indexed(counts)) => {
            if let Ok(n) = txn_id.parse::<u64>() {
                state.last_committed_txn.store(n, Ordering::Relaxed);
            }
            state.metrics.transaction(TxnMetric::Indexed);
            state.metrics.events_indexed.inc_by(counts.events);
            state.metrics.redactions_applied.inc_by(counts.redactions_applied);
            state.metrics.redactions_to_check.inc_by(counts.redactions_to_check);
            if counts.redactions_to_check > 0
                && let Some(wake) = &state.redaction_checks
            {
                wake.notify_one();
            }
            state.metrics.skip_media_queue(&counts.media_skipped, "transaction");
            if counts.media_queued > 0
                && let Some(wake) = &state.media_queue
            {
                wake.notify_one();
            }
            if let Some(reason) = &gap_reason {
                tracing::info!(txn_id, rooms = gap_rooms.len(), reason, "asked for the gap's rooms to be read back");
            }
            for media in extracted.iter().flat_map(|e| &e.media) {
                state.metrics.media_refs_indexed.get_or_create(&KindLabel { kind: media.kind.as_str() }).inc();
            }
            if let Some(newest) = extracted.iter().map(|e| e.event.origin_server_ts).max() {
                state.metrics.index_lag_seconds.set(now_ms().saturating_sub(newest).max(0) as f64 / 1000.0);
            }
            if let (Some(bot), false) = (&state.bot, inbox.is_empty()) {
                bot.wake.notify_one();
            }
            tracing::debug!(txn_id, events = counts.events, media_refs = counts.media_refs, "transaction indexed");
        }
        Ok(TxnOutcome::AlreadyIndexed) => {
            state.metrics.transaction(TxnMetric::Duplicate);
            tracing::debug!(txn_id, "transaction already indexed; acknowledging the retry");
        }
        Err(error) => {
            state.metrics.transaction(TxnMetric::Failed);
            let error = format!("{error:#}");
            tracing::error!(txn_id, error, "could not index transaction; the homeserver will retry");
            // /health is unauthenticated: the error (hosts, paths) stays in the log.
            state
                .metrics
                .waiting_for("database", "the last transaction could not be committed (the error is in the log)");
            return Err(MatrixError::internal());
        }
    }
    state.metrics.transaction_seconds.observe(started.elapsed().as_secs_f64());
    Ok(Json(json!({})))
}

/// Hands the transaction's to-device messages, device lists and key counts
/// to the bot's crypto machine. A failure is logged, never the transaction's:
/// Synapse does not send to-device messages again (a retry would not help).
async fn feed_crypto(state: &AppState, txn_id: &str, transaction: &Transaction<'_>) {
    let changes = transaction.crypto_changes();
    if changes.is_empty() {
        return;
    }
    let Some(crypto) = state.crypto.get() else {
        let decrypts = state.bot.as_ref().is_some_and(|bot| bot.routing.decrypts);
        if !changes.to_device.is_empty() && decrypts {
            // The device starts after the listener: kept for it.
            let kept = crate::crypto::keep_for_later(&state.store, txn_id, &changes.to_device).await;
            if !matches!(kept, Ok(true)) {
                state.metrics.reject(RejectReason::CryptoDataLost);
                tracing::warn!(
                    txn_id,
                    to_device = changes.to_device.len(),
                    error = kept.err().map(|e| format!("{e:#}")),
                    "to-device messages before the bot's device runs, and too many kept already: dropped \
                     (a room key among them is lost; the moderator's next message brings a new one)"
                );
            }
        }
        return;
    };
    if let Err(error) = crypto.receive(&changes).await {
        state.metrics.reject(RejectReason::CryptoDataLost);
        tracing::error!(
            txn_id,
            error = format!("{error:#}"),
            "the crypto machine could not take a transaction's to-device data"
        );
    }
}

/// Synapse can strand a transaction it created while recovering from an
/// outage of ours: it marks us up again and carries on with later ones, and
/// sends the stranded one only after its next failure (seen with a kill -9
/// during a burst). When a transaction arrives with a hole right behind it,
/// answer 503 once: Synapse then retries from its oldest unsent transaction,
/// the missing one first. A hole that is still there on the retry is
/// accepted (its number is returned), logged and counted; backfill reads
/// the rooms of the transaction that arrived back to the index's boundary.
///
/// Synapse numbers the transactions of all its appservices from one
/// sequence, so beside a bridge most holes are the bridge's: the store
/// reports a hole only while the transactions before it have none (see
/// [`crate::store::Store::missing_predecessor`]), and such holes are taken
/// as they come instead of costing a recovery round of seconds each.
async fn refuse_once_behind_a_gap(state: &AppState, txn_id: &str) -> Result<Option<u64>, MatrixError> {
    // Transactions come one at a time, in order: the one right after the
    // last committed one has no hole behind it (the common case, no query).
    let last = state.last_committed_txn.load(Ordering::Relaxed);
    if last > 0 && txn_id.parse::<u64>().ok() == last.checked_add(1) {
        return Ok(None);
    }
    let missing = state.store.missing_predecessor(txn_id).await.map_err(|error| {
        tracing::error!(txn_id, error = format!("{error:#}"), "cannot check transaction order");
        MatrixError::internal()
    })?;
    let Some(missing) = missing else { return Ok(None) };
    // The nudge's transaction, refused a moment ago: the homeserver's
    // recoverer resends it (a transaction it sent before that refusal
    // landed may come first).
    if state.nudge.as_ref().and_then(|nudge| nudge.refused_transaction()) == Some(missing.to_string()) {
        return Ok(None);
    }
    let first_time = {
        let mut refused = state.gaps_refused.lock().expect("not poisoned");
        // Only recent refusals matter (the resend follows within seconds): bounded.
        if refused.len() >= MAX_REMEMBERED_GAPS {
            refused.clear();
        }
        refused.insert(txn_id.to_owned())
    };
    if first_time {
        tracing::warn!(txn_id, missing, "transaction {missing} never arrived; asking the homeserver to resend from it");
        state.metrics.transaction(TxnMetric::Failed);
        return Err(MatrixError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_UNKNOWN",
            format!("transaction {missing} has not arrived; resend it first"),
        ));
    }
    tracing::warn!(txn_id, missing, "transaction {missing} still missing after a resend; its rooms will be backfilled");
    state.metrics.txn_gaps.inc();
    Ok(Some(missing))
}

/// What identifies a transaction's content across retries: its event IDs.
/// Not the body, which Synapse re-serialises on every resend (`unsigned.age`).
fn fingerprint(extracted: &[Extracted], received: usize) -> String {
    let mut hasher = Sha256::new();
    for event in extracted {
        hasher.update(event.event.event_id.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(received.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// Not JSON at all is `M_NOT_JSON`; JSON of the wrong shape is `M_BAD_JSON`.
pub(crate) fn parse_transaction(body: &[u8]) -> Result<Transaction<'_>, MatrixError> {
    serde_json::from_slice(body).map_err(|error| {
        let errcode = if error.is_syntax() || error.is_eof() { "M_NOT_JSON" } else { "M_BAD_JSON" };
        MatrixError::new(StatusCode::BAD_REQUEST, errcode, format!("invalid transaction: {error}"))
    })
}

/// What a transaction's events give.
struct Events {
    extracted: Vec<Extracted>,
    /// Events for the bot.
    inbox: Vec<InboxItem>,
}

/// The tokens of the bot's own nudges among `events`, while a round is open
/// (see `nudge`); read before anything else of the events, which a refused
/// transaction must not log or count twice.
fn nudge_tokens(state: &AppState, events: &[&RawValue]) -> Vec<String> {
    if state.nudge.as_ref().is_none_or(|nudge| nudge.open_round().is_none()) {
        return Vec::new();
    }
    let parse = |raw: &&RawValue| serde_json::from_str::<Value>(raw.get()).ok();
    events
        .iter()
        .filter(|raw| raw.get().contains(super::nudge::EVENT_TYPE))
        .filter_map(parse)
        // Only the bot's own: the homeserver vouches for its local senders.
        .filter(|value| {
            value.get("type").and_then(Value::as_str) == Some(super::nudge::EVENT_TYPE)
                && value.get("sender").and_then(Value::as_str) == Some(state.bot_user_id.as_str())
        })
        .filter_map(|value| value.get("content").and_then(super::nudge::token_of).map(str::to_owned))
        .collect()
}

/// Extracts index rows from each event, and picks out the events addressed
/// to the bot; logs and counts what it skips.
fn extract_all(state: &AppState, txn_id: &str, events: &[&RawValue]) -> Events {
    let mut extracted = Vec::with_capacity(events.len());
    let mut inbox = Vec::new();
    for (position, raw) in events.iter().enumerate() {
        // Parsed once: the index rows and, for events addressed to the bot,
        // the inbox item both come from this value.
        let parsed = serde_json::from_str::<Value>(raw.get()).map_err(|e| ExtractError::InvalidJson(e.to_string()));
        match parsed.and_then(|value| extract_value(&value).map(|event| (event, value))) {
            Ok((event, value)) => {
                state.metrics.skip_bad_mxcs(&event.event.event_id, &event.rejected, "transaction");
                if let Some(bot) = &state.bot {
                    if bot.routing.encrypts_admin_room(&event.event) {
                        let room_id = &event.event.room_id;
                        tracing::error!(room_id, sender = event.event.sender, "{}", super::route::ENCRYPTED_ADMIN_ROOM);
                        state.metrics.waiting_for("an unencrypted admin room", super::route::ENCRYPTED_ADMIN_ROOM);
                    }
                    if let Some(item) = bot.routing.route(&event.event, value) {
                        match bot.routing.admit(&item) {
                            Admission::Keep => inbox.push(item),
                            refused => {
                                state.metrics.reject(RejectReason::AdminRoomUnknown);
                                let (event_id, room_id, sender) = (&item.event_id, &item.room_id, &item.sender);
                                tracing::info!(event_id, room_id, sender, "command {}", refused.why());
                            }
                        }
                    }
                }
                extracted.push(event);
            }
            Err(error) => {
                state.metrics.reject(RejectReason::BadEvent);
                tracing::info!(txn_id, position, %error, "skipping an event the index cannot store");
            }
        }
    }
    Events { extracted, inbox }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_nested_past_the_parsers_limit_is_skipped_not_a_stack_overflow() {
        let deep = format!("{{\"events\": [{{\"content\": {}{}}}]}}", "[".repeat(100_000), "]".repeat(100_000));
        // The transaction's shape is fine (events are kept raw) ...
        let transaction = parse_transaction(deep.as_bytes()).expect("a transaction");
        // ... and the event fails to parse at the depth limit, so it is skipped.
        let error = serde_json::from_str::<Value>(transaction.events[0].get()).expect_err("refused");
        assert!(error.to_string().contains("recursion limit"), "{error}");
    }

    #[test]
    fn syntax_errors_are_not_json_and_shape_errors_are_bad_json() {
        assert_eq!(parse_transaction(b"{not json").err().unwrap().errcode, "M_NOT_JSON");
        assert_eq!(parse_transaction(b"").err().unwrap().errcode, "M_NOT_JSON");
        assert_eq!(parse_transaction(br#"{"events": 5}"#).err().unwrap().errcode, "M_BAD_JSON");
        assert_eq!(parse_transaction(br#"{"ephemeral": []}"#).err().unwrap().errcode, "M_BAD_JSON");
        assert_eq!(parse_transaction(b"[]").err().unwrap().errcode, "M_BAD_JSON");
    }

    #[test]
    fn all_msc2409_keys_are_accepted() {
        let body = br#"{"events": [{"a": 1}, 2], "ephemeral": [{"type": "m.typing"}],
            "de.sorunome.msc2409.ephemeral": [{"type": "m.typing"}],
            "de.sorunome.msc2409.to_device": [{}, {}], "device_lists": {"changed": []}}"#;
        let transaction = parse_transaction(body).unwrap();
        assert_eq!((transaction.events.len(), transaction.ephemeral.len(), transaction.to_device.len()), (2, 1, 2));
        assert_eq!(transaction.unstable_ephemeral.len(), 1);
    }
}
