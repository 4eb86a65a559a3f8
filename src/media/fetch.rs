//! Downloading one media: streamed through SHA-256 (never held whole in
//! memory, never written to disk), with its size and type recorded.
//!
//! Shared by the live media worker and backfill's chunks: one concurrency
//! limit for both, and a media fetched by one is not fetched by the other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::homeserver::HsError;
use crate::jobs::Services;
use crate::metrics::FetchLabel;
use crate::store::{DueMedia, FetchState, Fetched, MediaId};

/// The longest a failed download waits before its next attempt.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// How downloads are made.
#[derive(Debug, Clone, Copy)]
pub struct FetchConfig {
    pub concurrency: usize,
    /// The longest one download may take.
    pub timeout: Duration,
    /// A download that receives nothing for this long is stopped.
    pub stall: Duration,
    /// Failed attempts before a download is abandoned.
    pub max_attempts: u32,
    /// The wait after the first failure; each further one waits four times longer.
    pub retry_delay: Duration,
}

/// How one download went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fetched,
    /// 404: quarantined or gone; not retried.
    Unavailable,
    /// Failed; tried again later.
    Failed,
    /// Failed for the last allowed time.
    Abandoned,
    /// Being fetched by someone else right now.
    Busy,
    /// Stopped by a cancel or shutdown; nothing recorded, it stays due.
    Cancelled,
}

/// Counts of a group of downloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchCounts {
    pub fetched: i64,
    pub unavailable: i64,
    pub failed: i64,
    pub abandoned: i64,
    pub stalled: i64,
}

/// Why a download did not give a file.
enum Failure {
    Unavailable(String),
    /// This homeserver's media, created but not uploaded yet.
    NotYetUploaded(String),
    Retry(String),
    Stalled(Duration),
    Cancelled,
}

pub struct MediaFetcher {
    services: Services,
    config: FetchConfig,
    permits: Semaphore,
    /// Taken by remote downloads before `permits`: one fewer than
    /// `permits`, so that however many slow remote servers there are
    /// (their names cost an attacker nothing), a slot is always left for
    /// this homeserver's own media, the uploads the blocklist watches for.
    remote_permits: Semaphore,
    in_flight: Mutex<HashSet<MediaId>>,
    /// Downloads at once per remote server: one slow or hostile server (a
    /// single event can name hundreds of its media) must not take every
    /// slot, and with it the blocklist's view of new uploads.
    per_server: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// At most this many downloads from one remote server at once.
const PER_REMOTE_SERVER: usize = 4;

/// Remote downloads at once out of `concurrency`: all but one (with one
/// slot in all, that one).
fn remote_limit(concurrency: usize) -> usize {
    concurrency.saturating_sub(1).max(1)
}

/// A remote server's download slots, held while one of its media is
/// fetched; the server is forgotten when nobody downloads from it any more,
/// so the map stays as small as the servers in flight.
struct ServerSlots<'a> {
    fetcher: &'a MediaFetcher,
    server: &'a str,
    slots: Arc<Semaphore>,
}

impl<'a> ServerSlots<'a> {
    fn take(fetcher: &'a MediaFetcher, media: &'a MediaId) -> Self {
        let mut servers = fetcher.per_server.lock().expect("not poisoned");
        let slots = servers
            .entry(media.server_name.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_REMOTE_SERVER)))
            .clone();
        Self { fetcher, server: &media.server_name, slots }
    }
}

impl Drop for ServerSlots<'_> {
    fn drop(&mut self) {
        let mut servers = self.fetcher.per_server.lock().expect("not poisoned");
        // Ours and the map's: nobody else holds it.
        if servers.get(self.server).is_some_and(|slots| Arc::strong_count(slots) == 2) {
            servers.remove(self.server);
        }
    }
}

/// Marks a media as being fetched until dropped.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<MediaId>>,
    media: MediaId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().expect("not poisoned").remove(&self.media);
    }
}

