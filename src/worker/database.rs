//! A database worker: runs `pgflow._worker_tick()` every `pgflow.worker_interval_ms` milliseconds,
//! and fires the schedules when they are due (it sleeps until the next tick, and a commit that
//! adds or resumes a schedule wakes it).
//!
//! Each tick is one transaction. An error in a tick is logged as a WARNING and the transaction
//! rolled back; the worker goes on with the next tick.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{extension_installed, in_transaction};
use crate::guc;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgflow_database_worker_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    crate::transaction::pin_search_path();

    let mut last_prune: Option<Instant> = None;
    crate::queue::wake::register_until_exit(crate::schedule::WAKE_KEY);
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !guc::WORKER_ENABLED.get() || !extension_installed() {
            // The launcher starts us again later; exit code 0 keeps the log quiet.
            return;
        }

        tick();
        let prune_due = last_prune
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(guc::PRUNE_INTERVAL.get() as u64));
        if let Some(retention) = guc::retention().filter(|_| prune_due) {
            last_prune = Some(Instant::now());
            if !prune(&retention) {
                return;
            }
        }

        let interval = Duration::from_millis(guc::WORKER_INTERVAL_MS.get().max(10) as u64);
        let wait = fire_schedules().map_or(interval, |due| due.min(interval));
        if !BackgroundWorker::wait_latch(Some(wait)) {
            return;
        }
    }
}

/// Prunes in batches, one transaction each, until nothing is left. Returns false when the
/// worker must stop (SIGTERM or postmaster death).
fn prune(retention: &str) -> bool {
    loop {
        let removed = in_transaction(|| {
            Spi::get_one_with_args::<i32>(
                "SELECT pgflow._prune_step($1::interval)",
                &[retention.into()],
            )
        });
        match removed {
            Ok(Ok(Some(n))) if n > 0 => {}
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => {
                warning!("pgflow_core worker: prune failed: {e}");
                return true;
            }
            Err(message) => {
                warning!("pgflow_core worker: prune failed: {message}");
                return true;
            }
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(1))) {
            return false;
        }
    }
}

/// Fires the due ticks of the schedules, a thousand per transaction; returns how long until the
/// next one.
fn fire_schedules() -> Option<Duration> {
    loop {
        let result = in_transaction(|| {
            Spi::connect_mut(|client| {
                let seen = crate::schedule::fire_due(client, 1000);
                (seen, crate::schedule::next_due(client))
            })
        });
        match result {
            Ok((1000, _)) => continue,
            Ok((_, due)) => return due,
            Err(message) => {
                warning!("pgflow_core worker: firing schedules failed: {message}");
                return None;
            }
        }
    }
}

/// One round of background work. Failures are logged, never fatal.
fn tick() {
    let grace = guc::TIMEOUT_GRACE.get();
    let result = in_transaction(|| {
        Spi::get_one_with_args::<pgrx::JsonB>("SELECT pgflow._worker_tick($1)", &[grace.into()])
    });
    match result {
        Ok(Ok(Some(summary))) => {
            if summary
                .0
                .as_object()
                .is_some_and(|o| o.values().any(|v| v.as_i64().unwrap_or(0) > 0))
            {
                log!("pgflow_core worker: {}", summary.0);
            }
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => warning!("pgflow_core worker: tick failed: {e}"),
        Err(message) => warning!("pgflow_core worker: tick failed: {message}"),
    }
}
