//! Background workers: stalled-task recovery, hard timeouts and pruning inside the server.
//!
//! A launcher (one static worker, connected to no database) starts one worker per database
//! named in `pgflow.worker_databases`. Each database worker runs `pgflow._worker_tick()` every
//! `pgflow.worker_interval_ms` milliseconds, each tick in its own transaction. Workers start only after
//! recovery has finished, so a standby runs none until it is promoted.
//!
//! A database worker exits quietly (exit code 0, logged at DEBUG1) while its database has no
//! pgflow_core extension; the launcher tries again later. Nothing is logged while waiting.

mod database;
mod launcher;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgrx::PgTryBuilder;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Whether the library was loaded through shared_preload_libraries (so the launcher runs).
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub const LIBRARY: &str = "pgflow_core";

/// Called from `_PG_init`. Registers the launcher when the library is preloaded.
pub fn init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    PRELOADED.store(true, Ordering::Relaxed);
    BackgroundWorkerBuilder::new("pgflow_core launcher")
        .set_type("pgflow_core launcher")
        .set_library(LIBRARY)
        .set_function("pgflow_launcher_main")
        // A database connection (to no database) is needed to read pg_database.
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

const NOT_RUNNING: &str = "pgflow_core: the background worker is not running, because pgflow_core is not in \
shared_preload_libraries. Stalled and timed-out tasks are not recovered automatically.";
const NOT_RUNNING_HINT: &str = "Add pgflow_core to shared_preload_libraries, set pgflow.worker_databases to this \
database and restart the server. Or schedule recovery with pg_cron: SELECT cron.schedule('pgflow_requeue_stalled_tasks', \
'* * * * *', 'SELECT pgflow.requeue_stalled_tasks()');";

static NOTICE_PENDING: AtomicBool = AtomicBool::new(false);
static NOTICE_CALLBACK: AtomicBool = AtomicBool::new(false);

/// CREATE EXTENSION runs its script with client_min_messages raised to WARNING, so the notice
/// is emitted when the creating transaction commits, after the script.
#[pg_guard]
unsafe extern "C-unwind" fn notice_at_commit(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT
            if NOTICE_PENDING.swap(false, Ordering::Relaxed) =>
        {
            pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                NOT_RUNNING,
                "",
            )
            .set_hint(NOT_RUNNING_HINT)
            .report(PgLogLevel::NOTICE);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => NOTICE_PENDING.store(false, Ordering::Relaxed),
        _ => {}
    }
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Whether pgflow_core's background worker can run in this server (library preloaded).
    #[pg_extern(name = "_worker_preloaded")]
    fn worker_preloaded() -> bool {
        PRELOADED.load(Ordering::Relaxed)
    }

    /// Says once, when the current transaction commits, that the worker is not running.
    #[pg_extern(name = "_notice_worker_not_running")]
    fn notice_worker_not_running() {
        if PRELOADED.load(Ordering::Relaxed) {
            return;
        }
        NOTICE_PENDING.store(true, Ordering::Relaxed);
        if !NOTICE_CALLBACK.swap(true, Ordering::Relaxed) {
            unsafe { pg_sys::RegisterXactCallback(Some(notice_at_commit), std::ptr::null_mut()) };
        }
    }
}

/// Is pgflow_core installed in this database at this library's version? Between installing a
/// new library and `ALTER EXTENSION pgflow_core UPDATE` the schema is the old one, which the
/// background processes leave alone.
pub(crate) fn extension_installed() -> bool {
    in_transaction(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension \
             WHERE extname = 'pgflow_core' AND extversion = $1)",
            &[env!("CARGO_PKG_VERSION").into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    })
    .unwrap_or(false)
}

/// Runs `body` in its own transaction. An error raised inside is caught, the transaction rolled
/// back, and the error message returned.
pub(crate) fn in_transaction<R>(
    body: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, String> {
    in_transaction_with(Some("5s"), body)
}

/// `in_transaction` with a lock_timeout of its own (None: the server's setting).
pub(crate) fn in_transaction_with<R>(
    lock_timeout: Option<&str>,
    body: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, String> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(|| {
        // A round never waits long behind a lock that a user's transaction holds: the statements
        // skip locked rows where they can, and this bounds the rest (the round fails, is logged,
        // and the next one tries again).
        if let Some(timeout) = lock_timeout {
            Spi::run_with_args(
                "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
                &[timeout.into()],
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(body())
    })
    .catch_others(|caught| {
        Err(match caught {
            pg_sys::panic::CaughtError::PostgresError(report)
            | pg_sys::panic::CaughtError::ErrorReport(report)
            | pg_sys::panic::CaughtError::RustPanic {
                ereport: report, ..
            } => match report.detail() {
                Some(detail) => format!("{} ({detail})", report.message()),
                None => report.message().to_string(),
            },
        })
    })
    .execute();
    unsafe {
        match outcome {
            Ok(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Err(_) => {
                pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
                pg_sys::AbortCurrentTransaction();
            }
        }
    }
    outcome
}