impl MediaFetcher {
    pub fn new(services: Services, config: FetchConfig) -> Arc<Self> {
        Arc::new(Self {
            permits: Semaphore::new(config.concurrency),
            remote_permits: Semaphore::new(remote_limit(config.concurrency)),
            in_flight: Mutex::new(HashSet::new()),
            per_server: Mutex::new(HashMap::new()),
            services,
            config,
        })
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Remote downloads at once at most (across all callers).
    pub fn remote_limit(&self) -> usize {
        remote_limit(self.config.concurrency)
    }

    /// Whether a media is on another server than this homeserver.
    pub fn is_remote(&self, media: &MediaId) -> bool {
        media.server_name != self.services.server_name()
    }

    /// Whether someone (the worker, a backfill) is downloading it now.
    pub fn is_in_flight(&self, media: &MediaId) -> bool {
        self.in_flight.lock().expect("not poisoned").contains(media)
    }

    /// How many downloads are in flight now.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.lock().expect("not poisoned").len()
    }

    /// Downloads each media, `concurrency` at a time (shared with every other
    /// caller), and records the outcome. Returns when all are done or `cancel` fires.
    pub async fn fetch_all(&self, media: Vec<DueMedia>, cancel: &CancellationToken) -> FetchCounts {
        let outcomes: Vec<(Outcome, bool)> = futures::stream::iter(media)
            .map(|due| async move { self.fetch(&due, cancel).await })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let mut counts = FetchCounts::default();
        for (outcome, stalled) in outcomes {
            counts.stalled += i64::from(stalled);
            match outcome {
                Outcome::Fetched => counts.fetched += 1,
                Outcome::Unavailable => counts.unavailable += 1,
                Outcome::Failed => counts.failed += 1,
                Outcome::Abandoned => counts.abandoned += 1,
                Outcome::Busy | Outcome::Cancelled => {}
            }
        }
        counts
    }

    /// One download and its record; the bool says whether it stalled.
    pub async fn fetch(&self, due: &DueMedia, cancel: &CancellationToken) -> (Outcome, bool) {
        let media = &due.media;
        if !self.in_flight.lock().expect("not poisoned").insert(media.clone()) {
            return (Outcome::Busy, false);
        }
        let _in_flight = InFlight { set: &self.in_flight, media: media.clone() };
        let server = self.is_remote(media).then(|| ServerSlots::take(self, media));
        let server_permit = match &server {
            Some(server) => tokio::select! {
                permit = server.slots.acquire() => Some(permit),
                _ = cancel.cancelled() => return (Outcome::Cancelled, false),
            },
            None => None,
        };
        if matches!(server_permit, Some(Err(_))) {
            return (Outcome::Cancelled, false);
        }
        let remote_permit = match &server {
            Some(_) => tokio::select! {
                permit = self.remote_permits.acquire() => Some(permit),
                _ = cancel.cancelled() => return (Outcome::Cancelled, false),
            },
            None => None,
        };
        if matches!(remote_permit, Some(Err(_))) {
            return (Outcome::Cancelled, false);
        }
        let permit = tokio::select! {
            permit = self.permits.acquire() => permit,
            _ = cancel.cancelled() => return (Outcome::Cancelled, false),
        };
        let Ok(_permit) = permit else { return (Outcome::Cancelled, false) };
        let result = self.download(media, cancel).await;
        let metrics = &self.services.metrics;
        let outcome = match result {
            Ok(fetched) => match self.services.store.record_fetched(media, &fetched).await {
                Ok(()) => {
                    metrics.media_bytes.inc_by(fetched.size.max(0) as u64);
                    // A blocked file: the media worker's next round (now)
                    // quarantines it, from the committed record.
                    if !matches!(self.services.store.blocked_hash(&fetched.sha256).await, Ok(None)) {
                        self.services.media_wake.notify_one();
                    }
                    (Outcome::Fetched, false)
                }
                Err(error) => self.failed(due, &format!("downloaded but not recorded: {error:#}"), false).await,
            },
            Err(Failure::Cancelled) => (Outcome::Cancelled, false),
            Err(Failure::Unavailable(reason)) => {
                tracing::info!(mxc = media.mxc(), reason, "media not downloadable (quarantined or gone); not retried");
                if let Err(error) = self.services.store.record_unavailable(media, &reason).await {
                    tracing::warn!(mxc = media.mxc(), error = format!("{error:#}"), "cannot record it");
                }
                (Outcome::Unavailable, false)
            }
            Err(Failure::Stalled(idle)) => {
                metrics.media_stalls.inc();
                let reason = format!("stalled: nothing received for {}", humantime::format_duration(idle));
                self.failed(due, &reason, true).await
            }
            Err(Failure::Retry(reason)) => self.failed(due, &reason, false).await,
            Err(Failure::NotYetUploaded(reason)) => {
                // Asked again every media.retry_delay, however often: that
                // is no failure of the download, and it ends with the upload.
                let again = self.config.retry_delay;
                tracing::info!(mxc = media.mxc(), reason, "media not uploaded yet; asking again in {again:?}");
                let next = now_ms() + again.as_millis() as i64;
                if let Err(error) = self.services.store.record_not_yet_uploaded(media, &reason, next).await {
                    tracing::warn!(mxc = media.mxc(), error = format!("{error:#}"), "cannot record it");
                }
                (Outcome::Failed, false)
            }
        };
        let label = match outcome.0 {
            Outcome::Fetched => "fetched",
            Outcome::Unavailable => "unavailable",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
            Outcome::Busy | Outcome::Cancelled => return outcome,
        };
        metrics.media_downloads.get_or_create(&FetchLabel { outcome: label }).inc();
        outcome
    }

