//! Concurrency pools: create_pool, drop_pool, set_pool, and the slots that tasks of a pool's
//! steps hold while they run (see `pgflow._pools` in sql/pgflow_executor.sql).
//!
//! - An executor serves one pool per transaction and holds one of its slots (a row lock) for
//!   the transaction: its tasks of that pool run one after the other.
//! - start_tasks writes a claimed external task into a free slot; the slot is free again once
//!   that task is no longer started (completed, failed, requeued) or its run has ended (failed,
//!   cancelled), without any hook on those transitions. Tasks beyond the free slots are not started and their messages become
//!   visible again after `RETRY_VISIBLE_AFTER` seconds.

use pgrx::pg_sys::{
    BOOLOID, INT4ARRAYOID, INT4OID, INT8ARRAYOID, OIDOID, TEXTARRAYOID, TEXTOID, UUIDARRAYOID,
};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::as_extension_owner;
use crate::run::start_tasks::LocalGroup;
use crate::statement::{Statement, first, named};

/// The pool that a step's tasks run in, NULL for none: the step's own, else its flow's, else
/// `pgflow.default_pool`; a name that is no pool counts as none.
#[macro_export]
macro_rules! pool_of_sql {
    ($flow:literal, $step:literal) => {
        concat!(
            "(SELECT pp.pool_name FROM pgflow._pools pp WHERE pp.pool_name = coalesce(
                 (SELECT pa.pool_name FROM pgflow._pool_assignments pa
                  WHERE pa.flow_slug = ",
            $flow,
            " AND pa.step_slug IN (",
            $step,
            ", '')
                  ORDER BY pa.step_slug DESC LIMIT 1),
                 nullif(pg_catalog.current_setting('pgflow.default_pool', true), '')))"
        )
    };
}

/// True when no pool exists, as an InitPlan evaluated once per statement: statements test it
/// before `pool_of_sql!`, so that without pools no task pays for the lookup.
#[macro_export]
macro_rules! no_pools_sql {
    () => {
        "(SELECT NOT EXISTS (SELECT 1 FROM pgflow._pools))"
    };
}

/// Seconds after which the messages of external tasks refused for want of a slot are visible again.
const RETRY_VISIBLE_AFTER: i32 = 1;

// Up to $2 free slots of pool $1, locked; slots whose external task is no longer started, or
// whose run failed or was cancelled, are cleared on the way.
static TAKE_SLOTS: Statement = Statement::new(
    "WITH free AS (
         SELECT s.pool_name, s.slot, s.run_id IS NOT NULL AS stale FROM pgflow._pool_slots s
         WHERE s.pool_name = $1
           AND (s.run_id IS NULL
                OR NOT EXISTS (SELECT 1 FROM pgflow.step_tasks t
                               JOIN pgflow.runs r ON r.run_id = t.run_id AND r.status = 'started'
                               WHERE t.run_id = s.run_id AND t.step_slug = s.step_slug
                                 AND t.task_index = s.task_index AND t.status = 'started'))
         ORDER BY s.slot LIMIT $2
         FOR UPDATE OF s SKIP LOCKED
     ), cleared AS (
         UPDATE pgflow._pool_slots s SET run_id = NULL, step_slug = NULL, task_index = NULL
         FROM free WHERE free.stale AND s.pool_name = free.pool_name AND s.slot = free.slot
     )
     SELECT f.slot FROM free f ORDER BY f.slot",
    &[TEXTOID, INT4OID],
);

static HOLD_SLOTS: Statement = Statement::new(
    "UPDATE pgflow._pool_slots s SET run_id = h.run_id, step_slug = h.step_slug, task_index = h.task_index
     FROM unnest($2::int[], $3::uuid[], $4::text[], $5::int[]) AS h(slot, run_id, step_slug, task_index)
     WHERE s.pool_name = $1 AND s.slot = h.slot",
    &[TEXTOID, INT4ARRAYOID, UUIDARRAYOID, TEXTARRAYOID, INT4ARRAYOID],
);

