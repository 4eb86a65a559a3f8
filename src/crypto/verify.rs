//! Emoji verification (SAS over to-device messages, `m.sas.v1`) between a
//! device of this machine's user and another user's device: the bot's side
//! (a moderator's client asks, the bot accepts) and a client's (the tests'
//! moderator asks).
//!
//! The machine does the protocol; this file starts and answers flows and
//! reads where they are. A verification
//! lives in the machine's memory only, as in every client: a restart ends
//! the ones under way; what a finished one verified (signatures, trust)
//! is kept with the device.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use matrix_sdk_common::deserialized_responses::ProcessedToDeviceEvent;
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, OutgoingVerificationRequest};
use matrix_sdk_crypto::{EncryptionSyncChanges, Sas, Verification, VerificationRequest, VerificationRequestState};
use ruma016::TransactionId;
use ruma016::api::client::sync::sync_events::DeviceLists;
use ruma016::events::AnyToDeviceEvent;
use ruma016::events::key::verification::VerificationMethod;
use ruma016::serde::Raw;

use super::{Crypto, boundary};

/// A verification another user's device asked this device for.
#[derive(Clone, Debug)]
pub struct VerificationRequested {
    pub user: String,
    pub device: String,
    pub flow_id: String,
    /// The request as it came: handed to the machine again once the
    /// requesting device's keys are fetched (it ignores a request from a
    /// device it does not know).
    raw: Raw<AnyToDeviceEvent>,
}

/// Where a verification is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Asked, not answered yet.
    Requested,
    /// Both sides can do emoji; nobody started comparing yet.
    Ready,
    /// Started, the keys not exchanged yet.
    Started,
    /// The seven emoji to compare, each its symbol and its name.
    Emoji(Vec<(String, String)>),
    /// This side confirmed; waiting for the other.
    Confirmed,
    Done,
    Cancelled(String),
}

/// One verification: the machine's own handles, which keep its state after
/// the machine forgot the finished flow.
pub struct Flow {
    request: VerificationRequest,
    /// The last emoji comparison the request led to (the request forgets
    /// it once done; a comparison started again replaces it).
    sas: Mutex<Option<Sas>>,
}

/// Its ID and where it is.
impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").field("id", &self.id()).field("progress", &self.progress()).finish()
    }
}

impl Flow {
    fn new(request: VerificationRequest) -> Self {
        Self { request, sas: Mutex::new(None) }
    }

    pub fn id(&self) -> &str {
        self.request.flow_id().as_str()
    }

    /// The emoji comparison, once one of the two sides started it.
    fn sas(&self) -> Option<Sas> {
        let mut last = self.sas.lock().unwrap_or_else(|p| p.into_inner());
        if let VerificationRequestState::Transitioned { verification: Verification::SasV1(sas), .. } =
            self.request.state()
        {
            *last = Some(*sas);
        }
        last.clone()
    }

    pub fn progress(&self) -> Progress {
        if let Some(sas) = self.sas() {
            return if let Some(info) = sas.cancel_info() {
                Progress::Cancelled(info.reason().to_owned())
            } else if sas.is_done() {
                Progress::Done
            } else if sas.have_we_confirmed() {
                Progress::Confirmed
            } else if let Some(emoji) = sas.emoji() {
                Progress::Emoji(emoji.iter().map(|e| (e.symbol.to_owned(), e.description.to_owned())).collect())
            } else {
                Progress::Started
            };
        }
        match self.request.state() {
            VerificationRequestState::Cancelled(info) => Progress::Cancelled(info.reason().to_owned()),
            VerificationRequestState::Done => Progress::Done,
            VerificationRequestState::Ready { .. } => Progress::Ready,
            _ => Progress::Requested,
        }
    }
}

/// How many verification requests wait for the bot to look at them; more
/// are dropped (counted: [`Crypto::take_dropped_requests`]), and their
/// senders' clients time out.
pub(super) const WAITING_REQUESTS: usize = 16;

/// At most this many flows' confirmations are noted (then all are
/// forgotten at once: anyone may send the bot's device MACs).
const MAX_CONFIRMATIONS_NOTED: usize = 1_000;

/// A verification message among the to-device messages the machine read:
/// who sent it, of which type, for which flow.
#[derive(serde::Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    sender: String,
    content: MessageContent,
}

#[derive(serde::Deserialize)]
struct MessageContent {
    /// Only a request names it.
    from_device: Option<String>,
    transaction_id: String,
}

