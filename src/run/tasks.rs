//! start_tasks, complete_task and fail_task: the hot path of every worker.

use pgrx::PgTupleDesc;
use pgrx::pg_sys::{INT4OID, INT8ARRAYOID, JSONBOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{
    archive_run_messages, archive_step_messages, archive_task_message, cascade, emit_events,
    emit_row, start, task_state,
};
use crate::datum::{Jsonb, RawDatum, TaskRecord, TaskRow};
use crate::statement::{Statement, caller_context, col, copy_to, first};
use crate::status;

// Claims queued tasks of running steps, with what their input is built from. The plan must
// start from the message ids and reach each task by its full primary key, whatever the
// statistics say: the candidates are found by message id alone (message ids are per queue, so
// the flow is checked after); the task rows are joined to the candidates only, on their key (a
// `t.flow_slug` test or a join to step_states would let the planner reach them by a key prefix
// and read every task of a map step per lookup); the run and the step are checked by subqueries
// on their keys; and the task's status is tested with `status!` (see there).
static CLAIM_TASKS: Statement = Statement::new(
    concat!(
    "WITH candidates AS MATERIALIZED (
         SELECT c.flow_slug, c.run_id, c.step_slug, c.task_index FROM pgflow.step_tasks c
         WHERE c.message_id = ANY($2)
     )
     UPDATE pgflow.step_tasks t
     SET attempts_count = t.attempts_count + 1, status = 'started', started_at = now(), last_worker_id = $3
     FROM candidates c, pgflow.steps s
     WHERE c.flow_slug = $1
       AND t.run_id = c.run_id AND t.step_slug = c.step_slug AND t.task_index = c.task_index
       AND t.status = ", status!("queued"), "
       AND s.flow_slug = c.flow_slug AND s.step_slug = c.step_slug
       AND (SELECT r.status FROM pgflow.runs r WHERE r.run_id = c.run_id) = 'started'
       AND (SELECT ss.status FROM pgflow.step_states ss
            WHERE ss.run_id = c.run_id AND ss.step_slug = c.step_slug) = 'started'
     RETURNING t.run_id, t.step_slug, t.task_index, t.message_id, s.step_type, s.deps_count,
               CASE WHEN s.step_type = 'single' THEN
                    coalesce((SELECT jsonb_object_agg(d.dep_slug, ds.output)
                              FROM pgflow.deps d
                              JOIN pgflow.step_states ds ON ds.run_id = t.run_id AND ds.step_slug = d.dep_slug
                              WHERE d.flow_slug = t.flow_slug AND d.step_slug = t.step_slug
                                AND ds.status = 'completed'), '{}'::jsonb) END,
               CASE WHEN s.step_type = 'single' AND s.deps_count = 0 THEN
                    (SELECT r.input FROM pgflow.runs r WHERE r.run_id = t.run_id) END"
    ),
    &[TEXTOID, INT8ARRAYOID, UUIDOID],
);

// The array a map step's tasks take their elements from: the run input for a root map, the
// output of its single dependency otherwise.
static MAP_SOURCE: Statement = Statement::new(
    "SELECT CASE WHEN $3 = 0 THEN r.input
                 ELSE (SELECT ds.output FROM pgflow.deps d
                       JOIN pgflow.step_states ds ON ds.run_id = r.run_id AND ds.step_slug = d.dep_slug
                       WHERE d.flow_slug = r.flow_slug AND d.step_slug = $2 LIMIT 1) END
     FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID, TEXTOID, INT4OID],
);

struct Claimed {
    run_id: pgrx::Uuid,
    step_slug: String,
    task_index: i32,
    message_id: Option<i64>,
    step_type: String,
    deps_count: i32,
    /// A single step's input and flow input (map inputs come from `TASK_SOURCE`).
    input: Option<pgrx::pg_sys::Datum>,
    flow_input: Option<pgrx::pg_sys::Datum>,
}

