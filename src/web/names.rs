//! Room names for the pages, from Synapse's admin API (the index keeps IDs,
//! not content): looked up for the rows shown, a few at a time, cached for
//! ten minutes, and given up on after a few seconds so that a slow
//! homeserver slows no page. Without them a room shows as its ID.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::homeserver::{HomeserverClient, ListedRoom, RetryPolicy};

const FRESH: Duration = Duration::from_secs(600);
/// Lookups per page, and at once.
const MAX_LOOKUPS: usize = 40;
const AT_ONCE: usize = 8;
const PATIENCE: Duration = Duration::from_secs(3);
/// Entries kept; past it the cache starts over.
const MAX_CACHED: usize = 10_000;

pub(super) struct RoomNames {
    homeserver: Option<HomeserverClient>,
    cache: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

/// How a room is shown: its name, else its alias.
fn label(room: &ListedRoom) -> Option<String> {
    room.name.clone().filter(|n| !n.trim().is_empty()).or_else(|| room.canonical_alias.clone())
}

impl RoomNames {
    pub(super) fn new(homeserver: Option<HomeserverClient>) -> Self {
        // One attempt: a page does not wait out the client's retries.
        let homeserver = homeserver.map(|hs| {
            hs.with_retry(RetryPolicy { min_delay: Duration::ZERO, max_delay: Duration::ZERO, max_retries: Some(0) })
        });
        Self { homeserver, cache: Mutex::default() }
    }

    /// The names known for `rooms` (rooms without one are left out).
    pub(super) async fn names(&self, rooms: &[String]) -> HashMap<String, String> {
        let now = Instant::now();
        let (mut known, mut missing) = (HashMap::new(), Vec::new());
        {
            let cache = self.cache.lock().expect("not poisoned");
            for room in rooms {
                match cache.get(room) {
                    Some((name, at)) if now.duration_since(*at) < FRESH => {
                        if let Some(name) = name {
                            known.insert(room.clone(), name.clone());
                        }
                    }
                    _ => missing.push(room.clone()),
                }
            }
        }
        let Some(homeserver) = &self.homeserver else { return known };
        missing.truncate(MAX_LOOKUPS);
        let lookups = futures::stream::iter(missing)
            .map(|room| async move {
                let found = homeserver.admin_room(&room).await;
                (room, found)
            })
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<_>>();
        let Ok(found) = tokio::time::timeout(PATIENCE, lookups).await else {
            tracing::info!("room names for the dashboard: the homeserver took too long");
            return known;
        };
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() > MAX_CACHED {
            cache.clear();
        }
        for (room, found) in found {
            match found {
                Ok(listed) => {
                    let name = listed.as_ref().and_then(label);
                    if let Some(name) = &name {
                        known.insert(room.clone(), name.clone());
                    }
                    cache.insert(room, (name, now));
                }
                // Not cached: tried again on the next page.
                Err(error) => tracing::info!(room, %error, "room name for the dashboard not looked up"),
            }
        }
        known
    }

    /// Rooms whose name, alias or ID contains `term`, as Synapse searches
    /// them; `None` when it cannot be asked.
    pub(super) async fn search(&self, term: &str) -> Option<Vec<String>> {
        let homeserver = self.homeserver.as_ref()?;
        match tokio::time::timeout(PATIENCE, homeserver.admin_search_rooms(term, 500)).await {
            Ok(Ok(rooms)) => {
                let now = Instant::now();
                let mut cache = self.cache.lock().expect("not poisoned");
                let ids = rooms.iter().map(|room| room.room_id.clone()).collect();
                for room in rooms {
                    let name = label(&room);
                    cache.insert(room.room_id, (name, now));
                }
                Some(ids)
            }
            Ok(Err(error)) => {
                tracing::info!(%error, "room search for the dashboard failed; matching IDs only");
                None
            }
            Err(_) => None,
        }
    }
}