// The oldest visible local task's pool, skipping pools found full ($1); `limited` says whether
// the pool exists (a dropped pool limits nothing).
macro_rules! next_pool_sql {
    ($order:expr) => {
        concat!(
            "SELECT q.pool, EXISTS (SELECT 1 FROM pgflow._pools p WHERE p.pool_name = q.pool) AS limited
             FROM pgflow._local_tasks q
             WHERE q.visible_at <= clock_timestamp() AND (q.pool IS NULL OR NOT q.pool = ANY($1))
             ORDER BY ", $order, " LIMIT 1
             FOR UPDATE SKIP LOCKED"
        )
    };
}
static NEXT_POOL: Statement = Statement::new(next_pool_sql!("q.visible_at"), &[TEXTARRAYOID]);
// Once runs have priorities (`features`): the pool of the task that goes first (see
// `local_priority_order_sql`).
static NEXT_POOL_BY_PRIORITY: Statement = Statement::new(
    next_pool_sql!(crate::local_priority_order_sql!("q.")),
    &[TEXTARRAYOID],
);

// The oldest visible task of pool $1 that this transaction can serve: a task of a step without
// shards (unless $2 says those were tried), or one of a lane of a map step whose lane lock (an
// advisory lock until the end of the transaction) it gets. The lock is tried on the candidate
// groups in order, one at a time, until one is taken (the function is volatile, so the outer
// condition is not pushed below the sort).
macro_rules! next_group_sql {
    ($starving:expr, $order:expr, $group_order:literal) => {
        concat!(
            "WITH candidates AS MATERIALIZED (
                 SELECT q.run_id, q.step_slug, q.lane, min(q.visible_at) AS first_at,
                        max(q.priority) AS priority, bool_or(q.starving) AS starving
                 FROM (SELECT run_id, step_slug, lane, visible_at, priority, ", $starving, " AS starving
                       FROM pgflow._local_tasks
                       WHERE coalesce(pool, '') = coalesce($1, '') AND visible_at <= clock_timestamp()
                         AND NOT ($2 AND lane IS NULL)
                       ORDER BY ", $order, " LIMIT 256) q
                 GROUP BY q.run_id, q.step_slug, q.lane
             )
             SELECT c.run_id, c.step_slug, c.lane
             FROM (SELECT * FROM candidates ORDER BY ", $group_order, " OFFSET 0) c
             WHERE c.lane IS NULL
                OR pg_catalog.pg_try_advisory_xact_lock(
                       pg_catalog.hashtext('pgflow lane ' || c.run_id::text || '/' || c.step_slug), c.lane)
             LIMIT 1"
        )
    };
}
static NEXT_GROUP: Statement = Statement::new(
    next_group_sql!("false", "coalesce(pool, ''), visible_at", "first_at"),
    &[TEXTOID, BOOLOID],
);
// Once runs have priorities: among the 256 visible tasks that go first (see
// `local_priority_order_sql`).
static NEXT_GROUP_BY_PRIORITY: Statement = Statement::new(
    next_group_sql!(
        crate::starving_sql!(""),
        crate::local_priority_order_sql!(""),
        "starving DESC, priority DESC, first_at"
    ),
    &[TEXTOID, BOOLOID],
);

/// The group of tasks this transaction serves in `pool` (see `LocalGroup`), if any; with
/// `skip_singles`, only lanes of map steps.
pub(crate) fn choose_group(
    client: &mut SpiClient<'_>,
    pool: Option<&str>,
    skip_singles: bool,
) -> Option<LocalGroup> {
    let next = if super::features::features(client).priorities {
        &NEXT_GROUP_BY_PRIORITY
    } else {
        &NEXT_GROUP
    };
    let row = first(next.run_by_index(client, &[pool.into(), skip_singles.into()]))?;
    Some(match named::<i32>(&row, "lane") {
        Some(lane) => LocalGroup::Lane {
            run_id: named(&row, "run_id")?,
            step_slug: named(&row, "step_slug")?,
            lane,
        },
        None => LocalGroup::Singles,
    })
}

/// How many pools an executor tries in one transaction before it waits.
const MAX_POOLS_TRIED: usize = 16;

/// Free slots of `pool` for up to `wanted` tasks, locked until the end of the transaction.
pub(crate) fn take_slots(client: &mut SpiClient<'_>, pool: &str, wanted: i32) -> Vec<i32> {
    TAKE_SLOTS
        .run(client, &[pool.into(), wanted.into()])
        .filter_map(|row| named::<i32>(&row, "slot"))
        .collect()
}

/// Writes started external tasks into the slots they hold.
pub(crate) fn hold_slots(
    client: &mut SpiClient<'_>,
    pool: &str,
    slots: Vec<i32>,
    tasks: &[(pgrx::Uuid, String, i32)],
) {
    let run_ids: Vec<pgrx::Uuid> = tasks.iter().map(|t| t.0).collect();
    let steps: Vec<String> = tasks.iter().map(|t| t.1.clone()).collect();
    let indexes: Vec<i32> = tasks.iter().map(|t| t.2).collect();
    HOLD_SLOTS.run(
        client,
        &[
            pool.into(),
            slots.into(),
            run_ids.into(),
            steps.into(),
            indexes.into(),
        ],
    );
}