/// Starts the queued tasks behind `msg_ids` and builds their `step_task_record`s in `outer`.
/// A single step's input comes with its claim; a map step's array is read and detoasted once
/// per call, not once per task, and each map task takes one element of it.
fn start_tasks(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    flow_slug: Option<&str>,
    msg_ids: Vec<Option<i64>>,
    worker_id: Option<pgrx::Uuid>,
) -> Vec<TaskRecord> {
    use pgrx::pg_sys;
    let claimed: Vec<Claimed> = CLAIM_TASKS
        .run(
            client,
            &[flow_slug.into(), Some(msg_ids).into(), worker_id.into()],
        )
        .filter_map(|row| {
            Some(Claimed {
                run_id: col(&row, 1)?,
                step_slug: col(&row, 2)?,
                task_index: col(&row, 3)?,
                message_id: col(&row, 4),
                step_type: col(&row, 5)?,
                deps_count: col(&row, 6)?,
                input: col::<RawDatum>(&row, 7).map(|d| d.0),
                flow_input: col::<RawDatum>(&row, 8).map(|d| d.0),
            })
        })
        .collect();
    if claimed.is_empty() {
        return Vec::new();
    }

    let mut sources: std::collections::HashMap<(pgrx::Uuid, String), Option<pg_sys::Datum>> =
        std::collections::HashMap::new();
    let tupdesc = PgTupleDesc::for_composite_type("pgflow.step_task_record").unwrap_or_else(|| {
        crate::statement::internal_error("type pgflow.step_task_record is missing")
    });
    check_record_type(&tupdesc);
    let mut records = Vec::with_capacity(claimed.len());
    for task in &claimed {
        if task.step_type != "map" {
            let values = [
                flow_slug.into_datum(),
                task.run_id.into_datum(),
                task.step_slug.as_str().into_datum(),
                task.input,
                task.message_id.into_datum(),
                task.task_index.into_datum(),
                task.flow_input,
            ];
            records.push(TaskRecord(form_record(&tupdesc, outer, &values)));
            continue;
        }
        let key = (task.run_id, task.step_slug.clone());
        let source = *sources.entry(key).or_insert_with(|| {
            first(MAP_SOURCE.run(
                client,
                &[
                    task.run_id.into(),
                    task.step_slug.as_str().into(),
                    task.deps_count.into(),
                ],
            ))
            .and_then(|row| col::<RawDatum>(&row, 1))
            .map(|d| copy_to(outer, d.0))
        });
        let input = source.and_then(|array| unsafe {
            pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_array_element,
                &[Some(array), task.task_index.into_datum()],
            )
        });
        let values = [
            flow_slug.into_datum(),
            task.run_id.into_datum(),
            task.step_slug.as_str().into_datum(),
            input,
            task.message_id.into_datum(),
            task.task_index.into_datum(),
            None,
        ];
        records.push(TaskRecord(form_record(&tupdesc, outer, &values)));
    }
    records
}

/// The attribute types of `pgflow.step_task_record` that `form_record` fills.
const TASK_RECORD_TYPES: [pgrx::pg_sys::Oid; 7] = [
    pgrx::pg_sys::TEXTOID,
    pgrx::pg_sys::UUIDOID,
    pgrx::pg_sys::TEXTOID,
    JSONBOID,
    pgrx::pg_sys::INT8OID,
    INT4OID,
    JSONBOID,
];

/// Refuses a `step_task_record` whose attributes were altered (an owner's ALTER TYPE): forming
/// a tuple against another descriptor would read past the values or misread them.
fn check_record_type(tupdesc: &PgTupleDesc<'_>) {
    let types: Vec<pgrx::pg_sys::Oid> = tupdesc
        .iter()
        .filter(|a| !a.attisdropped)
        .map(|a| a.atttypid)
        .collect();
    if tupdesc.len() != TASK_RECORD_TYPES.len() || types != TASK_RECORD_TYPES {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            "type pgflow.step_task_record was altered",
            "start_tasks needs its attributes to be (flow_slug text, run_id uuid, step_slug text, input jsonb, msg_id bigint, task_index integer, flow_input jsonb); restore the type's definition"
        );
    }
}

/// A composite datum of `tupdesc`'s type, allocated in `context`.
fn form_record(
    tupdesc: &PgTupleDesc<'_>,
    context: pgrx::pg_sys::MemoryContext,
    values: &[Option<pgrx::pg_sys::Datum>],
) -> pgrx::pg_sys::Datum {
    use pgrx::pg_sys;
    let mut datums: Vec<pg_sys::Datum> = values
        .iter()
        .map(|v| v.unwrap_or(pg_sys::Datum::from(0)))
        .collect();
    let mut nulls: Vec<bool> = values.iter().map(Option::is_none).collect();
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(context);
        let tuple =
            pg_sys::heap_form_tuple(tupdesc.as_ptr(), datums.as_mut_ptr(), nulls.as_mut_ptr());
        let datum = pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data);
        pg_sys::MemoryContextSwitchTo(old);
        datum
    }
}

// The run and step state of a task (columns shared by the two statements below).
macro_rules! task_context_sql {
    ($lock:literal) => {
        concat!(
            "SELECT r.status, ss.status, s.step_type, r.flow_slug, s.when_exhausted, ss.initial_tasks,
                    EXISTS (SELECT 1 FROM pgflow.deps d
                            JOIN pgflow.steps ms ON ms.flow_slug = d.flow_slug AND ms.step_slug = d.step_slug
                            WHERE d.flow_slug = r.flow_slug AND d.dep_slug = $2 AND ms.step_type = 'map'),
                    EXISTS (SELECT 1 FROM pgflow.steps cs
                            WHERE cs.flow_slug = r.flow_slug
                              AND (cs.required_input_pattern IS NOT NULL OR cs.forbidden_input_pattern IS NOT NULL))
             FROM pgflow.runs r
             JOIN pgflow.step_states ss ON ss.run_id = r.run_id AND ss.step_slug = $2
             JOIN pgflow.steps s ON s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
             WHERE r.run_id = $1 ",
            $lock
        )
    };
}

