//! What a rule matches on this homeserver, from the index: the senders,
//! rooms and media it names, literally, by glob or by hash.
//!
//! A glob is narrowed in SQL with `LIKE` (`*` → `%`, `?` → `_`), then each
//! candidate is matched by the rule itself (`policy::matches`), which
//! decides: `LIKE` folds ASCII case on SQLite, and a server's pattern is
//! looked for anywhere after a `:`. A hashed entity (MSC4205) is compared
//! with the hash of every sender or room the index knows, up to
//! [`MAX_SCANNED`]; a hashed mxc URI (MSC4207) is looked up by the hash
//! the index keeps of each URI.

use ruma::{MxcUri, UserId};

use crate::jobs::Services;
use crate::policy::{MatchedBy, Pattern, PolicyRule, RuleKind, Target, matches};

/// Targets one rule may match: beyond it, the rest is named as cut off.
pub(super) const MAX_TARGETS: i64 = 10_000;
/// Senders or rooms hashed for one hashed rule.
pub(super) const MAX_SCANNED: i64 = 1_000_000;

/// One thing a rule matched, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Matched {
    pub id: String,
    pub by: MatchedBy,
    /// A server rule matched this user by their server's name.
    pub by_server: bool,
}

impl std::fmt::Display for Matched {
    /// `@u:spam.example (glob)`, or `(glob, by server)` for a server rule's user.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by_server = if self.by_server { ", by server" } else { "" };
        write!(f, "{} ({}{by_server})", self.id, self.by)
    }
}

/// What a rule matched here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Targets {
    pub matched: Vec<Matched>,
    /// More matched than [`MAX_TARGETS`] (or the scan stopped at [`MAX_SCANNED`]).
    pub cut_off: bool,
}

/// `pattern` as a `LIKE` pattern with `\` as its escape.
pub(super) fn like(pattern: &str) -> String {
    let mut like = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            // A run of stars is one `%` (each more would only cost time).
            '*' if like.ends_with('%') && !like.ends_with("\\%") => {}
            '*' => like.push('%'),
            '?' => like.push('_'),
            '%' | '_' | '\\' => {
                like.push('\\');
                like.push(c);
            }
            c => like.push(c),
        }
    }
    like
}

/// What `rule` matches in the index (and, for a literal user of this
/// homeserver, among its accounts).
pub(super) async fn find(services: &Services, rule: &PolicyRule) -> anyhow::Result<Targets> {
    let store = &services.store;
    // A literal names its target exactly (a room rule's alias resolved): no matching needed.
    let exactly = |ids: Vec<String>| Targets {
        matched: ids.into_iter().map(|id| Matched { id, by: MatchedBy::Literal, by_server: false }).collect(),
        cut_off: false,
    };
    let (candidates, scanned_limit) = match (rule.kind(), &rule.entity) {
        (RuleKind::User, Pattern::Literal(user)) => {
            let known = store.sender_known(user).await? || local_account(services, user).await?;
            return Ok(exactly(if known { vec![user.clone()] } else { Vec::new() }));
        }
        (RuleKind::User, Pattern::Glob(glob)) => {
            (store.senders_like(&like(glob.as_str()), false, MAX_TARGETS + 1).await?, None)
        }
        (RuleKind::Server, Pattern::Literal(server)) => {
            (store.senders_like(&format!("%:{}%", like(server)), true, MAX_TARGETS + 1).await?, None)
        }
        (RuleKind::Server, Pattern::Glob(glob)) => {
            (store.senders_like(&format!("%:{}%", like(glob.as_str())), true, MAX_TARGETS + 1).await?, None)
        }
        (RuleKind::User | RuleKind::Server, Pattern::Sha256(_)) => {
            (store.all_senders(MAX_SCANNED).await?, Some(MAX_SCANNED))
        }
        (RuleKind::Room, Pattern::Literal(room)) => return Ok(exactly(literal_room(services, room).await?)),
        (RuleKind::Room, Pattern::Glob(glob)) => (store.rooms_like(&like(glob.as_str()), MAX_TARGETS + 1).await?, None),
        (RuleKind::Room, Pattern::Sha256(_)) => (store.all_rooms(MAX_SCANNED).await?, Some(MAX_SCANNED)),
        // A rule names one media exactly: it is quarantined whether the
        // index saw it referenced or not (an upload nobody shared yet).
        (RuleKind::Media, Pattern::Literal(mxc)) => {
            let valid = <&MxcUri>::from(mxc.as_str()).is_valid();
            return Ok(exactly(if valid { vec![mxc.clone()] } else { Vec::new() }));
        }
        (RuleKind::Media, Pattern::Sha256(hash)) => {
            let media = store.media_by_uri_hash(&crate::policy::sha256_base64(hash)).await?;
            (media.into_iter().map(|m| format!("mxc://{}/{}", m.server_name, m.media_id)).collect(), None)
        }
        // Refused before it gets here (`policy::refused`).
        (RuleKind::Media, Pattern::Glob(_)) => (Vec::new(), None),
    };
    let scan_full = scanned_limit.is_some_and(|limit| candidates.len() as i64 >= limit);
    fn target(kind: RuleKind, id: &str) -> Target<'_> {
        match kind {
            RuleKind::User | RuleKind::Server => Target::User(id),
            RuleKind::Room => Target::Room(id),
            RuleKind::Media => Target::Media(id),
        }
    }
    let mut matched: Vec<Matched> = candidates
        .into_iter()
        .filter_map(|id| {
            let found = matches(rule, target(rule.kind(), id.as_str()))?;
            Some(Matched { by: found.by, by_server: found.server_of_user.is_some(), id })
        })
        .collect();
    let cut_off = scan_full || matched.len() as i64 > MAX_TARGETS;
    matched.truncate(MAX_TARGETS as usize);
    Ok(Targets { matched, cut_off })
}

/// Whether `user` is an account of this homeserver (a rule may name a
/// local account that sent nothing yet: it is still sanctioned).
async fn local_account(services: &Services, user: &str) -> anyhow::Result<bool> {
    let Ok(user_id) = UserId::parse(user) else { return Ok(false) };
    if user_id.server_name().as_str() != services.server_name() {
        return Ok(false);
    }
    Ok(services.homeserver.account_status(user).await?.is_some())
}

/// A room rule naming one room: by ID if the index or the homeserver
/// knows it, by alias if the alias resolves (to a room this homeserver
/// has: the takedown acts here only).
async fn literal_room(services: &Services, room: &str) -> anyhow::Result<Vec<String>> {
    let room_id = if room.starts_with('#') {
        match services.homeserver.resolve_room(room).await {
            Ok(room_id) => room_id.to_string(),
            Err(error) => {
                tracing::info!(room, %error, "a room rule's alias does not resolve; nothing to take down");
                return Ok(Vec::new());
            }
        }
    } else {
        room.to_owned()
    };
    let known = services.store.room_known(&room_id).await?
        || services.homeserver.room_details(&room_id).await.ok().flatten().is_some();
    Ok(if known { vec![room_id] } else { Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_like_patterns_with_like_s_own_wildcards_escaped() {
        assert_eq!(like("@spam*:example.org"), "@spam%:example.org");
        assert_eq!(like("@a?c:x"), "@a_c:x");
        assert_eq!(like("@a***b*:x"), "@a%b%:x");
        assert_eq!(like("%*"), "\\%%");
        assert_eq!(like("@50%_off\\:x"), "@50\\%\\_off\\\\:x");
    }
}
