//! `!audit`: read the audit log.

use clap::{Args, value_parser};
use ruma::OwnedUserId;

use super::status::age;
use super::{AdminCommand, Context, Executed};
use crate::clock::now_ms;
use crate::notice::Notice;

/// Default of `!audit --limit`.
pub const DEFAULT_AUDIT_LIMIT: u32 = 20;
/// Largest `!audit --limit`.
pub const MAX_AUDIT_LIMIT: u32 = 500;

/// Show the audit log: who ran what, and how it went
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct AuditArgs {
    /// How many entries to show, newest first (1-500)
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        default_value_t = DEFAULT_AUDIT_LIMIT,
        value_parser = value_parser!(u32).range(1..=i64::from(MAX_AUDIT_LIMIT)),
    )]
    pub limit: u32,
    /// Only entries by this moderator (a user ID or matrix.to link)
    #[arg(long, value_name = "USER", value_parser = crate::grammar::parse_user)]
    pub actor: Option<OwnedUserId>,
}

impl AdminCommand for AuditArgs {
    const NAME: &'static str = "audit";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        audit(ctx, self).await
    }
}

async fn audit(ctx: &Context<'_>, args: &AuditArgs) -> anyhow::Result<Executed> {
    let actor = args.actor.as_ref().map(|a| a.as_str());
    let entries = ctx.services().store.audit_entries(i64::from(args.limit), actor).await?;
    if entries.is_empty() {
        return Ok(Executed::ok(Notice::new().line("The audit log has no matching entries.")));
    }
    let lines = entries.iter().map(|r| {
        let e = &r.entry;
        let what = e.command.as_deref().or(e.target.as_deref()).unwrap_or("");
        let job = e.job_id.as_deref().map(|j| format!(" job {j}")).unwrap_or_default();
        format!(
            "#{} {} ago {} {}{job} {what} → {}",
            r.id,
            age(now_ms().saturating_sub(r.ts)),
            e.actor,
            e.action,
            e.outcome
        )
    });
    Ok(Executed::ok(Notice::new().title(&format!("Audit log, newest first ({})", entries.len())).list(lines)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::commands::Command;
    use crate::grammar::test_support::{err, ok};

    fn audit(body: &str) -> AuditArgs {
        match ok::<Command>(body) {
            Command::Audit(args) => args,
            other => panic!("{body:?} parsed to {other:?}"),
        }
    }

    #[test]
    fn valid_forms() {
        let alice: OwnedUserId = "@alice:example.org".parse().unwrap();
        assert_eq!(audit("!audit"), AuditArgs { limit: 20, actor: None });
        assert_eq!(audit("!audit --limit 1"), AuditArgs { limit: 1, actor: None });
        assert_eq!(audit("!audit --limit 500"), AuditArgs { limit: 500, actor: None });
        assert_eq!(audit("!audit --actor @alice:example.org"), AuditArgs { limit: 20, actor: Some(alice.clone()) });
        assert_eq!(
            audit("!audit --actor https://matrix.to/#/@alice:example.org --limit 5"),
            AuditArgs { limit: 5, actor: Some(alice) }
        );
    }

    #[test]
    fn errors() {
        let table: &[(&str, &str)] = &[
            ("!audit --limit 0", "0 is not in 1..=500"),
            ("!audit --limit 501", "501 is not in 1..=500"),
            ("!audit --limit many", "invalid value 'many' for '--limit <N>'"),
            ("!audit --actor alice", "invalid value 'alice' for '--actor <USER>'"),
            ("!audit --actor alice", "expected a user ID (@alice:example.org) or a matrix.to link"),
            ("!audit --limit -5", "-5 is not in 1..=500"),
            ("!audit --actor", "a value is required for '--actor <USER>'"),
            ("!audit @alice:example.org", "unexpected argument '@alice:example.org'"),
        ];
        for (body, expected) in table {
            let e = err::<Command>(body);
            assert!(e.message.contains(expected), "{body:?}: {:?} should contain {expected:?}", e.message);
            let got = e.usage.as_deref().unwrap_or_default();
            assert!(got.starts_with("Usage: !audit "), "{body:?}: usage {got:?}");
        }
    }
}