// The lock order of every transition: the run, then the step state, then tasks (and their
// messages). Transitions that change a run or a step lock both rows FOR UPDATE first. A map
// step with shards adds one lock in front: a completion of one of its tasks counts down the
// task's shard row first (`SHARD_DOWN`); only the completion that empties the shard then locks
// the run and the step, before its task. Nothing waits for a shard row while holding a run.
static LOCK_RUN_AND_STEP: Statement = Statement::new(
    task_context_sql!("FOR UPDATE OF r, ss"),
    &[UUIDOID, TEXTOID],
);

// The same, lighter and without locks: whether the task belongs to a map step with shards.
static TASK_CONTEXT: Statement = Statement::new(
    "SELECT r.status, ss.status, s.step_type, r.flow_slug, s.when_exhausted, ss.initial_tasks, false, false
     FROM pgflow.runs r
     JOIN pgflow.step_states ss ON ss.run_id = r.run_id AND ss.step_slug = $2
     JOIN pgflow.steps s ON s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
     WHERE r.run_id = $1",
    &[UUIDOID, TEXTOID],
);

// A single step's only task completes it: the task, the step, its dependents and the run in
// one statement (contract 2.3, complete_task 5a-5d), returning what the follow-up needs.
static COMPLETE_SINGLE: Statement = Statement::new(
    concat!(
    "WITH task AS (
         UPDATE pgflow.step_tasks t SET status = 'completed', completed_at = now(), output = $4
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = ", status!("started"), "
         RETURNING t, t.message_id
     ), step AS (
         UPDATE pgflow.step_states ss
         SET remaining_tasks = 0, status = 'completed', completed_at = now(), output = $4
         WHERE ss.run_id = $1 AND ss.step_slug = $2 AND EXISTS (SELECT 1 FROM task)
         RETURNING ss.run_id, ss.step_slug, ss.flow_slug, ss.output, ss.completed_at
     ), children AS (
         UPDATE pgflow.step_states child
         SET remaining_deps = child.remaining_deps - 1,
             initial_tasks = CASE WHEN cs.step_type = 'map' AND child.initial_tasks IS NULL
                                       AND jsonb_typeof($4) = 'array'
                                  THEN jsonb_array_length($4)
                                  ELSE child.initial_tasks END
         FROM step, pgflow.deps d, pgflow.steps cs
         WHERE d.flow_slug = step.flow_slug AND d.dep_slug = step.step_slug
           AND child.run_id = $1 AND child.step_slug = d.step_slug
           AND cs.flow_slug = child.flow_slug AND cs.step_slug = child.step_slug
         RETURNING child.status, child.remaining_deps, child.initial_tasks
     ), run AS (
         UPDATE pgflow.runs SET remaining_steps = remaining_steps - 1
         WHERE run_id = $1 AND EXISTS (SELECT 1 FROM step)
         RETURNING remaining_steps
     )
     SELECT task.t, task.message_id,
            (SELECT jsonb_build_object('event_type', 'step:completed', 'run_id', run_id, 'step_slug', step_slug,
                                       'status', 'completed', 'output', output, 'completed_at', completed_at)
             FROM step),
            (SELECT remaining_steps FROM run),
            (SELECT count(*)::int FROM children WHERE status = 'created' AND remaining_deps = 0 AND initial_tasks > 0),
            (SELECT count(*)::int FROM children WHERE status = 'created' AND remaining_deps = 0 AND initial_tasks = 0)
     FROM task"
    ),
    &[UUIDOID, TEXTOID, INT4OID, JSONBOID],
);

// A dependent map step still waiting to learn its size, when `output` cannot give it one.
static TYPE_CHECK: Statement = Statement::new(
    "SELECT d.step_slug, coalesce(jsonb_typeof($4), 'null')
     FROM pgflow.deps d
     JOIN pgflow.steps ms ON ms.flow_slug = d.flow_slug AND ms.step_slug = d.step_slug AND ms.step_type = 'map'
     JOIN pgflow.step_states mss ON mss.run_id = $1 AND mss.step_slug = d.step_slug AND mss.initial_tasks IS NULL
     WHERE d.flow_slug = $3 AND d.dep_slug = $2 AND ($4 IS NULL OR jsonb_typeof($4) <> 'array')
     ORDER BY d.step_slug
     LIMIT 1",
    &[UUIDOID, TEXTOID, TEXTOID, JSONBOID],
);

static TYPE_VIOLATION_RUN: Statement = Statement::new(
    "UPDATE pgflow.runs SET status = 'failed', failed_at = now()
     WHERE run_id = $1
     RETURNING 'run:failed', 'pgflow:run:' || run_id,
               jsonb_build_object('event_type', 'run:failed', 'run_id', run_id, 'flow_slug', flow_slug,
                                  'status', 'failed', 'failed_at', failed_at)",
    &[UUIDOID],
);