/// The verification messages of type `kind`, each with the event it came in.
fn messages_of<'a>(
    events: &'a [ProcessedToDeviceEvent],
    kind: &'a str,
) -> impl Iterator<Item = (Message, &'a ProcessedToDeviceEvent)> {
    events
        .iter()
        .filter_map(|event| Some((serde_json::from_str::<Message>(event.as_raw().json().get()).ok()?, event)))
        .filter(move |(message, _)| message.kind == kind)
}

/// The verification requests for this device among a transaction's
/// to-device messages (the machine has already read them).
pub(super) fn requests_in(events: &[ProcessedToDeviceEvent]) -> Vec<VerificationRequested> {
    messages_of(events, "m.key.verification.request")
        .filter_map(|(request, event)| {
            Some(VerificationRequested {
                user: request.sender,
                device: request.content.from_device?,
                flow_id: request.content.transaction_id,
                raw: event.to_raw(),
            })
        })
        .collect()
}

impl Crypto {
    /// The verification requests other devices send this one, in the order
    /// they came; `None` once it was taken (there is one reader: the bot).
    pub fn take_verification_requests(&self) -> Option<tokio::sync::mpsc::Receiver<VerificationRequested>> {
        self.verification_requests.1.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// How many requests were dropped (the reader's queue was full) since
    /// the last call.
    pub fn take_dropped_requests(&self) -> u64 {
        self.dropped_requests.swap(0, Ordering::Relaxed)
    }

    /// Notes which flows the other side confirmed in (their
    /// `m.key.verification.mac` came): the machine does not say.
    pub(super) fn note_confirmations(&self, events: &[ProcessedToDeviceEvent]) {
        let macs = messages_of(events, "m.key.verification.mac").map(|(mac, _)| mac);
        let mut confirmed = self.confirmed_by_them.lock().unwrap_or_else(|p| p.into_inner());
        for mac in macs {
            if confirmed.len() >= MAX_CONFIRMATIONS_NOTED {
                confirmed.clear();
            }
            confirmed.insert((mac.sender, mac.content.transaction_id));
        }
    }

    /// Whether the other side of `flow` said the emoji match.
    pub fn they_confirmed(&self, flow: &Flow) -> bool {
        let key = (flow.request.other_user().to_string(), flow.id().to_owned());
        self.confirmed_by_them.lock().unwrap_or_else(|p| p.into_inner()).contains(&key)
    }

    /// Hands a transaction's verification requests on to the reader; no
    /// network call here (this runs while the transaction is handled).
    pub(super) fn pass_on_requests(&self, events: &[ProcessedToDeviceEvent]) {
        use tokio::sync::mpsc::error::TrySendError;
        for request in requests_in(events) {
            match self.verification_requests.0.try_send(request) {
                Ok(()) => {}
                Err(TrySendError::Full(request)) => {
                    self.dropped_requests.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        user = request.user,
                        device = request.device,
                        waiting = WAITING_REQUESTS,
                        "dropped a verification request: as many wait already (the requesting client times out)"
                    );
                }
                Err(TrySendError::Closed(request)) => tracing::info!(
                    user = request.user,
                    device = request.device,
                    "dropped a verification request: nothing answers verification requests"
                ),
            }
        }
    }

    /// The flow a request started. The machine ignores a request from a
    /// device whose keys it has not fetched (a moderator's new phone): then
    /// they are fetched, and the request handed to it again.
    pub async fn incoming_verification(&self, requested: &VerificationRequested) -> anyhow::Result<Flow> {
        let user = boundary::user_id(&requested.user)?;
        if let Some(request) = self.machine.get_verification_request(&user, &requested.flow_id) {
            return Ok(Flow::new(request));
        }
        let (request_id, query) = self.machine.query_keys_for_users([user.as_ref()]);
        self.send_one(&request_id, &AnyOutgoingRequest::KeysQuery(query)).await?;
        let again = EncryptionSyncChanges {
            to_device_events: vec![requested.raw.clone()],
            changed_devices: &DeviceLists::default(),
            one_time_keys_counts: &BTreeMap::new(),
            unused_fallback_keys: None,
            next_batch_token: None,
        };
        self.machine.receive_sync_changes(again, &super::DECRYPTION).await?;
        let request = self.machine.get_verification_request(&user, &requested.flow_id).ok_or_else(|| {
            anyhow::anyhow!(
                "the machine ignored it: the requesting device's keys are not on its homeserver, or the request is \
                 too old, from the future or malformed"
            )
        })?;
        Ok(Flow::new(request))
    }

