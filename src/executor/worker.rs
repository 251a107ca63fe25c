//! The executors: `pgflow.executors` background workers per database served, each running
//! batches of local tasks (`run_local_tasks`), one transaction per batch. An idle executor
//! sleeps on its latch: a commit that queues tasks wakes it at once, and it looks again every
//! second for tasks whose delay has passed.
//!
//! SIGTERM stops a running handler at once (its transaction rolls back, and the task runs again
//! later), as it does an ordinary backend's query.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;
use crate::worker::{extension_installed, in_transaction_with};

/// Largest batch of tasks in one transaction.
const MAX_BATCH: i32 = 64;
/// A batch grows while it takes less than this, and shrinks when it takes more than 4 times it.
const BATCH_TARGET: Duration = Duration::from_millis(10);
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

    let mut batch = 1;
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !guc::WORKER_ENABLED.get() {
            return;
        }
        let began = Instant::now();
        match in_transaction_with(None, || {
            super::run_local_tasks::run_local_tasks(batch, true)
        }) {
            Ok(n) if n > 0 => {
                let took = began.elapsed();
                if n == batch && took < BATCH_TARGET {
                    batch = (batch * 2).min(MAX_BATCH);
                } else if took > BATCH_TARGET * 4 {
                    batch = (batch / 2).max(1);
                }
                continue;
            }
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
