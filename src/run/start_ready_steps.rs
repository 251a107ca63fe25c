//! start_ready_steps: ready steps start and their tasks are enqueued, messages first.

use pgrx::pg_sys::{INT4OID, INT8ARRAYOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::events::emit_row;
use super::shards;
use crate::statement::{Statement, TableStatement, first, named};

/// From this many tasks on, a step's task rows are inserted without per-row foreign-key checks
/// (see `pgflow._insert_map_tasks`): for a map over 10,000 elements they are most of start_flow.
const BULK_TASKS: i32 = 1000;

/// The headers of run `$run`'s messages: its priority, if it has one (see
/// `queue::messages::read_by_priority_sql`); NULL for most runs.
macro_rules! priority_headers_sql {
    ($run:literal) => {
        concat!(
            "(SELECT jsonb_build_object('x-pgflow-priority', ro.priority) FROM pgflow._run_options ro
              WHERE ro.run_id = ",
            $run,
            " AND ro.priority <> 0)"
        )
    };
}

// The messages of a big step, returned as an array of ids in task_index order.
static SEND_TASK_MESSAGES: Statement = Statement::new(
    concat!(
        "SELECT array_agg(m.msg_id ORDER BY m.ord) AS ids
     FROM (SELECT ",
        priority_headers_sql!("$2"),
        " AS headers) h,
          pgmq.send_batch(
            $1,
            ARRAY(SELECT jsonb_build_object('flow_slug', $1, 'run_id', $2, 'step_slug', $3, 'task_index', i)
                  FROM generate_series(0, $4 - 1) AS i ORDER BY i),
            CASE WHEN h.headers IS NOT NULL THEN array_fill(h.headers, ARRAY[$4]) END,
            $5) WITH ORDINALITY AS m(msg_id, ord)"
    ),
    &[TEXTOID, UUIDOID, TEXTOID, INT4OID, INT4OID],
);

static BULK_INSERT_ALLOWED: Statement = Statement::new(
    "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                        WHERE tgrelid = 'pgflow.step_tasks'::regclass AND NOT tgisinternal)
        AND pg_catalog.has_function_privilege(
                'pgflow._insert_map_tasks(pg_catalog.text,pg_catalog.uuid,pg_catalog.text,pg_catalog.int8[])',
                'EXECUTE') AS allowed",
    &[],
);

static INSERT_MAP_TASKS_UNCHECKED: Statement = Statement::new(
    "SELECT pgflow._insert_map_tasks($1, $2, $3, $4)",
    &[TEXTOID, UUIDOID, TEXTOID, INT8ARRAYOID],
);

static INSERT_TASKS: Statement = Statement::new(
    "INSERT INTO pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id)
     SELECT $1, $2, $3, (m.ord - 1)::int, m.id FROM unnest($4) WITH ORDINALITY AS m(id, ord)",
    &[TEXTOID, UUIDOID, TEXTOID, INT8ARRAYOID],
);

/// Enqueues a big step's tasks: messages first, then the task rows in one bulk insert.
fn enqueue_bulk(
    client: &mut SpiClient<'_>,
    flow_slug: &str,
    run_id: pgrx::Uuid,
    step_slug: &str,
    tasks: i32,
    delay: i32,
    shards: i32,
) {
    let ids: Vec<Option<i64>> = first(SEND_TASK_MESSAGES.run(
        client,
        &[
            flow_slug.into(),
            run_id.into(),
            step_slug.into(),
            tasks.into(),
            delay.into(),
        ],
    ))
    .and_then(|row| named::<Vec<Option<i64>>>(&row, "ids"))
    .unwrap_or_default();
    insert_task_rows(client, flow_slug, run_id, step_slug, ids);
    shards::insert(client, run_id, step_slug, tasks, shards);
}

/// Inserts a big step's task rows, one per message id (NULL for tasks without a message).
fn insert_task_rows(
    client: &mut SpiClient<'_>,
    flow_slug: &str,
    run_id: pgrx::Uuid,
    step_slug: &str,
    ids: Vec<Option<i64>>,
) {
    let unchecked = first(BULK_INSERT_ALLOWED.run(client, &[]))
        .and_then(|row| named::<bool>(&row, "allowed"))
        .unwrap_or(false);
    let insert = if unchecked {
        &INSERT_MAP_TASKS_UNCHECKED
    } else {
        &INSERT_TASKS
    };
    insert.run(
        client,
        &[
            flow_slug.into(),
            run_id.into(),
            step_slug.into(),
            ids.into(),
        ],
    );
}

static INSERT_LOCAL_ROWS: Statement = Statement::new(
    concat!(
        "INSERT INTO pgflow._local_tasks (run_id, step_slug, task_index, flow_slug, visible_at, pool, lane,
                                          priority)
         SELECT $2, $3, i, $1, clock_timestamp() + make_interval(secs => $5), pool.name,
                CASE WHEN $6 > 0 THEN i % $6 END, ",
        crate::run_priority_sql!("$2"),
        "
         FROM generate_series(0, $4 - 1) AS i, (SELECT ",
        crate::pool_of_sql!("$1", "$3"),
        " AS name) pool"
    ),
    &[TEXTOID, UUIDOID, TEXTOID, INT4OID, INT4OID, INT4OID],
);

/// Enqueues the tasks of a step with a handler for the executors: queue rows, then the task
/// rows without messages (a big step's in one bulk insert, as `enqueue_bulk`), then its shards.
fn enqueue_local(
    client: &mut SpiClient<'_>,
    flow_slug: &str,
    run_id: pgrx::Uuid,
    step_slug: &str,
    tasks: i32,
    delay: i32,
    shards: i32,
) {
    INSERT_LOCAL_ROWS.run(
        client,
        &[
            flow_slug.into(),
            run_id.into(),
            step_slug.into(),
            tasks.into(),
            delay.into(),
            shards.into(),
        ],
    );
    insert_task_rows(
        client,
        flow_slug,
        run_id,
        step_slug,
        vec![None; tasks as usize],
    );
    shards::insert(client, run_id, step_slug, tasks, shards);
}

// Starts the ready steps of a run and enqueues their tasks in one statement: messages go
// straight into the flow's queue table (ids ascend with task_index within a step, all messages
// of a step share one vt), task rows and map shards are inserted from them. Steps of
// `BULK_TASKS` tasks or more, and steps with a handler (`local`: their tasks go to the
// executors' queue), are only started here; their tasks are enqueued by `enqueue_bulk` and
// `enqueue_local`.
fn start_and_enqueue_sql(queue_table: &str, handlers: bool) -> String {
    format!(
        "WITH ready AS (
             SELECT ss.run_id, ss.step_slug
             FROM pgflow.step_states ss
             JOIN pgflow.runs r ON r.run_id = ss.run_id AND r.status = {started}
             WHERE ss.run_id = $1 AND {not_paused} AND ss.status = {created} AND ss.remaining_deps = 0 AND ss.initial_tasks > 0
             ORDER BY ss.step_slug
             FOR UPDATE OF ss
         ), started AS (
             UPDATE pgflow.step_states ss
             SET status = 'started', started_at = greatest(now(), ss.created_at), remaining_tasks = ss.initial_tasks
             FROM ready
             WHERE ss.run_id = ready.run_id AND ss.step_slug = ready.step_slug
             RETURNING ss.flow_slug, ss.run_id, ss.step_slug, ss.started_at, ss.remaining_tasks,
                       ss.remaining_deps, ss.initial_tasks
         ), plan AS MATERIALIZED (
             SELECT st.*, s.step_type, coalesce(s.opt_start_delay, 0) AS delay,
                    clock_timestamp() + make_interval(secs => coalesce(s.opt_start_delay, 0)) AS vt,
                    st.initial_tasks >= $2 AS bulk,
                    {shard_count} AS shards,
                    {local} AS local,
                    {headers} AS headers
             FROM started st
             JOIN pgflow.steps s ON s.flow_slug = st.flow_slug AND s.step_slug = st.step_slug
         ), msgs AS (
             INSERT INTO {queue_table} (vt, message, headers)
             SELECT p.vt, jsonb_build_object('flow_slug', p.flow_slug, 'run_id', p.run_id,
                                             'step_slug', p.step_slug, 'task_index', i), p.headers
             FROM plan p, generate_series(0, p.initial_tasks - 1) AS i
             WHERE NOT p.bulk AND NOT p.local
             ORDER BY p.step_slug, i
             RETURNING msg_id, message
         ), tasks AS (
             INSERT INTO pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id)
             SELECT m.message ->> 'flow_slug', (m.message ->> 'run_id')::uuid, m.message ->> 'step_slug',
                    (m.message ->> 'task_index')::int, m.msg_id
             FROM msgs m
         ), shards AS (
             {insert_shards}
         )
         SELECT {event}, p.step_slug, p.initial_tasks AS tasks, p.delay, p.bulk, p.shards, p.local
         FROM plan p ORDER BY p.step_slug",
        started = crate::status!("started"),
        created = crate::status!("created"),
        not_paused = crate::not_paused_sql!("$1"),
        headers = priority_headers_sql!("$1"),
        // Without any handler (`executor::features`) no step is local, and the statement
        // does not read the handlers' table.
        local = if handlers {
            "EXISTS (SELECT 1 FROM pgflow._step_handlers h
                     WHERE h.flow_slug = st.flow_slug AND h.step_slug = st.step_slug)"
        } else {
            "false"
        },
        shard_count = shard_count_sql!("s.step_type", "st.initial_tasks", "$3"),
        insert_shards = insert_shards_sql!(
            "(SELECT run_id, step_slug, initial_tasks AS tasks, shards FROM plan WHERE NOT bulk AND NOT local)"
        ),
        event = step_started_event!(
            "p.run_id", "p.step_slug", "p.started_at", "p.remaining_tasks", "p.remaining_deps"
        ),
    )
}

