//! Synapse's event reports (`/_synapse/admin/v1/event_reports`): what users
//! report with their client. Synapse keeps them and tells no one.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{HomeserverClient, HsError};

/// One report as Synapse lists it. Everything but `id` comes from people
/// (the reporter's reason and score) or from rooms (names, which remote
/// servers set): shown only through `text::shown`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventReport {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub event_id: String,
    /// Who reported it.
    pub user_id: String,
    /// The reported event's sender; none when Synapse does not have the event.
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// -100 (most offensive) to 0, if the client sent one; any JSON is kept out.
    #[serde(default, deserialize_with = "lenient_score")]
    pub score: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub canonical_alias: Option<String>,
}

/// A score is whatever the reporting client sent: anything but an integer is none.
fn lenient_score<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Value>::deserialize(deserializer)?.and_then(|v| v.as_i64()))
}

/// One page of reports, newest first, and the offset of the next page.
#[derive(Debug, Deserialize)]
pub struct ReportsPage {
    pub event_reports: Vec<EventReport>,
    #[serde(default)]
    pub next_token: Option<u64>,
}

impl HomeserverClient {
    /// Reports newest first, `limit` from offset `from` (Synapse pages by
    /// offset, not by ID: a report deleted meanwhile shifts the pages, which
    /// the caller, reading down to the newest report it has, does not mind).
    pub async fn event_reports_newest_first(&self, from: u64, limit: u32) -> Result<ReportsPage, HsError> {
        let mut url = self.url(&["_synapse", "admin", "v1", "event_reports"]);
        url.query_pairs_mut()
            .append_pair("dir", "b")
            .append_pair("from", &from.to_string())
            .append_pair("limit", &limit.to_string());
        let mut page: ReportsPage = self.send_url::<(), _>(Method::GET, url, None).await?;
        // A token that does not move forward would page forever.
        page.next_token = page.next_token.filter(|next| *next > from);
        Ok(page)
    }

    /// Deletes a report from Synapse (`DELETE /_synapse/admin/v1/event_reports/{id}`).
    pub async fn delete_event_report(&self, id: i64) -> Result<(), HsError> {
        let id = id.to_string();
        self.send::<(), Value>(Method::DELETE, &["_synapse", "admin", "v1", "event_reports", &id], None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_with_odd_fields_still_reads() {
        let page: ReportsPage = serde_json::from_value(json!({
            "event_reports": [
                {"id": 2, "received_ts": 5, "room_id": "!r:hs", "event_id": "$e", "user_id": "@a:hs",
                 "sender": null, "reason": null, "score": "very bad", "name": null, "canonical_alias": null},
                {"id": 1, "received_ts": 4, "room_id": "!r:hs", "event_id": "$f", "user_id": "@a:hs",
                 "sender": "@s:hs", "reason": "spam", "score": -100, "name": "Lobby", "canonical_alias": "#l:hs"},
            ],
            "total": 2,
        }))
        .unwrap();
        assert_eq!(page.event_reports[0].score, None, "a score that is not a number is none");
        assert_eq!(page.event_reports[1].score, Some(-100));
        assert_eq!(page.event_reports[1].sender.as_deref(), Some("@s:hs"));
        assert_eq!(page.next_token, None);
    }
}
