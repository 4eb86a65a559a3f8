//! Figures that take seconds on a big server, kept and recomputed ahead so
//! that a moderator reads them at once.
//!
//! The server-wide views (`!stats`, the dashboard's overview, rooms and
//! media pages) add up `activity_daily`, one row per (day, room, sender):
//! 700,000 rows for 30 days of a ten-million-event server, five seconds
//! whatever the query plan. No index makes "the busiest senders of the
//! month" cheap, so the figure is kept instead: a figure whose computing
//! took longer than [`SLOW`] is kept, recomputed in the background every
//! [`REFRESH`] (one at a time, on a connection of its own) until no one has
//! asked for it for [`FORGET_AFTER`], and dropped as soon as a recompute is
//! fast again. On a server where every figure takes less than [`SLOW`]
//! nothing is kept: each is computed when asked, as it always was.
//!
//! Asks of one figure that come together while it is not kept take turns:
//! the first computes it, the others then read what it kept (three
//! moderators opening the dashboard at once cost one computing, not three).
//!
//! A kept figure says when it was computed ([`Figure::kept_since`]), and
//! whoever shows it says how old it is ([`age_note`]). The store only holds
//! the values: the layers above say what a figure is and how it is computed.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::clock::{format_ms, now_ms};

/// Computing a figure longer than this keeps it.
pub const SLOW: Duration = Duration::from_millis(100);
/// A kept figure is recomputed this often.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A kept figure no one asked for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Figures kept at most: each is small (days of counts, a hundred rows).
const MAX_KEPT: usize = 256;
/// A kept figure younger than this is not worth a word.
const NOTE_AFTER_MS: i64 = 30_000;

/// A kept value, of whatever type its figure has.
type Value = Arc<dyn Any + Send + Sync>;
/// How a figure is computed again.
type Compute = Arc<dyn Fn(Store) -> Pin<Box<dyn Future<Output = anyhow::Result<Value>> + Send>> + Send + Sync>;

struct Entry {
    value: Value,
    /// When the value was computed (or last tried again).
    computed: Instant,
    /// When the value was computed, for people (ms since 1970).
    computed_ms: i64,
    asked: Instant,
    compute: Compute,
}

/// A figure as read: its value, and when it was computed if it was kept.
pub struct Figure<T> {
    pub value: Arc<T>,
    /// When the value was computed (ms), if it was kept rather than
    /// computed for this ask.
    pub kept_since: Option<i64>,
}

impl<T> Figure<T> {
    /// How old the figure is, in words, if it is kept and not fresh.
    pub fn age_note(&self) -> Option<String> {
        age_note(self.kept_since)
    }
}

/// How old a kept figure computed at `kept_since` is, in words; `None` for
/// a figure computed when asked, or a moment ago.
pub fn age_note(kept_since: Option<i64>) -> Option<String> {
    let at = kept_since.filter(|at| now_ms() - at > NOTE_AFTER_MS)?;
    Some(format!(
        "Figures as of {}: on a server this big they are kept and recomputed every {} minutes.",
        format_ms(at),
        REFRESH.as_secs() / 60
    ))
}

/// The kept figures, by a key their layer chooses; shared by every clone
/// of the store (the dashboard's pool included).
#[derive(Default)]
pub struct KeptFigures {
    entries: Mutex<HashMap<String, Entry>>,
    /// Per figure being computed for an ask: its lock, holding the outcome
    /// once computed, and how many asks hold a turn (the last one out
    /// removes it).
    turns: Mutex<HashMap<String, (TurnLock, usize)>>,
}

/// A figure's lock while asks take turns at it: the outcome of the first
/// computing (a fast figure is not kept; a failure is not either), shared
/// with the asks that overlapped it.
type TurnLock = Arc<tokio::sync::Mutex<Option<Result<Value, String>>>>;

/// An ask's place among the asks computing one figure at once.
struct Turn<'a> {
    figures: &'a KeptFigures,
    key: String,
    lock: TurnLock,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.figures.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, holders)) = turns.get_mut(&self.key) {
            *holders -= 1;
            if *holders == 0 {
                turns.remove(&self.key);
            }
        }
    }
}

