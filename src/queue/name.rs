//! Queue names: checked once when they enter, quoted everywhere after.
//!
//! A name containing `$`, `;`, `--` or `'` is rejected with pgmq's exact error; every other name
//! is lower-cased into a table stem and quoted as an identifier by PostgreSQL's own rules, so
//! no name can change the statements it is used in. Lower-casing is SQL's `lower()` under the
//! database's collation, the rule of `pgmq.format_table_name`, so every path finds the same table.

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
        check(name);
        QueueName {
            name,
            stem: sql_lower(name),
        }
    }

    /// `pgmq."q_<stem>"`
    pub fn queue_table(&self) -> String {
        format!(
            "pgmq.{}",
            pgrx::spi::quote_identifier(format!("q_{}", self.stem))
        )
    }

    /// `pgmq."a_<stem>"`
    pub fn archive_table(&self) -> String {
        format!(
            "pgmq.{}",
            pgrx::spi::quote_identifier(format!("a_{}", self.stem))
        )
    }

    /// The stem, the key for per-queue plans.
    pub fn stem(&self) -> &str {
        &self.stem
    }
}

/// `pg_catalog.lower(text)` (a fixed built-in oid).
const LOWER_TEXT: pgrx::pg_sys::Oid = pgrx::pg_sys::Oid::from_u32(870);

/// `lower(name)` as SQL computes it in this database (collation-dependent: in a `C` database
/// only ASCII letters change).
pub fn sql_lower(name: &str) -> String {
    // Lower-case ASCII letters, digits and punctuation are their own lower case in every
    // collation: the common case needs no call.
    if name
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        return name.to_string();
    }
    unsafe {
        let text = pgrx::pg_sys::cstring_to_text_with_len(name.as_ptr().cast(), name.len() as i32);
        let lowered = pgrx::pg_sys::OidFunctionCall1Coll(
            LOWER_TEXT,
            pgrx::pg_sys::DEFAULT_COLLATION_OID,
            pgrx::pg_sys::Datum::from(text),
        );
        let cstr = pgrx::pg_sys::text_to_cstring(lowered.cast_mut_ptr());
        let out = std::ffi::CStr::from_ptr(cstr)
            .to_string_lossy()
            .into_owned();
        pgrx::pg_sys::pfree(cstr.cast());
        pgrx::pg_sys::pfree(text.cast());
        out
    }
}

/// Raises pgmq's error for a name that breaks its rule.
pub fn check(name: &str) {
    if !is_valid(name) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION,
            INVALID_CHARACTERS
        );
    }
}

/// pgmq's rule: no `$`, `;`, `--` or `'`.
pub fn is_valid(name: &str) -> bool {
    !(name.contains('$') || name.contains(';') || name.contains("--") || name.contains('\''))
}

#[pg_schema]
mod pgmq {
    use pgrx::prelude::*;

    /// `lower(prefix || '_' || queue_name)` after pgmq's character check: the rule behind
    /// `pgmq.format_table_name` (which calls it) and `QueueName`.
    #[pg_extern(name = "_format_table_name", requires = ["pgmq"])]
    fn format_table_name(queue_name: Option<&str>, prefix: Option<&str>) -> Option<String> {
        let queue_name = queue_name?;
        super::check(queue_name);
        Some(super::sql_lower(&format!("{}_{queue_name}", prefix?)))
    }
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
        for good in [
            "jobs",
            "Jobs-2",
            "with space",
            "dotted.name",
            "a-b",
            "quote\"d",
            "",
            "ünïcode",
        ] {
            assert!(is_valid(good), "{good}");
        }
    }
}
