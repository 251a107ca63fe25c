//! pause_run and resume_run. A paused run hands out no new tasks: its queued tasks' messages
//! and executor queue rows are hidden (visible at 'infinity'), `start_tasks` and the executors'
//! claims pass it by, and no step of it starts. Tasks already started may finish, and their
//! completions are recorded. Resuming shows the hidden tasks again and starts the steps that
//! became ready meanwhile. In `pgflow.runs` a paused run is 'started'.

use pgrx::pg_sys::{self, TIMESTAMPTZOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::lock::{LockedRun, lock_run};
use super::rows::{RunStatus, run_row};
use super::step_completed::{Next, start_and_finish};
use crate::datum::RunRow;
use crate::error::error;
use crate::memory::caller_context;
use crate::queue::name::QueueName;
use crate::statement::{Statement, TableStatement, first, named};

static PAUSE: Statement = Statement::new(
    "WITH control AS (
         INSERT INTO pgflow._run_control (run_id, state) VALUES ($1, 'paused')
     )
     UPDATE pgflow._local_tasks l SET visible_at = 'infinity'
     WHERE (l.run_id, l.step_slug, l.task_index) IN (
         SELECT q.run_id, q.step_slug, q.task_index FROM pgflow._local_tasks q
         WHERE q.run_id = $1 FOR UPDATE SKIP LOCKED)",
    &[UUIDOID],
);

static RESUME: Statement = Statement::new(
    "WITH control AS (
         DELETE FROM pgflow._run_control WHERE run_id = $1 AND state = 'paused'
     ), shown AS (
         UPDATE pgflow._local_tasks SET visible_at = clock_timestamp()
         WHERE run_id = $1 AND visible_at > clock_timestamp()
         RETURNING 1
     )
     SELECT count(*)::int AS local_tasks FROM shown",
    &[UUIDOID],
);

// The visibility of the run's queued tasks' messages in its flow's queue ($2: from when; NULL:
// from now).
static SET_MESSAGES_VT: TableStatement =
    TableStatement::new("run_messages_vt", &[UUIDOID, TIMESTAMPTZOID]);

fn set_messages_vt(
    client: &mut SpiClient<'_>,
    flow_slug: &str,
    run_id: pgrx::Uuid,
    vt: Option<pgrx::datum::TimestampWithTimeZone>,
) -> usize {
    let queue = QueueName::parse(Some(flow_slug));
    let table = queue.queue_table();
    SET_MESSAGES_VT
        .run(
            client,
            queue.stem(),
            || {
                format!(
                    "UPDATE {table} m SET vt = coalesce($2, clock_timestamp())
                     FROM pgflow.step_tasks t
                     WHERE t.run_id = $1 AND t.status = 'queued' AND t.message_id = m.msg_id
                     RETURNING 1"
                )
            },
            &[run_id.into(), vt.into()],
        )
        .len()
}

/// Locks a run that pause_run or resume_run may change; errors for what they may not.
fn lock_started(client: &mut SpiClient<'_>, run_id: pgrx::Uuid, verb: &str) -> LockedRun {
    let Some(run) = lock_run(client, run_id) else {
        error(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("run {run_id} does not exist"),
        );
    };
    if run.run_status != RunStatus::Started {
        let status = match run.control.as_deref() {
            Some("cancelled") => "cancelled",
            _ => run.run_status.as_sql(),
        };
        error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("run {run_id} is already {status}: only a started run can be {verb}"),
        );
    }
    run
}

pub(crate) fn pause_run(
    client: &mut SpiClient<'_>,
    outer: pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
) -> Option<RunRow> {
    let run = lock_started(client, run_id, "paused");
    if run.control.as_deref() == Some("waiting") {
        error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "run {run_id} is waiting for a slot of its flow's concurrency limit: it has nothing to pause"
            ),
        );
    }
    if run.control.is_none() {
        PAUSE.run(client, &[run_id.into()]);
        let infinity = pgrx::datum::TimestampWithTimeZone::positive_infinity();
        set_messages_vt(client, &run.flow_slug, run_id, Some(infinity));
    }
    run_row(client, outer, run_id)
}

pub(crate) fn resume_run(
    client: &mut SpiClient<'_>,
    outer: pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
) -> Option<RunRow> {
    let run = lock_started(client, run_id, "resumed");
    if run.control.as_deref() != Some("paused") {
        error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("run {run_id} is not paused"),
        );
    }
    let flow_slug = run.flow_slug;
    let local_tasks: i32 = first(RESUME.run(client, &[run_id.into()]))
        .and_then(|row| named(&row, "local_tasks"))
        .unwrap_or(0);
    let shown = set_messages_vt(client, &flow_slug, run_id, None);
    if shown > 0 {
        crate::queue::wake::sent(&crate::queue::name::sql_lower(&flow_slug), shown);
    }
    crate::executor::wake::tasks_queued(local_tasks as usize);
    // Steps that became ready while the run was paused start now; the run completes if none
    // is left.
    start_and_finish(client, run_id, &flow_slug, Next::CheckAll);
    run_row(client, outer, run_id)
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_definer_of_run;

    fn required(run_id: Option<pgrx::Uuid>) -> pgrx::Uuid {
        run_id.unwrap_or_else(|| {
            error(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "run_id must not be NULL",
            )
        })
    }

    /// Pauses a started run: it hands out no new tasks until resume_run. Returns its row.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn pause_run(run_id: Option<pgrx::Uuid>) -> Option<RunRow> {
        let run_id = required(run_id);
        let outer = caller_context();
        Spi::connect_mut(|client| {
            as_definer_of_run(client, run_id, |client| {
                super::pause_run(client, outer, run_id)
            })
        })
    }

    /// Resumes a paused run: its tasks are handed out again and ready steps start.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn resume_run(run_id: Option<pgrx::Uuid>) -> Option<RunRow> {
        let run_id = required(run_id);
        let outer = caller_context();
        Spi::connect_mut(|client| {
            as_definer_of_run(client, run_id, |client| {
                super::resume_run(client, outer, run_id)
            })
        })
    }
}
