//! The integration tests: one binary (one link on a 2-core machine), one
//! module per topic. Most run against a real Synapse (from PyPI) and a real
//! database, each test once on SQLite and once on PostgreSQL.

#[macro_use]
mod common;

mod admin_room;
mod appservice_http;
mod backfill;
mod browser;
mod cli;
mod dashboard;
mod homeserver_client;
mod live_index;
mod moderation_safety;
mod purge;
mod quarantine;
mod reliability;
mod runner;
mod startup;
mod stats;
mod store;
