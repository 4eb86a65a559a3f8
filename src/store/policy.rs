//! `policy_lists` and `policy_rules`: the ban lists housekeep watches, and
//! the rule each (kind, state key) slot of a list held when housekeep last
//! handled it. Also the index reads a rule is matched with: the senders and
//! rooms the index knows, by a `LIKE` pattern or all of them (for hashed
//! entities), bounded.

use super::Store;

const UPSERT_LIST: &str = "INSERT INTO policy_lists (room_id, name, action, source, added_by, added_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id) DO UPDATE SET name = excluded.name, \
     action = excluded.action, source = excluded.source";
const LIST_COLUMNS: &str = "SELECT room_id, name, action, source, added_by, added_at, baseline_at, rules_seen, plans_made, actions_run \
     FROM policy_lists";
const DELETE_LIST: &str = "DELETE FROM policy_lists WHERE room_id = $1";
const DELETE_LIST_RULES: &str = "DELETE FROM policy_rules WHERE list_room_id = $1";
const SET_BASELINE: &str = "UPDATE policy_lists SET baseline_at = $2 WHERE room_id = $1";
const RULE_COLUMNS: &str = "SELECT list_room_id, kind, state_key, rule_type, event_id, sender, content, content_hash, \
     updated_at, outcome, jobs FROM policy_rules";
const INSERT_BASELINE_RULE: &str = "INSERT INTO policy_rules (list_room_id, kind, state_key, rule_type, event_id, \
     sender, content, content_hash, updated_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (list_room_id, kind, state_key) DO NOTHING";
/// A new or changed rule: written with no outcome (it is being handled).
/// The same content again changes nothing (`RETURNING` then gives no row).
const CLAIM_RULE: &str = "INSERT INTO policy_rules (list_room_id, kind, state_key, rule_type, event_id, sender, \
     content, content_hash, updated_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (list_room_id, kind, state_key) DO UPDATE SET rule_type = excluded.rule_type, \
     event_id = excluded.event_id, sender = excluded.sender, content = excluded.content, \
     content_hash = excluded.content_hash, updated_at = excluded.updated_at, outcome = NULL, jobs = NULL \
     WHERE policy_rules.content_hash <> excluded.content_hash RETURNING 1 AS claimed";
const FINISH_RULE: &str = "UPDATE policy_rules SET outcome = $5, jobs = $6 \
     WHERE list_room_id = $1 AND kind = $2 AND state_key = $3 AND content_hash = $4 AND outcome IS NULL";
/// A standing rule (`baseline` or `held`: `policy_lists::outcome`) claimed for `!policy apply`.
/// Rules in force in a list (not removed, not malformed: `policy_lists::outcome`).
const COUNT_RULES: &str = "SELECT COUNT(*) FROM policy_rules WHERE list_room_id = $1 \
     AND (outcome IS NULL OR (outcome <> 'removed' AND outcome NOT LIKE 'malformed%'))";
const REOPEN_STANDING: &str = "UPDATE policy_rules SET outcome = NULL \
     WHERE list_room_id = $1 AND kind = $2 AND state_key = $3 AND content_hash = $4 \
     AND outcome IN ('baseline', 'held')";
const COUNT_RULE: &str = "UPDATE policy_lists SET rules_seen = rules_seen + $4, plans_made = plans_made + $2, \
     actions_run = actions_run + $3 WHERE room_id = $1";
/// Senders by a `LIKE` pattern (`\` escapes), distinct, bounded. SQLite's
/// `LIKE` folds ASCII case and PostgreSQL's does not (`ILIKE` does): the
/// caller narrows with it and matches each sender with the rule itself.
const SENDERS_LIKE: &str = "SELECT DISTINCT sender FROM events WHERE sender LIKE $1 ESCAPE '\\' LIMIT $2";
const SENDERS_ILIKE_POSTGRES: &str = "SELECT DISTINCT sender FROM events WHERE sender ILIKE $1 ESCAPE '\\' LIMIT $2";
const ALL_SENDERS: &str = "SELECT DISTINCT sender FROM events LIMIT $1";
const ROOMS_LIKE: &str = "SELECT DISTINCT room_id FROM events WHERE room_id LIKE $1 ESCAPE '\\' LIMIT $2";
const ALL_ROOMS: &str = "SELECT DISTINCT room_id FROM events LIMIT $1";
const SENDER_KNOWN: &str = "SELECT 1 AS known FROM events WHERE sender = $1 LIMIT 1";
const ROOM_KNOWN: &str = "SELECT 1 AS known FROM events WHERE room_id = $1 LIMIT 1";

/// A watched list.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyList {
    pub room_id: String,
    /// What the config or the moderator named it by.
    pub name: String,
    /// `plan` or `auto`.
    pub action: String,
    /// `config` or `command`.
    pub source: String,
    pub added_by: String,
    pub added_at: i64,
    /// When its rules were first read (the baseline); `None` until then.
    pub baseline_at: Option<i64>,
    pub rules_seen: i64,
    pub plans_made: i64,
    pub actions_run: i64,
}

