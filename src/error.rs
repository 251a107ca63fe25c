//! Errors raised to the caller, each with its SQLSTATE.

use pgrx::prelude::*;

pub fn internal_error(message: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        message.to_string()
    );
}

/// Raises a `RAISE EXCEPTION`-style error (SQLSTATE P0001) with an exact message.
pub fn raise(message: String) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION, message);
}

/// The SQLSTATE of a caught error.
pub fn sqlstate_of(error: &pgrx::pg_sys::panic::CaughtError) -> PgSqlErrorCode {
    use pgrx::pg_sys::panic::CaughtError;
    match error {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic {
            ereport: report, ..
        } => report.sql_error_code(),
    }
}

/// The message of a caught error.
pub fn message_of(error: &pgrx::pg_sys::panic::CaughtError) -> String {
    use pgrx::pg_sys::panic::CaughtError;
    match error {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic {
            ereport: report, ..
        } => report.message().to_string(),
    }
}

/// Raises an error with its SQLSTATE (usable where a value is expected).
pub fn error(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    ereport!(ERROR, code, message.into());
}
