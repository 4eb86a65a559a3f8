//! A Matrix user driving the homeserver the way a client would.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct MatrixUser {
    http: reqwest::Client,
    base: String,
    pub user_id: String,
    pub access_token: String,
}

impl MatrixUser {
    pub fn new(base: &str, user_id: &str, access_token: &str) -> Self {
        Self {
            http: super::http(),
            base: base.trim_end_matches('/').to_owned(),
            user_id: user_id.to_owned(),
            access_token: access_token.to_owned(),
        }
    }

    /// One authenticated JSON request; any non-2xx is an error with the body.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request =
            self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.access_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{method} {path} as {}: {status} {text}", self.user_id);
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_room(&self, body: Value) -> anyhow::Result<String> {
        let answer = self.request(Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await?;
        Ok(answer["room_id"].as_str().context("no room_id")?.to_owned())
    }

    pub async fn join(&self, room: &str) -> anyhow::Result<String> {
        let answer =
            self.request(Method::POST, &format!("/_matrix/client/v3/join/{}", encode(room)), Some(json!({}))).await?;
        Ok(answer["room_id"].as_str().context("no room_id")?.to_owned())
    }

    pub async fn invite(&self, room: &str, user_id: &str) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", encode(room));
        self.request(Method::POST, &path, Some(json!({ "user_id": user_id }))).await?;
        Ok(())
    }

    /// Sends a timeline event and returns its event ID.
    pub async fn send(&self, room: &str, event_type: &str, content: Value) -> anyhow::Result<String> {
        let txn = format!("t{}", rand::random::<u64>());
        let path = format!("/_matrix/client/v3/rooms/{}/send/{}/{txn}", encode(room), encode(event_type));
        let answer = self.request(Method::PUT, &path, Some(content)).await?;
        Ok(answer["event_id"].as_str().context("no event_id")?.to_owned())
    }