/// One rule slot as housekeep last handled it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredRule {
    pub list_room_id: String,
    /// `user`, `server`, `room` or `media`.
    pub kind: String,
    pub state_key: String,
    pub rule_type: String,
    pub event_id: Option<String>,
    pub sender: Option<String>,
    /// The content as JSON text.
    pub content: String,
    pub content_hash: String,
    pub updated_at: i64,
    /// `None` while it is being handled.
    pub outcome: Option<String>,
    /// A JSON array of the jobs made for it.
    pub jobs: Option<String>,
}

/// What [`Store::claim_policy_rule`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The slot held nothing, or another rule (returned): the new one is
    /// written, without an outcome; handle it.
    New(Option<Box<StoredRule>>),
    /// The slot holds this very rule, not handled yet (a crash, a retry):
    /// handle it again (its jobs are keyed by the rule).
    Unfinished,
    /// The slot holds this rule, handled.
    Handled,
}

/// `sql` (an insert of the ten columns, in table order) with `rule`'s values.
fn rule_row<'q>(sql: &'static str, rule: &'q StoredRule) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sql)
        .bind(&rule.list_room_id)
        .bind(&rule.kind)
        .bind(&rule.state_key)
        .bind(&rule.rule_type)
        .bind(&rule.event_id)
        .bind(&rule.sender)
        .bind(&rule.content)
        .bind(&rule.content_hash)
        .bind(rule.updated_at)
        .bind(&rule.outcome)
}

/// The row of one slot, for any executor (the pool, a transaction).
fn slot_query<'q>(
    list: &'q str,
    kind: &'q str,
    state_key: &'q str,
) -> sqlx::query::QueryAs<'q, sqlx::Any, StoredRule, sqlx::any::AnyArguments> {
    let sql = format!("{RULE_COLUMNS} WHERE list_room_id = $1 AND kind = $2 AND state_key = $3");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(list).bind(kind).bind(state_key)
}

impl PolicyList {
    /// A list watched from now on, with no rules read and nothing counted yet.
    pub fn new(room_id: &str, name: &str, action: &str, source: &str, added_by: &str, added_at: i64) -> Self {
        Self {
            room_id: room_id.to_owned(),
            name: name.to_owned(),
            action: action.to_owned(),
            source: source.to_owned(),
            added_by: added_by.to_owned(),
            added_at,
            baseline_at: None,
            rules_seen: 0,
            plans_made: 0,
            actions_run: 0,
        }
    }
}

