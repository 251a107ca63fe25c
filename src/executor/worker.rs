//! The executors: `pgflow.executors` background workers per database served, each running
//! batches of local tasks (`run_local_tasks`), one transaction per batch: up to `MAX_BATCH`
//! tasks, and no more once the batch has run for `BATCH_BUDGET`. An idle executor
//! sleeps on its latch: a commit that queues tasks wakes it at once, and it looks again every
//! second for tasks whose delay has passed.
//!
//! SIGTERM stops a running handler at once (its transaction rolls back, and the task runs again
//! later), as it does an ordinary backend's query.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;
use crate::worker::{extension_installed, in_transaction_with};

/// Most tasks in one transaction.
const MAX_BATCH: i32 = 64;
/// A transaction claims no more tasks once it has run this long.
const BATCH_BUDGET: Duration = Duration::from_millis(20);
const IDLE_POLL: Duration = Duration::from_secs(1);
const SIGTERM: i32 = 15;

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler of ordinary backends (postgres.c).
    #[link_name = "die"]
    fn backend_die(signal: i32);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgflow_executor_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    unsafe { pg_sys::pqsignal(SIGTERM, Some(backend_die)) };
    let database = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    if !extension_installed() {
        return;
    }
    super::wake::listen();

    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !guc::WORKER_ENABLED.get() {
            return;
        }
        let batch = || super::run_local_tasks::run_local_tasks(MAX_BATCH, Some(BATCH_BUDGET), true);
        match in_transaction_with(None, batch) {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(message) => {
                if !extension_installed() {
                    return;
                }
                warning!("pgflow_core executor: a batch of tasks failed: {message}");
            }
        }
        unsafe {
            pg_sys::pgstat_report_activity(
                pg_sys::BackendState::STATE_IDLE,
                c"pgflow executor: waiting for tasks".as_ptr(),
            )
        };
        if !BackgroundWorker::wait_latch(Some(IDLE_POLL)) {
            return;
        }
    }
}
