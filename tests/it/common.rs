//! Shared by the integration tests: run a test body once per database backend.

#![allow(dead_code)]

use std::path::Path;

pub use housekeep::store::Backend;

/// The housekeep binary cargo built for these tests.
pub fn housekeep_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_housekeep"))
}

/// `tests! { both: [a], postgres: [b], plain: [c], sync: [d] }` lists a
/// module's tests for the harness (`main.rs`); every section may be left
/// out (a section name not below fails to compile in `trial!`).
/// - `both`: `async fn a(Backend) -> anyhow::Result<()>` runs on SQLite and
///   PostgreSQL (`module::sqlite::a`, `module::postgres::a`): for what the
///   store decides (SQL, migrations, locks, faults), which differs between the two.
/// - `postgres` (or `sqlite`): the same shape, on that backend only
///   (`module::postgres::b`).
///   Behaviour that goes through Synapse runs once, there: it is the
///   stricter of the two (typed parameters, connections from a pool), so a
///   query only SQLite's loose typing lets through fails there; what SQLite
///   alone decides (its file lock, its write-ahead log) is tested in `store`
///   and `reliability`.
/// - `plain`: `async fn c()` (returning `()` or a `Result`), `module::c`.
/// - `sync`: `fn d()`, the same without a runtime.
#[macro_export]
macro_rules! tests {
    ($($section:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        #[allow(clippy::vec_init_then_push)]
        pub fn tests() -> Vec<libtest_mimic::Trial> {
            let mut trials = Vec::new();
            $($($crate::trial!(trials, $section, $name);)*)*
            trials
        }
    };
}

#[macro_export]
macro_rules! trial {
    ($trials:ident, both, $name:ident) => {
        $crate::trial!($trials, sqlite, $name);
        $crate::trial!($trials, postgres, $name);
    };
    ($trials:ident, sqlite, $name:ident) => {
        $trials.push($crate::common::trial(module_path!(), "sqlite::", stringify!($name), || {
            $name($crate::common::Backend::Sqlite)
        }));
    };
    ($trials:ident, postgres, $name:ident) => {
        $trials.push($crate::common::trial(module_path!(), "postgres::", stringify!($name), || {
            $name($crate::common::Backend::Postgres)
        }));
    };
    ($trials:ident, plain, $name:ident) => {
        $trials.push($crate::common::trial(module_path!(), "", stringify!($name), $name));
    };
    ($trials:ident, sync, $name:ident) => {
        $trials.push($crate::common::sync_trial(module_path!(), stringify!($name), $name));
    };
}

/// What a test function returns: nothing (it panics on failure) or a result.
pub trait Outcome {
    fn into_result(self) -> Result<(), libtest_mimic::Failed>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), libtest_mimic::Failed> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), libtest_mimic::Failed> {
        self.map_err(|error| format!("{error:?}").into())
    }
}

/// An async test, on a runtime of its own (what `#[tokio::test]` gives: a
/// test's leftover tasks end with it), timed for [`print_slowest`].
pub fn trial<F, Fut>(module: &str, variant: &str, name: &str, test: F) -> libtest_mimic::Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output: Outcome>,
{
    let name = test_name(module, variant, name);
    libtest_mimic::Trial::test(name.clone(), move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        timed(name, || runtime.block_on(test()).into_result())
    })
}

/// A test without a runtime.
pub fn sync_trial<F, O>(module: &str, name: &str, test: F) -> libtest_mimic::Trial
where
    F: FnOnce() -> O + Send + 'static,
    O: Outcome,
{
    let name = test_name(module, "", name);
    libtest_mimic::Trial::test(name.clone(), move || timed(name, || test().into_result()))
}

/// `admin_room::postgres::name`: the path `#[test]` functions had.
fn test_name(module: &str, variant: &str, name: &str) -> String {
    let module = module.split_once("::").map_or(module, |(_crate, path)| path);
    format!("{module}::{variant}{name}")
}

/// How long each test that ran took.
static TIMES: std::sync::Mutex<Vec<(String, std::time::Duration)>> = std::sync::Mutex::new(Vec::new());

/// Runs `test` and keeps how long it took, also when it panics.
fn timed<T>(name: String, test: impl FnOnce() -> T) -> T {
    struct Record(String, std::time::Instant);
    impl Drop for Record {
        fn drop(&mut self) {
            let time = self.1.elapsed();
            TIMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((std::mem::take(&mut self.0), time));
        }
    }
    let _record = Record(name, std::time::Instant::now());
    test()
}

/// Prints the `count` slowest tests of this run, slowest first: where the
/// suite's time goes.
pub fn print_slowest(count: usize) {
    let mut times = TIMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if times.is_empty() {
        return;
    }
    times.sort_by_key(|(_, time)| std::cmp::Reverse(*time));
    println!("slowest {} of {} tests:", count.min(times.len()), times.len());
    for (name, time) in times.iter().take(count) {
        println!("  {:>7.1} s  {name}", time.as_secs_f64());
    }
}

/// Starts housekeep on `backend` with a tenant of the shared Synapse, runs
/// `body`, and shuts everything down. On failure the testbed folder
/// (housekeep's log) is kept and its path printed.
pub async fn with_testbed(
    backend: Backend,
    body: impl AsyncFnOnce(&mut housekeep::testbed::Testbed) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    run_in(housekeep::testbed::Testbed::start(backend, housekeep_binary()).await?, body).await
}

/// [`with_testbed`] with a Synapse of its own: for a test that stops,
/// reconfigures or reads the log of the homeserver, or changes the admin
/// room's alias (a tenant's registration reserves only its own).
pub async fn with_own_testbed(
    backend: Backend,
    body: impl AsyncFnOnce(&mut housekeep::testbed::Testbed) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    run_in(housekeep::testbed::Testbed::start_own(backend, housekeep_binary()).await?, body).await
}

async fn run_in(
    mut testbed: housekeep::testbed::Testbed,
    body: impl AsyncFnOnce(&mut housekeep::testbed::Testbed) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let result = body(&mut testbed).await;
    finish(testbed, result).await
}

/// Lines of housekeep's log a failed test prints.
const LOG_TAIL: usize = 60;

/// Shuts a testbed down, keeping its folder (both logs) when the test failed.
pub async fn finish(mut testbed: housekeep::testbed::Testbed, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if result.is_err() {
        eprintln!("testbed kept for its logs: {}", testbed.keep_dir().display());
        // CI keeps only the test's output: the log's end usually says why.
        if let Ok(log) = testbed.housekeep.log() {
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("last lines of housekeep's log:");
            for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                eprintln!("  {line}");
            }
        }
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

/// Waits (up to a minute) until every one of `ids` is in the index of
/// `room`; if not, says how many are and which are missing.
pub async fn indexed(store: &housekeep::store::Store, room: &str, ids: &[String]) -> anyhow::Result<()> {
    let missing = async || -> anyhow::Result<Vec<String>> {
        let events = store.room_events(room).await?;
        let indexed: std::collections::HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        Ok(ids.iter().filter(|id| !indexed.contains(id.as_str())).cloned().collect())
    };
    let waited = housekeep::testbed::eventually(std::time::Duration::from_secs(60), "events to be indexed", || async {
        Ok(missing().await?.is_empty().then_some(()))
    })
    .await;
    if let Err(error) = waited {
        let missing = missing().await?;
        let shown = &missing[..missing.len().min(5)];
        anyhow::bail!("{error}: {} of {} indexed; missing {shown:?}…", ids.len() - missing.len(), ids.len());
    }
    Ok(())
}
