//! start_tasks: a worker claims the queued tasks behind the messages it read, and gets their
//! inputs as `step_task_record`s.

use pgrx::PgTupleDesc;
use pgrx::pg_sys::{INT4OID, INT8ARRAYOID, JSONBOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::rows::StepType;
use crate::datum::{RawDatum, TaskRecord};
use crate::executor::pools;
use crate::memory::{caller_context, copy_to};
use crate::statement::{Statement, first, named};
use crate::status;

// Claims queued tasks of running steps, with what their input is built from: `candidates` are
// the tasks asked for (columns flow_slug, run_id, step_slug, task_index), `check` further
// conditions on them (`from` more tables for them), `worker` the worker id recorded. The plan must start from the candidates
// and reach each task by its full primary key, whatever the statistics say: the task rows are
// joined to the candidates only, on their key (a `t.flow_slug` test or a join to step_states
// would let the planner reach them by a key prefix and read every task of a map step per
// lookup); the run and the step are checked by subqueries on their keys; and the task's status
// is tested with `status!` (see there).
macro_rules! claim_tasks_sql {
    ($candidates:expr, $from:expr, $check:expr, $worker:expr, $returning:expr) => {
        concat!(
            "WITH candidates AS MATERIALIZED (", $candidates, ")
             UPDATE pgflow.step_tasks t
             SET attempts_count = t.attempts_count + 1, status = 'started', started_at = greatest(now(), t.queued_at),
                 last_worker_id = ", $worker, "
             FROM candidates c, pgflow.steps s", $from, "
             WHERE ", $check, "
               t.run_id = c.run_id AND t.step_slug = c.step_slug AND t.task_index = c.task_index
               AND t.status = ", status!("queued"), "
               AND s.flow_slug = c.flow_slug AND s.step_slug = c.step_slug
               AND (SELECT r.status FROM pgflow.runs r WHERE r.run_id = c.run_id) = 'started'
               AND ", crate::not_paused_sql!("c.run_id"), "
               AND (SELECT ss.status FROM pgflow.step_states ss
                    WHERE ss.run_id = c.run_id AND ss.step_slug = c.step_slug) = 'started'
             RETURNING t.run_id, t.step_slug, t.task_index, t.message_id, s.step_type, s.deps_count,
                       CASE WHEN s.step_type = 'single' THEN
                            coalesce((SELECT jsonb_object_agg(d.dep_slug, ds.output)
                                      FROM pgflow.deps d
                                      JOIN pgflow.step_states ds ON ds.run_id = t.run_id AND ds.step_slug = d.dep_slug
                                      WHERE d.flow_slug = t.flow_slug AND d.step_slug = t.step_slug
                                        AND ds.status = 'completed'), '{}'::jsonb) END AS input",
            $returning
        )
    };
}

// The tasks behind a worker's messages that `$filter` keeps (message ids are per queue, so the
// flow is checked after), with the contract's flow_input.
macro_rules! claim_by_messages_sql {
    ($filter:expr) => {
        claim_tasks_sql!(
            concat!(
                "SELECT c.flow_slug, c.run_id, c.step_slug, c.task_index FROM pgflow.step_tasks c
                 WHERE c.message_id = ANY($2)",
                $filter
            ),
            "",
            "c.flow_slug = $1 AND",
            "$3",
            ",
             CASE WHEN s.step_type = 'single' AND s.deps_count = 0 THEN
                  (SELECT r.input FROM pgflow.runs r WHERE r.run_id = t.run_id) END AS flow_input"
        )
    };
}

// The tasks behind a worker's messages but for those of steps in a pool (`start_pooled`).
// Without any pool (`executor::features`), `CLAIM_POOLED_TASKS` does the same without looking
// at pools.
static CLAIM_TASKS: Statement = Statement::new(
    claim_by_messages_sql!(concat!(
        " AND (",
        crate::no_pools_sql!(),
        " OR ",
        crate::pool_of_sql!("c.flow_slug", "c.step_slug"),
        " IS NULL)"
    )),
    &[TEXTOID, INT8ARRAYOID, UUIDOID],
);

// The tasks behind messages, whatever their pools: those of steps in a pool once they have their
// slots, and all when no pool exists.
static CLAIM_POOLED_TASKS: Statement = Statement::new(
    claim_by_messages_sql!(""),
    &[TEXTOID, INT8ARRAYOID, UUIDOID],
);

// The queued tasks of steps in a pool behind messages, with their pool, in the order they get
// the pools' free slots: higher priorities first.
static POOLED_CANDIDATES: Statement = Statement::new(
    concat!(
        "SELECT c.message_id, ",
        crate::pool_of_sql!("c.flow_slug", "c.step_slug"),
        " AS pool
         FROM pgflow.step_tasks c
         WHERE c.message_id = ANY($2) AND c.flow_slug = $1 AND c.status = 'queued'
           AND NOT ",
        crate::no_pools_sql!(),
        "
         ORDER BY ",
        crate::run_priority_sql!("c.run_id"),
        " DESC, c.message_id"
    ),
    &[TEXTOID, INT8ARRAYOID],
);

// Up to $1 visible tasks of the executors' queue that `$filter` picks, oldest first (`$order`:
// the columns of the index that serves the filter, ending with visible_at), their queue rows
// locked as `$lock` says. Their queue rows are taken (a
// retry puts its row back); rows of tasks that can no longer run just go. Comes with the run
// input and the step's handler.
macro_rules! claim_local_tasks_sql {
    ($from:literal, $filter:literal, $order:expr, $lock:literal) => {
        claim_tasks_sql!(
            concat!(
                "DELETE FROM pgflow._local_tasks l
                 WHERE (l.run_id, l.step_slug, l.task_index) IN (
                     SELECT q.run_id, q.step_slug, q.task_index FROM pgflow._local_tasks q", $from, "
                     WHERE ", $filter, " AND q.visible_at <= clock_timestamp()
                       AND ", crate::not_paused_sql!("q.run_id"), "
                     ORDER BY ", $order, " LIMIT $1
                     FOR NO KEY UPDATE OF ", $lock, " SKIP LOCKED)
                 RETURNING l.flow_slug, l.run_id, l.step_slug, l.task_index"
            ),
            ",
             LATERAL (SELECT h.kind, coalesce(h.statement, a.statement) AS statement, h.target, h.argv,
                             CASE WHEN h.kind = 'adhoc' THEN a.run_as ELSE h.run_as END::oid AS run_as
                      FROM (SELECT 1) one
                      LEFT JOIN pgflow._step_handlers h ON h.flow_slug = c.flow_slug AND h.step_slug = c.step_slug
                      LEFT JOIN pgflow._adhoc_tasks a ON h.kind = 'adhoc' AND a.run_id = c.run_id) h",
            "",
            "NULL",
            ",
             t.flow_slug, coalesce(s.opt_timeout, (SELECT f.opt_timeout FROM pgflow.flows f
                                                   WHERE f.flow_slug = t.flow_slug)) AS timeout,
             (SELECT r.input FROM pgflow.runs r WHERE r.run_id = t.run_id) AS flow_input,
             h.kind, h.statement, h.target, h.argv, h.run_as::oid AS run_as"
        )
    };
}

// Tasks of pool $2 (NULL: of no pool) of one lane of a map step with shards ($3 run, $4 step,
// $5 lane): their completions
// count down the same shard, so one transaction serves a lane and another transaction another.
static CLAIM_LANE: Statement = Statement::new(
    claim_local_tasks_sql!(
        "",
        "q.run_id = $3 AND q.step_slug = $4 AND q.lane = $5 AND q.pool IS NOT DISTINCT FROM $2",
        "q.run_id, q.step_slug, q.lane, q.visible_at",
        "q"
    ),
    &[INT4OID, TEXTOID, UUIDOID, TEXTOID, INT4OID],
);

// Tasks of pool $2 of steps without shards, from any run whose id is not below $3. A transaction that
// completes several of them takes their runs' locks in the order of run ids (each batch is run
// in that order, and the next batch starts at the last run), so that two executors never wait
// for each other's run locks.
static CLAIM_SINGLES: Statement = Statement::new(
    claim_local_tasks_sql!(
        "",
        "coalesce(q.pool, '') = coalesce($2, '') AND q.lane IS NULL
         AND ($3::uuid IS NULL OR q.run_id >= $3)",
        "coalesce(q.pool, ''), q.visible_at",
        "q"
    ),
    &[INT4OID, TEXTOID, UUIDOID],
);

// CLAIM_SINGLES once runs have priorities (`executor::features`): tasks waiting longer than
// pgflow.priority_max_wait, then the highest priority, then the oldest (a sort of the pool's
// visible tasks: no index serves it).
static CLAIM_SINGLES_BY_PRIORITY: Statement = Statement::new(
    claim_local_tasks_sql!(
        "",
        "coalesce(q.pool, '') = coalesce($2, '') AND q.lane IS NULL
         AND ($3::uuid IS NULL OR q.run_id >= $3)",
        crate::local_priority_order_sql!("q."),
        "q"
    ),
    &[INT4OID, TEXTOID, UUIDOID],
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

/// A claimed task. Its input is known once `with_inputs` has filled it in.
pub(crate) struct Claimed {
    pub flow_slug: Option<String>,
    pub run_id: pgrx::Uuid,
    pub step_slug: String,
    pub task_index: i32,
    pub message_id: Option<i64>,
    step_type: StepType,
    deps_count: i32,
    /// A single step's input (a map task's is filled in by `with_inputs`), and the flow input.
    pub input: Option<pgrx::pg_sys::Datum>,
    pub flow_input: Option<pgrx::pg_sys::Datum>,
}

impl Claimed {
    fn read(row: &pgrx::spi::SpiHeapTupleData<'_>) -> Option<Claimed> {
        Some(Claimed {
            flow_slug: None,
            run_id: named(row, "run_id")?,
            step_slug: named(row, "step_slug")?,
            task_index: named(row, "task_index")?,
            message_id: named(row, "message_id"),
            step_type: StepType::read(row, "step_type")?,
            deps_count: named(row, "deps_count")?,
            input: named::<RawDatum>(row, "input").map(|d| d.0),
            flow_input: named::<RawDatum>(row, "flow_input").map(|d| d.0),
        })
    }
}

/// Fills in the inputs of claimed map tasks: a map step's array is read and detoasted once
/// per call, not once per task, and each map task takes one element of it (in `outer`).
fn with_inputs<'a>(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    claimed: impl Iterator<Item = &'a mut Claimed>,
) {
    use pgrx::pg_sys;
    let mut sources: std::collections::HashMap<(pgrx::Uuid, String), Option<pg_sys::Datum>> =
        std::collections::HashMap::new();
    for task in claimed.filter(|t| t.step_type == StepType::Map) {
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
        task.input = source.and_then(|array| unsafe {
            let old = pg_sys::MemoryContextSwitchTo(outer);
            let element = pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_array_element,
                &[Some(array), task.task_index.into_datum()],
            );
            pg_sys::MemoryContextSwitchTo(old);
            element
        });
    }
}