/// The pool an executor serves in this transaction: `None` when no visible task can run now,
/// `Some(None)` for tasks of no pool, `Some(Some(pool))` with one of the pool's slots held.
pub(crate) fn choose_pool(client: &mut SpiClient<'_>) -> Option<Option<String>> {
    let mut full: Vec<String> = Vec::new();
    while full.len() < MAX_POOLS_TRIED {
        let next = if super::features::features(client).priorities {
            &NEXT_POOL_BY_PRIORITY
        } else {
            &NEXT_POOL
        };
        // The look skips task rows that others are claiming, and must not keep its own lock on
        // the row it found: an executor that then finds the pool full would hold that task back
        // from the executor that gets the slot (which would take the next task instead). So it
        // runs in a subtransaction that is rolled back.
        let found = crate::transaction::in_subtransaction(
            || {
                first(next.run_by_index(client, &[full.clone().into()])).map(|row| {
                    (
                        named::<String>(&row, "pool"),
                        named::<bool>(&row, "limited").unwrap_or(false),
                    )
                })
            },
            |_| false,
        )
        .unwrap_or_else(|error| error.rethrow());
        let (pool, limited) = found?;
        match pool {
            None => return Some(None),
            Some(pool) if !limited => return Some(Some(pool)),
            Some(pool) => {
                if take_slots(client, &pool, 1).is_empty() {
                    full.push(pool);
                } else {
                    return Some(Some(pool));
                }
            }
        }
    }
    None
}

static PROPOSED_RETRY: Statement = Statement::new(
    "SELECT pgflow.set_vt_batch($1, $2, array_fill($3, ARRAY[cardinality($2)]))",
    &[TEXTOID, INT8ARRAYOID, INT4OID],
);

/// Makes the messages of tasks refused for want of a slot visible again soon.
pub(crate) fn retry_later(client: &mut SpiClient<'_>, flow_slug: &str, message_ids: Vec<i64>) {
    if !message_ids.is_empty() {
        PROPOSED_RETRY.run(
            client,
            &[
                flow_slug.into(),
                message_ids.into(),
                RETRY_VISIBLE_AFTER.into(),
            ],
        );
    }
}

static POOL_OWNER: Statement = Statement::new(
    "SELECT p.owner::oid AS owner FROM pgflow._pools p WHERE p.pool_name = $1",
    &[TEXTOID],
);

static UPSERT_POOL: Statement = Statement::new(
    "WITH pool AS (
         INSERT INTO pgflow._pools (pool_name, max_running, owner) VALUES ($1, $2, $3)
         ON CONFLICT (pool_name) DO UPDATE SET max_running = EXCLUDED.max_running
         RETURNING pool_name
     ), added AS (
         INSERT INTO pgflow._pool_slots (pool_name, slot)
         SELECT $1, g FROM generate_series(1, $2) AS g
         ON CONFLICT DO NOTHING
     )
     DELETE FROM pgflow._pool_slots s WHERE s.pool_name = $1 AND s.slot > $2",
    &[TEXTOID, INT4OID, OIDOID],
);

static DROP_POOL: Statement = Statement::new(
    "DELETE FROM pgflow._pools WHERE pool_name = $1 RETURNING pool_name",
    &[TEXTOID],
);

static FLOW_OWNER: Statement = Statement::new(
    "SELECT f.flow_slug, o.owner::oid AS owner,
            $2::text IS NULL OR EXISTS (SELECT 1 FROM pgflow.steps s
                                        WHERE s.flow_slug = f.flow_slug AND s.step_slug = $2) AS step_exists
     FROM pgflow.flows f LEFT JOIN pgflow._flow_owners o ON o.flow_slug = f.flow_slug
     WHERE f.flow_slug = $1",
    &[TEXTOID, TEXTOID],
);

static ASSIGN: Statement = Statement::new(
    "INSERT INTO pgflow._pool_assignments (flow_slug, step_slug, pool_name)
     VALUES ($1, coalesce($2, ''), $3)
     ON CONFLICT (flow_slug, step_slug) DO UPDATE SET pool_name = EXCLUDED.pool_name",
    &[TEXTOID, TEXTOID, TEXTOID],
);

