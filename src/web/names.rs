//! Room names for the pages, from Synapse's admin API (the index keeps IDs,
//! not content): looked up for the rows shown, a few at a time, cached for
//! ten minutes (a failed lookup for half a minute), and given up on after a
//! few seconds so that a slow homeserver slows no page: the names found by
//! then are shown, the other rooms as their IDs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::homeserver::{HomeserverClient, ListedRoom, RetryPolicy};

const FRESH: Duration = Duration::from_secs(600);
/// A failed or slow lookup is not tried again for this long.
const FAILED_FRESH: Duration = Duration::from_secs(30);
/// Lookups per page, and at once.
const MAX_LOOKUPS: usize = 40;
const AT_ONCE: usize = 8;
const PATIENCE: Duration = Duration::from_secs(3);
/// Entries kept; past it the cache starts over.
const MAX_CACHED: usize = 10_000;

pub(super) struct RoomNames {
    homeserver: Option<HomeserverClient>,
    /// Room → its label (none: no name, or the lookup failed) and until when it holds.
    cache: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

/// A room name longer than this is cut: names are chosen by whoever made
/// the room, and a page lists up to a hundred of them.
const MAX_LABEL_CHARS: usize = 200;

/// How a room is shown: its name, else its alias; cut to
/// [`MAX_LABEL_CHARS`], with direction overrides and invisible characters
/// shown as `�` so that a name cannot reorder or hide the text beside it.
fn label(room: &ListedRoom) -> Option<String> {
    let raw = room.name.clone().filter(|n| !n.trim().is_empty()).or_else(|| room.canonical_alias.clone())?;
    Some(crate::text::shown(&raw, MAX_LABEL_CHARS))
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
                    Some((name, until)) if now < *until => {
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
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let found = futures::stream::iter(missing)
            .map(|room| async move {
                let found = match tokio::time::timeout_at(deadline, homeserver.room_details(&room)).await {
                    Ok(Ok(listed)) => Some(listed.as_ref().and_then(label)),
                    Ok(Err(error)) => {
                        tracing::info!(room, %error, "room name for the dashboard not looked up");
                        None
                    }
                    Err(_) => None,
                };
                (room, found)
            })
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let late = found.iter().filter(|(_, name)| name.is_none()).count();
        if late > 0 {
            tracing::info!(
                rooms = late,
                "room names for the dashboard: not looked up (failed or too slow); shown as IDs for 30 s"
            );
        }
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() > MAX_CACHED {
            cache.clear();
        }
        for (room, found) in found {
            match found {
                Some(name) => {
                    if let Some(name) = &name {
                        known.insert(room.clone(), name.clone());
                    }
                    cache.insert(room, (name, now + FRESH));
                }
                None => {
                    cache.insert(room, (None, now + FAILED_FRESH));
                }
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
                    cache.insert(room.room_id, (name, now + FRESH));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: Option<&str>, alias: Option<&str>) -> ListedRoom {
        ListedRoom {
            room_id: "!r:hs".to_owned(),
            name: name.map(str::to_owned),
            canonical_alias: alias.map(str::to_owned),
            joined_members: 1,
        }
    }

    #[test]
    fn a_room_label_cannot_hide_or_reorder_what_is_beside_it() {
        assert_eq!(label(&room(Some("  "), Some("#a:hs"))).as_deref(), Some("#a:hs"), "a blank name falls back");
        assert_eq!(label(&room(None, None)), None);
        let spoof = label(&room(Some("admins\u{202E}gpj.exe\u{200B}"), None)).unwrap();
        assert_eq!(spoof, "admins\u{FFFD}gpj.exe\u{FFFD}");
        let long = label(&room(Some(&"x".repeat(5_000)), None)).unwrap();
        assert_eq!(long.chars().count(), MAX_LABEL_CHARS + 1, "cut, with an ellipsis");
        assert!(long.ends_with('…'));
    }
}