impl std::fmt::Debug for KeptFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptFigures").field("figures", &self.len()).finish()
    }
}

impl KeptFigures {
    fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Figure<T>> {
        let mut entries = self.entries.lock().expect("not poisoned");
        let entry = entries.get_mut(key)?;
        entry.asked = Instant::now();
        let value = entry.value.clone().downcast::<T>().ok()?;
        Some(Figure { value, kept_since: Some(entry.computed_ms) })
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
        entries.insert(key, Entry { value, computed: now, computed_ms: now_ms(), asked: now, compute });
    }

    fn turn(&self, key: &str) -> Turn<'_> {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        let (lock, holders) = turns.entry(key.to_owned()).or_default();
        *holders += 1;
        Turn { figures: self, key: key.to_owned(), lock: lock.clone() }
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

    /// A recompute's outcome: a slow one replaces the value, a fast one
    /// drops the figure (it is computed when asked again), a failed one
    /// keeps the old value (with its time) until the next round.
    fn recomputed(&self, key: &str, outcome: Option<(Value, Duration)>) {
        let mut entries = self.entries.lock().expect("not poisoned");
        match outcome {
            Some((_, took)) if took < SLOW => {
                entries.remove(key);
            }
            Some((value, _)) => {
                if let Some(entry) = entries.get_mut(key) {
                    (entry.value, entry.computed, entry.computed_ms) = (value, Instant::now(), now_ms());
                }
            }
            None => {
                if let Some(entry) = entries.get_mut(key) {
                    entry.computed = Instant::now();
                }
            }
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
    /// every argument it is computed from. Asks of one key at once take
    /// turns, so `compute` must not ask for its own key (it would wait for
    /// itself).
    pub async fn kept_or_computed<T, F, Fut>(&self, key: String, compute: F) -> anyhow::Result<Figure<T>>
    where
        T: Any + Send + Sync,
        F: Fn(Store) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        if let Some(kept) = self.kept.get::<T>(&key) {
            return Ok(kept);
        }
        let turn = self.kept.turn(&key);
        let mut outcome = turn.lock.lock().await;
        // An ask that overlapped this one computed it: kept (slow), or its
        // outcome left in the turn (fast, or failed) for the asks behind it.
        if let Some(kept) = self.kept.get::<T>(&key) {
            return Ok(kept);
        }
        match outcome.as_ref() {
            Some(Ok(value)) => {
                if let Ok(value) = value.clone().downcast::<T>() {
                    return Ok(Figure { value, kept_since: None });
                }
            }
            Some(Err(error)) => anyhow::bail!("{error}"),
            None => {}
        }
        let started = Instant::now();
        let value = match compute(self.clone()).await {
            Ok(value) => Arc::new(value),
            Err(error) => {
                *outcome = Some(Err(format!("{error:#}")));
                return Err(error);
            }
        };
        *outcome = Some(Ok(value.clone() as Value));
        let took = started.elapsed();
        if took >= SLOW {
            tracing::info!(key, took_ms = took.as_millis() as u64, "a slow figure is kept and recomputed ahead");
            let compute: Compute = Arc::new(move |store| {
                let computing = compute(store);
                Box::pin(async move { Ok(Arc::new(computing.await?) as Value) })
            });
            self.kept.keep(key, value.clone(), compute);
        }
        Ok(Figure { value, kept_since: None })
    }

    /// Recomputes the kept figures that are due, one after another (gentle
    /// with the database), until done or `stop`; returns how many it did.
    pub async fn refresh_kept(&self, stop: &CancellationToken) -> usize {
        let due = self.kept.due();
        for (done, (key, compute)) in due.iter().enumerate() {
            let started = Instant::now();
            let computing = AssertUnwindSafe(compute(self.clone())).catch_unwind();
            let outcome = tokio::select! {
                () = stop.cancelled() => return done,
                outcome = computing => outcome,
            };
            match outcome {
                Ok(Ok(value)) => {
                    let took = started.elapsed();
                    tracing::debug!(key, took_ms = took.as_millis() as u64, "kept figure recomputed");
                    self.kept.recomputed(key, Some((value, took)));
                }
                Ok(Err(error)) => {
                    tracing::warn!(
                        key,
                        error = format!("{error:#}"),
                        "cannot recompute a kept figure; it stays as it was"
                    );
                    self.kept.recomputed(key, None);
                }
                // A bug in the figure's code: it is dropped (and computed
                // when asked again), the refresher goes on.
                Err(_) => {
                    tracing::error!(key, "recomputing a kept figure panicked; it is dropped");
                    self.kept.recomputed(key, Some((Arc::new(()), Duration::ZERO)));
                }
            }
        }
        due.len()
    }

    /// The kept figures.
    pub fn kept(&self) -> &KeptFigures {
        &self.kept
    }
}

/// Recomputes kept figures as they fall due, until `stop`. Give it a store
/// with a connection of its own: a recompute takes seconds.
pub async fn refresh_kept_figures(store: Store, stop: CancellationToken) {
    // Often enough that none is much older than REFRESH.
    const LOOK_EVERY: Duration = Duration::from_secs(30);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
        store.refresh_kept(&stop).await;
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
        let kept = KeptFigures::default();
        kept.keep("a".into(), Arc::new(7_i64), compute());
        assert_eq!(kept.get::<i64>("a").map(|f| *f.value), Some(7));
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
        assert_eq!((*first.value, *again.value), (3, 3), "the slow one is read as kept");
        assert!(first.kept_since.is_none() && again.kept_since.is_some(), "the kept one says so");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(store.refresh_kept(&CancellationToken::new()).await, 0, "not due before REFRESH");
        assert_eq!(store.kept().len(), 1);
        // The same store through another pool shares what is kept.
        let kept_elsewhere = store.clone().kept_or_computed("slow".into(), figure(Duration::ZERO)).await.unwrap();
        assert_eq!(*kept_elsewhere.value, 3);
    }