static START_AND_ENQUEUE: TableStatement =
    TableStatement::new("start_and_enqueue", &[UUIDOID, INT4OID, INT4OID]);
static START_AND_ENQUEUE_NO_HANDLERS: TableStatement = TableStatement::new(
    "start_and_enqueue_no_handlers",
    &[UUIDOID, INT4OID, INT4OID],
);

static RUN_FLOW: Statement = Statement::new(
    "SELECT r.flow_slug FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID],
);

/// Starts every ready step of a run and enqueues its tasks.
pub(crate) fn start_ready_steps(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) {
    let Some(flow_slug) = first(RUN_FLOW.run(client, &[run_id.into()]))
        .and_then(|row| named::<String>(&row, "flow_slug"))
    else {
        return;
    };
    start_ready_steps_of(client, run_id, &flow_slug);
}

/// `start_ready_steps` when the run's flow is known.
pub(crate) fn start_ready_steps_of(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    flow_slug: &str,
) {
    let queue = crate::queue::name::QueueName::parse(Some(flow_slug));
    let table = queue.queue_table();
    let handlers = crate::executor::features::features(client).handlers;
    let statement = if handlers {
        &START_AND_ENQUEUE
    } else {
        &START_AND_ENQUEUE_NO_HANDLERS
    };
    let started = statement.run(
        client,
        queue.stem(),
        || start_and_enqueue_sql(&table, handlers),
        &[run_id.into(), BULK_TASKS.into(), shards::MAX_SHARDS.into()],
    );
    let mut apart = Vec::new();
    let mut visible_now = 0usize;
    let mut local_now = 0usize;
    for row in started {
        emit_row(&row);
        let step_slug: String = named(&row, "step_slug").unwrap_or_default();
        let tasks: i32 = named(&row, "tasks").unwrap_or(0);
        let delay: i32 = named(&row, "delay").unwrap_or(0);
        let is_bulk: bool = named(&row, "bulk").unwrap_or(false);
        let shards: i32 = named(&row, "shards").unwrap_or(0);
        let local: bool = named(&row, "local").unwrap_or(false);
        if is_bulk || local {
            apart.push((step_slug, tasks, delay, shards, local));
        } else if delay <= 0 {
            visible_now += tasks as usize;
        }
    }
    if visible_now > 0 {
        crate::queue::wake::sent(&crate::queue::name::sql_lower(flow_slug), visible_now);
    }
    for (step_slug, tasks, delay, shards, local) in apart {
        if local {
            enqueue_local(client, flow_slug, run_id, &step_slug, tasks, delay, shards);
            if delay <= 0 {
                local_now += tasks as usize;
            }
        } else {
            enqueue_bulk(client, flow_slug, run_id, &step_slug, tasks, delay, shards);
        }
    }
    crate::executor::wake::tasks_queued(local_now);
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Starts every ready step of a run (status created, no remaining deps, tasks known and > 0).
    #[pg_extern(requires = ["pgflow_schema"])]
    fn start_ready_steps(run_id: Option<pgrx::Uuid>) {
        if let Some(run_id) = run_id {
            Spi::connect_mut(|client| super::start_ready_steps(client, run_id));
        }
    }
}
