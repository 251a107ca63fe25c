//! fail_task: a started task's attempt failed. It goes back to the queue with a backoff while
//! attempts remain; then it fails for good, and its step fails (and the run with it) or is
//! skipped, as the step's `when_exhausted` says.

use pgrx::pg_sys::{INT4OID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::lock::lock_run_and_step;
use super::rows::{Handling, RunStatus, StepStatus, TaskStatus, task_row, task_state};
use super::{
    archive, conditions, control, force_skip, maybe_complete_run, start_ready_steps, step_failed,
    taskless_steps,
};
use crate::datum::TaskRow;
use crate::memory::caller_context;
use crate::statement::{Statement, first};
use crate::status;

static FAIL_TASK_OF_FAILED_RUN: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.step_tasks SET status = 'failed', failed_at = greatest(now(), started_at), error_message = $4
         WHERE run_id = $1 AND step_slug = $2 AND task_index = $3 AND status = ",
        status!("started")
    ),
    &[UUIDOID, TEXTOID, INT4OID, TEXTOID],
);

// A failed attempt: back to the queue while attempts remain, else failed for good.
static FAIL_TASK_ROW: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.step_tasks t
         SET status = CASE WHEN t.attempts_count < cfg.max_attempts THEN 'queued' ELSE 'failed' END,
             started_at = CASE WHEN t.attempts_count < cfg.max_attempts THEN NULL ELSE t.started_at END,
             failed_at = CASE WHEN t.attempts_count < cfg.max_attempts THEN NULL ELSE greatest(now(), t.started_at) END,
             error_message = $4
         FROM (SELECT coalesce(s.opt_max_attempts, f.opt_max_attempts) AS max_attempts
               FROM pgflow.steps s JOIN pgflow.flows f ON f.flow_slug = s.flow_slug
               WHERE s.flow_slug = $5 AND s.step_slug = $2) cfg
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = ",
        status!("started"),
        "
         RETURNING t.status"
    ),
    &[UUIDOID, TEXTOID, INT4OID, TEXTOID, TEXTOID],
);

static STEP_RETRYING: Statement = Statement::new(
    "UPDATE pgflow.step_states SET failed_at = NULL, error_message = NULL
     WHERE run_id = $1 AND step_slug = $2",
    &[UUIDOID, TEXTOID],
);

// The retry's backoff ($4 seconds, or the step's backoff when NULL): the task's message becomes
// visible after the delay; a task of a step with a handler goes back into the executors' queue
// (its executor took it out). A retry of a paused (or waiting) run stays hidden until
// resume_run shows it. release_task requeues with it too.
pub(super) static RETRY_DELAY: Statement = Statement::new(
    concat!(
    "WITH t AS (
         SELECT t.flow_slug, t.message_id,
                coalesce($4, pgflow.calculate_retry_delay(coalesce(s.opt_base_delay, f.opt_base_delay), t.attempts_count)) AS delay,
                ",
    crate::not_paused_sql!("$1"),
    " AS running
         FROM pgflow.step_tasks t
         JOIN pgflow.steps s ON s.flow_slug = t.flow_slug AND s.step_slug = t.step_slug
         JOIN pgflow.flows f ON f.flow_slug = t.flow_slug
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3
     ), msg AS (
         SELECT pgmq.set_vt(t.flow_slug, t.message_id,
                            CASE WHEN t.running THEN clock_timestamp() + make_interval(secs => t.delay)
                                 ELSE 'infinity' END)
         FROM t WHERE t.message_id IS NOT NULL
     ), local AS (
         INSERT INTO pgflow._local_tasks (run_id, step_slug, task_index, flow_slug, visible_at, pool, lane,
                                          priority)
         SELECT $1, $2, $3, t.flow_slug,
                CASE WHEN t.running THEN clock_timestamp() + make_interval(secs => t.delay) ELSE 'infinity' END, ",
    crate::pool_of_sql!("t.flow_slug", "$2"),
    ",
                (SELECT $3 % nullif(count(*), 0)::int FROM pgflow._step_shards sh
                 WHERE sh.run_id = $1 AND sh.step_slug = $2), ",
    crate::run_priority_sql!("$1"),
    "
         FROM t WHERE t.message_id IS NULL
         ON CONFLICT (run_id, step_slug, task_index) DO UPDATE SET visible_at = EXCLUDED.visible_at
         RETURNING 1
     )
     SELECT (SELECT count(*) FROM msg) + (SELECT count(*) FROM local) AS delayed"
    ),
    &[UUIDOID, TEXTOID, INT4OID, INT4OID],
);