static TYPE_VIOLATION_TASK_AND_STEP: Statement = Statement::new(
    "WITH task AS (
         UPDATE pgflow.step_tasks
         SET status = 'failed', failed_at = now(), output = $3,
             error_message = '[TYPE_VIOLATION] Produced ' || $4 || ' instead of array'
         WHERE run_id = $1 AND step_slug = $2 AND task_index = $6
     ), step AS (
         UPDATE pgflow.step_states
         SET status = 'failed', failed_at = now(),
             error_message = '[TYPE_VIOLATION] Map step ' || $5 || ' expects array input but dependency '
                             || $2 || ' produced ' || $4
         WHERE run_id = $1 AND step_slug = $2
         RETURNING run_id, step_slug, error_message, failed_at
     )
     SELECT 'step:' || step_slug || ':failed', 'pgflow:run:' || run_id,
            jsonb_build_object('event_type', 'step:failed', 'run_id', run_id, 'step_slug', step_slug,
                               'status', 'failed', 'error_message', error_message, 'failed_at', failed_at)
     FROM step",
    &[UUIDOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, INT4OID],
);

static COMPLETE_TASK_ROW: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.step_tasks t SET status = 'completed', completed_at = now(), output = $4
         WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.status = ",
        status!("started"),
        "
         RETURNING t, t.message_id"
    ),
    &[UUIDOID, TEXTOID, INT4OID, JSONBOID],
);

// A map task's share of its step's countdown (one of up to `MAX_SHARDS` rows per step), taken
// before the task itself; given back when the task turns out not to complete.
static SHARD_DOWN: Statement = Statement::new(
    "UPDATE pgflow._step_shards SET remaining = remaining - 1
     WHERE run_id = $1 AND step_slug = $2 AND shard = $3
     RETURNING remaining",
    &[UUIDOID, TEXTOID, INT4OID],
);
static SHARD_UP: Statement = Statement::new(
    "UPDATE pgflow._step_shards SET remaining = remaining + 1
     WHERE run_id = $1 AND step_slug = $2 AND shard = $3",
    &[UUIDOID, TEXTOID, INT4OID],
);

// Under the step lock: the step's remaining tasks are the shards' sum; at 0 the step completes
// with the outputs of its tasks in task_index order.
static MAP_STEP_PROGRESS: Statement = Statement::new(
    "WITH total AS (
         SELECT coalesce(sum(remaining), 0)::int AS remaining
         FROM pgflow._step_shards WHERE run_id = $1 AND step_slug = $2
     )
     UPDATE pgflow.step_states ss
     SET remaining_tasks = total.remaining,
         status = CASE WHEN total.remaining = 0 THEN 'completed' ELSE ss.status END,
         completed_at = CASE WHEN total.remaining = 0 THEN now() ELSE ss.completed_at END,
         output = CASE WHEN total.remaining = 0
                       THEN (SELECT coalesce(jsonb_agg(t.output ORDER BY t.task_index), '[]'::jsonb)
                             FROM pgflow.step_tasks t
                             WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug AND t.status = 'completed')
                  END
     FROM total
     WHERE ss.run_id = $1 AND ss.step_slug = $2 AND ss.status = 'started'
     RETURNING ss.status = 'completed'",
    &[UUIDOID, TEXTOID],
);

static DROP_SHARDS: Statement = Statement::new(
    "DELETE FROM pgflow._step_shards WHERE run_id = $1 AND step_slug = $2",
    &[UUIDOID, TEXTOID],
);

// One task fewer to go; the last one completes the step with its output (map: ordered array).
static STEP_TASK_DONE: Statement = Statement::new(
    "UPDATE pgflow.step_states ss
     SET remaining_tasks = ss.remaining_tasks - 1,
         status = CASE WHEN ss.remaining_tasks = 1 THEN 'completed' ELSE ss.status END,
         completed_at = CASE WHEN ss.remaining_tasks = 1 THEN now() ELSE ss.completed_at END,
         output = CASE WHEN ss.remaining_tasks <> 1 THEN ss.output
                       WHEN $3 = 'single' THEN $4
                       ELSE (SELECT coalesce(jsonb_agg(t.output ORDER BY t.task_index), '[]'::jsonb)
                             FROM pgflow.step_tasks t
                             WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug
                               AND t.status = 'completed')
                  END
     WHERE ss.run_id = $1 AND ss.step_slug = $2
     RETURNING ss.status = 'completed'",
    &[UUIDOID, TEXTOID, TEXTOID, JSONBOID],
);

