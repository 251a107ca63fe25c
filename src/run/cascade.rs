//! Cascades: conditions, taskless steps, forced skips, and run completion.

use pgrx::pg_sys::{TEXTARRAYOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{archive_run_messages, archive_step_messages, emit_events, emit_row};
use crate::statement::{Statement, col, first, raise};

/// Both cascades give up after this many passes (contract quirk Q8).
const SAFETY_LIMIT: usize = 50;

static RUN_STATUS: Statement = Statement::new(
    "SELECT r.status, r.flow_slug FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID],
);

// Created, dependency-free steps with a condition, with whether it is met.
static CONDITION_CANDIDATES: Statement = Statement::new(
    "SELECT ss.step_slug, s.when_unmet,
            (s.required_input_pattern IS NULL OR ci.input @> s.required_input_pattern)
            AND (s.forbidden_input_pattern IS NULL OR NOT ci.input @> s.forbidden_input_pattern)
     FROM pgflow.step_states ss
     JOIN pgflow.steps s ON s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
     JOIN pgflow.runs r ON r.run_id = ss.run_id
     CROSS JOIN LATERAL (
         SELECT CASE WHEN s.deps_count = 0 THEN r.input
                     ELSE coalesce((SELECT jsonb_object_agg(d.dep_slug, ds.output)
                                    FROM pgflow.deps d
                                    JOIN pgflow.step_states ds
                                      ON ds.run_id = ss.run_id AND ds.step_slug = d.dep_slug
                                    WHERE d.flow_slug = ss.flow_slug AND d.step_slug = ss.step_slug
                                      AND ds.status = 'completed'), '{}'::jsonb)
                END AS input) ci
     WHERE ss.run_id = $1 AND ss.status = 'created' AND ss.remaining_deps = 0
       AND (s.required_input_pattern IS NOT NULL OR s.forbidden_input_pattern IS NOT NULL)
     ORDER BY s.step_index",
    &[UUIDOID],
);

static CONDITION_FAIL: Statement = Statement::new(
    "WITH step AS (
         UPDATE pgflow.step_states
         SET status = 'failed', failed_at = now(), error_message = 'Condition not met'
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
                                   'status', 'failed', 'error_message', 'Condition not met',
                                   'failed_at', failed_at) AS payload
         FROM step
         UNION ALL
         SELECT 2, 'run:failed', 'pgflow:run:' || run_id,
                jsonb_build_object('event_type', 'run:failed', 'run_id', run_id, 'flow_slug', flow_slug,
                                   'status', 'failed', 'error_message', 'Condition not met',
                                   'failed_at', failed_at)
         FROM run) events
     ORDER BY ord",
    &[UUIDOID, TEXTOID],
);

// Skips steps whose condition is unmet ('skip'); their dependents lose one dependency each.
static CONDITION_SKIP: Statement = Statement::new(
    "WITH skipped AS (
         UPDATE pgflow.step_states ss
         SET status = 'skipped', skip_reason = 'condition_unmet', skipped_at = now()
         FROM pgflow.steps s
         WHERE ss.run_id = $1 AND ss.step_slug = ANY($2)
           AND s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
         RETURNING ss.flow_slug, ss.run_id, ss.step_slug, s.step_index, ss.skipped_at
     ), children AS (
         UPDATE pgflow.step_states child
         SET remaining_deps = child.remaining_deps - p.n,
             initial_tasks = CASE WHEN cs.step_type = 'map' AND cs.deps_count = 1 THEN 0
                                  ELSE child.initial_tasks END
         FROM (SELECT d.step_slug, count(*)::int AS n
               FROM skipped JOIN pgflow.deps d ON d.flow_slug = skipped.flow_slug AND d.dep_slug = skipped.step_slug
               GROUP BY d.step_slug) p,
              pgflow.steps cs
         WHERE child.run_id = $1 AND child.step_slug = p.step_slug
           AND cs.flow_slug = child.flow_slug AND cs.step_slug = child.step_slug
     ), run AS (
         UPDATE pgflow.runs SET remaining_steps = remaining_steps - (SELECT count(*) FROM skipped)
         WHERE run_id = $1
     )
     SELECT 'step:' || step_slug || ':skipped', 'pgflow:run:' || run_id,
            jsonb_build_object('event_type', 'step:skipped', 'run_id', run_id, 'flow_slug', flow_slug,
                               'step_slug', step_slug, 'status', 'skipped', 'skip_reason', 'condition_unmet',
                               'skipped_at', skipped_at)
     FROM skipped ORDER BY step_index",
    &[UUIDOID, TEXTARRAYOID],
);

