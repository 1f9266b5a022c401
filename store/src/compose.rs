//! [`Composer`]: several PostgreSQL statements, built apart (by SeaQuery or by hand), made
//! into one, so that a write set that reads nothing before its commit costs one round trip
//! instead of a `BEGIN`, a round trip a statement and a `COMMIT`.
//!
//! PostgreSQL runs the sub-statements of a data-modifying `WITH` to completion, on one
//! snapshot, as one statement: all of them commit or none does. They do not see each
//! other's changes (only what one hands on with `RETURNING`), so a composed statement
//! suits writes to different rows, or writes made to depend on one another explicitly
//! (`… FROM changed`, where `changed` is an earlier sub-statement's `RETURNING`).
//!
//! Each statement's `$1`, `$2`… parameters are renumbered after those taken before it, and
//! its values appended in that order. A statement given here must carry every value as a
//! parameter (no literal text: SeaQuery's `build` and the books' named parameters are
//! such), so that a `$` can only start a parameter; [`Composer::take`] refuses one whose
//! parameters are not exactly `$1` to `$n` for its `n` values.

use sea_orm::{DbBackend, DbErr, Statement, Value, Values};

/// Statements being made into one; see the [module documentation](self).
#[derive(Debug, Default)]
pub struct Composer {
    values: Vec<Value>,
}

impl Composer {
    /// An empty composition.
    pub fn new() -> Self {
        Self::default()
    }

    /// `stmt`'s text with its parameters numbered after those taken so far, for the
    /// caller to place in the composed statement; its values go after theirs.
    pub fn take(&mut self, stmt: Statement) -> Result<String, DbErr> {
        let values = stmt.values.map(|Values(values)| values).unwrap_or_default();
        let offset = self.values.len();
        let (text, highest) = renumbered(&stmt.sql, offset)?;
        if highest != values.len() {
            return Err(DbErr::Custom(format!(
                "cannot compose a statement whose parameters run to ${highest} with {} \
                 values: {}",
                values.len(),
                stmt.sql
            )));
        }
        self.values.extend(values);
        Ok(text)
    }

    /// The composed statement: `sql`, made of the texts [`take`](Self::take) returned,
    /// with every value taken.
    pub fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, self.values)
    }
}

/// `sql` with every `$n` turned into `$(n + offset)`, and the highest `n` seen (0 if none).
/// Text in quotes is refused: a `$` there would not be a parameter.
fn renumbered(sql: &str, offset: usize) -> Result<(String, usize), DbErr> {
    if sql.contains('\'') {
        return Err(DbErr::Custom(format!(
            "cannot compose a statement with literal text: {sql}"
        )));
    }
    let mut text = String::with_capacity(sql.len() + 16);
    let mut highest = 0;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: usize = after[..digits].parse().map_err(|_| {
            DbErr::Custom(format!("cannot compose a statement with a bare `$`: {sql}"))
        })?;
        highest = highest.max(n);
        text.push_str(&format!("${}", n + offset));
        rest = &after[digits..];
    }
    text.push_str(rest);
    Ok((text, highest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    }

    #[test]
    fn parameters_are_numbered_after_those_taken_before() {
        let mut composer = Composer::new();
        let first = composer
            .take(stmt(
                "UPDATE t SET a = $1 WHERE id = $2",
                vec![1.into(), 2.into()],
            ))
            .expect("first");
        let second = composer
            .take(stmt(
                "INSERT INTO u (b, c) VALUES ($1, $2), ($3, $10)",
                (3..13).map(Value::from).collect(),
            ))
            .expect("second");
        assert_eq!(first, "UPDATE t SET a = $1 WHERE id = $2");
        assert_eq!(second, "INSERT INTO u (b, c) VALUES ($3, $4), ($5, $12)");
        let composed = composer.statement(format!("WITH x AS ({first}) {second}"));
        let values = composed.values.expect("values").0;
        assert_eq!(values.len(), 12);
        assert_eq!(values[11], Value::from(12));
    }

    #[test]
    fn statements_that_cannot_be_renumbered_safely_are_refused() {
        let mut composer = Composer::new();
        for (sql, values) in [
            ("SELECT 'a$1'", vec![1.into()]),
            ("SELECT $1, $2", vec![1.into()]),
            ("SELECT $1", vec![1.into(), 2.into()]),
            ("SELECT $ 1", vec![1.into()]),
        ] {
            assert!(composer.take(stmt(sql, values)).is_err(), "{sql}");
        }
        assert!(composer.take(stmt("SELECT 1", vec![])).is_ok());
    }
}
