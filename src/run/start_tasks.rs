//! start_tasks: a worker claims the queued tasks behind the messages it read, and gets their
//! inputs as `step_task_record`s.

use pgrx::PgTupleDesc;
use pgrx::pg_sys::{INT4OID, INT8ARRAYOID, JSONBOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::rows::StepType;
use crate::datum::{RawDatum, TaskRecord};
use crate::memory::{caller_context, copy_to};
use crate::statement::{Statement, first, named};
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
                                AND ds.status = 'completed'), '{}'::jsonb) END AS input,
               CASE WHEN s.step_type = 'single' AND s.deps_count = 0 THEN
                    (SELECT r.input FROM pgflow.runs r WHERE r.run_id = t.run_id) END AS flow_input"
    ),
    &[TEXTOID, INT8ARRAYOID, UUIDOID],
);

// The array a map step's tasks take their elements from: the run input for a root map, the
// output of its single dependency otherwise.
static MAP_SOURCE: Statement = Statement::new(
    "SELECT CASE WHEN $3 = 0 THEN r.input
                 ELSE (SELECT ds.output FROM pgflow.deps d
                       JOIN pgflow.step_states ds ON ds.run_id = r.run_id AND ds.step_slug = d.dep_slug
                       WHERE d.flow_slug = r.flow_slug AND d.step_slug = $2 LIMIT 1) END AS source
     FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID, TEXTOID, INT4OID],
);

struct Claimed {
    run_id: pgrx::Uuid,
    step_slug: String,
    task_index: i32,
    message_id: Option<i64>,
    step_type: StepType,
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
                run_id: named(&row, "run_id")?,
                step_slug: named(&row, "step_slug")?,
                task_index: named(&row, "task_index")?,
                message_id: named(&row, "message_id"),
                step_type: StepType::read(&row, "step_type")?,
                deps_count: named(&row, "deps_count")?,
                input: named::<RawDatum>(&row, "input").map(|d| d.0),
                flow_input: named::<RawDatum>(&row, "flow_input").map(|d| d.0),
            })
        })
        .collect();
    if claimed.is_empty() {
        return Vec::new();
    }

    let mut sources: std::collections::HashMap<(pgrx::Uuid, String), Option<pg_sys::Datum>> =
        std::collections::HashMap::new();
    let tupdesc = PgTupleDesc::for_composite_type("pgflow.step_task_record")
        .unwrap_or_else(|| crate::error::internal_error("type pgflow.step_task_record is missing"));
    check_record_type(&tupdesc);
    let mut records = Vec::with_capacity(claimed.len());
    for task in &claimed {
        if task.step_type != StepType::Map {
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
            .and_then(|row| named::<RawDatum>(&row, "source"))
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
}
