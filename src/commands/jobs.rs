//! `!jobs`, `!job <id>`, `!confirm <id>`, `!cancel <id>` (and the debug-only `!testjob`).

use clap::Args;
#[cfg(debug_assertions)]
use clap::value_parser;

#[cfg(debug_assertions)]
use super::ActionFlags;

/// Longest job ID.
pub const MAX_JOB_ID_LEN: usize = 32;

/// The job a command refers to.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JobIdArg {
    /// The job's ID, as shown in its plan and in !jobs (e.g. k3f9x2)
    #[arg(value_name = "JOB", value_parser = parse_job_id)]
    pub id: String,
}

/// Whether `id` has the shape of a job ID: 1 to 32 of `[A-Za-z0-9_-]`.
pub fn is_valid_job_id(id: &str) -> bool {
    (1..=MAX_JOB_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Job IDs are made lowercase; phones capitalise what people type.
fn parse_job_id(s: &str) -> Result<String, String> {
    if is_valid_job_id(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "a job ID is 1 to {MAX_JOB_ID_LEN} letters, digits, '_' or '-' (like k3f9x2); \
             see !jobs for the IDs"
        ))
    }
}

/// A parsed `!testjob` (debug builds only): a synthetic job that counts
/// through `items` in batches, to exercise plan/confirm/progress/cancel/resume.
#[cfg(debug_assertions)]
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct TestJobArgs {
    /// How many items the job processes (1-100000)
    #[arg(value_name = "ITEMS", value_parser = value_parser!(u32).range(1..=100_000))]
    pub items: u32,
    /// Items per batch, one checkpoint per batch (1-1000)
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// Pause after each batch, in milliseconds (0-60000), to watch progress or try !cancel
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = value_parser!(u64).range(..=60_000))]
    pub delay_ms: u64,
    /// Fail on item K (1-100000, 1-based), to exercise failure and resume; never fails if K > ITEMS
    #[arg(long, value_name = "K", value_parser = value_parser!(u32).range(1..=100_000))]
    pub fail_at: Option<u32>,
    #[command(flatten)]
    pub flags: ActionFlags,
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_errors, ok};
    use super::*;
    use crate::commands::Command;

    #[test]
    fn jobs_job_confirm_cancel() {
        let id = |s: &str| JobIdArg { id: s.to_owned() };
        assert_eq!(ok("!jobs"), Command::Jobs);
        assert_eq!(ok("!job k3f9x2"), Command::Job(id("k3f9x2")));
        assert_eq!(ok("!confirm k3f9x2"), Command::Confirm(id("k3f9x2")));
        assert_eq!(ok("!cancel K3F9X2"), Command::Cancel(id("k3f9x2")), "job IDs are lowercased");
        let longest = "a".repeat(MAX_JOB_ID_LEN);
        assert_eq!(ok(&format!("!job {longest}")), Command::Job(id(&longest)));
        assert_eq!(ok("!job a_b-9"), Command::Job(id("a_b-9")));
    }

    #[test]
    fn job_id_errors() {
        let too_long = format!("!confirm {}", "a".repeat(MAX_JOB_ID_LEN + 1));
        let table: &[(&str, &str, &str)] = &[
            ("!job", "<JOB>", "Usage: !job "),
            ("!confirm", "<JOB>", "Usage: !confirm "),
            ("!cancel", "<JOB>", "Usage: !cancel "),
            ("!job k3/f9", "invalid value 'k3/f9' for '<JOB>': a job ID is 1 to 32", "Usage: !job "),
            ("!confirm ''", "invalid value '' for '<JOB>'", "Usage: !confirm "),
            (&too_long, "a job ID is 1 to 32", "Usage: !confirm "),
            ("!cancel k3f9x2 k4", "unexpected argument 'k4'", "Usage: !cancel "),
            ("!cancel 'k3f9 x2'", "invalid value 'k3f9 x2'", "Usage: !cancel "),
            ("!jobs --all", "unexpected argument '--all'", "Usage: !jobs"),
            ("!jobs k3f9x2", "unexpected argument 'k3f9x2'", "Usage: !jobs"),
        ];
        assert_errors(table);
    }

    #[test]
    fn job_id_shape() {
        assert!(is_valid_job_id("k3f9x2"));
        assert!(!is_valid_job_id(""));
        assert!(!is_valid_job_id("k3f9x2é"));
        assert!(!is_valid_job_id("a.b"));
    }

    #[cfg(debug_assertions)]
    #[test]
    fn testjob() {
        let Command::TestJob(a) = ok("!testjob 100") else { panic!() };
        assert_eq!(a, TestJobArgs { items: 100, batch: 10, delay_ms: 0, fail_at: None, flags: ActionFlags::default() });
        let Command::TestJob(a) =
            ok("!testjob 100000 --batch 1000 --delay-ms 60000 --fail-at 7 --dry-run --reason 'try it'")
        else {
            panic!()
        };
        assert_eq!((a.items, a.batch, a.delay_ms, a.fail_at), (100_000, 1000, 60_000, Some(7)));
        assert!(a.flags.dry_run && !a.flags.yes);
        assert_eq!(a.flags.reason.as_deref(), Some("try it"));
        let Command::TestJob(a) = ok("!testjob 1 --batch 1 --yes") else { panic!() };
        assert!(a.flags.yes);

        let table: &[(&str, &str)] = &[
            ("!testjob", "<ITEMS>"),
            ("!testjob 0", "0 is not in 1..=100000"),
            ("!testjob 100001", "100001 is not in 1..=100000"),
            ("!testjob 5 --batch 0", "0 is not in 1..=1000"),
            ("!testjob 5 --batch 1001", "1001 is not in 1..=1000"),
            ("!testjob 5 --delay-ms 60001", "60001 is not in 0..=60000"),
            ("!testjob 5 --fail-at 0", "0 is not in 1..=100000"),
            ("!testjob 5 --dry-run --yes", "cannot be used with"),
        ];
        for (body, expected) in table {
            let e = super::super::test_support::err(body);
            assert!(e.message.contains(expected), "{body:?}: {:?} should contain {expected:?}", e.message);
            assert!(e.usage.as_deref().unwrap_or_default().starts_with("Usage: !testjob "), "{body:?}: {e:?}");
        }
    }
}
