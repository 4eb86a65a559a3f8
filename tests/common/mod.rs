//! Shared by the integration tests: run a test body once per database backend.

#![allow(dead_code)]

use std::path::Path;

pub use housekeep::config::Backend;

/// The housekeep binary cargo built for these tests.
pub fn housekeep_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_housekeep"))
}

/// `on_both_backends!(name, …)` turns each `async fn name(Backend) -> anyhow::Result<()>`
/// into two tests, `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await.unwrap();
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await.unwrap();
                }
            )*
        }
    };
}

/// Starts Synapse + housekeep on `backend`, runs `body`, and shuts everything
/// down. On failure the testbed folder (both logs) is kept and its path printed.
pub async fn with_testbed(
    backend: Backend,
    body: impl AsyncFnOnce(&mut housekeep::testbed::Testbed) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut testbed = housekeep::testbed::Testbed::start(backend, housekeep_binary()).await?;
    let result = body(&mut testbed).await;
    if result.is_err() {
        eprintln!("testbed kept for its logs: {}", testbed.keep_dir().display());
    }
    let shutdown = testbed.shutdown().await;
    result?;
    shutdown
}
