//! The boundary between housekeep (ruma 0.17, JSON) and matrix-sdk-crypto
//! 0.18 (ruma 0.16): IDs go over as strings, events and requests as JSON.
//! Nothing outside `crypto/` sees a ruma 0.16 type.

use std::collections::BTreeMap;

use anyhow::Context;
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, UploadSigningKeysRequest};
use reqwest::Method;
use ruma016::api::IncomingResponse;
use ruma016::api::client::keys::{claim_keys, get_keys, upload_keys, upload_signatures};
use ruma016::api::client::sync::sync_events::DeviceLists;
use ruma016::api::client::to_device::send_event_to_device;
use ruma016::events::AnyToDeviceEvent;
use ruma016::serde::Raw;
use ruma016::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedRoomId, OwnedUserId, UInt};
use serde_json::value::RawValue;
use serde_json::{Value, json};

pub fn user_id(id: &str) -> anyhow::Result<OwnedUserId> {
    OwnedUserId::try_from(id).with_context(|| format!("{id:?} is not a user ID"))
}

pub fn room_id(id: &str) -> anyhow::Result<OwnedRoomId> {
    OwnedRoomId::try_from(id).with_context(|| format!("{id:?} is not a room ID"))
}

pub fn device_id(id: &str) -> OwnedDeviceId {
    OwnedDeviceId::from(id)
}

/// Any JSON as a ruma 0.16 `Raw<T>`, unchecked (as ruma reads events).
pub fn raw<T>(value: &impl serde::Serialize) -> anyhow::Result<Raw<T>> {
    Ok(Raw::from_json(serde_json::value::to_raw_value(value)?))
}

/// To-device events as the transaction has them (MSC2409: `type`, `sender`,
/// `content`, `to_user_id`, `to_device_id`); the extra keys are ignored.
pub fn to_device_events(events: &[&RawValue]) -> Vec<Raw<AnyToDeviceEvent>> {
    events.iter().map(|event| Raw::from_json((*event).to_owned())).collect()
}

/// MSC3202's `device_lists` (`{changed, left}`); unreadable: none.
pub fn device_lists(value: Option<&RawValue>) -> DeviceLists {
    value.and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default()
}

/// One device's one-time key counts (`{algorithm: n}`).
pub fn key_counts(value: &Value) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

pub fn algorithms(value: &Value) -> Vec<OneTimeKeyAlgorithm> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

pub fn signed_curve25519() -> OneTimeKeyAlgorithm {
    OneTimeKeyAlgorithm::SignedCurve25519
}

/// An outgoing request as HTTP: method, path segments below the base URL, body.
pub struct Http {
    pub method: Method,
    pub segments: Vec<String>,
    pub body: Value,
    pub kind: Kind,
}

/// Which response type to read the answer as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    KeysUpload,
    KeysQuery,
    KeysClaim,
    ToDevice,
    SignatureUpload,
}

fn segments(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

/// The HTTP form of one of the machine's requests; `None` for what the bot
/// does not send (in-room verification messages).
pub fn to_http(request: &AnyOutgoingRequest) -> anyhow::Result<Option<Http>> {
    let mut http = match http_of(request)? {
        Some(http) => http,
        None => return Ok(None),
    };
    http.body = without_nulls(http.body);
    Ok(Some(http))
}

/// The path segments of a client API endpoint: `_matrix/client/v3/<rest>`.
pub fn client_v3(rest: &[&str]) -> Vec<String> {
    segments(&[&["_matrix", "client", "v3"][..], rest].concat())
}

/// A JSON object without its null fields: optional keys absent, not null,
/// as the homeserver takes them (`device_keys` after the first upload).
fn without_nulls(mut body: Value) -> Value {
    if let Value::Object(fields) = &mut body {
        fields.retain(|_, value| !value.is_null());
    }
    body
}

/// The body of `POST /keys/device_signing/upload` for these keys.
pub fn signing_keys_body(keys: &UploadSigningKeysRequest) -> Value {
    without_nulls(json!({
        "master_key": keys.master_key,
        "self_signing_key": keys.self_signing_key,
        "user_signing_key": keys.user_signing_key,
    }))
}

fn http_of(request: &AnyOutgoingRequest) -> anyhow::Result<Option<Http>> {
    let with = |rest: &[&str]| client_v3(rest);
    Ok(Some(match request {
        AnyOutgoingRequest::KeysUpload(request) => Http {
            method: Method::POST,
            segments: with(&["keys", "upload"]),
            body: json!({
                "device_keys": request.device_keys,
                "one_time_keys": request.one_time_keys,
                "fallback_keys": request.fallback_keys,
            }),
            kind: Kind::KeysUpload,
        },
        AnyOutgoingRequest::KeysQuery(request) => {
            let mut body = json!({"device_keys": request.device_keys});
            if let Some(timeout) = request.timeout {
                body["timeout"] = json!(timeout.as_millis() as u64);
            }
            Http { method: Method::POST, segments: with(&["keys", "query"]), body, kind: Kind::KeysQuery }
        }
        AnyOutgoingRequest::KeysClaim(request) => {
            let mut body = json!({"one_time_keys": request.one_time_keys});
            if let Some(timeout) = request.timeout {
                body["timeout"] = json!(timeout.as_millis() as u64);
            }
            Http { method: Method::POST, segments: with(&["keys", "claim"]), body, kind: Kind::KeysClaim }
        }
        AnyOutgoingRequest::ToDeviceRequest(request) => {
            let event_type = request.event_type.to_string();
            Http {
                method: Method::PUT,
                segments: with(&["sendToDevice", &event_type, request.txn_id.as_str()]),
                body: json!({"messages": request.messages}),
                kind: Kind::ToDevice,
            }
        }
        AnyOutgoingRequest::SignatureUpload(request) => Http {
            method: Method::POST,
            segments: with(&["keys", "signatures", "upload"]),
            body: serde_json::to_value(&request.signed_keys)?,
            kind: Kind::SignatureUpload,
        },
        AnyOutgoingRequest::RoomMessage(_) => return Ok(None),
    }))
}

/// A 200 answer's body read as the response ruma 0.16 has for `kind`.
pub enum Response {
    KeysUpload(upload_keys::v3::Response),
    KeysQuery(get_keys::v3::Response),
    KeysClaim(claim_keys::v3::Response),
    ToDevice(send_event_to_device::v3::Response),
    SignatureUpload(upload_signatures::v3::Response),
}

pub fn response(kind: Kind, body: &Value) -> anyhow::Result<Response> {
    let bytes = serde_json::to_vec(body)?;
    let http = || http::Response::builder().status(200).body(bytes.clone()).expect("a valid response");
    let read = |what: &str, error: &dyn std::fmt::Display| anyhow::anyhow!("cannot read the {what} answer: {error}");
    Ok(match kind {
        Kind::KeysUpload => Response::KeysUpload(
            upload_keys::v3::Response::try_from_http_response(http()).map_err(|e| read("keys upload", &e))?,
        ),
        Kind::KeysQuery => Response::KeysQuery(
            get_keys::v3::Response::try_from_http_response(http()).map_err(|e| read("keys query", &e))?,
        ),
        Kind::KeysClaim => Response::KeysClaim(
            claim_keys::v3::Response::try_from_http_response(http()).map_err(|e| read("keys claim", &e))?,
        ),
        Kind::ToDevice => Response::ToDevice(send_event_to_device::v3::Response::new()),
        Kind::SignatureUpload => Response::SignatureUpload(
            upload_signatures::v3::Response::try_from_http_response(http())
                .map_err(|e| read("signatures upload", &e))?,
        ),
    })
}
