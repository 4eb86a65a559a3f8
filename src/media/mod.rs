//! The media worker: every media an indexed event references is downloaded
//! once, streamed through SHA-256 (nothing held whole in memory, nothing
//! written to disk), and its hash, size and type recorded, so media can be
//! found by content (`!quarantine hash`) and a blocklisted file is
//! quarantined wherever it turns up.
//!
//! - `fetch.rs`: one download, shared concurrency limit, failures with backoff.
//! - `worker.rs`: the queue, most urgent first (`store::QueuePriority`),
//!   a pipeline of downloads.
//! - `blocklist.rs`: the hash blocklist and `!blocklist`.
//!
//! Backfill uses the same fetcher for the media of each chunk it reads.

pub mod blocklist;
mod fetch;
pub mod worker;

pub use fetch::{FetchConfig, FetchCounts, MediaFetcher, Outcome};
