//! Figures that take seconds on a big server, kept and recomputed ahead so
//! that a moderator reads them at once.
//!
//! The server-wide views (`!stats`, the dashboard's overview, rooms and
//! media pages) add up `activity_daily`, one row per (day, room, sender):
//! 700,000 rows for 30 days of a ten-million-event server, five seconds
//! whatever the query plan. No index makes "the busiest senders of the
//! month" cheap, so the figure is kept instead: a figure whose computing
//! took longer than [`SLOW`] is kept, recomputed in the background every
//! [`REFRESH`] while someone asks for it, and forgotten once no one has
//! for [`FORGET_AFTER`]. On a server where every figure takes less than
//! [`SLOW`] nothing is kept: each is computed when asked, as it always was.
//!
//! What is kept says when it was computed (the summary's `generated_at`),
//! so that whoever reads it sees its age. The store only holds the values:
//! the layers above say what a figure is and how it is computed.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Store;

/// Computing a figure longer than this keeps it.
pub const SLOW: Duration = Duration::from_millis(100);
/// A kept figure someone asks for is recomputed this often.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A kept figure no one asked for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Figures kept at most (a figure is a few kilobytes).
const MAX_KEPT: usize = 256;

/// A kept value, of whatever type its figure has.
type Value = Arc<dyn Any + Send + Sync>;
/// How a figure is computed again.
type Compute = Arc<dyn Fn(Store) -> Pin<Box<dyn Future<Output = anyhow::Result<Value>> + Send>> + Send + Sync>;

struct Entry {
    value: Value,
    computed: Instant,
    asked: Instant,
    compute: Compute,
}

/// The kept figures, by a key their layer chooses; shared by every clone
/// of the store (the dashboard's pool included).
#[derive(Default)]
pub struct Kept {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("figures", &self.len()).finish()
    }
}

impl Kept {
    fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let mut entries = self.entries.lock().expect("not poisoned");
        let entry = entries.get_mut(key)?;
        entry.asked = Instant::now();
        entry.value.clone().downcast::<T>().ok()
    }

    fn keep(&self, key: String, value: Value, compute: Compute) {
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= MAX_KEPT && !entries.contains_key(&key) {
            // The one asked for longest ago makes room.
            if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.asked).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        let now = Instant::now();
        entries.insert(key, Entry { value, computed: now, asked: now, compute });
    }

    /// Forgets what no one asked for lately; returns what is due again.
    fn due(&self) -> Vec<(String, Compute)> {
        let mut entries = self.entries.lock().expect("not poisoned");
        entries.retain(|_, e| e.asked.elapsed() < FORGET_AFTER);
        entries
            .iter()
            .filter(|(_, e)| e.computed.elapsed() >= REFRESH)
            .map(|(k, e)| (k.clone(), e.compute.clone()))
            .collect()
    }

    fn replace(&self, key: &str, value: Value) {
        let mut entries = self.entries.lock().expect("not poisoned");
        if let Some(entry) = entries.get_mut(key) {
            entry.value = value;
            entry.computed = Instant::now();
        }
    }

    /// How many figures are kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store {
    /// The figure `key`: as kept, or computed now by `compute` (and kept
    /// if that took longer than [`SLOW`]). The key names the figure and
    /// every argument it is computed from.
    pub async fn kept_or_computed<T, F, Fut>(&self, key: String, compute: F) -> anyhow::Result<Arc<T>>
    where
        T: Any + Send + Sync,
        F: Fn(Store) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        if let Some(kept) = self.kept.get::<T>(&key) {
            return Ok(kept);
        }
        let started = Instant::now();
        let value = Arc::new(compute(self.clone()).await?);
        let took = started.elapsed();
        if took >= SLOW {
            tracing::info!(key, took_ms = took.as_millis() as u64, "a slow figure is kept and recomputed ahead");
            let compute: Compute = Arc::new(move |store| {
                let computing = compute(store);
                Box::pin(async move { Ok(Arc::new(computing.await?) as Value) })
            });
            self.kept.keep(key, value.clone(), compute);
        }
        Ok(value)
    }

    /// Recomputes the kept figures that are due, one after another (gentle
    /// with the database); returns how many.
    pub async fn refresh_kept(&self) -> usize {
        let due = self.kept.due();
        for (key, compute) in &due {
            let started = Instant::now();
            match compute(self.clone()).await {
                Ok(value) => {
                    self.kept.replace(key, value);
                    tracing::debug!(key, took_ms = started.elapsed().as_millis() as u64, "kept figure recomputed");
                }
                // The old value stays; the next round tries again.
                Err(error) => tracing::warn!(key, error = format!("{error:#}"), "cannot recompute a kept figure"),
            }
        }
        due.len()
    }

    /// The kept figures.
    pub fn kept(&self) -> &Kept {
        &self.kept
    }
}

/// Recomputes kept figures as they fall due, until `stop`.
pub async fn refresh_kept_figures(store: Store, stop: tokio_util::sync::CancellationToken) {
    // Often enough that none is much older than REFRESH.
    const LOOK_EVERY: Duration = Duration::from_secs(30);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
        store.refresh_kept().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute() -> Compute {
        Arc::new(|_| Box::pin(async { Ok(Arc::new(0_u8) as Value) }))
    }

    #[test]
    fn a_kept_figure_is_read_as_its_own_type_and_refreshes_the_ask() {
        let kept = Kept::default();
        kept.keep("a".into(), Arc::new(7_i64), compute());
        assert_eq!(kept.get::<i64>("a").as_deref(), Some(&7));
        assert!(kept.get::<String>("a").is_none(), "another type is not this figure");
        assert!(kept.get::<i64>("b").is_none());
        assert!(kept.due().is_empty(), "just computed");
    }

    #[tokio::test]
    async fn a_slow_figure_is_kept_and_a_fast_one_computed_each_time() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let store = Store::connect("sqlite::memory:", Some(1)).await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let figure = |pause: Duration| {
            let calls = calls.clone();
            move |_: Store| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(pause).await;
                    anyhow::Ok(n)
                }
            }
        };
        for _ in 0..3 {
            store.kept_or_computed("fast".into(), figure(Duration::ZERO)).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "fast: computed each time");
        assert!(store.kept().is_empty());
        let first = store.kept_or_computed("slow".into(), figure(SLOW + Duration::from_millis(20))).await.unwrap();
        let again = store.kept_or_computed("slow".into(), figure(SLOW + Duration::from_millis(20))).await.unwrap();
        assert_eq!((*first, *again), (3, 3), "the slow one is read as kept");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(store.refresh_kept().await, 0, "not due before REFRESH");
        assert_eq!(store.kept().len(), 1);
        // The same store through another pool shares what is kept.
        let kept_elsewhere = store.clone().kept_or_computed("slow".into(), figure(Duration::ZERO)).await.unwrap();
        assert_eq!(*kept_elsewhere, 3);
    }

    #[test]
    fn room_is_made_by_forgetting_the_one_asked_for_longest_ago() {
        let kept = Kept::default();
        for n in 0..MAX_KEPT {
            kept.keep(n.to_string(), Arc::new(n), compute());
        }
        kept.get::<usize>("0");
        kept.keep("new".into(), Arc::new(0_usize), compute());
        assert_eq!(kept.len(), MAX_KEPT);
        assert!(kept.get::<usize>("0").is_some(), "asked for just now");
        assert!(kept.get::<usize>("1").is_none(), "asked for longest ago");
    }
}
