//! Stats: Synapse's phone-home reports and the index's activity, summarized
//! as text and a chart, on request (`!stats`), on schedule, and offline
//! (`housekeep stats`).
//!
//! - `report.rs`: what a valid phone-home report is (ingestion is in
//!   `appservice/stats.rs`, the storage in `store/stats.rs`).
//! - `summary.rs`: the figures of a span of days, as text, JSON and a chart.
//! - `command.rs`: `!stats`, its grammar and how it runs.
//! - `chart.rs`: PNG charts of daily figures.
//! - `schedule.rs`: when scheduled summaries are due.
//! - `post.rs`: posting a summary and its chart, on request and on schedule.

pub mod chart;
mod command;
pub mod post;
pub mod report;
pub mod schedule;
pub mod summary;

pub use command::{DEFAULT_STATS_DAYS, StatsArgs};