static UNASSIGN: Statement = Statement::new(
    "DELETE FROM pgflow._pool_assignments WHERE flow_slug = $1 AND step_slug = coalesce($2, '')",
    &[TEXTOID, TEXTOID],
);

/// Refuses unless flow `flow` (and its step `step`, when given) exists and the current user may
/// act as its owner; `what` ends the message ("must be the owner of flow \"f\" to ...").
pub(crate) fn check_flow_owner(
    client: &mut SpiClient<'_>,
    flow: &str,
    step: Option<&str>,
    what: &str,
) {
    let found = as_extension_owner(|| {
        first(FLOW_OWNER.run(client, &[flow.into(), step.into()])).map(|row| {
            (
                named::<bool>(&row, "step_exists").unwrap_or(false),
                named::<pgrx::pg_sys::Oid>(&row, "owner"),
            )
        })
    });
    let Some((step_exists, owner)) = found else {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("flow \"{flow}\" does not exist"),
        );
    };
    if !step_exists {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "step \"{}\" of flow \"{flow}\" does not exist",
                step.unwrap_or_default()
            ),
        );
    }
    if !may_act_as(owner) {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be the owner of flow \"{flow}\" to {what}"),
        );
    }
}

fn may_act_as(owner: Option<pgrx::pg_sys::Oid>) -> bool {
    unsafe {
        pgrx::pg_sys::superuser()
            || owner.is_some_and(|o| pgrx::pg_sys::has_privs_of_role(pgrx::pg_sys::GetUserId(), o))
    }
}

fn check_pool_owner(client: &mut SpiClient<'_>, pool: &str) -> bool {
    let found = as_extension_owner(|| {
        first(POOL_OWNER.run(client, &[pool.into()]))
            .map(|row| named::<pgrx::pg_sys::Oid>(&row, "owner"))
    });
    let Some(owner) = found else {
        return false;
    };
    if !may_act_as(owner) {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be the owner of pool \"{pool}\" to change it"),
        );
    }
    true
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Creates a concurrency pool, or changes its size: at most `max_running` tasks of its
    /// steps run at once, on executors and external workers together.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn create_pool(pool_name: Option<&str>, max_running: Option<i32>) {
        let pool = super::super::handlers::required(pool_name, "pool_name");
        let max = max_running.unwrap_or_else(|| {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "max_running must not be NULL",
            )
        });
        if max < 1 {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("max_running must be at least 1, got {max}"),
            );
        }
        if pool.is_empty() || pool.len() > 128 {
            crate::error::error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "a pool name must have 1 to 128 characters",
            );
        }
        let me = unsafe { pgrx::pg_sys::GetUserId() };
        Spi::connect_mut(|client| {
            check_pool_owner(client, pool);
            super::super::features::changed();
            as_extension_owner(|| {
                UPSERT_POOL.run(client, &[pool.into(), max.into(), me.into()]);
            });
        });
    }

    /// Drops a pool; its steps run unlimited (or in the default pool) from then on. Returns
    /// whether it existed.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn drop_pool(pool_name: Option<&str>) -> bool {
        let pool = super::super::handlers::required(pool_name, "pool_name");
        Spi::connect_mut(|client| {
            if !check_pool_owner(client, pool) {
                return false;
            }
            super::super::features::changed();
            as_extension_owner(|| DROP_POOL.run(client, &[pool.into()]).next().is_some())
        })
    }

    /// Puts a flow's steps (or one step) in a pool; NULL as pool_name takes them out again.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn set_pool(
        flow_slug: Option<&str>,
        pool_name: Option<&str>,
        step_slug: default!(Option<&str>, "NULL"),
    ) {
        let flow = super::super::handlers::required(flow_slug, "flow_slug");
        Spi::connect_mut(|client| {
            check_flow_owner(client, flow, step_slug, "change its pools");
            if let Some(pool) = pool_name {
                let exists =
                    as_extension_owner(|| first(POOL_OWNER.run(client, &[pool.into()])).is_some());
                if !exists {
                    crate::error::error(
                        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                        format!("pool \"{pool}\" does not exist"),
                    );
                }
            }
            as_extension_owner(|| match pool_name {
                Some(pool) => {
                    ASSIGN.run(client, &[flow.into(), step_slug.into(), pool.into()]);
                }
                None => {
                    UNASSIGN.run(client, &[flow.into(), step_slug.into()]);
                }
            });
        });
    }
}
