//! complete_task: a started task completes. A single step's task completes its step in one
//! statement; a map step's tasks count down on its step_states row, or on shards when it has
//! them; the last one completes the step with the ordered outputs of its tasks.

use pgrx::pg_sys::{INT4OID, JSONBOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::lock::{Locked, StepContext, lock_run_and_step, step_context};
use super::rows::{RunStatus, StepStatus, StepType, TaskStatus, task_row, task_state};
use super::step_completed::{
    StepCounts, after_step_completed, cascades_after_step, start_and_finish,
};
use super::{archive, control, shards, step_failed};
use crate::datum::{Jsonb, RawDatum, TaskRow};
use crate::error::sqlstate_of;
use crate::memory::{caller_context, copy_to};
use crate::statement::{Statement, first, named};
use crate::status;

/// A map step's output: its completed tasks' outputs in task_index order (of step state `ss`).
macro_rules! map_step_output_sql {
    () => {
        "(SELECT coalesce(jsonb_agg(t.output ORDER BY t.task_index), '[]'::jsonb)
          FROM pgflow.step_tasks t
          WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug AND t.status = 'completed')"
    };
}

// A single step's only task completes it: the task, the step, its dependents and the run in
// one statement, returning what the follow-up needs.
static COMPLETE_SINGLE: Statement = Statement::new(
    concat!(
        "WITH task AS (
             UPDATE pgflow.step_tasks t SET status = 'completed', completed_at = greatest(now(), t.started_at), output = $4
             WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = ",
        status!("started"),
        "
             RETURNING t, t.message_id
         ), step AS (
             UPDATE pgflow.step_states ss
             SET remaining_tasks = 0, status = 'completed', completed_at = greatest(now(), ss.started_at), output = $4
             WHERE ss.run_id = $1 AND ss.step_slug = $2 AND EXISTS (SELECT 1 FROM task)
             RETURNING ss.run_id, ss.flow_slug, ss.step_slug, ss.output, ss.completed_at, false AS skipped
         )",
        after_step_completed_sql!(),
        ", task.t AS task, task.message_id FROM step, task"
    ),
    &[UUIDOID, TEXTOID, INT4OID, JSONBOID],
);

static COMPLETE_TASK_ROW: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.step_tasks t SET status = 'completed', completed_at = greatest(now(), t.started_at), output = $4
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = ",
        status!("started"),
        "
         RETURNING t AS task, t.message_id"
    ),
    &[UUIDOID, TEXTOID, INT4OID, JSONBOID],
);

// One task fewer to go; the last one completes the step with its output (map: ordered array).
static STEP_TASK_DONE: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.step_states ss
         SET remaining_tasks = ss.remaining_tasks - 1,
             status = CASE WHEN ss.remaining_tasks = 1 THEN 'completed' ELSE ss.status END,
             completed_at = CASE WHEN ss.remaining_tasks = 1 THEN greatest(now(), ss.started_at) ELSE ss.completed_at END,
             output = CASE WHEN ss.remaining_tasks <> 1 THEN ss.output
                           WHEN $3 = 'single' THEN $4
                           ELSE ",
        map_step_output_sql!(),
        " END
         WHERE ss.run_id = $1 AND ss.step_slug = $2
         RETURNING ss.status = 'completed' AS completed"
    ),
    &[UUIDOID, TEXTOID, TEXTOID, JSONBOID],
);

// Under the step lock: a sharded step's remaining tasks are the shards' sum; at 0 the step
// completes with the outputs of its tasks.
static MAP_STEP_PROGRESS: Statement = Statement::new(
    concat!(
        "WITH total AS (
             SELECT coalesce(sum(remaining), 0)::int AS remaining
             FROM pgflow._step_shards WHERE run_id = $1 AND step_slug = $2
         )
         UPDATE pgflow.step_states ss
         SET remaining_tasks = total.remaining,
             status = CASE WHEN total.remaining = 0 THEN 'completed' ELSE ss.status END,
             completed_at = CASE WHEN total.remaining = 0 THEN greatest(now(), ss.started_at) ELSE ss.completed_at END,
             output = CASE WHEN total.remaining = 0 THEN ",
        map_step_output_sql!(),
        " END
         FROM total
         WHERE ss.run_id = $1 AND ss.step_slug = $2 AND ss.status = 'started'
         RETURNING ss.status = 'completed' AS completed"
    ),
    &[UUIDOID, TEXTOID],
);