    /// Sends as an appservice user with the timestamp the appservice asks
    /// for (`?ts=`, which Synapse allows appservices): how a test makes an
    /// event carry whatever `origin_server_ts` a remote server could claim.
    pub async fn send_at(&self, room: &str, ts: i64, content: Value) -> anyhow::Result<String> {
        let txn = format!("t{}", rand::random::<u64>());
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}?ts={ts}", encode(room));
        let answer = self.request(Method::PUT, &path, Some(content)).await?;
        Ok(answer["event_id"].as_str().context("no event_id")?.to_owned())
    }

    pub async fn send_text(&self, room: &str, body: &str) -> anyhow::Result<String> {
        self.send(room, "m.room.message", json!({ "msgtype": "m.text", "body": body })).await
    }

    pub async fn send_state(
        &self,
        room: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> anyhow::Result<String> {
        let path =
            format!("/_matrix/client/v3/rooms/{}/state/{}/{}", encode(room), encode(event_type), encode(state_key));
        let answer = self.request(Method::PUT, &path, Some(content)).await?;
        Ok(answer["event_id"].as_str().context("no event_id")?.to_owned())
    }

    pub async fn redact(&self, room: &str, event_id: &str, reason: &str) -> anyhow::Result<String> {
        let txn = format!("r{}", rand::random::<u64>());
        let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/{txn}", encode(room), encode(event_id));
        let answer = self.request(Method::PUT, &path, Some(json!({ "reason": reason }))).await?;
        Ok(answer["event_id"].as_str().context("no event_id")?.to_owned())
    }

    /// Sets the profile avatar, which Synapse propagates as `m.room.member`
    /// events into every joined room.
    pub async fn set_avatar(&self, mxc: &str) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/profile/{}/avatar_url", encode(&self.user_id));
        self.request(Method::PUT, &path, Some(json!({ "avatar_url": mxc }))).await?;
        Ok(())
    }

    /// Uploads bytes and returns the `mxc://` URI. Synapse quarantines by
    /// content (every media with the same SHA-256 goes): on a shared
    /// Synapse, make the bytes a test's own, e.g. with the uploader's ID in them.
    pub async fn upload(&self, bytes: Vec<u8>, content_type: &str, filename: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/_matrix/media/v3/upload?filename={}", self.base, encode(filename)))
            .bearer_auth(&self.access_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("upload as {}: {status} {answer}", self.user_id);
        }
        Ok(answer["content_uri"].as_str().context("no content_uri")?.to_owned())
    }

    /// Every event in a room's timeline as this member sees it, oldest
    /// first, paginating `/messages`: the homeserver's own answer to compare
    /// the index against.
    pub async fn room_timeline(&self, room: &str) -> anyhow::Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=500", encode(room));
            if let Some(token) = &from {
                path.push_str(&format!("&from={}", encode(token)));
            }
            let page = self.request(Method::GET, &path, None).await?;
            let chunk = page["chunk"].as_array().context("no chunk")?;
            events.extend(chunk.iter().cloned());
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => return Ok(events),
            }
        }
    }

    /// Every event ID of [`room_timeline`](Self::room_timeline).
    pub async fn room_event_ids(&self, room: &str) -> anyhow::Result<Vec<String>> {
        let events = self.room_timeline(room).await?;
        Ok(events.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect())
    }

    /// Reacts to an event (`m.annotation`).
    pub async fn react(&self, room: &str, event_id: &str, key: &str) -> anyhow::Result<String> {
        let content = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}});
        self.send(room, "m.reaction", content).await
    }

    /// The newest `limit` timeline events of a room, newest first.
    pub async fn recent_events(&self, room: &str, limit: u32) -> anyhow::Result<Vec<Value>> {
        let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}", encode(room));
        let page = self.request(Method::GET, &path, None).await?;
        Ok(page["chunk"].as_array().cloned().unwrap_or_default())
    }

    /// Waits for the messages `sender` posts in reply to `event_id` until
    /// `count` are there; returns them oldest first.
    pub async fn wait_for_replies(
        &self,
        room: &str,
        event_id: &str,
        sender: &str,
        count: usize,
    ) -> anyhow::Result<Vec<Value>> {
        super::eventually(std::time::Duration::from_secs(30), &format!("{count} replies to {event_id}"), || async {
            let mut replies: Vec<Value> = self
                .recent_events(room, 100)
                .await?
                .into_iter()
                .filter(|e| {
                    e["sender"] == sender
                        && e["type"] == "m.room.message"
                        && e.pointer("/content/m.relates_to/m.in_reply_to/event_id").and_then(Value::as_str)
                            == Some(event_id)
                })
                .collect();
            replies.reverse();
            Ok((replies.len() >= count).then_some(replies))
        })
        .await
    }

    /// Waits for the first reply of `sender` to `event_id` and returns its plain body.
    pub async fn wait_for_reply(&self, room: &str, event_id: &str, sender: &str) -> anyhow::Result<String> {
        let replies = self.wait_for_replies(room, event_id, sender, 1).await?;
        Ok(replies[0].pointer("/content/body").and_then(Value::as_str).unwrap_or_default().to_owned())
    }

    /// An authenticated media download, as this user.
    async fn download_response(&self, mxc: &str) -> anyhow::Result<reqwest::Response> {
        let rest = mxc.strip_prefix("mxc://").context("not an mxc URI")?;
        let url = format!("{}/_matrix/client/v1/media/download/{rest}", self.base);
        Ok(self.http.get(url).bearer_auth(&self.access_token).send().await?)
    }

    /// A media's bytes.
    pub async fn download(&self, mxc: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self.download_response(mxc).await?.error_for_status()?.bytes().await?.to_vec())
    }

    /// HTTP status of an authenticated media download (404 once quarantined).
    pub async fn download_status(&self, mxc: &str) -> anyhow::Result<u16> {
        Ok(self.download_response(mxc).await?.status().as_u16())
    }
}

/// Percent-encodes one path segment.
pub use crate::grammar::percent_encode as encode;
