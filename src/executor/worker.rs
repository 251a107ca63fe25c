//! The executors: `pgflow.executors` background workers per database served, each running
//! batches of local tasks (`run_local_tasks`), one transaction per batch: up to `MAX_BATCH`
//! tasks, and no more once the batch has run for `BATCH_BUDGET`. An idle executor
//! sleeps on its latch: a commit that queues tasks wakes it at once, and a task queued with a
//! delay (a start delay, a retry's backoff) is looked for when its delay ends, or at least
//! every second.
//!
//! SIGTERM stops a running handler at once (its transaction rolls back, and the task runs again
//! later), as it does an ordinary backend's query.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;
use crate::statement::{Statement, first, named};
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

static NEXT_DUE: Statement = Statement::new(
    "SELECT ceil(extract(epoch FROM min(visible_at) - clock_timestamp()) * 1000)::bigint AS ms
     FROM pgflow._local_tasks
     WHERE visible_at > clock_timestamp() AND visible_at < 'infinity'",
    &[],
);

/// How long until the next delayed task of the executors' queue is due, if one is.
fn next_due() -> Option<Duration> {
    Spi::connect_mut(|client| {
        first(NEXT_DUE.run(client, &[]))
            .and_then(|row| named::<i64>(&row, "ms"))
            .map(|ms| Duration::from_millis(ms.max(1) as u64))
    })
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgflow_executor_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    unsafe { pg_sys::pqsignal(SIGTERM, Some(backend_die)) };
    let database = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    // Handlers get the database's search_path back (sql_handler::run).
    crate::transaction::pin_search_path();
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
        let wait = in_transaction_with(None, next_due)
            .ok()
            .flatten()
            .map_or(IDLE_POLL, |due| due.min(IDLE_POLL));
        if !BackgroundWorker::wait_latch(Some(wait)) {
            return;
        }
    }
}