// A completed step: dependents lose a dependency (a dependent map learns its size) and the
// run has one step fewer to go. Also returns what the follow-up needs: the run's remaining
// steps, and how many dependents became ready with tasks or without any.
static STEP_COMPLETED: Statement = Statement::new(
    "WITH step AS (
         SELECT ss.run_id, ss.step_slug, ss.flow_slug, ss.output, ss.completed_at
         FROM pgflow.step_states ss WHERE ss.run_id = $1 AND ss.step_slug = $2
     ), children AS (
         UPDATE pgflow.step_states child
         SET remaining_deps = child.remaining_deps - 1,
             initial_tasks = CASE WHEN cs.step_type = 'map' AND child.initial_tasks IS NULL
                                       AND jsonb_typeof(step.output) = 'array'
                                  THEN jsonb_array_length(step.output)
                                  ELSE child.initial_tasks END
         FROM step, pgflow.deps d, pgflow.steps cs
         WHERE d.flow_slug = step.flow_slug AND d.dep_slug = step.step_slug
           AND child.run_id = $1 AND child.step_slug = d.step_slug
           AND cs.flow_slug = child.flow_slug AND cs.step_slug = child.step_slug
         RETURNING child.status, child.remaining_deps, child.initial_tasks
     ), run AS (
         UPDATE pgflow.runs SET remaining_steps = remaining_steps - 1 WHERE run_id = $1
         RETURNING remaining_steps
     )
     SELECT 'step:' || step_slug || ':completed', 'pgflow:run:' || run_id,
            jsonb_build_object('event_type', 'step:completed', 'run_id', run_id, 'step_slug', step_slug,
                               'status', 'completed', 'output', output, 'completed_at', completed_at),
            (SELECT remaining_steps FROM run),
            (SELECT count(*)::int FROM children WHERE status = 'created' AND remaining_deps = 0 AND initial_tasks > 0),
            (SELECT count(*)::int FROM children WHERE status = 'created' AND remaining_deps = 0 AND initial_tasks = 0)
     FROM step",
    &[UUIDOID, TEXTOID],
);

static FAIL_TASK_OF_FAILED_RUN: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.step_tasks SET status = 'failed', failed_at = now(), error_message = $4
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
         failed_at = CASE WHEN t.attempts_count < cfg.max_attempts THEN NULL ELSE now() END,
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

static STEP_AND_RUN_FAILED: Statement = Statement::new(
    "WITH step AS (
         UPDATE pgflow.step_states SET status = 'failed', failed_at = now(), error_message = $3
         WHERE run_id = $1 AND step_slug = $2
         RETURNING run_id, step_slug, failed_at
     ), run AS (
         UPDATE pgflow.runs SET status = 'failed', failed_at = now()
         WHERE run_id = $1
         RETURNING run_id, flow_slug, failed_at
     )
     SELECT event, topic, payload FROM (
         SELECT 1 AS ord, 'step:' || step_slug || ':failed' AS event, 'pgflow:run:' || run_id AS topic,
                jsonb_build_object('event_type', 'step:failed', 'run_id', run_id, 'step_slug', step_slug,
                                   'status', 'failed', 'error_message', $3, 'failed_at', failed_at) AS payload
         FROM step
         UNION ALL
         SELECT 2, 'run:failed', 'pgflow:run:' || run_id,
                jsonb_build_object('event_type', 'run:failed', 'run_id', run_id, 'flow_slug', flow_slug,
                                   'status', 'failed', 'error_message', $3, 'failed_at', failed_at)
         FROM run) events
     ORDER BY ord",
    &[UUIDOID, TEXTOID, TEXTOID],
);

static STEP_SKIPPED_BY_FAILURE: Statement = Statement::new(
    "WITH step AS (
         UPDATE pgflow.step_states
         SET status = 'skipped', skip_reason = 'handler_failed', skipped_at = now(), error_message = $3,
             remaining_tasks = NULL, failed_at = NULL
         WHERE run_id = $1 AND step_slug = $2 AND status <> 'skipped'
         RETURNING run_id, step_slug, error_message, skipped_at
     ), run AS (
         UPDATE pgflow.runs SET remaining_steps = remaining_steps - 1
         WHERE run_id = $1 AND EXISTS (SELECT 1 FROM step)
     )
     SELECT 'step:' || step_slug || ':skipped', 'pgflow:run:' || run_id,
            jsonb_build_object('event_type', 'step:skipped', 'run_id', run_id, 'step_slug', step_slug,
                               'status', 'skipped', 'skip_reason', 'handler_failed',
                               'error_message', error_message, 'skipped_at', skipped_at)
     FROM step",
    &[UUIDOID, TEXTOID, TEXTOID],
);

static DEPENDENTS_OF_SKIPPED: Statement = Statement::new(
    "UPDATE pgflow.step_states child
     SET remaining_deps = child.remaining_deps - 1,
         initial_tasks = CASE WHEN cs.step_type = 'map' AND cs.deps_count = 1 THEN 0
                              ELSE child.initial_tasks END
     FROM pgflow.deps d, pgflow.steps cs
     WHERE d.flow_slug = $3 AND d.dep_slug = $2
       AND child.run_id = $1 AND child.step_slug = d.step_slug
       AND cs.flow_slug = child.flow_slug AND cs.step_slug = child.step_slug",
    &[UUIDOID, TEXTOID, TEXTOID],
);

