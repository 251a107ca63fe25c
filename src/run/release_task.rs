//! release_task: a worker gives a started task back without working it (it is shutting down).
//! The task is queued again as if never started (its attempt does not count) and its message is
//! visible at once, or stays hidden while the run is paused. Only the worker that started the
//! attempt may release it, and not once it stalled for good (its message is archived).

use pgrx::pg_sys::{INT4OID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::fail_task::RETRY_DELAY;
use super::lock::lock_run_and_step;
use super::rows::{RunStatus, StepStatus, task_row};
use crate::datum::TaskRow;
use crate::memory::caller_context;
use crate::statement::{Statement, first};
use crate::status;

static RELEASE: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.step_tasks
         SET status = 'queued', started_at = NULL, last_worker_id = NULL,
             attempts_count = greatest(attempts_count - 1, 0)
         WHERE run_id = $1 AND step_slug = $2 AND task_index = $3 AND last_worker_id = $4
           AND permanently_stalled_at IS NULL AND status = ",
        status!("started"),
        "
         RETURNING 1 AS released"
    ),
    &[UUIDOID, TEXTOID, INT4OID, UUIDOID],
);

pub(crate) fn release_task(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    worker_id: pgrx::Uuid,
) -> Option<TaskRow> {
    let locked = lock_run_and_step(client, run_id, step_slug)?;
    // A finished run or step needs the task no more: it is left as it is.
    if locked.run_status == RunStatus::Started
        && locked.step_status == StepStatus::Started
        && first(RELEASE.run(
            client,
            &[
                run_id.into(),
                step_slug.into(),
                task_index.into(),
                worker_id.into(),
            ],
        ))
        .is_some()
    {
        RETRY_DELAY.run(
            client,
            &[
                run_id.into(),
                step_slug.into(),
                task_index.into(),
                Some(0i32).into(),
            ],
        );
    }
    task_row(client, outer, run_id, step_slug, task_index)
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_worker_of_run;

    /// Gives a task that `worker_id` started back to the queue, its attempt not counted; other
    /// tasks are left as they are. Returns the task's row (none for an unknown task).
    #[pg_extern(requires = ["pgflow_schema"])]
    fn release_task(
        run_id: Option<pgrx::Uuid>,
        step_slug: Option<&str>,
        task_index: Option<i32>,
        worker_id: Option<pgrx::Uuid>,
    ) -> SetOfIterator<'static, TaskRow> {
        let outer = caller_context();
        let row = match (run_id, step_slug, task_index, worker_id) {
            (Some(run_id), Some(step_slug), Some(task_index), Some(worker_id)) => {
                Spi::connect_mut(|client| {
                    as_worker_of_run(client, run_id, |client| {
                        super::release_task(client, outer, run_id, step_slug, task_index, worker_id)
                    })
                })
            }
            _ => None,
        };
        SetOfIterator::new(row)
    }
}