pub(crate) fn fail_task(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: Option<&str>,
) -> Option<TaskRow> {
    let locked = lock_run_and_step(client, run_id, step_slug)?;
    if locked.run_status == RunStatus::Failed {
        if control::is_cancelled(client, run_id) {
            control::ignored_after_cancel(run_id, "failure");
            return None;
        }
        FAIL_TASK_OF_FAILED_RUN.run(
            client,
            &[
                run_id.into(),
                step_slug.into(),
                task_index.into(),
                error_message.into(),
            ],
        );
        archive::task_message(client, run_id, step_slug, task_index);
        return task_row(client, outer, run_id, step_slug, task_index);
    }
    if locked.step_status != StepStatus::Started {
        archive::task_message(client, run_id, step_slug, task_index);
        return task_row(client, outer, run_id, step_slug, task_index);
    }

    let new_status = first(FAIL_TASK_ROW.run(
        client,
        &[
            run_id.into(),
            step_slug.into(),
            task_index.into(),
            error_message.into(),
            locked.flow_slug.as_str().into(),
        ],
    ))
    .and_then(|row| TaskStatus::read(&row, "status"));

    match (new_status, locked.when_exhausted) {
        (Some(TaskStatus::Queued), _) => {
            STEP_RETRYING.run(client, &[run_id.into(), step_slug.into()]);
        }
        (Some(TaskStatus::Failed), Handling::Fail) => {
            step_failed::fail_step_and_run(client, run_id, step_slug, error_message);
        }
        (Some(TaskStatus::Failed), skip) => {
            step_failed::skip_step_after_failure(client, run_id, step_slug, error_message);
            if skip == Handling::SkipCascade {
                force_skip::force_skip_steps(
                    client,
                    run_id,
                    Some(step_slug),
                    Some("handler_failed"),
                );
            } else {
                step_failed::dependents_of_skipped(client, run_id, step_slug, &locked.flow_slug);
                if !conditions::resolve_conditions(client, run_id) {
                    archive::task_message(client, run_id, step_slug, task_index);
                    return task_row(client, outer, run_id, step_slug, task_index);
                }
                taskless_steps::complete_taskless_steps(client, run_id);
                start_ready_steps::start_ready_steps_of(client, run_id, &locked.flow_slug);
            }
            maybe_complete_run::maybe_complete_run(client, run_id);
        }
        _ => {}
    }

    let task = task_state(client, outer, run_id, step_slug, task_index)?;
    match task.status {
        TaskStatus::Queued => {
            RETRY_DELAY.run(
                client,
                &[
                    run_id.into(),
                    step_slug.into(),
                    task_index.into(),
                    Option::<i32>::None.into(),
                ],
            );
        }
        TaskStatus::Failed => archive::task_message(client, run_id, step_slug, task_index),
        _ => {}
    }
    Some(task.row)
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_worker_of_run;

    /// Records a failed attempt: retry with backoff, or fail/skip the step when exhausted.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn fail_task(
        run_id: Option<pgrx::Uuid>,
        step_slug: Option<&str>,
        task_index: Option<i32>,
        error_message: Option<&str>,
    ) -> SetOfIterator<'static, TaskRow> {
        let outer = caller_context();
        let row = match (run_id, step_slug, task_index) {
            (Some(run_id), Some(step_slug), Some(task_index)) => Spi::connect_mut(|client| {
                as_worker_of_run(client, run_id, |client| {
                    super::fail_task(client, outer, run_id, step_slug, task_index, error_message)
                })
            }),
            _ => None,
        };
        SetOfIterator::new(row)
    }
}