/// Starts the queued tasks behind `msg_ids` and builds their `step_task_record`s in `outer`.
/// A single step's input comes with its claim.
fn start_tasks(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    flow_slug: Option<&str>,
    msg_ids: Vec<Option<i64>>,
    worker_id: Option<pgrx::Uuid>,
) -> Vec<TaskRecord> {
    let asked = msg_ids.len();
    let pools = crate::executor::features::features(client).pools;
    let claim = if pools {
        &CLAIM_TASKS
    } else {
        &CLAIM_POOLED_TASKS
    };
    let mut claimed: Vec<Claimed> = claim
        .run(
            client,
            &[
                flow_slug.into(),
                Some(msg_ids.clone()).into(),
                worker_id.into(),
            ],
        )
        .filter_map(|row| Claimed::read(&row))
        .collect();
    if pools && claimed.len() < asked {
        claimed.extend(start_pooled(client, flow_slug, msg_ids, worker_id));
    }
    if claimed.is_empty() {
        return Vec::new();
    }
    with_inputs(client, outer, claimed.iter_mut());

    let tupdesc = PgTupleDesc::for_composite_type("pgflow.step_task_record")
        .unwrap_or_else(|| crate::error::internal_error("type pgflow.step_task_record is missing"));
    check_record_type(&tupdesc);
    claimed
        .iter()
        .map(|task| {
            let values = [
                flow_slug.into_datum(),
                task.run_id.into_datum(),
                task.step_slug.as_str().into_datum(),
                task.input,
                task.message_id.into_datum(),
                task.task_index.into_datum(),
                task.flow_input,
            ];
            TaskRecord(form_record(&tupdesc, outer, &values))
        })
        .collect()
}

