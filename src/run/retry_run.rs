//! retry_run: a failed (or cancelled) run runs again from where it stopped, or a finished run
//! from a named step. The steps to rerun are the named step and every step downstream of it,
//! and every step that did not complete (nor was skipped). Their tasks move to
//! `pgflow._task_history` (run_history shows them), their states go back to created, the run is
//! started again, and it begins as a new run does: completed steps keep their outputs and feed
//! the steps that run again.

use pgrx::pg_sys::{self, INT4OID, TEXTARRAYOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::lock::lock_run;
use super::rows::{RunStatus, run_row};
use crate::datum::RunRow;
use crate::error::error;
use crate::memory::caller_context;
use crate::statement::{Statement, first, named};

// The steps of run $1 (flow $2) to run again: step $3 and those downstream of it, and those
// neither completed nor skipped.
static STEPS_TO_RERUN: Statement = Statement::new(
    "WITH RECURSIVE down(step_slug) AS (
         SELECT s.step_slug FROM pgflow.steps s WHERE s.flow_slug = $2 AND s.step_slug = $3
         UNION
         SELECT d.step_slug FROM pgflow.deps d JOIN down ON d.dep_slug = down.step_slug
         WHERE d.flow_slug = $2
     )
     SELECT coalesce(array_agg(ss.step_slug ORDER BY ss.step_slug), '{}') AS steps
     FROM pgflow.step_states ss
     WHERE ss.run_id = $1
       AND (ss.status NOT IN ('completed', 'skipped') OR ss.step_slug IN (SELECT step_slug FROM down))",
    &[UUIDOID, TEXTOID, TEXTOID],
);

// Steps of the set $2 that stay skipped: skipped because a dependency was, where that
// dependency is skipped and stays so (not in $2).
static STAY_SKIPPED: Statement = Statement::new(
    "SELECT coalesce(array_agg(ss.step_slug), '{}') AS steps
     FROM pgflow.step_states ss
     WHERE ss.run_id = $1 AND ss.step_slug = ANY($2)
       AND ss.status = 'skipped' AND ss.skip_reason = 'dependency_skipped'
       AND EXISTS (SELECT 1 FROM pgflow.deps d
                   JOIN pgflow.step_states ds ON ds.run_id = ss.run_id AND ds.step_slug = d.dep_slug
                   WHERE d.flow_slug = ss.flow_slug AND d.step_slug = ss.step_slug
                     AND ds.status = 'skipped' AND NOT ds.step_slug = ANY($2))",
    &[UUIDOID, TEXTARRAYOID],
);

// Rows of the steps $2 that another transaction holds (an executor running one of their tasks);
// the others are locked for the rerun.
static BUSY: Statement = Statement::new(
    "SELECT (SELECT count(*) FROM pgflow.step_tasks WHERE run_id = $1 AND step_slug = ANY($2))
            - (SELECT count(*) FROM (SELECT 1 FROM pgflow.step_tasks WHERE run_id = $1 AND step_slug = ANY($2)
                                     FOR UPDATE SKIP LOCKED) t)
            + (SELECT count(*) FROM pgflow._step_shards WHERE run_id = $1 AND step_slug = ANY($2))
            - (SELECT count(*) FROM (SELECT 1 FROM pgflow._step_shards WHERE run_id = $1 AND step_slug = ANY($2)
                                     FOR UPDATE SKIP LOCKED) s) AS busy",
    &[UUIDOID, TEXTARRAYOID],
);

static STEP_EXISTS: Statement = Statement::new(
    "SELECT 1 FROM pgflow.steps WHERE flow_slug = $1 AND step_slug = $2",
    &[TEXTOID, TEXTOID],
);

static RECORD_RERUN: Statement = Statement::new(
    "INSERT INTO pgflow._run_reruns (run_id, rerun, from_step, previous_status)
     SELECT $1, coalesce(max(rerun), 0) + 1, $2, $3 FROM pgflow._run_reruns WHERE run_id = $1
     RETURNING rerun",
    &[UUIDOID, TEXTOID, TEXTOID],
);

// The tasks of the steps $2 move to the history of rerun $3; what the executors and map
// shards kept of them goes.
static MOVE_TASKS: Statement = Statement::new(
    "WITH gone AS (
         DELETE FROM pgflow.step_tasks WHERE run_id = $1 AND step_slug = ANY($2)
         RETURNING *
     ), kept AS (
         INSERT INTO pgflow._task_history (run_id, rerun, step_slug, task_index, flow_slug, message_id,
                                           status, attempts_count, error_message, output, queued_at,
                                           started_at, completed_at, failed_at)
         SELECT run_id, $3, step_slug, task_index, flow_slug, message_id, status, attempts_count,
                error_message, output, queued_at, started_at, completed_at, failed_at
         FROM gone
     ), local AS (
         DELETE FROM pgflow._local_tasks WHERE run_id = $1 AND step_slug = ANY($2)
     )
     DELETE FROM pgflow._step_shards WHERE run_id = $1 AND step_slug = ANY($2)",
    &[UUIDOID, TEXTARRAYOID, INT4OID],
);

