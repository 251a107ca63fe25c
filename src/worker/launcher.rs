//! The launcher: keeps one database worker running per database in `pgflow.worker_databases`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;

/// How long to wait before starting a database's worker again after it stopped (for example
/// because the extension is not installed there yet).
const RETRY_AFTER: Duration = Duration::from_secs(10);

struct Slot {
    handle: Option<DynamicBackgroundWorker>,
    started_at: Instant,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgflow_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // No database: the launcher only reads the shared catalog pg_database.
    BackgroundWorker::connect_worker_to_spi(None, None);

    // By database and process: 0 the database worker, 1.. its executors.
    let mut slots: HashMap<(String, i32), Slot> = HashMap::new();
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let wanted = if guc::WORKER_ENABLED.get() {
            guc::worker_databases()
        } else {
            Vec::new()
        };

        let executors = guc::EXECUTORS.get();
        // Stop workers of databases no longer wanted, and executors beyond their number.
        slots.retain(|(name, index), slot| {
            if wanted.contains(name) && *index <= executors {
                return true;
            }
            if let Some(handle) = slot.handle.take() {
                let _ = handle.terminate();
            }
            false
        });

        for key in wanted
            .iter()
            .flat_map(|name| (0..=executors).map(move |index| (name.clone(), index)))
        {
            let running = slots
                .get(&key)
                .and_then(|s| s.handle.as_ref())
                .is_some_and(|h| h.pid().is_ok());
            let recently = slots
                .get(&key)
                .is_some_and(|s| s.started_at.elapsed() < RETRY_AFTER);
            if running || recently {
                continue;
            }
            let (name, index) = &key;
            let Some(oid) = database_oid(name) else {
                continue;
            };
            let (title, kind, function) = if *index == 0 {
                (
                    format!("pgflow_core worker {name}"),
                    "pgflow_core worker",
                    "pgflow_database_worker_main",
                )
            } else {
                (
                    format!("pgflow_core executor {name} {index}"),
                    "pgflow_core executor",
                    "pgflow_executor_main",
                )
            };
            let handle = BackgroundWorkerBuilder::new(&title)
                .set_type(kind)
                .set_library(super::LIBRARY)
                .set_function(function)
                .set_argument(Some(pg_sys::Datum::from(u32::from(oid))))
                .enable_spi_access()
                .set_start_time(BgWorkerStartTime::RecoveryFinished)
                .set_restart_time(None)
                .load_dynamic()
                .ok();
            if handle.is_none() {
                log!(
                    "pgflow_core launcher: no free background worker slot for {title} (raise max_worker_processes)"
                );
            }
            slots.insert(
                key,
                Slot {
                    handle,
                    started_at: Instant::now(),
                },
            );
        }

        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
            break;
        }
    }
    for (_, slot) in slots.drain() {
        if let Some(handle) = slot.handle {
            let _ = handle.terminate();
        }
    }
}

/// The oid of a connectable database by name. Scans the shared catalog pg_database directly
/// (like autovacuum's launcher): a process connected to no database cannot use its indexes.
fn database_oid(name: &str) -> Option<pg_sys::Oid> {
    BackgroundWorker::transaction(|| unsafe {
        let rel = pg_sys::table_open(
            pg_sys::DatabaseRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut found = None;
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let header = (*tuple).t_data;
            let form = (header as *const u8).add((*header).t_hoff as usize)
                as *const pg_sys::FormData_pg_database;
            let datname = std::ffi::CStr::from_ptr((*form).datname.data.as_ptr());
            if (*form).datallowconn && datname.to_bytes() == name.as_bytes() {
                found = Some((*form).oid);
                break;
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        found
    })
}