/// Starts the tasks of steps in a pool behind `msg_ids`, as many as their pools have free
/// slots; the others' messages become visible again soon.
fn start_pooled(
    client: &mut SpiClient<'_>,
    flow_slug: Option<&str>,
    msg_ids: Vec<Option<i64>>,
    worker_id: Option<pgrx::Uuid>,
) -> Vec<Claimed> {
    let Some(flow) = flow_slug else {
        return Vec::new();
    };
    let mut by_pool: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for row in POOLED_CANDIDATES.run(client, &[flow_slug.into(), Some(msg_ids).into()]) {
        if let (Some(id), Some(pool)) = (named::<i64>(&row, "message_id"), named(&row, "pool")) {
            by_pool.entry(pool).or_default().push(id);
        }
    }
    let mut claimed = Vec::new();
    let mut refused = Vec::new();
    for (pool, ids) in by_pool {
        let slots = pools::take_slots(client, &pool, ids.len() as i32);
        let (now, later) = ids.split_at(slots.len().min(ids.len()));
        refused.extend_from_slice(later);
        if now.is_empty() {
            continue;
        }
        let started: Vec<Claimed> = CLAIM_POOLED_TASKS
            .run(
                client,
                &[
                    flow_slug.into(),
                    Some(now.to_vec()).into(),
                    worker_id.into(),
                ],
            )
            .filter_map(|row| Claimed::read(&row))
            .collect();
        let keys: Vec<(pgrx::Uuid, String, i32)> = started
            .iter()
            .map(|t| (t.run_id, t.step_slug.clone(), t.task_index))
            .collect();
        pools::hold_slots(client, &pool, slots[..keys.len()].to_vec(), &keys);
        claimed.extend(started);
    }
    pools::retry_later(client, flow, refused);
    claimed
}

