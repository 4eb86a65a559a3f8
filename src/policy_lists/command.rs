//! `!policy`: watch and unwatch lists, list them, apply a list's standing
//! rules, and say which rules match something.

use clap::{Args, Subcommand};
use ruma::OwnedRoomOrAliasId;

use super::rule::{HANDLING, act};
use super::watch::{unwatch, watch};
use super::{outcome, parsed};
use crate::clock::format_ms;
use crate::command::{AdminCommand, Context, Executed};
use crate::config::ListAction;
use crate::grammar::parse_room;
use crate::notice::Notice;
use crate::policy::{Target, matches};
use crate::store::StoredRule;
use crate::text::line;

/// Shown at the end of `!help policy`.
pub const EXAMPLES: &str = "\
Examples:
  !policy watch #community-bans:matrix.org
  !policy watch #our-bans:example.org --auto
  !policy lists
  !policy match @spammer:example.org
  !policy match spam.example
  !policy apply #community-bans:matrix.org
  !policy unwatch #community-bans:matrix.org";

/// Rules `!policy apply` plans at once (each posts its own plan): the rest
/// wait for the command to be sent again.
const APPLY_AT_ONCE: usize = 10;
/// Rules `!policy match` names.
const MATCH_LINES: usize = 30;

/// Watch ban lists (policy lists) and turn their rules into cleanup plans
///
/// A watched list's rules as they are when it is first watched make no
/// plans (!policy apply plans them); every rule added or changed after
/// is planned within a second: a user rule → !cleanup of each matching
/// user, a server rule → a purge of what its users sent, a room rule →
/// a room takedown, a media rule → a quarantine. The plan waits for ✅,
/// unless the list is --auto (then it runs at once when it is within
/// admin.confirm_threshold and can be undone). Lists may also be set in
/// the config (policy.lists).
#[derive(Clone, Debug, PartialEq, Eq, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub action: PolicyAction,
}

#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum PolicyAction {
    /// Watch a list: join it (over federation if it is elsewhere) and read its rules
    Watch {
        /// The list's room: an ID, an alias or a matrix.to link
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
        /// Run new rules' plans at once when within admin.confirm_threshold (default: wait for ✅)
        #[arg(long)]
        auto: bool,
    },
    /// Stop watching a list (plans made from it stay)
    Unwatch {
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
    },
    /// The watched lists, with their rules and what came of them
    Lists,
    /// Plan a list's standing rules: those it held when first watched, and those held back while it sent too many (ten at a time)
    Apply {
        #[arg(value_name = "ROOM", value_parser = parse_room)]
        room: OwnedRoomOrAliasId,
    },
    /// Which rules of the watched lists match a user, a server, a room or an mxc URI, and how
    Match {
        /// @user:server, a server name, !room:server or #alias:server, or mxc://server/id
        #[arg(value_name = "ENTITY")]
        entity: String,
    },
}

impl AdminCommand for PolicyArgs {
    const NAME: &'static str = "policy";

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        match &self.action {
            PolicyAction::Watch { room, auto } => watch_command(ctx, room.as_str(), *auto).await,
            PolicyAction::Unwatch { room } => unwatch_command(ctx, room.as_str()).await,
            PolicyAction::Lists => lists(ctx).await,
            PolicyAction::Apply { room } => apply(ctx, room.as_str()).await,
            PolicyAction::Match { entity } => match_command(ctx, entity).await,
        }
    }
}

async fn watch_command(ctx: &Context<'_>, room: &str, auto: bool) -> anyhow::Result<Executed> {
    let action = if auto { ListAction::Auto } else { ListAction::Plan };
    let watched = watch(ctx.services(), room, action, "command", &ctx.item.sender).await?;
    let prefix = ctx.prefix();
    let named = if room == watched.room_id { line(room) } else { format!("{} ({})", line(room), watched.room_id) };
    let reply = match watched.first_read_rules {
        Some(0) => Notice::new().line(&format!(
            "Watching {named}, action {}. It holds no rules yet; new and changed rules will make plans.",
            action.as_str()
        )),
        Some(rules) => Notice::new().line(&format!(
            "Watching {named}, action {}. The {rules} rules it holds now made no plans ({prefix}policy apply {} \
             plans them); new and changed rules will.",
            action.as_str(),
            line(room),
        )),
        None => Notice::new().line(&format!(
            "Already watching {named}; action is now {}.{}",
            action.as_str(),
            if watched.queued > 0 { format!(" {} changed rules were queued.", watched.queued) } else { String::new() }
        )),
    };
    let audit =
        crate::store::AuditEntry { target: Some(watched.room_id), ..ctx.audit("policy.watch", action.as_str()) };
    Ok(Executed::with_outcome(reply, "watching").audited(audit))
}

