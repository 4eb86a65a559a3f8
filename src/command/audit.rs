//! `!audit`: read the audit log.

use clap::{Args, value_parser};
use ruma::OwnedUserId;

use super::status::age;
use super::{AdminCommand, Context, Executed};
use crate::clock::now_ms;
use crate::notice::Notice;
use crate::store::AuditRecord;
use crate::text;

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
    let lines = entries.iter().map(|r| audit_line(r, now_ms()));
    Ok(Executed::ok(Notice::new().title(&format!("Audit log, newest first ({})", entries.len())).list(lines)))
}

/// One entry as a line of `!audit`. Commands, targets and outcomes hold
/// what anyone in the admin room typed (a refused command is audited too):
/// each is shown on one line, cut, with hiding characters made visible.
fn audit_line(r: &AuditRecord, now: i64) -> String {
    let e = &r.entry;
    let what = e.command.as_deref().or(e.target.as_deref()).unwrap_or("");
    let job = e.job_id.as_deref().map(|j| format!(" job {j}")).unwrap_or_default();
    format!(
        "#{} {} ago {} {}{job} {} → {}",
        r.id,
        age(now.saturating_sub(r.ts)),
        text::line(&e.actor),
        e.action,
        text::line(what),
        text::line(&e.outcome)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::test_support::{err, ok};

    /// A one-command tree, as the chat front-end would make.
    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Audit(AuditArgs),
    }

    fn audit(body: &str) -> AuditArgs {
        let Tree::Audit(args) = ok::<Tree>(body);
        args
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

    /// A refused command from anyone in the admin room is audited as typed:
    /// its line breaks and direction overrides must not forge entries.
    #[test]
    fn strangers_text_stays_on_its_own_line() {
        let forged = "!status\n#999 1s ago @admin:example.org confirm job abc → confirmed\u{202e}dekcolb";
        let record = AuditRecord {
            id: 7,
            ts: 1_000,
            entry: crate::store::AuditEntry {
                actor: "@mallory:example.org".to_owned(),
                action: "refused".to_owned(),
                command: Some(format!("{forged}{}", "x".repeat(5_000))),
                outcome: "not a moderator\u{1b}[2J".to_owned(),
                ..Default::default()
            },
        };
        let line = audit_line(&record, 61_000);
        assert!(!line.contains('\n') && !line.contains('\u{202e}') && !line.contains('\u{1b}'), "{line:?}");
        assert!(line.starts_with("#7 1m ago @mallory:example.org refused !status\u{FFFD}#999"), "{line:?}");
        assert!(line.chars().count() < 2 * text::LINE_CHARS, "cut: {} characters", line.chars().count());
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
            let e = err::<Tree>(body);
            assert!(e.message.contains(expected), "{body:?}: {:?} should contain {expected:?}", e.message);
            let got = e.usage.as_deref().unwrap_or_default();
            assert!(got.starts_with("Usage: !audit "), "{body:?}: usage {got:?}");
        }
    }
}