impl Store {
    /// Watches a list (or updates how: its name, action and source).
    pub async fn watch_list(&self, list: &PolicyList) -> anyhow::Result<()> {
        sqlx::query(UPSERT_LIST)
            .bind(&list.room_id)
            .bind(&list.name)
            .bind(&list.action)
            .bind(&list.source)
            .bind(&list.added_by)
            .bind(list.added_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stops watching a list and forgets its rules; whether it was watched.
    pub async fn unwatch_list(&self, room_id: &str) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(DELETE_LIST_RULES).bind(room_id).execute(&mut *tx).await?;
        let deleted = sqlx::query(DELETE_LIST).bind(room_id).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Every watched list, by name.
    pub async fn policy_lists(&self) -> anyhow::Result<Vec<PolicyList>> {
        let sql = format!("{LIST_COLUMNS} ORDER BY name, room_id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?)
    }

    pub async fn policy_list(&self, room_id: &str) -> anyhow::Result<Option<PolicyList>> {
        let sql = format!("{LIST_COLUMNS} WHERE room_id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(room_id).fetch_optional(&self.pool).await?)
    }

    /// The first read of a list: its rules as they are, handled as the
    /// baseline (no plans), in one transaction with the list's
    /// `baseline_at`. A slot written meanwhile by the stream is kept.
    pub async fn set_baseline(&self, room_id: &str, rules: &[StoredRule], at: i64) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        for rule in rules {
            rule_row(INSERT_BASELINE_RULE, rule).execute(&mut *tx).await?;
        }
        sqlx::query(SET_BASELINE).bind(room_id).bind(at).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The rule a slot holds.
    pub async fn policy_rule(&self, list: &str, kind: &str, state_key: &str) -> anyhow::Result<Option<StoredRule>> {
        Ok(slot_query(list, kind, state_key).fetch_optional(&self.pool).await?)
    }

    /// The slot a rule event set (a redaction names the event).
    pub async fn policy_rule_by_event(&self, event_id: &str) -> anyhow::Result<Option<StoredRule>> {
        let sql = format!("{RULE_COLUMNS} WHERE event_id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_optional(&self.pool).await?)
    }

    /// Every rule of a list (or of every list), for `!policy match` and
    /// `!policy apply`: in slot order.
    pub async fn policy_rules(&self, list: Option<&str>) -> anyhow::Result<Vec<StoredRule>> {
        let rows = match list {
            Some(list) => {
                let sql = format!("{RULE_COLUMNS} WHERE list_room_id = $1 ORDER BY kind, state_key");
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(list).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("{RULE_COLUMNS} ORDER BY list_room_id, kind, state_key");
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?
            }
        };
        Ok(rows)
    }

    /// How many rules in force a list holds.
    pub async fn count_policy_rules(&self, list: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(COUNT_RULES).bind(list).fetch_one(&self.pool).await?)
    }

    /// Writes a rule into its slot unless the slot holds it already, and
    /// says what the slot held: see [`Claim`].
    pub async fn claim_policy_rule(&self, rule: &StoredRule) -> anyhow::Result<Claim> {
        let mut tx = self.pool.begin().await?;
        let previous = slot_query(&rule.list_room_id, &rule.kind, &rule.state_key).fetch_optional(&mut *tx).await?;
        if let Some(previous) = &previous
            && previous.content_hash == rule.content_hash
        {
            return Ok(if previous.outcome.is_some() { Claim::Handled } else { Claim::Unfinished });
        }
        // A claim is written without an outcome, whatever `rule` says.
        let unclaimed = StoredRule { outcome: None, ..rule.clone() };
        let claimed = rule_row(CLAIM_RULE, &unclaimed).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        // Written between the read and the write (by a list's first read,
        // which writes its baseline outside the handlers' lock).
        Ok(if claimed.is_some() { Claim::New(previous.map(Box::new)) } else { Claim::Unfinished })
    }

    /// A standing rule is to be handled after all (`!policy apply`): it is
    /// claimed as a new one would be; `false` if it no longer stands.
    pub async fn reopen_policy_rule(&self, rule: &StoredRule) -> anyhow::Result<bool> {
        let reopened = sqlx::query(REOPEN_STANDING)
            .bind(&rule.list_room_id)
            .bind(&rule.kind)
            .bind(&rule.state_key)
            .bind(&rule.content_hash)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(reopened > 0)
    }

    /// A claimed rule was handled: its outcome and jobs, and the list's
    /// counters (a `new_rule` counts as seen; a standing one applied later
    /// was counted when it came), together.
    pub async fn finish_policy_rule(
        &self,
        rule: &StoredRule,
        outcome: &str,
        jobs: &[String],
        actions_run: i64,
        new_rule: bool,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let finished = sqlx::query(FINISH_RULE)
            .bind(&rule.list_room_id)
            .bind(&rule.kind)
            .bind(&rule.state_key)
            .bind(&rule.content_hash)
            .bind(outcome)
            .bind(super::sql::json_array(jobs))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if finished > 0 {
            sqlx::query(COUNT_RULE)
                .bind(&rule.list_room_id)
                .bind(jobs.len() as i64)
                .bind(actions_run)
                .bind(i64::from(new_rule))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Distinct senders whose ID is `LIKE` `pattern` (`\` escapes), at
    /// most `limit`; `any_case` folds ASCII case on both dialects (SQLite
    /// always does).
    pub async fn senders_like(&self, pattern: &str, any_case: bool, limit: i64) -> anyhow::Result<Vec<String>> {
        let sql = match self.backend {
            super::Backend::Postgres if any_case => SENDERS_ILIKE_POSTGRES,
            _ => SENDERS_LIKE,
        };
        Ok(sqlx::query_scalar(sql).bind(pattern).bind(limit).fetch_all(&self.pool).await?)
    }

    /// Distinct senders the index knows, at most `limit` (hashed rules are
    /// matched against each).
    pub async fn all_senders(&self, limit: i64) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(ALL_SENDERS).bind(limit).fetch_all(&self.pool).await?)
    }

    /// Distinct rooms whose ID is `LIKE` `pattern`, at most `limit`.
    pub async fn rooms_like(&self, pattern: &str, limit: i64) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(ROOMS_LIKE).bind(pattern).bind(limit).fetch_all(&self.pool).await?)
    }

    /// Distinct rooms the index knows, at most `limit`.
    pub async fn all_rooms(&self, limit: i64) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(ALL_ROOMS).bind(limit).fetch_all(&self.pool).await?)
    }

    /// Whether the index holds any event of `sender`.
    pub async fn sender_known(&self, sender: &str) -> anyhow::Result<bool> {
        let known: Option<i64> = sqlx::query_scalar(SENDER_KNOWN).bind(sender).fetch_optional(&self.pool).await?;
        Ok(known.is_some())
    }

    /// Whether the index holds any event of `room_id`.
    pub async fn room_known(&self, room_id: &str) -> anyhow::Result<bool> {
        let known: Option<i64> = sqlx::query_scalar(ROOM_KNOWN).bind(room_id).fetch_optional(&self.pool).await?;
        Ok(known.is_some())
    }
}
