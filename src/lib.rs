//! housekeep: a Matrix application service that indexes every event and media
//! reference on a homeserver and runs moderation commands from an admin room.
//!
//! The binary is a thin CLI over this library; tests and benchmarks use the
//! same pieces.

pub mod appservice;
pub mod bot;
pub mod commands;
pub mod config;
pub mod extract;
pub mod homeserver;
pub mod jobs;
pub mod metrics;
pub mod moderation;
pub mod registration;
pub mod service;
pub mod store;
pub mod testbed;