    /// Records a failure: retried with backoff, or abandoned at the limit.
    async fn failed(&self, due: &DueMedia, reason: &str, stalled: bool) -> (Outcome, bool) {
        let media = &due.media;
        let attempt = due.failures + 1;
        let next = now_ms()
            + crate::clock::retry_delay(self.config.retry_delay, MAX_RETRY_DELAY, due.failures).as_millis() as i64;
        let max = i64::from(self.config.max_attempts);
        match self.services.store.record_fetch_failure(media, reason, next, max).await {
            Ok(FetchState::Abandoned) => {
                tracing::warn!(mxc = media.mxc(), attempt, reason, "media download abandoned after {max} attempts");
                (Outcome::Abandoned, stalled)
            }
            Ok(_) => {
                tracing::info!(mxc = media.mxc(), attempt, max, reason, "media download failed; will retry");
                (Outcome::Failed, stalled)
            }
            Err(error) => {
                tracing::warn!(
                    mxc = media.mxc(),
                    error = format!("{error:#}"),
                    reason,
                    "cannot record a failed download"
                );
                (Outcome::Failed, stalled)
            }
        }
    }

    async fn download(&self, media: &MediaId, cancel: &CancellationToken) -> Result<Fetched, Failure> {
        let homeserver = &self.services.homeserver;
        let request = homeserver.download_media(&media.server_name, &media.media_id, self.config.timeout);
        let response = tokio::select! {
            response = request => response,
            _ = cancel.cancelled() => return Err(Failure::Cancelled),
        };
        let local = media.server_name == self.services.server_name();
        let response = match response {
            Ok(response) => response,
            // Only the homeserver's own media is final at 404 (quarantined or
            // deleted): a remote server answering 404 once could otherwise
            // keep a file from ever being hashed, and so from the blocklist.
            Err(HsError::Matrix { status, errcode, error, .. })
                if status == reqwest::StatusCode::NOT_FOUND && errcode == "M_NOT_FOUND" && local =>
            {
                return Err(Failure::Unavailable(format!("{status} {errcode}: {error}")));
            }
            Err(HsError::Matrix { status, errcode, error, .. }) if errcode == "M_NOT_YET_UPLOADED" && local => {
                return Err(Failure::NotYetUploaded(format!("{status} {errcode}: {error}")));
            }
            Err(HsError::Matrix { errcode, .. }) if errcode == "M_UNRECOGNIZED" => {
                tracing::warn!(
                    homeserver = %homeserver.base_url(),
                    "the homeserver does not know the authenticated media download endpoint; check that \
                     homeserver.url points at the process that serves media (Synapse 1.111 or later)"
                );
                return Err(Failure::Retry(
                    "the homeserver has no authenticated media download (M_UNRECOGNIZED)".to_owned(),
                ));
            }
            Err(error) => return Err(Failure::Retry(error.to_string())),
        };
        let mimetype = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(255).collect::<String>());
        let mut stream = response.bytes_stream();
        let mut hasher = Sha256::new();
        let mut size: i64 = 0;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(self.config.stall, stream.next()) => next,
                _ = cancel.cancelled() => return Err(Failure::Cancelled),
            };
            match next {
                Err(_) => return Err(Failure::Stalled(self.config.stall)),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(Failure::Retry(format!("download interrupted: {error}"))),
                Ok(Some(Ok(chunk))) => {
                    hasher.update(&chunk);
                    size += chunk.len() as i64;
                }
            }
        }
        Ok(Fetched { sha256: hex::encode(hasher.finalize()), size, mimetype })
    }
}