/// A task claimed from the executors' queue, with its handler (all None when the step has
/// none any more).
pub(crate) struct LocalTask {
    pub task: Claimed,
    pub timeout: i32,
    pub kind: Option<String>,
    pub statement: Option<String>,
    pub target: Option<String>,
    pub argv: Option<Vec<Option<String>>>,
    pub run_as: Option<pgrx::pg_sys::Oid>,
}

/// Which of the executors' tasks a transaction serves: one lane of a map step with shards,
/// or tasks of steps without shards.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LocalGroup {
    Lane {
        run_id: pgrx::Uuid,
        step_slug: String,
        lane: i32,
    },
    Singles,
}

/// Starts up to `limit` visible tasks of the executors' queue in `pool` (None: of no pool) and
/// `group`; their inputs, the run input and the handler come with them (datums in `outer`).
/// Tasks of steps without shards come in the order of their run ids, from `from_run` on (see
/// `CLAIM_SINGLES`).
pub(crate) fn start_local_tasks(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    limit: i32,
    pool: Option<&str>,
    group: &LocalGroup,
    from_run: Option<pgrx::Uuid>,
) -> Vec<LocalTask> {
    let claimed = match group {
        LocalGroup::Lane {
            run_id,
            step_slug,
            lane,
        } => CLAIM_LANE.run_by_index(
            client,
            &[
                limit.into(),
                pool.into(),
                (*run_id).into(),
                step_slug.as_str().into(),
                (*lane).into(),
            ],
        ),
        LocalGroup::Singles => {
            let claim = if crate::executor::features::features(client).priorities {
                &CLAIM_SINGLES_BY_PRIORITY
            } else {
                &CLAIM_SINGLES
            };
            claim.run_by_index(client, &[limit.into(), pool.into(), from_run.into()])
        }
    };
    let mut tasks: Vec<LocalTask> = claimed
        .filter_map(|row| {
            let mut task = Claimed::read(&row)?;
            task.flow_slug = named(&row, "flow_slug");
            task.input = task.input.map(|d| copy_to(outer, d));
            task.flow_input = task.flow_input.map(|d| copy_to(outer, d));
            Some(LocalTask {
                task,
                timeout: named(&row, "timeout").unwrap_or(60),
                kind: named(&row, "kind"),
                statement: named(&row, "statement"),
                target: named(&row, "target"),
                argv: named(&row, "argv"),
                run_as: named(&row, "run_as"),
            })
        })
        .collect();
    with_inputs(client, outer, tasks.iter_mut().map(|t| &mut t.task));
    tasks.sort_by(|a, b| a.task.run_id.as_bytes().cmp(b.task.run_id.as_bytes()));
    tasks
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
    use crate::privileges::as_worker_of_flow;

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
                as_worker_of_flow(client, flow_slug, |client| {
                    super::start_tasks(client, outer, flow_slug, ids, worker_id)
                })
            }),
            _ => Vec::new(),
        };
        SetOfIterator::new(records)
    }
}