// The steps $2 are created again: their dependencies among them are to come; a map step whose
// dependency stays completed (or skipped) knows its size, as when that dependency finished.
static RESET_STEPS: Statement = Statement::new(
    "UPDATE pgflow.step_states ss
     SET status = 'created', remaining_tasks = NULL, output = NULL, error_message = NULL,
         started_at = NULL, completed_at = NULL, failed_at = NULL, skip_reason = NULL,
         skipped_at = NULL,
         remaining_deps = (SELECT count(*) FROM pgflow.deps d
                           WHERE d.flow_slug = ss.flow_slug AND d.step_slug = ss.step_slug
                             AND d.dep_slug = ANY($2)),
         initial_tasks = CASE
             WHEN s.step_type = 'single' THEN 1
             WHEN s.deps_count = 0 THEN jsonb_array_length(r.input)
             ELSE (SELECT CASE WHEN ds.status = 'skipped' THEN 0
                               WHEN ds.status = 'completed' AND jsonb_typeof(ds.output) = 'array'
                               THEN jsonb_array_length(ds.output) END
                   FROM pgflow.deps d
                   JOIN pgflow.step_states ds ON ds.run_id = ss.run_id AND ds.step_slug = d.dep_slug
                   WHERE d.flow_slug = ss.flow_slug AND d.step_slug = ss.step_slug
                     AND NOT d.dep_slug = ANY($2)
                   LIMIT 1)
         END
     FROM pgflow.steps s, pgflow.runs r
     WHERE ss.run_id = $1 AND ss.step_slug = ANY($2)
       AND s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug AND r.run_id = ss.run_id",
    &[UUIDOID, TEXTARRAYOID],
);

static RESTART_RUN: Statement = Statement::new(
    "WITH run AS (
         UPDATE pgflow.runs r
         SET status = 'started', output = NULL, completed_at = NULL, failed_at = NULL,
             remaining_steps = (SELECT count(*) FROM pgflow.step_states ss
                                WHERE ss.run_id = r.run_id AND ss.status NOT IN ('completed', 'skipped'))
         WHERE r.run_id = $1
     )
     DELETE FROM pgflow._run_control WHERE run_id = $1",
    &[UUIDOID],
);

pub(crate) fn retry_run(
    client: &mut SpiClient<'_>,
    outer: pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    from_step: Option<&str>,
) -> Option<RunRow> {
    let Some(run) = lock_run(client, run_id) else {
        error(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("run {run_id} does not exist"),
        );
    };
    let previous = match (run.run_status, run.control.as_deref()) {
        (RunStatus::Failed, Some("cancelled")) => "cancelled",
        (RunStatus::Failed, _) => "failed",
        (RunStatus::Completed, _) if from_step.is_some() => "completed",
        (status, _) => error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "run {run_id} is {}: only a failed run can be retried, and a completed one from a step",
                status.as_sql()
            ),
        ),
    };
    if let Some(step) = from_step
        && first(STEP_EXISTS.run(client, &[run.flow_slug.as_str().into(), step.into()])).is_none()
    {
        error(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "step \"{step}\" of flow \"{}\" does not exist",
                run.flow_slug
            ),
        );
    }
    let mut steps: Vec<String> = first(STEPS_TO_RERUN.run(
        client,
        &[
            run_id.into(),
            run.flow_slug.as_str().into(),
            from_step.into(),
        ],
    ))
    .and_then(|row| named(&row, "steps"))
    .unwrap_or_default();
    // A step that a skip cascade skipped stays skipped while the step it came from does.
    loop {
        let stay: Vec<String> =
            first(STAY_SKIPPED.run(client, &[run_id.into(), steps.clone().into()]))
                .and_then(|row| named(&row, "steps"))
                .unwrap_or_default();
        if stay.is_empty() {
            break;
        }
        steps.retain(|step| !stay.contains(step));
    }
    let busy: i64 = first(BUSY.run(client, &[run_id.into(), steps.clone().into()]))
        .and_then(|row| named(&row, "busy"))
        .unwrap_or(0);
    if busy > 0 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("run {run_id} has tasks that an executor is still running"),
            "Retry the run once they end (their completions no longer count)."
        );
    }
    super::archive::step_messages(client, run_id, steps.clone());
    let rerun: i32 =
        first(RECORD_RERUN.run(client, &[run_id.into(), from_step.into(), previous.into()]))
            .and_then(|row| named(&row, "rerun"))
            .unwrap_or(1);
    MOVE_TASKS.run(client, &[run_id.into(), steps.clone().into(), rerun.into()]);
    RESET_STEPS.run(client, &[run_id.into(), steps.into()]);
    RESTART_RUN.run(client, &[run_id.into()]);
    if !super::flow_concurrency::must_wait(client, run_id, &run.flow_slug) {
        super::start_flow::begin_run(client, run_id, &run.flow_slug, None);
    }
    run_row(client, outer, run_id)
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_definer_of_run;

    /// Runs a failed (or cancelled) run again from where it stopped, or, with `from_step`, a
    /// failed or completed run from that step on. Returns the run's row.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn retry_run(
        run_id: Option<pgrx::Uuid>,
        from_step: default!(Option<&str>, "NULL"),
    ) -> Option<RunRow> {
        let Some(run_id) = run_id else {
            error(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "run_id must not be NULL",
            );
        };
        let outer = caller_context();
        Spi::connect_mut(|client| {
            as_definer_of_run(client, run_id, |client| {
                super::retry_run(client, outer, run_id, from_step)
            })
        })
    }
}
