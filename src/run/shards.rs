//! The countdown shards of big map steps.
//!
//! A map step with more than one task counts its unfinished tasks down on up to `MAX_SHARDS`
//! rows of `pgflow._step_shards` instead of its step_states row, so that completions of one
//! step contend only when their tasks share a shard. Task `i` belongs to shard
//! `i % shards`; each shard starts with the number of its tasks. The step's remaining tasks
//! are the shards' sum, taken under the step lock by the completion that empties a shard.
//! The rows go when the step completes; pruning skips runs whose shard rows are busy
//! (`sql/pgflow_maintenance.sql`).

use pgrx::pg_sys::{INT4OID, TEXTOID, UUIDOID};
use pgrx::spi::SpiClient;

use super::rows::StepType;
use crate::statement::{Statement, first, named};

/// Up to this many countdown rows per map step.
pub(crate) const MAX_SHARDS: i32 = 16;

/// How many shards a step with `tasks` tasks gets (0: it counts down on its step_states row).
pub(crate) fn shard_count(step_type: StepType, tasks: i32) -> i32 {
    if step_type == StepType::Map && tasks > 1 {
        tasks.min(MAX_SHARDS)
    } else {
        0
    }
}

/// The shard of a task.
pub(crate) fn shard_of(task_index: i32, shards: i32) -> i32 {
    task_index.rem_euclid(shards)
}

/// `shard_count` in SQL, given expressions for the step type, its tasks and `MAX_SHARDS`.
macro_rules! shard_count_sql {
    ($step_type:literal, $tasks:literal, $max_shards:literal) => {
        concat!(
            "CASE WHEN ",
            $step_type,
            " = 'map' AND ",
            $tasks,
            " > 1 THEN least(",
            $tasks,
            ", ",
            $max_shards,
            ") ELSE 0 END"
        )
    };
}

/// Inserts the shard rows of the steps in `$steps`, a relation with columns
/// `run_id, step_slug, tasks, shards` (steps with 0 shards get none).
macro_rules! insert_shards_sql {
    ($steps:literal) => {
        concat!(
            "INSERT INTO pgflow._step_shards (run_id, step_slug, shard, remaining)
             SELECT p.run_id, p.step_slug, sh,
                    p.tasks / p.shards + CASE WHEN sh < p.tasks % p.shards THEN 1 ELSE 0 END
             FROM ", $steps, " p, generate_series(0, p.shards - 1) AS sh
             WHERE p.shards > 0
             ON CONFLICT (run_id, step_slug, shard) DO UPDATE SET remaining = EXCLUDED.remaining"
        )
    };
}

static INSERT_SHARDS: Statement = Statement::new(
    insert_shards_sql!(
        "(SELECT $1::uuid AS run_id, $2::text AS step_slug, $3::int AS tasks, $4::int AS shards)"
    ),
    &[UUIDOID, TEXTOID, INT4OID, INT4OID],
);

// A task's share of its step's countdown, taken before the task itself; given back when the
// task turns out not to complete.
static COUNT_DOWN: Statement = Statement::new(
    "UPDATE pgflow._step_shards SET remaining = remaining - 1
     WHERE run_id = $1 AND step_slug = $2 AND shard = $3
     RETURNING remaining",
    &[UUIDOID, TEXTOID, INT4OID],
);
static GIVE_BACK: Statement = Statement::new(
    "UPDATE pgflow._step_shards SET remaining = remaining + 1
     WHERE run_id = $1 AND step_slug = $2 AND shard = $3",
    &[UUIDOID, TEXTOID, INT4OID],
);

static REMOVE: Statement = Statement::new(
    "DELETE FROM pgflow._step_shards WHERE run_id = $1 AND step_slug = $2",
    &[UUIDOID, TEXTOID],
);

/// Inserts the shards of a step with `tasks` tasks.
pub(crate) fn insert(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    tasks: i32,
    shards: i32,
) {
    if shards > 0 {
        INSERT_SHARDS.run(
            client,
            &[run_id.into(), step_slug.into(), tasks.into(), shards.into()],
        );
    }
}

/// Counts a task's shard down; returns what remains in it (`None`: the step has no shards).
pub(crate) fn count_down(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    shard: i32,
) -> Option<i32> {
    first(COUNT_DOWN.run(client, &[run_id.into(), step_slug.into(), shard.into()]))
        .and_then(|row| named(&row, "remaining"))
}

/// Undoes `count_down`.
pub(crate) fn give_back(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    shard: i32,
) {
    GIVE_BACK.run(client, &[run_id.into(), step_slug.into(), shard.into()]);
}

/// Removes a completed step's shards.
pub(crate) fn remove(client: &mut SpiClient<'_>, run_id: pgrx::Uuid, step_slug: &str) {
    REMOVE.run(client, &[run_id.into(), step_slug.into()]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_map_steps_of_two_tasks_or_more_have_shards() {
        assert_eq!(shard_count(StepType::Single, 1), 0);
        assert_eq!(shard_count(StepType::Map, 0), 0);
        assert_eq!(shard_count(StepType::Map, 1), 0);
        assert_eq!(shard_count(StepType::Map, 2), 2);
        assert_eq!(shard_count(StepType::Map, 1_000_000), MAX_SHARDS);
    }

    #[test]
    fn every_shard_gets_tasks_and_each_task_one_shard() {
        for tasks in [2, 5, 16, 17, 1000] {
            let shards = shard_count(StepType::Map, tasks);
            let mut per_shard = vec![0; shards as usize];
            for task_index in 0..tasks {
                per_shard[shard_of(task_index, shards) as usize] += 1;
            }
            // The SQL's starting counts: tasks / shards, plus one for the first tasks % shards.
            for (shard, count) in per_shard.iter().enumerate() {
                let expected = tasks / shards + i32::from((shard as i32) < tasks % shards);
                assert_eq!(*count, expected, "tasks {tasks}, shard {shard}");
            }
        }
    }
}
