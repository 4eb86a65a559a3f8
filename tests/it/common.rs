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
    finish(testbed, result).await
}

/// Shuts a testbed down, keeping its folder (both logs) when the test failed.
pub async fn finish(mut testbed: housekeep::testbed::Testbed, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if result.is_err() {
        eprintln!("testbed kept for its logs: {}", testbed.keep_dir().display());
    }
    let shutdown = testbed.shutdown().await;
    result?;
    shutdown
}

/// Sends a command into the admin room as the server admin (a moderator) and
/// returns the body of the `replies`-th reply of the bot to it: the job's
/// result for a command that runs a job (plan, progress, result), or the
/// only answer of one that does not.
pub async fn command_reply(
    testbed: &housekeep::testbed::Testbed,
    room: &str,
    command: &str,
    replies: usize,
) -> anyhow::Result<String> {
    let bot = testbed.config.bot_user_id()?.to_string();
    let event = testbed.admin.send_text(room, command).await?;
    let all = testbed.admin.wait_for_replies(room, &event, &bot, replies).await?;
    Ok(all.last().unwrap()["content"]["body"].as_str().unwrap().to_owned())
}

/// Sends a command and returns the bot's first reply to it: the plan of a
/// command that makes a job (its progress and result follow).
pub async fn first_reply(testbed: &housekeep::testbed::Testbed, room: &str, command: &str) -> anyhow::Result<String> {
    let bot = testbed.config.bot_user_id()?.to_string();
    let event = testbed.admin.send_text(room, command).await?;
    testbed.admin.wait_for_reply(room, &event, &bot).await
}

/// The value of a `key: value` line of a reply.
pub fn field<'a>(reply: &'a str, key: &str) -> &'a str {
    reply.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).unwrap_or_else(|| panic!("no {key} in {reply}"))
}

/// Waits (up to a minute) until job `id` is in `state`.
pub async fn wait_for_job(
    store: &housekeep::store::Store,
    id: &str,
    state: housekeep::store::JobState,
) -> anyhow::Result<()> {
    let what = format!("job {id} to be {}", state.as_str());
    housekeep::testbed::eventually(std::time::Duration::from_secs(60), &what, || async {
        Ok(store.job(id).await?.filter(|job| job.state == state).map(|_| ()))
    })
    .await
}

/// The job ID in a plan reply ("Plan for job abc123 (…)").
pub fn job_id(plan: &str) -> String {
    assert!(plan.starts_with("Plan for job "), "not a plan: {plan}");
    plan.split_whitespace().nth(3).expect("job id in plan").to_owned()
}

/// Everything audited about a job, oldest first.
pub async fn job_actions(
    store: &housekeep::store::Store,
    id: &str,
) -> anyhow::Result<Vec<housekeep::store::AuditRecord>> {
    let (mut actions, _) = store.job_audit(id, 100_000).await?;
    actions.reverse();
    Ok(actions)
}

pub fn items_of(audit: &[housekeep::store::AuditRecord]) -> Vec<String> {
    audit.iter().filter(|r| r.entry.action == "testjob.item").filter_map(|r| r.entry.target.clone()).collect()
}

/// Kills housekeep with SIGKILL at random moments (0.3–1.5 s apart) while
/// job `id` runs, restarting it each time, at most `kills` times; returns how
/// many kills landed before the job finished.
pub async fn kill_while_running(
    housekeep: &mut housekeep::testbed::Housekeep,
    store: &housekeep::store::Store,
    id: &str,
    kills: usize,
) -> anyhow::Result<usize> {
    use rand::Rng;
    for landed in 0..kills {
        let wait = rand::rng().random_range(300..1500);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        let running = store.job(id).await?.is_some_and(|job| job.state == housekeep::store::JobState::Running);
        if !running {
            return Ok(landed);
        }
        housekeep.kill_9().await?;
        housekeep.restart().await?;
    }
    Ok(kills)
}