pub(crate) fn complete_task(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    output: Option<Jsonb>,
) -> Option<TaskRow> {
    // A map step's tasks count down on shards, so that their completions do not queue on the
    // run's and the step's row locks; everything else locks both first.
    let context = step_context(client, run_id, step_slug)?;
    let shards = shards::shard_count(context.step_type, context.initial_tasks.unwrap_or(0));
    if shards > 0 && context.is_running() {
        return complete_map_task(
            client, outer, run_id, step_slug, task_index, output, &context, shards,
        );
    }
    complete_locked(client, outer, run_id, step_slug, task_index, output)
}

/// complete_task under the run and step locks.
fn complete_locked(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    output: Option<Jsonb>,
) -> Option<TaskRow> {
    let locked = lock_run_and_step(client, run_id, step_slug)?;
    if locked.run_status == RunStatus::Failed {
        if control::is_cancelled(client, run_id) {
            control::ignored_after_cancel(run_id, "completion");
            return None;
        }
        return task_row(client, outer, run_id, step_slug, task_index);
    }
    if locked.step_status != StepStatus::Started {
        archive::task_message(client, run_id, step_slug, task_index);
        return task_row(client, outer, run_id, step_slug, task_index);
    }
    if locked.step_type == StepType::Single {
        if locked.feeds_map
            && step_failed::fail_on_type_violation(
                client,
                run_id,
                step_slug,
                &locked.flow_slug,
                task_index,
                output,
            )
        {
            return task_row(client, outer, run_id, step_slug, task_index);
        }
        return complete_single(
            client, outer, run_id, step_slug, task_index, output, &locked,
        );
    }

    let Some((task, message_id)) =
        mark_completed(client, outer, run_id, step_slug, task_index, output)
    else {
        return unchanged(client, outer, run_id, step_slug, task_index);
    };
    let step_completed = first(STEP_TASK_DONE.run(
        client,
        &[
            run_id.into(),
            step_slug.into(),
            locked.step_type.as_sql().into(),
            output.into(),
        ],
    ))
    .and_then(|row| named::<bool>(&row, "completed"))
    .unwrap_or(false);

    let next = step_completed.then(|| after_step_completed(client, run_id, step_slug, &locked));
    archive::message(client, &locked.flow_slug, message_id);
    if let Some(next) = next {
        start_and_finish(client, run_id, &locked.flow_slug, next);
    }
    Some(task)
}

/// A single step's task: task, step, dependents and run in one statement.
fn complete_single(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    output: Option<Jsonb>,
    locked: &Locked,
) -> Option<TaskRow> {
    let Some(row) = first(COMPLETE_SINGLE.run(
        client,
        &[
            run_id.into(),
            step_slug.into(),
            task_index.into(),
            output.into(),
        ],
    )) else {
        return unchanged(client, outer, run_id, step_slug, task_index);
    };
    let task = TaskRow(copy_to(outer, named::<RawDatum>(&row, "task")?.0));
    let message_id: Option<i64> = named(&row, "message_id");
    let counts = StepCounts::read(&row);
    let next = cascades_after_step(client, run_id, locked, counts);
    archive::message(client, &locked.flow_slug, message_id);
    start_and_finish(client, run_id, &locked.flow_slug, next);
    Some(task)
}