// Skips a step and everything downstream of it that has not finished.
static FORCE_SKIP: Statement = Statement::new(
    "WITH RECURSIVE targets(step_slug) AS (
         SELECT $2::text
         UNION
         SELECT d.step_slug FROM pgflow.deps d JOIN targets t ON d.dep_slug = t.step_slug
         WHERE d.flow_slug = $4
     ), skipped AS (
         UPDATE pgflow.step_states ss
         SET status = 'skipped',
             skip_reason = CASE WHEN ss.step_slug = $2 THEN $3 ELSE 'dependency_skipped' END,
             skipped_at = now(),
             remaining_tasks = NULL
         FROM pgflow.steps s
         WHERE ss.run_id = $1 AND ss.step_slug IN (SELECT step_slug FROM targets)
           AND ss.status IN ('created', 'started')
           AND s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
         RETURNING ss.flow_slug, ss.run_id, ss.step_slug, s.step_index, ss.skip_reason, ss.skipped_at
     ), run AS (
         UPDATE pgflow.runs SET remaining_steps = remaining_steps - (SELECT count(*) FROM skipped)
         WHERE run_id = $1 AND EXISTS (SELECT 1 FROM skipped)
     )
     SELECT 'step:' || step_slug || ':skipped', 'pgflow:run:' || run_id,
            jsonb_build_object('event_type', 'step:skipped', 'run_id', run_id, 'flow_slug', flow_slug,
                               'step_slug', step_slug, 'status', 'skipped', 'skip_reason', skip_reason,
                               'skipped_at', skipped_at),
            step_slug
     FROM skipped ORDER BY step_index",
    &[UUIDOID, TEXTOID, TEXTOID, TEXTOID],
);

// One wave of taskless steps (initial_tasks = 0) completing; their dependents lose a dependency.
static TASKLESS_PASS: Statement = Statement::new(
    "WITH done AS (
         UPDATE pgflow.step_states ss
         SET status = 'completed', started_at = now(), completed_at = now(), remaining_tasks = 0,
             output = CASE WHEN s.step_type = 'map' THEN '[]'::jsonb END
         FROM pgflow.steps s
         WHERE ss.run_id = $1 AND ss.status = 'created' AND ss.remaining_deps = 0 AND ss.initial_tasks = 0
           AND s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
         RETURNING ss.flow_slug, ss.run_id, ss.step_slug, s.step_index, ss.started_at, ss.completed_at, ss.output
     ), children AS (
         UPDATE pgflow.step_states child
         SET remaining_deps = child.remaining_deps - p.n,
             initial_tasks = CASE WHEN cs.step_type = 'map' THEN 0 ELSE child.initial_tasks END
         FROM (SELECT d.step_slug, count(*)::int AS n
               FROM done JOIN pgflow.deps d ON d.flow_slug = done.flow_slug AND d.dep_slug = done.step_slug
               GROUP BY d.step_slug) p,
              pgflow.steps cs
         WHERE child.run_id = $1 AND child.step_slug = p.step_slug
           AND cs.flow_slug = child.flow_slug AND cs.step_slug = child.step_slug
     ), run AS (
         UPDATE pgflow.runs SET remaining_steps = remaining_steps - (SELECT count(*) FROM done)
         WHERE run_id = $1 AND EXISTS (SELECT 1 FROM done)
     )
     SELECT 'step:' || step_slug || ':completed', 'pgflow:run:' || run_id,
            jsonb_build_object('event_type', 'step:completed', 'run_id', run_id, 'step_slug', step_slug,
                               'status', 'completed', 'started_at', started_at, 'completed_at', completed_at,
                               'remaining_tasks', 0, 'remaining_deps', 0, 'output', output)
     FROM done ORDER BY step_index",
    &[UUIDOID],
);

static MAYBE_COMPLETE: Statement = Statement::new(
    "WITH run AS (
         UPDATE pgflow.runs r
         SET status = 'completed', completed_at = now(),
             output = (SELECT jsonb_object_agg(ss.step_slug, ss.output)
                       FROM pgflow.step_states ss
                       WHERE ss.run_id = r.run_id AND ss.status = 'completed'
                         AND NOT EXISTS (SELECT 1 FROM pgflow.deps d
                                         WHERE d.flow_slug = ss.flow_slug AND d.dep_slug = ss.step_slug))
         WHERE r.run_id = $1 AND r.remaining_steps = 0 AND r.status <> 'completed'
         RETURNING r.run_id, r.flow_slug, r.output, r.completed_at
     )
     SELECT 'run:completed', 'pgflow:run:' || run_id,
            jsonb_build_object('event_type', 'run:completed', 'run_id', run_id, 'flow_slug', flow_slug,
                               'status', 'completed', 'output', output, 'completed_at', completed_at)
     FROM run",
    &[UUIDOID],
);

fn run_status(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) -> Option<(String, String)> {
    let row = first(RUN_STATUS.run(client, &[run_id.into()]))?;
    Some((
        col(&row, 1).unwrap_or_default(),
        col(&row, 2).unwrap_or_default(),
    ))
}

