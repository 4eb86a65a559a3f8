//! The media worker: downloads everything queued in the `media` table, the
//! most urgent first (`store::QueuePriority`: uploads on this homeserver,
//! then remote media, backfill's leftovers, and mentions last; the
//! longest-waiting first within each), so transactions are acknowledged
//! without waiting for any download and nothing queued is lost on a
//! restart. It enforces the hash blocklist on what is known whenever it is
//! woken (a blocked file was downloaded, a hash was added, media was
//! queued) and at least once a minute.
//!
//! Downloads run as a pipeline, not in rounds: a slot that frees goes to
//! the most urgent media due at that moment, so an upload posted behind
//! thousands of slow downloads starts as soon as it is queued instead of
//! after the slowest of a round. Remote downloads never hold the last slot
//! (see `MediaFetcher`), so junk on slow servers cannot hold back this
//! homeserver's own media either. Memory stays bounded: at most
//! `download_concurrency` downloads run, and the queue is read a page at a
//! time. The age of each priority's oldest due media is in `/metrics`
//! (`housekeep_media_queue_oldest_seconds`): a jam shows there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::fetch::Outcome;
use super::{MediaFetcher, blocklist};
use crate::clock::now_ms;
use crate::metrics::{PanicLabel, PriorityLabel};
use crate::store::{DueMedia, MediaId};

/// Due media read per look at the queue, besides those in flight (which
/// are still due in the table, at its head).
const PAGE: i64 = 64;
const IDLE_POLL: Duration = Duration::from_secs(60);
/// How often to look again while due media waits for downloads that are
/// not the worker's own (backfill's) to end.
const IN_FLIGHT_POLL: Duration = Duration::from_secs(2);
/// How often the queue's heads (and their age in `/metrics`) are read, and
/// the longest a page of due media read earlier is worked from: anything
/// more urgent queued meanwhile wakes the worker, which reads again at once.
const REREAD_EVERY: Duration = Duration::from_secs(1);
/// The blocklist is enforced at least this often, however busy the worker.
const ENFORCE_EVERY: Duration = Duration::from_secs(60);

pub async fn run(fetcher: Arc<MediaFetcher>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut pipeline = Pipeline::new(fetcher.clone(), shutdown.clone());
    let mut heads = Heads::new(fetcher.clone());
    let mut enforced_at: Option<Instant> = None;
    let mut woken = true;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if woken || enforced_at.is_none_or(|at| at.elapsed() >= ENFORCE_EVERY) {
            if let Err(error) = blocklist::enforce(fetcher.services()).await {
                tracing::warn!(error = format!("{error:#}"), "cannot enforce the hash blocklist now; will retry");
            }
            enforced_at = Some(Instant::now());
        }
        let held_back = match pipeline.top_up(woken).await {
            Ok(held_back) => held_back,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot read the media queue; retrying");
                false
            }
        };
        woken = false;
        let now = now_ms();
        let idle = match heads.next_due().await {
            // Slots free up as downloads end: ours wake the worker, backfill's do not.
            _ if held_back => IN_FLIGHT_POLL,
            // What is due runs already; its end wakes the worker.
            Some(due) if due <= now => IN_FLIGHT_POLL,
            Some(due) => Duration::from_millis((due - now).clamp(100, 60_000) as u64),
            None => IDLE_POLL,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(done) = pipeline.running.join_next_with_id(), if !pipeline.running.is_empty() => pipeline.ended(done),
            _ = wake.notified() => woken = true,
            _ = tokio::time::sleep(idle) => woken = true,
        }
    }
}

/// The downloads the worker runs, each a task of its own (they go on while
/// the worker enforces the blocklist), and the due media to start next.
struct Pipeline {
    fetcher: Arc<MediaFetcher>,
    shutdown: CancellationToken,
    running: JoinSet<(Outcome, bool)>,
    tasks: HashMap<Id, (MediaId, bool)>,
    started: HashSet<MediaId>,
    local_running: usize,
    remote_running: usize,
    /// Due media read from the queue and not started yet, most urgent first.
    next: Vec<DueMedia>,
    read_at: Option<Instant>,
}

