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

#[pg_schema]
mod pgflow {
    use super::*;

    /// Whether pgflow_core's background worker can run in this server (library preloaded).
    #[pg_extern(name = "_worker_preloaded")]
    fn worker_preloaded() -> bool {
        PRELOADED.load(Ordering::Relaxed)
    }
}