    #[tokio::test]
    async fn asks_of_one_figure_at_once_compute_it_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let store = Store::connect("sqlite::memory:", Some(1)).await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let figure = || {
            let calls = calls.clone();
            move |_: Store| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(SLOW + Duration::from_millis(20)).await;
                    anyhow::Ok(7_u8)
                }
            }
        };
        let asks = (0..3).map(|_| store.kept_or_computed("slow".into(), figure()));
        let figures = futures::future::try_join_all(asks).await.unwrap();
        assert_eq!(figures.iter().map(|f| *f.value).collect::<Vec<_>>(), [7, 7, 7]);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the others read what the first kept");
        assert_eq!(figures.iter().filter(|f| f.kept_since.is_some()).count(), 2);
        assert!(store.kept().turns.lock().unwrap().is_empty(), "no lock left behind");

        // A fast figure is not kept, and a failing one not either: asks at
        // once still share the first one's outcome.
        let fast = |fails: bool| {
            let calls = calls.clone();
            move |_: Store| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if fails { Err(anyhow::anyhow!("no database")) } else { anyhow::Ok(8_u8) }
                }
            }
        };
        let asks = (0..3).map(|_| store.kept_or_computed("fast".into(), fast(false)));
        let figures = futures::future::try_join_all(asks).await.unwrap();
        assert_eq!(figures.iter().map(|f| *f.value).collect::<Vec<_>>(), [8, 8, 8]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let asks = (0..3).map(|_| store.kept_or_computed("failing".into(), fast(true)));
        let errors = futures::future::join_all(asks).await;
        assert!(errors.iter().all(|e| e.as_ref().is_err_and(|e| e.to_string() == "no database")));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(store.kept().len(), 1, "only the slow one is kept");
        assert!(store.kept().turns.lock().unwrap().is_empty());
    }

    #[test]
    fn room_is_made_by_forgetting_the_one_asked_for_longest_ago() {
        let kept = KeptFigures::default();
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