static RETRY_DELAY: Statement = Statement::new(
    "SELECT pgmq.set_vt(t.flow_slug, t.message_id,
                        pgflow.calculate_retry_delay(coalesce(s.opt_base_delay, f.opt_base_delay), t.attempts_count))
     FROM pgflow.step_tasks t
     JOIN pgflow.steps s ON s.flow_slug = t.flow_slug AND s.step_slug = t.step_slug
     JOIN pgflow.flows f ON f.flow_slug = t.flow_slug
     WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.message_id IS NOT NULL",
    &[UUIDOID, TEXTOID, INT4OID],
);

/// Up to this many countdown rows per map step: completions of one step contend only when
/// their task indexes fall into the same shard.
pub(crate) const MAX_SHARDS: i32 = 16;

/// How many shards a step with `tasks` tasks gets (0: it counts down on its step_states row).
pub(crate) fn shard_count(step_type: &str, tasks: i32) -> i32 {
    if step_type == "map" && tasks > 1 {
        tasks.min(MAX_SHARDS)
    } else {
        0
    }
}

struct Locked {
    run_status: String,
    step_status: String,
    step_type: String,
    flow_slug: String,
    when_exhausted: String,
    initial_tasks: Option<i32>,
    feeds_map: bool,
    has_conditions: bool,
}

fn task_context(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    lock: bool,
) -> Option<Locked> {
    task_context_locked(
        client,
        run_id,
        step_slug,
        if lock {
            &LOCK_RUN_AND_STEP
        } else {
            &TASK_CONTEXT
        },
    )
}

fn task_context_locked(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    statement: &'static Statement,
) -> Option<Locked> {
    let row = first(statement.run(client, &[run_id.into(), step_slug.into()]))?;
    Some(Locked {
        run_status: col(&row, 1).unwrap_or_default(),
        step_status: col(&row, 2).unwrap_or_default(),
        step_type: col(&row, 3).unwrap_or_default(),
        flow_slug: col(&row, 4).unwrap_or_default(),
        when_exhausted: col(&row, 5).unwrap_or_default(),
        initial_tasks: col(&row, 6),
        feeds_map: col(&row, 7).unwrap_or(false),
        has_conditions: col(&row, 8).unwrap_or(false),
    })
}

fn lock_run_and_step(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
) -> Option<Locked> {
    task_context(client, run_id, step_slug, true)
}

/// The task row, when the call itself did not produce it.
fn current_row(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
) -> Option<TaskRow> {
    task_state(client, outer, run_id, step_slug, task_index).map(|t| t.row)
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
    let task = TaskRow(copy_to(outer, col::<RawDatum>(&row, 1)?.0));
    Some((task, col(&row, 2)))
}

fn archive_message(client: &mut SpiClient<'_>, flow_slug: &str, message_id: Option<i64>) {
    if message_id.is_some() {
        let queue = crate::queue::name::QueueName::parse(Some(flow_slug));
        crate::queue::messages::archive_messages(client, &queue, Some(vec![message_id]));
    }
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
        .is_some_and(|t| t.status == "completed" && t.message_id.is_some())
    {
        archive_task_message(client, run_id, step_slug, task_index);
    }
    task.map(|t| t.row)
}

