//! Statements whose text depends on what they select: [`Sql`] numbers the
//! placeholders for the dialect and keeps the values in bind order, and
//! a list of values is always one JSON-array parameter ([`in_json`]), so a
//! query shape has one statement text (one prepared statement per
//! connection) whatever the list's length.

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, AssertSqlSafe, Encode, Type};

use super::Backend;

/// A statement built from pieces, with its values.
///
/// SQLite gets anonymous `?` placeholders, PostgreSQL `$1, $2, …`: SQLite
/// resolves each `$n` by a linear walk of the statement's parameter names
/// (see [`values_placeholders`]). A statement is built whole here; it never
/// mixes in hand-numbered `$n`.
pub(super) struct Sql {
    backend: Backend,
    text: String,
    args: AnyArguments,
    /// Whether the statement's current `WHERE` has a condition yet ([`Sql::and`]).
    conditions: bool,
}

impl Sql {
    pub fn new(backend: Backend, text: &str) -> Self {
        Self { backend, text: text.to_owned(), args: AnyArguments::default(), conditions: false }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder, and binds `value` to it.
    pub fn bind<T: Bind>(&mut self, value: T) -> &mut Self {
        self.args.add(value).expect("the Any driver encodes text and integers as they are");
        match self.backend {
            Backend::Sqlite => self.text.push('?'),
            Backend::Postgres => {
                use std::fmt::Write;
                let _ = write!(self.text, "${}", self.args.len());
            }
        }
        self
    }

    /// Appends the condition that `column` is one of `values` ([`in_json`]).
    pub fn and_in<S: AsRef<str>>(&mut self, column: &str, values: &[S]) -> &mut Self {
        let json = json_array(values);
        match self.backend {
            Backend::Sqlite => self.and(column).push(" IN (SELECT value FROM json_each(").bind(json).push("))"),
            Backend::Postgres => {
                self.and(column).push(" = ANY(ARRAY(SELECT json_array_elements_text(").bind(json).push("::json)))")
            }
        }
    }

    /// Appends `condition` (text, then usually a [`Sql::bind`]) to a
    /// `WHERE`: ` WHERE ` before the first [`Sql::and`] of the statement,
    /// ` AND ` before the others. (A `WHERE` written with [`Sql::push`] is
    /// not this one: the conditions may fill a subquery's.)
    pub fn and(&mut self, condition: &str) -> &mut Self {
        self.text.push_str(if self.conditions { " AND " } else { " WHERE " });
        self.conditions = true;
        self.push(condition)
    }

    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn query_as<R>(self) -> sqlx::query::QueryAs<'static, Any, R, AnyArguments>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as_with(AssertSqlSafe(self.text), self.args)
    }

    pub fn query_scalar<T>(self) -> sqlx::query::QueryScalar<'static, Any, T, AnyArguments>
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_scalar_with(AssertSqlSafe(self.text), self.args)
    }
}

/// What [`Sql::bind`] takes: text and integers, which the `Any` driver
/// encodes without fail.
pub(super) trait Bind: for<'q> Encode<'q, Any> + Type<Any> {}

impl Bind for String {}
impl Bind for i64 {}

/// A row of `SELECT <something> AS name, COUNT(*) AS n … GROUP BY 1`:
/// the top rooms, senders, states.
#[derive(sqlx::FromRow)]
pub(super) struct Counted {
    pub name: String,
    pub n: i64,
}

impl From<Counted> for (String, i64) {
    fn from(Counted { name, n }: Counted) -> Self {
        (name, n)
    }
}

/// `values` as a JSON array of strings: the parameter of [`in_json`].
pub(super) fn json_array<S: AsRef<str>>(values: &[S]) -> String {
    let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&values).expect("strings serialize")
}

/// The condition that the TEXT `column` is one of the strings in `$n`, a
/// JSON array ([`json_array`]): one statement whatever the list's length.
/// Written out for statements that use `$n` on both dialects; [`Sql::and_in`]
/// numbers it itself.
///
/// PostgreSQL gets `= ANY(ARRAY(…))`: the array is computed once, before
/// the scan, so the column's index serves it as it serves a list of
/// literals. `IN (SELECT json_array_elements_text(…))` is planned as a
/// join with a function the planner guesses returns 100 rows: a hash join
/// over a whole room, or the whole table, for a sender's few events.
pub(super) fn in_json(backend: Backend, column: &str, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
        Backend::Postgres => format!("{column} = ANY(ARRAY(SELECT json_array_elements_text(${n}::json)))"),
    }
}

/// `($1, $2, $3), ($4, $5, $6)` for `rows` rows of `columns` columns, for
/// generated multi-row statements: the index's hot path and a plan's job
/// items (up to hundreds of thousands). The one kind of statement whose text
/// varies: one per row count, up to a fixed chunk size, so a handful.
///
/// SQLite gets anonymous `?` instead: it resolves each `$n` by a linear walk
/// of the statement's parameter names, which made binding a 900-parameter
/// insert quadratic (a fifth of all indexing time). Hand-written queries keep
/// `$n` on both backends.
pub(super) fn values_placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            let sep = if column == 0 { "" } else { ", " };
            let _ = match backend {
                Backend::Sqlite => write!(sql, "{sep}?"),
                Backend::Postgres => write!(sql, "{sep}${}", row * columns + column + 1),
            };
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(values_placeholders(Backend::Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_placeholders(Backend::Postgres, 1, 1), "($1)");
        assert_eq!(values_placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn the_builder_numbers_placeholders_per_dialect_and_lists_are_one_parameter() {
        for (backend, expected) in [
            (
                Backend::Postgres,
                "SELECT x FROM t WHERE a = $1 AND b = ANY(ARRAY(SELECT json_array_elements_text($2::json))) AND c < $3",
            ),
            (Backend::Sqlite, "SELECT x FROM t WHERE a = ? AND b IN (SELECT value FROM json_each(?)) AND c < ?"),
        ] {
            let mut sql = Sql::new(backend, "SELECT x FROM t");
            sql.and("a = ").bind("one".to_owned());
            sql.and_in("b", &["x", "y", "z"]);
            sql.and("c < ").bind(3_i64);
            assert_eq!(sql.text(), expected);
        }
        assert_eq!(in_json(Backend::Sqlite, "b", 2), "b IN (SELECT value FROM json_each($2))");
        assert_eq!(in_json(Backend::Postgres, "b", 1), "b = ANY(ARRAY(SELECT json_array_elements_text($1::json)))");
    }

    #[test]
    fn conditions_may_fill_a_subquery() {
        let mut sql = Sql::new(Backend::Postgres, "SELECT 1 FROM r WHERE r.b IN (SELECT b FROM e");
        sql.and("e.c = ").bind(2_i64).and("e.d IS NULL").push(") ORDER BY 1");
        assert_eq!(
            sql.text(),
            "SELECT 1 FROM r WHERE r.b IN (SELECT b FROM e WHERE e.c = $1 AND e.d IS NULL) ORDER BY 1"
        );
        assert_eq!(json_array(&["a\"b", "c"]), r#"["a\"b","c"]"#);
    }
}
