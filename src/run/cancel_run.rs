//! cancel_run: a started run stops. In the contract's tables it becomes 'failed' (what a client
//! that knows only started, completed and failed sees); `pgflow._run_control` says it was
//! cancelled. Its queued tasks leave the queues, its started tasks can no longer complete or
//! fail it (`complete_task` and `fail_task` return no row), and the executors running its SQL
//! or program tasks are interrupted.

use pgrx::pg_sys::{self, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::lock::lock_run;
use super::rows::{RunStatus, run_row};
use super::{archive, events};
use crate::datum::RunRow;
use crate::error::error;
use crate::memory::caller_context;
use crate::statement::{Statement, first};

// The run fails as cancelled, and its tasks leave the executors' queue (rows that an executor
// is claiming at this moment are its to drop: it finds the run no longer started).
static CANCEL: Statement = Statement::new(
    concat!(
        "WITH run AS (
             UPDATE pgflow.runs SET status = 'failed', failed_at = greatest(now(), started_at)
             WHERE run_id = $1
             RETURNING run_id, flow_slug, failed_at
         ), control AS (
             INSERT INTO pgflow._run_control (run_id, state) SELECT run_id, 'cancelled' FROM run
             ON CONFLICT (run_id) DO UPDATE SET state = 'cancelled', changed_at = now()
         ), dequeued AS (
             DELETE FROM pgflow._local_tasks l
             WHERE (l.run_id, l.step_slug, l.task_index) IN (
                 SELECT q.run_id, q.step_slug, q.task_index FROM pgflow._local_tasks q
                 WHERE q.run_id = $1 FOR UPDATE SKIP LOCKED)
         )
         SELECT ",
        run_cancelled_event!("run_id", "flow_slug", "failed_at"),
        " FROM run"
    ),
    &[UUIDOID],
);

pub(crate) fn cancel_run(
    client: &mut SpiClient<'_>,
    outer: pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
) -> Option<RunRow> {
    let Some(run) = lock_run(client, run_id) else {
        error(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("run {run_id} does not exist"),
        );
    };
    if run.control.as_deref() == Some("cancelled") {
        return run_row(client, outer, run_id);
    }
    if run.run_status != RunStatus::Started {
        error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "run {run_id} is already {}: only a started run can be cancelled",
                run.run_status.as_sql()
            ),
        );
    }
    if let Some(row) = first(CANCEL.run(client, &[run_id.into()])) {
        events::emit_row(&row);
    }
    archive::run_messages(client, run_id);
    interrupt_executors(run_id);
    super::flow_concurrency::run_ended(client, run_id);
    run_row(client, outer, run_id)
}

/// Sends a cancel request (SIGINT, as pg_cancel_backend does) to every executor that shows a
/// task of the run in pg_stat_activity. Under the run's lock, such an executor cannot move on
/// from that task: completing or failing it waits for this transaction, and then changes nothing.
fn interrupt_executors(run_id: pgrx::Uuid) {
    let marker = format!(" of run {run_id}: ");
    unsafe {
        pg_sys::pgstat_clear_snapshot();
        let count = pg_sys::pgstat_fetch_stat_numbackends();
        for id in 1..=count {
            let local = pg_sys::pgstat_fetch_stat_local_beentry(id);
            if local.is_null() {
                continue;
            }
            let status = &(*local).backendStatus;
            if status.st_backendType != pg_sys::BackendType::B_BG_WORKER
                || status.st_activity_raw.is_null()
            {
                continue;
            }
            let activity = std::ffi::CStr::from_ptr(status.st_activity_raw).to_string_lossy();
            let Some(rest) = activity.strip_prefix("pgflow task ") else {
                continue;
            };
            // Slugs have no spaces: the first " of run " is the executor's own.
            if rest
                .find(" of run ")
                .is_some_and(|at| rest[at..].starts_with(&marker))
            {
                libc::kill(status.st_procpid, libc::SIGINT);
            }
        }
    }
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_definer_of_run;

    /// Cancels a started run; returns its row ('failed', as clients of the contract see it).
    /// Cancelling a cancelled run again returns it unchanged.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn cancel_run(run_id: Option<pgrx::Uuid>) -> Option<RunRow> {
        let Some(run_id) = run_id else {
            error(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "run_id must not be NULL",
            );
        };
        let outer = caller_context();
        Spi::connect_mut(|client| {
            as_definer_of_run(client, run_id, |client| {
                super::cancel_run(client, outer, run_id)
            })
        })
    }
}
