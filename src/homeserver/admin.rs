//! Synapse's admin API (the bot must be a server admin).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HomeserverClient, HsError};

impl HomeserverClient {
    /// Quarantines one media (`POST /_synapse/admin/v1/media/quarantine/{server}/{id}`).
    /// Synapse quarantines by content hash: identical bytes elsewhere go too.
    pub async fn quarantine_media(&self, server_name: &str, media_id: &str) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "media", "quarantine", server_name, media_id];
        self.send::<_, Value>(Method::POST, &segments, Some(&json!({}))).await?;
        Ok(())
    }

    pub async fn unquarantine_media(&self, server_name: &str, media_id: &str) -> Result<(), HsError> {
        let segments = ["_synapse", "admin", "v1", "media", "unquarantine", server_name, media_id];
        self.send::<_, Value>(Method::POST, &segments, Some(&json!({}))).await?;
        Ok(())
    }

    /// Synapse's record of a media (`quarantined_by`, `safe_from_quarantine`,
    /// `sha256`, …: the answer's `media_info`); `None` when it has none.
    pub async fn media_info(&self, server_name: &str, media_id: &str) -> Result<Option<Value>, HsError> {
        let segments = ["_synapse", "admin", "v1", "media", server_name, media_id];
        match self.send::<(), Value>(Method::GET, &segments, None).await {
            Ok(mut answer) => Ok(Some(answer.get_mut("media_info").map(Value::take).unwrap_or(Value::Null))),
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The IDs of every media a local user uploaded, paginated through
    /// `GET /_synapse/admin/v1/users/{user}/media`.
    pub async fn user_uploads(&self, user_id: &str) -> Result<Vec<String>, HsError> {
        #[derive(Deserialize)]
        struct Page {
            media: Vec<Upload>,
            next_token: Option<u64>,
        }
        #[derive(Deserialize)]
        struct Upload {
            media_id: String,
        }
        let mut ids = Vec::new();
        let mut from = 0u64;
        loop {
            let mut url = self.url(&["_synapse", "admin", "v1", "users", user_id, "media"]);
            url.query_pairs_mut().append_pair("from", &from.to_string()).append_pair("limit", "500");
            let page: Page = self.send_url::<(), _>(Method::GET, url, None).await?;
            ids.extend(page.media.into_iter().map(|m| m.media_id));
            match page.next_token {
                Some(next) => from = next,
                None => return Ok(ids),
            }
        }
    }
}

/// Synapse reports booleans as 1/0 on SQLite and true/false on PostgreSQL.
pub fn truthy(value: &Value) -> bool {
    value.as_bool().unwrap_or_else(|| value.as_i64().is_some_and(|n| n != 0))
}