    /// Asks `user`'s device `device` for a verification.
    pub async fn request_verification(&self, user: &str, device: &str) -> anyhow::Result<Flow> {
        let other = self
            .machine
            .get_device(&boundary::user_id(user)?, &boundary::device_id(device), None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{user}'s device {device} is not known to this device"))?;
        let (request, outgoing) = other.request_verification_with_methods(vec![VerificationMethod::SasV1]);
        self.send_verification(outgoing).await?;
        Ok(Flow::new(request))
    }

    /// Accepts a request another device sent, for emoji only.
    pub async fn accept_verification(&self, flow: &Flow) -> anyhow::Result<()> {
        if let Some(outgoing) = flow.request.accept_with_methods(vec![VerificationMethod::SasV1]) {
            self.send_verification(outgoing).await?;
        }
        Ok(())
    }

    /// Starts comparing emoji in a flow both sides are ready for.
    pub async fn start_sas(&self, flow: &Flow) -> anyhow::Result<()> {
        let (sas, outgoing) = flow
            .request
            .start_sas()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the verification is not ready for emoji"))?;
        *flow.sas.lock().unwrap_or_else(|p| p.into_inner()) = Some(sas);
        self.send_verification(outgoing).await
    }

    /// Accepts the other side's start of emoji comparison.
    pub async fn accept_sas(&self, flow: &Flow) -> anyhow::Result<()> {
        let sas = flow.sas().ok_or_else(|| anyhow::anyhow!("no emoji comparison under way"))?;
        if let Some(outgoing) = sas.accept() {
            self.send_verification(outgoing).await?;
        }
        Ok(())
    }

    /// Says the emoji match: the other device (and its user's identity, when
    /// the flow showed it) is verified once the other side says so too.
    pub async fn confirm_sas(&self, flow: &Flow) -> anyhow::Result<()> {
        let sas = flow.sas().ok_or_else(|| anyhow::anyhow!("no emoji comparison under way"))?;
        let (outgoing, signatures) = sas.confirm().await?;
        for request in outgoing {
            self.send_verification(request).await?;
        }
        if let Some(signatures) = signatures {
            let request = AnyOutgoingRequest::SignatureUpload(signatures);
            self.send_one(&TransactionId::new(), &request).await?;
        }
        Ok(())
    }

    /// Finishes a flow whose other side confirmed (its MAC came and the
    /// machine checked it) but whose `m.key.verification.done` did not
    /// come: it crosses this side's own, and Synapse 1.163 can lose one of
    /// two to-device messages that cross on their way to an appservice
    /// (each send moves the appservice's stream position to its own id, a
    /// later id for a user it does not watch past an earlier one for its
    /// own). The "done" carries nothing but the flow's ID; the machine is
    /// handed the one the other side sent, as it would have come.
    pub async fn finish_without_their_done(&self, flow: &Flow) -> anyhow::Result<()> {
        let sas = flow.sas().ok_or_else(|| anyhow::anyhow!("no emoji comparison under way"))?;
        anyhow::ensure!(
            sas.have_we_confirmed() && !sas.is_cancelled() && self.they_confirmed(flow),
            "the verification is not confirmed by both sides"
        );
        let done = serde_json::json!({
            "type": "m.key.verification.done",
            "sender": flow.request.other_user().as_str(),
            "content": {"transaction_id": flow.id()},
        });
        let changes = EncryptionSyncChanges {
            to_device_events: vec![boundary::raw(&done)?],
            changed_devices: &DeviceLists::default(),
            one_time_keys_counts: &BTreeMap::new(),
            unused_fallback_keys: None,
            next_batch_token: None,
        };
        self.machine.receive_sync_changes(changes, &super::DECRYPTION).await?;
        self.outgoing.notify_one();
        self.to_device_moved.notify_waiters();
        Ok(())
    }

    /// Ends a verification (as "the user cancelled"); nothing when it ended.
    pub async fn cancel_verification(&self, flow: &Flow) {
        let outgoing = match flow.sas() {
            Some(sas) => sas.cancel(),
            None => flow.request.cancel(),
        };
        if let Some(outgoing) = outgoing
            && let Err(error) = self.send_verification(outgoing).await
        {
            tracing::warn!(error = format!("{error:#}"), "cannot send a verification's cancellation");
        }
    }

    /// Refuses a request (as "the user cancelled"), when the machine has it.
    pub async fn refuse_verification(&self, requested: &VerificationRequested) {
        let Ok(user) = boundary::user_id(&requested.user) else { return };
        if let Some(request) = self.machine.get_verification_request(&user, &requested.flow_id) {
            self.cancel_verification(&Flow::new(request)).await;
        }
    }

    /// Waits until a verification's progress passes `until`; an error when
    /// it ended first (cancelled: its reason) or `deadline` passed. The
    /// flow moves as transactions bring the other side's messages, and as
    /// this side's are sent.
    pub async fn wait_for_progress(
        &self,
        flow: &Flow,
        deadline: Instant,
        until: impl Fn(&Progress) -> bool,
    ) -> anyhow::Result<Progress> {
        loop {
            let moved = self.to_device_moved.notified();
            match flow.progress() {
                progress if until(&progress) => return Ok(progress),
                Progress::Cancelled(reason) => anyhow::bail!("the verification was cancelled: {reason}"),
                Progress::Done => anyhow::bail!("the verification ended"),
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(!left.is_zero(), "the verification did not move on in time");
            let _ = tokio::time::timeout(left, moved).await;
        }
    }

    /// Whether this device trusts `user`'s device `device` (verified by it,
    /// or signed by an identity it verified).
    pub async fn is_verified(&self, user: &str, device: &str) -> anyhow::Result<bool> {
        let other = self.machine.get_device(&boundary::user_id(user)?, &boundary::device_id(device), None).await?;
        Ok(other.is_some_and(|device| device.is_verified()))
    }

    /// Whether this device's user verified `user`'s identity (signed its
    /// master key).
    pub async fn is_identity_verified(&self, user: &str) -> anyhow::Result<bool> {
        let identity = self.machine.get_identity(&boundary::user_id(user)?, None).await?;
        Ok(identity.is_some_and(|identity| identity.is_verified()))
    }

    /// Fetches every tracked user's keys again (a client that wants to see
    /// what the homeserver lists now, not what it fetched before).
    pub async fn query_keys_again(&self) -> anyhow::Result<()> {
        self.machine.mark_all_tracked_users_as_dirty().await?;
        self.send_outgoing().await
    }

    async fn send_verification(&self, outgoing: OutgoingVerificationRequest) -> anyhow::Result<()> {
        let id = outgoing.request_id().to_owned();
        self.send_one(&id, &AnyOutgoingRequest::from(outgoing)).await
    }
}

/// The seven emoji as one line, each with its name ("🐶 Dog · 🔑 Key …").
pub fn emoji_line(emoji: &[(String, String)]) -> String {
    emoji.iter().map(|(symbol, name)| format!("{symbol} {name}")).collect::<Vec<_>>().join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn processed(json: Value) -> ProcessedToDeviceEvent {
        ProcessedToDeviceEvent::PlainText(ruma016::serde::Raw::from_json(
            serde_json::value::to_raw_value(&json).unwrap(),
        ))
    }

    #[test]
    fn requests_are_read_from_what_the_machine_processed() {
        let events = [
            processed(serde_json::json!({
                "type": "m.key.verification.request", "sender": "@mod:hs",
                "content": {"from_device": "PHONE", "transaction_id": "flow1", "methods": ["m.sas.v1"], "timestamp": 1}
            })),
            // Another verification message, a request without its fields, a room key: none is a request.
            processed(serde_json::json!({
                "type": "m.key.verification.start", "sender": "@mod:hs",
                "content": {"from_device": "PHONE", "transaction_id": "flow1"}
            })),
            processed(serde_json::json!({"type": "m.key.verification.request", "sender": "@x:hs", "content": {}})),
            processed(serde_json::json!({"type": "m.room_key", "sender": "@mod:hs", "content": {}})),
        ];
        let requests: Vec<(String, String, String)> =
            requests_in(&events).into_iter().map(|r| (r.user, r.device, r.flow_id)).collect();
        assert_eq!(requests, vec![("@mod:hs".to_owned(), "PHONE".to_owned(), "flow1".to_owned())]);
    }

    #[test]
    fn the_emoji_read_as_one_line() {
        let emoji = [("🐶".to_owned(), "Dog".to_owned()), ("🔑".to_owned(), "Key".to_owned())];
        assert_eq!(emoji_line(&emoji), "🐶 Dog · 🔑 Key");
    }
}
