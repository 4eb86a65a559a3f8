//! Notices into rooms: `m.notice` messages sent by the bot, as replies where
//! there is something to reply to, with transaction IDs from the caller's
//! key (the homeserver posts a retried key once).

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use ruma::EventId;
use ruma::events::room::message::RoomMessageEventContent;

use crate::crypto::Crypto;
use crate::homeserver::HomeserverClient;
use crate::notice::{Destination, Image, Notice, Sink};

/// Text in one message (plain + HTML, JSON-encoded): events are at most 64 KiB with headers.
pub const MAX_NOTICE_BYTES: usize = 48 * 1024;

pub struct RoomSink {
    homeserver: HomeserverClient,
    /// With end-to-end encryption on: messages into an encrypted room are
    /// encrypted (never sent in the clear there).
    crypto: Option<Arc<Crypto>>,
}

impl RoomSink {
    pub fn new(homeserver: HomeserverClient) -> Self {
        Self { homeserver, crypto: None }
    }

    pub fn encrypting(homeserver: HomeserverClient, crypto: Option<Arc<Crypto>>) -> Self {
        Self { homeserver, crypto }
    }

    /// The bot's device, when `room_id` is encrypted: whatever goes in there
    /// is encrypted, never sent in the clear.
    async fn encrypting_for(&self, room_id: &str) -> anyhow::Result<Option<&Crypto>> {
        match &self.crypto {
            Some(crypto) if crypto.room_encryption(room_id).await?.is_some() => Ok(Some(crypto)),
            _ => Ok(None),
        }
    }

    /// Sends an `m.room.message` with `content`, encrypted by `crypto`.
    async fn send_encrypted(
        &self,
        crypto: &Crypto,
        room_id: &str,
        txn_id: &str,
        content: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let encrypted = crypto.encrypt(room_id, "m.room.message", content).await?;
        Ok(self.homeserver.send_event(room_id, "m.room.encrypted", txn_id, &encrypted).await?)
    }

    /// Sends an `m.room.message`, encrypted when the room is.
    async fn send(&self, room_id: &str, txn_id: &str, content: &RoomMessageEventContent) -> anyhow::Result<String> {
        if let Some(crypto) = self.encrypting_for(room_id).await? {
            return self.send_encrypted(crypto, room_id, txn_id, &serde_json::to_value(content)?).await;
        }
        Ok(self.homeserver.send_message(room_id, txn_id, content).await?)
    }
}

#[async_trait]
impl Sink for RoomSink {
    async fn post(&self, to: &Destination, key: &str, notice: &Notice) -> anyhow::Result<String> {
        let txn_id = format!("housekeep-{key}");
        // The IDs come from the homeserver; one that is no event ID loses the
        // reply link rather than the notice.
        let in_reply_to = to.in_reply_to.as_deref().and_then(|id| match EventId::parse(id) {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(in_reply_to = id, %error, "not an event ID; the notice is sent as no reply");
                None
            }
        });
        let content = notice.limited(MAX_NOTICE_BYTES).content(in_reply_to.as_deref());
        self.send(&to.room_id, &txn_id, &content).await
    }

    async fn edit(&self, room_id: &str, message_id: &str, key: &str, notice: &Notice) -> anyhow::Result<String> {
        let txn_id = format!("housekeep-{key}");
        let original = EventId::parse(message_id).with_context(|| format!("cannot edit {message_id:?}"))?;
        // An edit carries the text twice (fallback and m.new_content).
        let content = notice.limited(MAX_NOTICE_BYTES / 2).edit_content(&original);
        self.send(room_id, &txn_id, &content).await
    }

    async fn post_image(&self, to: &Destination, key: &str, image: &Image) -> anyhow::Result<String> {
        // The upload is not deduplicated: a retried key may upload again,
        // but posts the message once.
        let txn_id = format!("housekeep-{key}");
        if let Some(crypto) = self.encrypting_for(&to.room_id).await? {
            // An encrypted room gets the image encrypted (`file`, no `url`):
            // the homeserver keeps only ciphertext.
            let (ciphertext, mut file) = crate::crypto::encrypt_attachment(&image.png)?;
            let url = self.homeserver.upload(ciphertext, "application/octet-stream", &image.name).await?;
            file["url"] = serde_json::Value::String(url.clone());
            let mut content = serde_json::to_value(image.content(url.into()))?;
            if let Some(fields) = content.as_object_mut() {
                fields.remove("url");
                fields.insert("file".to_owned(), file);
            }
            return self.send_encrypted(crypto, &to.room_id, &txn_id, &content).await;
        }
        let url = self.homeserver.upload(image.png.clone(), "image/png", &image.name).await?;
        Ok(self.homeserver.send_message(&to.room_id, &txn_id, &image.content(url.into())).await?)
    }
}