impl Pipeline {
    fn new(fetcher: Arc<MediaFetcher>, shutdown: CancellationToken) -> Self {
        Self {
            fetcher,
            shutdown,
            running: JoinSet::new(),
            tasks: HashMap::new(),
            started: HashSet::new(),
            local_running: 0,
            remote_running: 0,
            next: Vec::new(),
            read_at: None,
        }
    }

    /// Starts the most urgent due media while slots are free: this
    /// homeserver's media up to `download_concurrency`, remote media up to
    /// the fetcher's remote limit. The queue is read again when `reread`
    /// (something was queued), when the page read last is used up, and
    /// every [`REREAD_EVERY`]. Whether due media was left waiting for a
    /// slot or for someone else's download of it.
    async fn top_up(&mut self, reread: bool) -> anyhow::Result<bool> {
        let (local_limit, remote_limit) = (self.fetcher.config().concurrency, self.fetcher.remote_limit());
        if self.local_running >= local_limit && self.remote_running >= remote_limit {
            return Ok(true);
        }
        let stale = self.read_at.is_none_or(|at| at.elapsed() >= REREAD_EVERY);
        if reread || stale || self.next.is_empty() {
            let limit = PAGE + self.fetcher.in_flight_count() as i64;
            self.next = self.fetcher.services().store.due_media(limit).await?;
            self.next.retain(|due| !self.started.contains(&due.media));
            self.read_at = Some(Instant::now());
        }
        let mut held_back = false;
        let mut left = Vec::with_capacity(self.next.len());
        for due in std::mem::take(&mut self.next) {
            if self.fetcher.is_in_flight(&due.media) {
                held_back = true;
                left.push(due);
                continue;
            }
            let remote = self.fetcher.is_remote(&due.media);
            let (running, limit) = match remote {
                true => (&mut self.remote_running, remote_limit),
                false => (&mut self.local_running, local_limit),
            };
            if *running >= limit {
                held_back = true;
                left.push(due);
                continue;
            }
            *running += 1;
            self.start(due, remote);
        }
        self.next = left;
        Ok(held_back)
    }

    fn start(&mut self, due: DueMedia, remote: bool) {
        let media = due.media.clone();
        let (fetcher, cancel) = (self.fetcher.clone(), self.shutdown.clone());
        let task = self.running.spawn(async move { fetcher.fetch(&due, &cancel).await });
        self.started.insert(media.clone());
        self.tasks.insert(task.id(), (media, remote));
    }

    /// A download ended (its outcome is recorded and counted by the fetcher).
    fn ended(&mut self, done: Result<(Id, (Outcome, bool)), tokio::task::JoinError>) {
        let id = match &done {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        let Some((media, remote)) = self.tasks.remove(&id) else { return };
        self.started.remove(&media);
        match remote {
            true => self.remote_running -= 1,
            false => self.local_running -= 1,
        }
        if let Err(error) = done
            && error.is_panic()
        {
            // A bug: the media stays queued and is tried again.
            tracing::error!(mxc = media.mxc(), error = %error, "a media download panicked");
            self.fetcher.services().metrics.panics.get_or_create(&PanicLabel { worker: "media" }).inc();
        }
    }
}

/// The queue's heads, read at most every [`REREAD_EVERY`]: when the next
/// media is due, and the age of each priority's oldest for `/metrics`.
struct Heads {
    fetcher: Arc<MediaFetcher>,
    read_at: Option<Instant>,
    next_due: Option<i64>,
}

impl Heads {
    fn new(fetcher: Arc<MediaFetcher>) -> Self {
        Self { fetcher, read_at: None, next_due: None }
    }

    async fn next_due(&mut self) -> Option<i64> {
        if self.read_at.is_some_and(|at| at.elapsed() < REREAD_EVERY) {
            return self.next_due;
        }
        let services = self.fetcher.services();
        match services.store.media_queue_heads().await {
            Ok(heads) => {
                let now = now_ms();
                for head in &heads {
                    let age = head.age_ms(now) as f64 / 1000.0;
                    services.metrics.media_queue_oldest.get_or_create(&PriorityLabel::of(head.priority)).set(age);
                }
                self.next_due = heads.iter().filter_map(|head| head.oldest).min();
                self.read_at = Some(Instant::now());
            }
            Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot read the media queue's heads"),
        }
        self.next_due
    }
}
