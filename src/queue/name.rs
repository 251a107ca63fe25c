//! Queue names: checked once when they enter, quoted everywhere after.
//!
//! A name containing `$`, `;`, `--` or `'` is rejected with pgmq's exact error; every other name
//! is lower-cased into a table stem and quoted as an identifier by PostgreSQL's own rules, so
//! no name can change the statements it is used in.

use pgrx::prelude::*;

pub const INVALID_CHARACTERS: &str = "queue name contains invalid characters: $, ;, --, or \\'";

/// A queue name that passed the character check.
pub struct QueueName<'a> {
    pub name: &'a str,
    stem: String,
}

impl<'a> QueueName<'a> {
    /// Checks a name; raises pgmq's errors for NULL-free invalid input.
    pub fn parse(name: Option<&'a str>) -> QueueName<'a> {
        let Some(name) = name else {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "null values cannot be formatted as an SQL identifier"
            );
        };
        if !is_valid(name) {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION, INVALID_CHARACTERS);
        }
        QueueName { name, stem: name.to_lowercase() }
    }

    /// `pgmq."q_<stem>"`
    pub fn queue_table(&self) -> String {
        format!("pgmq.{}", pgrx::spi::quote_identifier(format!("q_{}", self.stem)))
    }

    /// `pgmq."a_<stem>"`
    pub fn archive_table(&self) -> String {
        format!("pgmq.{}", pgrx::spi::quote_identifier(format!("a_{}", self.stem)))
    }

    /// The stem, the key for per-queue plans.
    pub fn stem(&self) -> &str {
        &self.stem
    }
}

/// pgmq's rule: no `$`, `;`, `--` or `'`.
pub fn is_valid(name: &str) -> bool {
    !(name.contains('$') || name.contains(';') || name.contains("--") || name.contains('\''))
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn rejects_the_characters_that_could_end_a_statement() {
        for bad in ["a$b", "a;b", "a--b", "a'b", "x\"; drop table pgmq.meta; --"] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn accepts_everything_else() {
        for good in ["jobs", "Jobs-2", "with space", "dotted.name", "a-b", "quote\"d", "", "ünïcode"] {
            assert!(is_valid(good), "{good}");
        }
    }
}
