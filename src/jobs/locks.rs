//! Item locks: two jobs never act on the same item (an event, a media) at
//! once. Two overlapping purges of one room then redact each event once:
//! the second waits, then finds the event redacted.
//!
//! A batch takes all its keys at once or waits for all of them, so two
//! batches can never each hold what the other waits for.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct ItemLocks {
    held: Mutex<HashSet<String>>,
    released: Notify,
}

/// Keys held until dropped.
pub struct LockGuard {
    locks: Arc<ItemLocks>,
    keys: Vec<String>,
}

impl ItemLocks {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Waits until none of `keys` is held, then holds all of them.
    pub async fn acquire(self: &Arc<Self>, mut keys: Vec<String>) -> LockGuard {
        keys.sort();
        keys.dedup();
        loop {
            // Register interest before looking, so a release in between is not missed.
            let released = self.released.notified();
            {
                let mut held = self.held.lock().expect("not poisoned");
                if keys.iter().all(|key| !held.contains(key)) {
                    held.extend(keys.iter().cloned());
                    return LockGuard { locks: self.clone(), keys };
                }
            }
            released.await;
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.lock().expect("not poisoned").len()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().expect("not poisoned");
        for key in &self.keys {
            held.remove(key);
        }
        drop(held);
        self.locks.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn overlapping_keys_wait_and_disjoint_ones_do_not() {
        let locks = ItemLocks::new();
        let first = locks.acquire(keys(&["$a", "$b"])).await;
        let disjoint = tokio::time::timeout(Duration::from_millis(100), locks.acquire(keys(&["$c"]))).await;
        assert!(disjoint.is_ok(), "a disjoint batch does not wait");
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.acquire(keys(&["$b", "$d"])).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "an overlapping batch waits");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("woken").unwrap();
        assert_eq!(locks.held(), 3, "$b and $d, and $c from the disjoint guard");
        drop(second);
        drop(disjoint);
        assert_eq!(locks.held(), 0);
    }
}
