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
    use futures::FutureExt;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    // Polled by hand, once at a time: whether an acquire is ready or still
    // waiting is a fact about the lock, not about how long anyone waited.
    #[test]
    fn overlapping_keys_wait_and_disjoint_ones_do_not() {
        let locks = ItemLocks::new();
        let first = locks.acquire(keys(&["$a", "$b"])).now_or_never().expect("free keys are taken at once");
        let disjoint = locks.acquire(keys(&["$c"])).now_or_never().expect("a disjoint batch does not wait");
        let mut waiting = Box::pin(locks.acquire(keys(&["$b", "$d"])));
        assert!((&mut waiting).now_or_never().is_none(), "an overlapping batch waits");
        assert!((&mut waiting).now_or_never().is_none(), "and keeps waiting while $b is held");
        assert_eq!(locks.held(), 3, "a waiting batch holds none of its keys ($d stays free)");
        drop(disjoint);
        assert!((&mut waiting).now_or_never().is_none(), "releasing an unrelated key does not let it in");
        drop(first);
        let second = waiting.now_or_never().expect("woken once $b is released");
        assert_eq!(locks.held(), 2, "$b and $d");
        drop(second);
        assert_eq!(locks.held(), 0);
    }
}