async fn unwatch_command(ctx: &Context<'_>, room: &str) -> anyhow::Result<Executed> {
    let room_id = ctx.services().homeserver.resolve_room(room).await?.to_string();
    if !unwatch(ctx.services(), &room_id).await? {
        return Ok(Executed::with_outcome(
            Notice::new().line(&format!(
                "{} is not watched. {}policy lists shows the lists.",
                line(room),
                ctx.prefix()
            )),
            "not watched",
        ));
    }
    let configured = ctx.rules.policy_config.lists.iter().any(|entry| entry.room() == room || entry.room() == room_id);
    let mut reply =
        Notice::new().line(&format!("No longer watching {} ({room_id}). Plans made from it stay.", line(room)));
    if configured {
        reply =
            reply.line("It is in the config's policy.lists: remove it there too, or the next start watches it again.");
    }
    let audit = crate::store::AuditEntry { target: Some(room_id), ..ctx.audit("policy.unwatch", "ok") };
    Ok(Executed::ok(reply).audited(audit))
}

async fn lists(ctx: &Context<'_>) -> anyhow::Result<Executed> {
    let store = &ctx.services().store;
    let lists = store.policy_lists().await?;
    if lists.is_empty() {
        return Ok(Executed::ok(Notice::new().line(&format!(
            "No policy lists are watched. {}policy watch <room> watches one (or set policy.lists in the config).",
            ctx.prefix()
        ))));
    }
    let mut lines = Vec::new();
    for list in &lists {
        let active = store.count_policy_rules(&list.room_id).await?;
        let read = list
            .baseline_at
            .map_or_else(|| "not read yet (retrying)".to_owned(), |at| format!("read {}", format_ms(at)));
        lines.push(format!(
            "{} ({}): action {}, {active} rules, {} new rules seen, {} plans made, {} run by itself; {read}",
            line(&list.name),
            list.room_id,
            list.action,
            list.rules_seen,
            list.plans_made,
            list.actions_run,
        ));
    }
    Ok(Executed::ok(Notice::new().title(&format!("Watched policy lists ({}):", lists.len())).list(lines)))
}

async fn apply(ctx: &Context<'_>, room: &str) -> anyhow::Result<Executed> {
    let services = ctx.services();
    let room_id = services.homeserver.resolve_room(room).await?.to_string();
    let Some(list) = services.store.policy_list(&room_id).await? else {
        return Ok(Executed::with_outcome(
            Notice::new().line(&format!(
                "{} is not watched: {}policy watch {} first.",
                line(room),
                ctx.prefix(),
                line(room)
            )),
            "not watched",
        ));
    };
    let _one_at_a_time = HANDLING.lock().await;
    let standing: Vec<StoredRule> = services
        .store
        .policy_rules(Some(&room_id))
        .await?
        .into_iter()
        .filter(|rule| outcome::is_standing(rule.outcome.as_deref()))
        .collect();
    let (mut planned, mut nothing) = (0, 0);
    let mut looked_at = 0;
    for stored in standing.iter().take(APPLY_AT_ONCE) {
        looked_at += 1;
        let Some(rule) = parsed(stored) else { continue };
        if !services.store.reopen_policy_rule(stored).await? {
            continue;
        }
        let (what, jobs, actions) = if rule.recommendation.is_acted_on() {
            act(ctx, &list, stored, &rule, std::time::Instant::now()).await?
        } else {
            let why = format!("recommendation {}", line(rule.recommendation.as_str()));
            (outcome::with(outcome::IGNORED, &why), Vec::new(), 0)
        };
        if jobs.is_empty() {
            nothing += 1;
        } else {
            planned += 1;
        }
        services.store.finish_policy_rule(stored, &what, &jobs, actions, false).await?;
    }
    let left = standing.len() - looked_at;
    let auto =
        if list.action == "auto" { " (the list is auto: those within admin.confirm_threshold run now)" } else { "" };
    let mut reply = Notice::new().line(&format!(
        "{looked_at} of {}'s standing rules looked at: {planned} planned, each with its own plan{auto}; \
         {nothing} matched nothing here or were refused.",
        line(room)
    ));
    if left > 0 {
        reply = reply.line(&format!(
            "{left} more wait: send {}policy apply {} again for the next {APPLY_AT_ONCE}.",
            ctx.prefix(),
            line(room)
        ));
    }
    let audit =
        crate::store::AuditEntry { target: Some(room_id), ..ctx.audit("policy.apply", &format!("{planned} planned")) };
    Ok(Executed::with_outcome(reply, format!("{planned} planned")).audited(audit))
}

