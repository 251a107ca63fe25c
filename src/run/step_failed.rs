//! A step fails and so does its run; a step is skipped because its handler failed; a step
//! fails because its output can't feed a dependent map step (a type violation).

use pgrx::pg_sys::{INT4OID, JSONBOID, TEXTOID, UUIDOID};
use pgrx::spi::SpiClient;

use super::archive;
use super::events::emit_events;
use crate::datum::Jsonb;
use crate::statement::{Statement, first, named};

static STEP_AND_RUN_FAILED: Statement = Statement::new(
    concat!(
        "WITH step AS (
             UPDATE pgflow.step_states SET status = 'failed', failed_at = greatest(now(), started_at), error_message = $3
             WHERE run_id = $1 AND step_slug = $2
             RETURNING run_id, step_slug, failed_at
         ), run AS (
             UPDATE pgflow.runs SET status = 'failed', failed_at = greatest(now(), started_at)
             WHERE run_id = $1
             RETURNING run_id, flow_slug, failed_at
         )
         SELECT event, topic, payload FROM (
             SELECT 1 AS ord, ",
        step_failed_event!("run_id", "step_slug", "$3", "failed_at"),
        " FROM step
             UNION ALL
             SELECT 2, ",
        run_failed_event!("run_id", "flow_slug", "failed_at", error = "$3"),
        " FROM run) events
         ORDER BY ord"
    ),
    &[UUIDOID, TEXTOID, TEXTOID],
);

/// The step fails with `error_message`, and so does its run; the run's other messages are
/// archived.
pub(crate) fn fail_step_and_run(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    error_message: Option<&str>,
) {
    emit_events(STEP_AND_RUN_FAILED.run(
        client,
        &[run_id.into(), step_slug.into(), error_message.into()],
    ));
    archive::run_messages(client, run_id);
    super::flow_concurrency::run_ended(client, run_id);
}

static STEP_SKIPPED_BY_FAILURE: Statement = Statement::new(
    concat!(
        "WITH step AS (
             UPDATE pgflow.step_states
             SET status = 'skipped', skip_reason = 'handler_failed', skipped_at = greatest(now(), created_at), error_message = $3,
                 remaining_tasks = NULL, failed_at = NULL
             WHERE run_id = $1 AND step_slug = $2 AND status <> 'skipped'
             RETURNING run_id, step_slug, error_message, skipped_at
         ), run AS (
             UPDATE pgflow.runs SET remaining_steps = remaining_steps - 1
             WHERE run_id = $1 AND EXISTS (SELECT 1 FROM step)
         )
         SELECT ",
        step_skipped_event!("run_id", "step_slug", "'handler_failed'", "skipped_at", error = "error_message"),
        " FROM step"
    ),
    &[UUIDOID, TEXTOID, TEXTOID],
);

static DEPENDENTS_OF_SKIPPED: Statement = Statement::new(
    concat!(
        "WITH skipped AS (
             SELECT $1::uuid AS run_id, $3::text AS flow_slug, $2::text AS step_slug,
                    NULL::jsonb AS output, true AS skipped
         ) ",
        dependents_lose_dependency!("skipped", "$1")
    ),
    &[UUIDOID, TEXTOID, TEXTOID],
);

/// The step is skipped after its handler failed for good (its messages archived).
pub(crate) fn skip_step_after_failure(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    error_message: Option<&str>,
) {
    archive::step_messages(client, run_id, vec![step_slug.to_string()]);
    emit_events(STEP_SKIPPED_BY_FAILURE.run(
        client,
        &[run_id.into(), step_slug.into(), error_message.into()],
    ));
}

/// The dependents of a skipped step lose it as a dependency.
pub(crate) fn dependents_of_skipped(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    flow_slug: &str,
) {
    DEPENDENTS_OF_SKIPPED.run(client, &[run_id.into(), step_slug.into(), flow_slug.into()]);
}

// A dependent map step still waiting to learn its size, when `output` cannot give it one.
static TYPE_CHECK: Statement = Statement::new(
    "SELECT d.step_slug AS map_slug, coalesce(jsonb_typeof($4), 'null') AS produced
     FROM pgflow.deps d
     JOIN pgflow.steps ms ON ms.flow_slug = d.flow_slug AND ms.step_slug = d.step_slug AND ms.step_type = 'map'
     JOIN pgflow.step_states mss ON mss.run_id = $1 AND mss.step_slug = d.step_slug AND mss.initial_tasks IS NULL
     WHERE d.flow_slug = $3 AND d.dep_slug = $2 AND ($4 IS NULL OR jsonb_typeof($4) <> 'array')
     ORDER BY d.step_slug
     LIMIT 1",
    &[UUIDOID, TEXTOID, TEXTOID, JSONBOID],
);

static TYPE_VIOLATION_RUN: Statement = Statement::new(
    concat!(
        "UPDATE pgflow.runs SET status = 'failed', failed_at = greatest(now(), started_at)
         WHERE run_id = $1
         RETURNING ",
        run_failed_event!("run_id", "flow_slug", "failed_at")
    ),
    &[UUIDOID],
);

static TYPE_VIOLATION_TASK_AND_STEP: Statement = Statement::new(
    concat!(
        "WITH task AS (
             UPDATE pgflow.step_tasks
             SET status = 'failed', failed_at = greatest(now(), queued_at, started_at), output = $3,
                 error_message = '[TYPE_VIOLATION] Produced ' || $4 || ' instead of array'
             WHERE run_id = $1 AND step_slug = $2 AND task_index = $6
         ), step AS (
             UPDATE pgflow.step_states
             SET status = 'failed', failed_at = greatest(now(), started_at),
                 error_message = '[TYPE_VIOLATION] Map step ' || $5 || ' expects array input but dependency '
                                 || $2 || ' produced ' || $4
             WHERE run_id = $1 AND step_slug = $2
             RETURNING run_id, step_slug, error_message, failed_at
         )
         SELECT ",
        step_failed_event!("run_id", "step_slug", "error_message", "failed_at"),
        " FROM step"
    ),
    &[UUIDOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, INT4OID],
);

/// When `output` of a single step can't give a dependent map step its size, the run fails,
/// then the step and the task (in that order, with those events). Returns whether it did.
pub(crate) fn fail_on_type_violation(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    flow_slug: &str,
    task_index: i32,
    output: Option<Jsonb>,
) -> bool {
    let Some(row) = first(TYPE_CHECK.run(
        client,
        &[
            run_id.into(),
            step_slug.into(),
            flow_slug.into(),
            output.into(),
        ],
    )) else {
        return false;
    };
    let map_slug: String = named(&row, "map_slug").unwrap_or_default();
    let produced: String = named(&row, "produced").unwrap_or_default();
    emit_events(TYPE_VIOLATION_RUN.run(client, &[run_id.into()]));
    archive::run_messages(client, run_id);
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
    archive::task_message(client, run_id, step_slug, task_index);
    super::flow_concurrency::run_ended(client, run_id);
    true
}