/// Completion of one task of a map step with shards. Its shard is counted down first; the
/// completion that empties the shard locks the run and the step before its task, in the
/// transitions' order, and sees whether the whole step is done.
#[allow(clippy::too_many_arguments)]
fn complete_map_task(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    output: Option<Jsonb>,
    context: &StepContext,
    shards: i32,
) -> Option<TaskRow> {
    let shard = shards::shard_of(task_index, shards);
    let Some(left) = shards::count_down(client, run_id, step_slug, shard) else {
        return complete_locked(client, outer, run_id, step_slug, task_index, output);
    };
    let locked = if left == 0 {
        Some(lock_run_and_step(client, run_id, step_slug)?)
    } else {
        None
    };
    let Some((task, message_id)) =
        mark_completed(client, outer, run_id, step_slug, task_index, output)
    else {
        // Not started any more: the count goes back, and complete_task gives its usual answers.
        shards::give_back(client, run_id, step_slug, shard);
        let now = step_context(client, run_id, step_slug)?;
        if now.run_status != RunStatus::Failed && now.step_status != StepStatus::Started {
            archive::task_message(client, run_id, step_slug, task_index);
        }
        if now.run_status == RunStatus::Failed || now.step_status != StepStatus::Started {
            return task_row(client, outer, run_id, step_slug, task_index);
        }
        return unchanged(client, outer, run_id, step_slug, task_index);
    };
    archive::message(client, &context.flow_slug, message_id);
    // This shard is done: under the run and step locks, with a fresh snapshot that shows every
    // other shard finisher that committed before us, see whether the whole step is done.
    let Some(locked) = locked else {
        return Some(task);
    };
    if !locked.is_running() {
        return Some(task);
    }
    // The step's output is one jsonb array of its tasks' outputs; past jsonb's size limit
    // (54000) the step and the run fail instead of the completion failing again at every try.
    let progress = crate::transaction::in_subtransaction(
        || {
            first(MAP_STEP_PROGRESS.run(client, &[run_id.into(), step_slug.into()]))
                .and_then(|row| named::<bool>(&row, "completed"))
                .unwrap_or(false)
        },
        |_| true,
    );
    let step_completed = match progress {
        Ok(completed) => completed,
        Err(error) if sqlstate_of(&error) == PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED => {
            let message = format!(
                "[OUTPUT_TOO_LARGE] Map step {step_slug}: the outputs of its tasks add up to more than jsonb allows (256 MB)"
            );
            step_failed::fail_step_and_run(client, run_id, step_slug, Some(&message));
            return Some(task);
        }
        Err(error) => error.rethrow(),
    };
    if step_completed {
        shards::remove(client, run_id, step_slug);
        let next = after_step_completed(client, run_id, step_slug, &locked);
        start_and_finish(client, run_id, &locked.flow_slug, next);
    }
    Some(task)
}

/// Marks a started task completed; returns its new row (copied into `outer`) and message id.
fn mark_completed(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    output: Option<Jsonb>,
) -> Option<(TaskRow, Option<i64>)> {
    let row = first(COMPLETE_TASK_ROW.run(
        client,
        &[
            run_id.into(),
            step_slug.into(),
            task_index.into(),
            output.into(),
        ],
    ))?;
    let task = TaskRow(copy_to(outer, named::<RawDatum>(&row, "task")?.0));
    Some((task, named(&row, "message_id")))
}

/// A repeated or out-of-order completion: nothing changes; a completed task's message is archived.
fn unchanged(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
) -> Option<TaskRow> {
    let task = task_state(client, outer, run_id, step_slug, task_index);
    if task
        .as_ref()
        .is_some_and(|t| t.status == TaskStatus::Completed && t.message_id.is_some())
    {
        archive::task_message(client, run_id, step_slug, task_index);
    }
    task.map(|t| t.row)
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_worker_of_run;

    /// Completes a started task; may complete its step, start dependents and complete the run.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn complete_task(
        run_id: Option<pgrx::Uuid>,
        step_slug: Option<&str>,
        task_index: Option<i32>,
        output: Option<Jsonb>,
    ) -> SetOfIterator<'static, TaskRow> {
        let outer = caller_context();
        let row = match (run_id, step_slug, task_index) {
            (Some(run_id), Some(step_slug), Some(task_index)) => Spi::connect_mut(|client| {
                as_worker_of_run(client, run_id, |client| {
                    super::complete_task(client, outer, run_id, step_slug, task_index, output)
                })
            }),
            _ => None,
        };
        SetOfIterator::new(row)
    }
}