pub(crate) fn complete_task(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    output: Option<Jsonb>,
) -> Option<TaskRow> {
    // A map step's tasks count down on shards, so their completions do not queue on the run's
    // and the step's row locks; everything else locks both first (contract section 5a).
    let context = task_context(client, run_id, step_slug, false)?;
    let shards = shard_count(&context.step_type, context.initial_tasks.unwrap_or(0));
    if shards > 0 && context.run_status == "started" && context.step_status == "started" {
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
    if locked.run_status == "failed" {
        return current_row(client, outer, run_id, step_slug, task_index);
    }
    if locked.step_status != "started" {
        archive_task_message(client, run_id, step_slug, task_index);
        return current_row(client, outer, run_id, step_slug, task_index);
    }

    if locked.step_type == "single" && locked.feeds_map {
        let violation = first(TYPE_CHECK.run(
            client,
            &[
                run_id.into(),
                step_slug.into(),
                locked.flow_slug.as_str().into(),
                output.into(),
            ],
        ));
        if let Some(row) = violation {
            let map_slug: String = col(&row, 1).unwrap_or_default();
            let produced: String = col(&row, 2).unwrap_or_default();
            emit_events(TYPE_VIOLATION_RUN.run(client, &[run_id.into()]));
            archive_run_messages(client, run_id);
            emit_events(TYPE_VIOLATION_TASK_AND_STEP.run(
                client,
                &[
                    run_id.into(),
                    step_slug.into(),
                    output.into(),
                    produced.as_str().into(),
                    map_slug.as_str().into(),
                    task_index.into(),
                ],
            ));
            archive_task_message(client, run_id, step_slug, task_index);
            return current_row(client, outer, run_id, step_slug, task_index);
        }
    }

    if locked.step_type == "single" {
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
        let task = TaskRow(copy_to(outer, col::<RawDatum>(&row, 1)?.0));
        let message_id: Option<i64> = col(&row, 2);
        if crate::events::enabled()
            && let Some(payload) = col::<Jsonb>(&row, 3)
        {
            crate::events::emit(
                &format!("step:{step_slug}:completed"),
                &format!("pgflow:run:{run_id}"),
                payload,
            );
        }
        let counts = StepCounts {
            remaining_steps: col(&row, 4).unwrap_or(1),
            ready: col(&row, 5).unwrap_or(0),
            taskless: col(&row, 6).unwrap_or(0),
        };
        let next = cascades_after_step(client, run_id, &locked, counts);
        archive_message(client, &locked.flow_slug, message_id);
        start_and_finish(client, run_id, &locked.flow_slug, next);
        return Some(task);
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
            locked.step_type.as_str().into(),
            output.into(),
        ],
    ))
    .and_then(|row| col::<bool>(&row, 1))
    .unwrap_or(false);

    let next = step_completed.then(|| after_step_completed(client, run_id, step_slug, &locked));
    archive_message(client, &locked.flow_slug, message_id);
    if let Some(next) = next {
        start_and_finish(client, run_id, &locked.flow_slug, next);
    }
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
    context: &Locked,
    shards: i32,
) -> Option<TaskRow> {
    let shard_args = [
        run_id.into(),
        step_slug.into(),
        task_index.rem_euclid(shards).into(),
    ];
    let Some(left) = first(SHARD_DOWN.run(client, &shard_args)).and_then(|row| col::<i32>(&row, 1))
    else {
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
        SHARD_UP.run(client, &shard_args);
        let now = task_context(client, run_id, step_slug, false)?;
        if now.run_status != "failed" && now.step_status != "started" {
            archive_task_message(client, run_id, step_slug, task_index);
        }
        if now.run_status == "failed" || now.step_status != "started" {
            return current_row(client, outer, run_id, step_slug, task_index);
        }
        return unchanged(client, outer, run_id, step_slug, task_index);
    };
    archive_message(client, &context.flow_slug, message_id);
    // This shard is done: under the run and step locks, with a fresh snapshot that shows every
    // other shard finisher that committed before us, see whether the whole step is done.
    let Some(locked) = locked else {
        return Some(task);
    };
    if locked.run_status != "started" || locked.step_status != "started" {
        return Some(task);
    }
    // The step's output is one jsonb array of its tasks' outputs; past jsonb's size limit
    // (54000) the step and the run fail instead of the completion failing again at every try.
    let progress = crate::statement::in_subtransaction(
        || {
            first(MAP_STEP_PROGRESS.run(client, &[run_id.into(), step_slug.into()]))
                .and_then(|row| col::<bool>(&row, 1))
                .unwrap_or(false)
        },
        |_| true,
    );
    let step_completed = match progress {
        Ok(completed) => completed,
        Err(error)
            if sqlstate_of(&error) == Some(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED) =>
        {
            let message = format!(
                "[OUTPUT_TOO_LARGE] Map step {step_slug}: the outputs of its tasks add up to more than jsonb allows (256 MB)"
            );
            emit_events(STEP_AND_RUN_FAILED.run(
                client,
                &[run_id.into(), step_slug.into(), message.as_str().into()],
            ));
            archive_run_messages(client, run_id);
            return Some(task);
        }
        Err(error) => error.rethrow(),
    };
    if step_completed {
        DROP_SHARDS.run(client, &[run_id.into(), step_slug.into()]);
        let next = after_step_completed(client, run_id, step_slug, &locked);
        start_and_finish(client, run_id, &locked.flow_slug, next);
    }
    Some(task)
}

fn sqlstate_of(error: &pgrx::pg_sys::panic::CaughtError) -> Option<PgSqlErrorCode> {
    use pgrx::pg_sys::panic::CaughtError;
    match error {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic {
            ereport: report, ..
        } => Some(report.sql_error_code()),
    }
}

/// What remains to do after a step completed and the cascades ran.
enum Next {
    /// A condition failed the run: nothing more.
    RunFailed,
    /// Start `ready` newly ready steps; complete the run if no step remains.
    Continue { ready: i32, remaining_steps: i32 },
    /// Cascades changed states: check everything.
    CheckAll,
}

/// What a step's completion changed: the run's remaining steps, and how many dependents became
/// ready with tasks or without any.
struct StepCounts {
    remaining_steps: i32,
    ready: i32,
    taskless: i32,
}

/// What follows a step's completion, up to the cascades (contract 2.3, complete_task 5c–6).
fn after_step_completed(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    locked: &Locked,
) -> Next {
    let follow_up = STEP_COMPLETED.run(client, &[run_id.into(), step_slug.into()]);
    let mut counts = StepCounts {
        remaining_steps: 1,
        ready: 0,
        taskless: 0,
    };
    for row in follow_up {
        emit_row(&row);
        counts = StepCounts {
            remaining_steps: col::<i32>(&row, 4).unwrap_or(1),
            ready: col::<i32>(&row, 5).unwrap_or(0),
            taskless: col::<i32>(&row, 6).unwrap_or(0),
        };
    }
    cascades_after_step(client, run_id, locked, counts)
}

