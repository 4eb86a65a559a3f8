//! The integration tests: one binary (one link on a 2-core machine), one
//! module per topic. Most run against a real Synapse (from PyPI) and a real
//! database. What the store decides runs on SQLite and on PostgreSQL; what
//! goes through Synapse runs once, on PostgreSQL, but for an end-to-end smoke
//! on both (index, quarantine, purge): each module's comment says which.
//!
//! The harness is libtest-mimic's (`harness = false` in Cargo.toml): it
//! takes the usual arguments (a filter, `--exact`, `--test-threads`,
//! `--list`) and prints the usual summary, then the slowest tests, so the
//! time the suite takes stays in sight. Each module lists its tests with
//! `tests!` (see `common`).

#[macro_use]
mod common;

mod admin_room;
mod appservice_http;
mod backfill;
mod browser;
mod cleanup;
mod cli;
mod dashboard;
mod e2ee;
mod homeserver_client;
mod live_index;
mod media_queue;
mod moderation_safety;
mod policy;
mod purge;
mod quarantine;
mod reliability;
mod reports;
mod room;
mod runner;
mod sanction;
mod startup;
mod stats;
mod store;

/// Tests at once by default: most of a test's time is spent waiting for
/// Synapse and housekeep, which are processes of their own, so more tests
/// than cores keep the cores busy. `--test-threads` or `RUST_TEST_THREADS`
/// choose another number.
const DEFAULT_TEST_THREADS: usize = 4;

fn main() -> std::process::ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    let from_env = std::env::var("RUST_TEST_THREADS").ok().and_then(|n| n.parse().ok());
    args.test_threads = args.test_threads.or(from_env).or(Some(DEFAULT_TEST_THREADS));
    let tests = [
        admin_room::tests(),
        appservice_http::tests(),
        backfill::tests(),
        browser::tests(),
        cleanup::tests(),
        cli::tests(),
        dashboard::tests(),
        e2ee::tests(),
        homeserver_client::tests(),
        live_index::tests(),
        media_queue::tests(),
        moderation_safety::tests(),
        policy::tests(),
        purge::tests(),
        quarantine::tests(),
        reliability::tests(),
        reports::tests(),
        room::tests(),
        runner::tests(),
        sanction::tests(),
        startup::tests(),
        stats::tests(),
        store::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let conclusion = libtest_mimic::run(&args, tests);
    common::print_slowest(15);
    if conclusion.has_failed() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        runtime.block_on(housekeep::testbed::keep_shared_synapse_logs());
    }
    conclusion.exit_code()
}