/// Evaluates the conditions of ready steps until nothing changes. Returns false when a 'fail'
/// condition failed the run.
pub(crate) fn resolve_conditions(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) -> bool {
    for pass in 1.. {
        match run_status(client, run_id) {
            None => return true,
            Some((status, _)) if status == "failed" => return false,
            Some((status, _)) if status == "completed" => return true,
            _ => {}
        }
        if pass > SAFETY_LIMIT {
            raise(format!(
                "cascade_resolve_conditions exceeded safety limit of {SAFETY_LIMIT} iterations"
            ));
        }

        let mut fail = None;
        let mut skip = Vec::new();
        let mut skip_cascade = Vec::new();
        for row in CONDITION_CANDIDATES.run(client, &[run_id.into()]) {
            if col::<bool>(&row, 3).unwrap_or(false) {
                continue;
            }
            let step_slug: String = col(&row, 1).unwrap_or_default();
            match col::<String>(&row, 2).as_deref() {
                Some("fail") if fail.is_none() => fail = Some(step_slug),
                Some("skip") => skip.push(step_slug),
                Some("skip-cascade") => skip_cascade.push(step_slug),
                _ => {}
            }
        }
        if let Some(step_slug) = fail {
            emit_events(CONDITION_FAIL.run(client, &[run_id.into(), step_slug.as_str().into()]));
            archive_run_messages(client, run_id);
            return false;
        }
        let skipped = if skip.is_empty() {
            0
        } else {
            emit_events(CONDITION_SKIP.run(client, &[run_id.into(), skip.into()]))
        };
        for step_slug in skip_cascade {
            force_skip_steps(client, run_id, Some(&step_slug), Some("condition_unmet"));
        }
        match run_status(client, run_id) {
            Some((status, _)) if status == "failed" => return false,
            Some((status, _)) if status == "completed" => return true,
            _ => {}
        }
        if skipped == 0 {
            return true;
        }
    }
    true
}

/// Skips a step and its transitive dependents that have not finished. Returns how many.
pub(crate) fn force_skip_steps(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: Option<&str>,
    reason: Option<&str>,
) -> i32 {
    let Some((_, flow_slug)) = run_status(client, run_id) else {
        raise(format!("Run not found: {run_id}"));
    };
    let table = FORCE_SKIP.run(
        client,
        &[
            run_id.into(),
            step_slug.into(),
            reason.into(),
            flow_slug.as_str().into(),
        ],
    );
    let mut skipped = Vec::new();
    for row in table {
        emit_row(&row);
        skipped.push(col::<String>(&row, 4).unwrap_or_default());
    }
    let count = skipped.len() as i32;
    archive_step_messages(client, run_id, skipped);
    count
}

/// Completes waves of taskless steps until none is left. Returns how many completed.
pub(crate) fn complete_taskless_steps(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) -> i32 {
    let mut total = 0;
    for pass in 1.. {
        if pass > SAFETY_LIMIT {
            raise(format!(
                "Cascade loop exceeded safety limit of {SAFETY_LIMIT} iterations"
            ));
        }
        let completed = emit_events(TASKLESS_PASS.run(client, &[run_id.into()]));
        if completed == 0 {
            break;
        }
        total += completed as i32;
    }
    total
}

/// Completes the run when no step remains, with the outputs of its completed leaf steps.
pub(crate) fn maybe_complete_run(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) {
    emit_events(MAYBE_COMPLETE.run(client, &[run_id.into()]));
}

#[pg_schema]
mod pgflow {
    use super::*;

    #[pg_extern(requires = ["pgflow_schema"])]
    fn cascade_resolve_conditions(run_id: Option<pgrx::Uuid>) -> bool {
        match run_id {
            Some(run_id) => Spi::connect_mut(|client| super::resolve_conditions(client, run_id)),
            None => true,
        }
    }

    // The contract gives this function and _cascade_force_skip_steps no search_path; they run
    // their statements with an empty one all the same.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn cascade_complete_taskless_steps(run_id: Option<pgrx::Uuid>) -> i32 {
        match run_id {
            Some(run_id) => crate::statement::with_empty_search_path(|| {
                Spi::connect_mut(|client| super::complete_taskless_steps(client, run_id))
            }),
            None => 0,
        }
    }

    #[pg_extern(name = "_cascade_force_skip_steps", requires = ["pgflow_schema"])]
    fn cascade_force_skip_steps(
        run_id: Option<pgrx::Uuid>,
        step_slug: Option<&str>,
        skip_reason: Option<&str>,
    ) -> i32 {
        let Some(run_id) = run_id else {
            raise("Run not found: <NULL>".to_string());
        };
        crate::statement::with_empty_search_path(|| {
            Spi::connect_mut(|client| {
                super::force_skip_steps(client, run_id, step_slug, skip_reason)
            })
        })
    }

    #[pg_extern(requires = ["pgflow_schema"])]
    fn maybe_complete_run(run_id: Option<pgrx::Uuid>) {
        if let Some(run_id) = run_id {
            Spi::connect_mut(|client| super::maybe_complete_run(client, run_id));
        }
    }
}