/// Conditions and taskless steps after a step completed, when the flow can have them.
fn cascades_after_step(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    locked: &Locked,
    counts: StepCounts,
) -> Next {
    if locked.has_conditions && !cascade::resolve_conditions(client, run_id) {
        return Next::RunFailed;
    }
    if locked.has_conditions || counts.taskless > 0 {
        cascade::complete_taskless_steps(client, run_id);
        return Next::CheckAll;
    }
    Next::Continue {
        ready: counts.ready,
        remaining_steps: counts.remaining_steps,
    }
}

/// Starts whatever became ready and completes the run when nothing is left.
fn start_and_finish(client: &mut SpiClient<'_>, run_id: pgrx::Uuid, flow_slug: &str, next: Next) {
    let (start, finish) = match next {
        Next::RunFailed => (false, false),
        Next::Continue {
            ready,
            remaining_steps,
        } => (ready > 0, remaining_steps == 0),
        Next::CheckAll => (true, true),
    };
    if start {
        start::start_ready_steps_of(client, run_id, flow_slug);
    }
    if finish {
        cascade::maybe_complete_run(client, run_id);
    }
}

pub(crate) fn fail_task(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
    error_message: Option<&str>,
) -> Option<TaskRow> {
    let locked = lock_run_and_step(client, run_id, step_slug)?;
    let task_args = [run_id.into(), step_slug.into(), task_index.into()];
    if locked.run_status == "failed" {
        FAIL_TASK_OF_FAILED_RUN.run(
            client,
            &[
                run_id.into(),
                step_slug.into(),
                task_index.into(),
                error_message.into(),
            ],
        );
        archive_task_message(client, run_id, step_slug, task_index);
        return task_state(client, outer, run_id, step_slug, task_index).map(|t| t.row);
    }
    if locked.step_status != "started" {
        archive_task_message(client, run_id, step_slug, task_index);
        return task_state(client, outer, run_id, step_slug, task_index).map(|t| t.row);
    }

    let new_status: Option<String> = first(FAIL_TASK_ROW.run(
        client,
        &[
            run_id.into(),
            step_slug.into(),
            task_index.into(),
            error_message.into(),
            locked.flow_slug.as_str().into(),
        ],
    ))
    .and_then(|row| col(&row, 1));

    match new_status.as_deref() {
        Some("queued") => {
            STEP_RETRYING.run(client, &[run_id.into(), step_slug.into()]);
        }
        Some("failed") if locked.when_exhausted == "fail" => {
            emit_events(STEP_AND_RUN_FAILED.run(
                client,
                &[run_id.into(), step_slug.into(), error_message.into()],
            ));
            archive_run_messages(client, run_id);
        }
        Some("failed") => {
            archive_step_messages(client, run_id, vec![step_slug.to_string()]);
            emit_events(STEP_SKIPPED_BY_FAILURE.run(
                client,
                &[run_id.into(), step_slug.into(), error_message.into()],
            ));
            let mut go_on = true;
            if locked.when_exhausted == "skip-cascade" {
                cascade::force_skip_steps(client, run_id, Some(step_slug), Some("handler_failed"));
            } else {
                DEPENDENTS_OF_SKIPPED.run(
                    client,
                    &[
                        run_id.into(),
                        step_slug.into(),
                        locked.flow_slug.as_str().into(),
                    ],
                );
                if cascade::resolve_conditions(client, run_id) {
                    cascade::complete_taskless_steps(client, run_id);
                    start::start_ready_steps_of(client, run_id, &locked.flow_slug);
                } else {
                    archive_task_message(client, run_id, step_slug, task_index);
                    go_on = false;
                }
            }
            if !go_on {
                return task_state(client, outer, run_id, step_slug, task_index).map(|t| t.row);
            }
            cascade::maybe_complete_run(client, run_id);
        }
        _ => {}
    }

    let task = task_state(client, outer, run_id, step_slug, task_index)?;
    match task.status.as_str() {
        "queued" => {
            RETRY_DELAY.run(client, &task_args);
        }
        "failed" => archive_task_message(client, run_id, step_slug, task_index),
        _ => {}
    }
    Some(task.row)
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Starts the queued tasks behind the given messages and returns their inputs.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn start_tasks(
        flow_slug: Option<&str>,
        msg_ids: Option<Vec<Option<i64>>>,
        worker_id: Option<pgrx::Uuid>,
    ) -> SetOfIterator<'static, TaskRecord> {
        let outer = caller_context();
        let records: Vec<TaskRecord> = match msg_ids {
            Some(ids) if !ids.is_empty() => Spi::connect_mut(|client| {
                super::start_tasks(client, outer, flow_slug, ids, worker_id)
            }),
            _ => Vec::new(),
        };
        SetOfIterator::new(records)
    }

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
                super::complete_task(client, outer, run_id, step_slug, task_index, output)
            }),
            _ => None,
        };
        SetOfIterator::new(row)
    }

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
                super::fail_task(client, outer, run_id, step_slug, task_index, error_message)
            }),
            _ => None,
        };
        SetOfIterator::new(row)
    }
}