async fn match_command(ctx: &Context<'_>, entity: &str) -> anyhow::Result<Executed> {
    let entity = entity.trim();
    let target = if entity.starts_with('@') {
        Target::User(entity)
    } else if entity.starts_with('!') || entity.starts_with('#') {
        Target::Room(entity)
    } else if entity.starts_with("mxc://") {
        Target::Media(entity)
    } else {
        Target::Server(entity)
    };
    let store = &ctx.services().store;
    let names: std::collections::HashMap<String, String> =
        store.policy_lists().await?.into_iter().map(|list| (list.room_id, list.name)).collect();
    let mut found = Vec::new();
    for stored in store.policy_rules(None).await? {
        let Some(rule) = parsed(&stored) else { continue };
        let Some(how) = matches(&rule, target) else { continue };
        let via_server = how.server_of_user.map(|server| format!(" (as a user of {server})")).unwrap_or_default();
        found.push(format!(
            "{}: {} {} → {} ({}), by {}{via_server}{}",
            line(names.get(&stored.list_room_id).unwrap_or(&stored.list_room_id)),
            stored.rule_type,
            line(&stored.state_key),
            line(&rule.entity.to_string()),
            line(rule.recommendation.as_str()),
            how.by,
            rule.reason.as_deref().map(|reason| format!("; reason: {}", line(reason))).unwrap_or_default(),
        ));
    }
    let shown = line(entity);
    if found.is_empty() {
        return Ok(Executed::ok(Notice::new().line(&format!("No rule of a watched list matches {shown}."))));
    }
    let total = found.len();
    found.truncate(MATCH_LINES);
    let mut reply = Notice::new().title(&format!("Rules matching {shown} ({total}):")).list(found);
    if total > MATCH_LINES {
        reply = reply.line(&format!("and {} more", total - MATCH_LINES));
    }
    Ok(Executed::ok(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Subcommand, Debug)]
    enum Tree {
        Policy(PolicyArgs),
    }

    fn policy(body: &str) -> PolicyAction {
        let Tree::Policy(args) = crate::grammar::test_support::ok::<Tree>(body);
        args.action
    }

    #[test]
    fn each_subcommand_parses() {
        assert!(matches!(policy("!policy watch #bans:example.org --auto"), PolicyAction::Watch { auto: true, .. }));
        assert!(matches!(policy("!policy watch !abc:example.org"), PolicyAction::Watch { auto: false, .. }));
        assert!(matches!(policy("!policy unwatch #bans:example.org"), PolicyAction::Unwatch { .. }));
        assert_eq!(policy("!policy lists"), PolicyAction::Lists);
        assert!(matches!(policy("!policy apply #bans:example.org"), PolicyAction::Apply { .. }));
        assert_eq!(policy("!policy match spam.example"), PolicyAction::Match { entity: "spam.example".into() });
    }

    #[test]
    fn bad_input_says_what_was_wrong() {
        crate::grammar::test_support::assert_errors::<Tree>(&[
            ("!policy", "requires a subcommand", "Usage: !policy "),
            ("!policy watch bans", "room", "Usage: !policy watch "),
            ("!policy frobnicate", "unrecognized subcommand", "Usage: !policy "),
        ]);
    }
}
