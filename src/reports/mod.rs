//! Event reports: what users report with their client reaches the admin
//! room within one `reports.poll_interval`, with the reported sender's
//! footprint from the index and the commands that fit. Synapse keeps
//! reports but tells no one and keeps no state of them; housekeep keeps
//! theirs (`event_reports`: open, handled, dismissed).

mod command;
pub mod notice;
pub mod watch;

pub use command::{ReportAction, ReportArgs, ReportsArgs};
