//! start_flow: a run of a flow starts, with its step states; conditions and taskless steps
//! are resolved and the ready steps start.

use pgrx::pg_sys::{INT4OID, JSONBOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::events::emit_row;
use super::{conditions, maybe_complete_run, start_ready_steps, taskless_steps};
use crate::datum::{Jsonb, RunRow};
use crate::error::raise;
use crate::memory::caller_context;
use crate::statement::{Statement, first, named};

static FLOW_CHECK: Statement = Statement::new(
    "SELECT coalesce(bool_or(s.step_type = 'map' AND s.deps_count = 0), false) AS has_root_map,
            count(*)::int AS step_count,
            jsonb_typeof($2) AS input_type,
            coalesce(bool_or(s.step_type = 'map'), false) AS has_maps,
            coalesce(bool_or(s.required_input_pattern IS NOT NULL OR s.forbidden_input_pattern IS NOT NULL), false)
              AS has_conditions,
            coalesce($3, (SELECT o.priority FROM pgflow._flow_options o WHERE o.flow_slug = $1), 0) AS priority
     FROM pgflow.steps s WHERE s.flow_slug = $1",
    &[TEXTOID, JSONBOID, INT4OID],
);

// A run's priority, before its steps start (their messages carry it). A run started with an
// idempotency key has its row already.
static SET_PRIORITY: Statement = Statement::new(
    "INSERT INTO pgflow._run_options (run_id, flow_slug, priority) VALUES ($1, $2, $3)
     ON CONFLICT (run_id) DO UPDATE SET priority = EXCLUDED.priority",
    &[UUIDOID, TEXTOID, INT4OID],
);

static INSERT_RUN: Statement = Statement::new(
    concat!(
    "WITH run AS (
         INSERT INTO pgflow.runs (run_id, flow_slug, input, remaining_steps)
         VALUES (coalesce($3, gen_random_uuid()), $1, $2, $4)
         RETURNING run_id, flow_slug, input, remaining_steps, started_at
     ), states AS (
         INSERT INTO pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, initial_tasks)
         SELECT s.flow_slug, run.run_id, s.step_slug, s.deps_count,
                CASE WHEN s.step_type = 'single' THEN 1
                     WHEN s.deps_count = 0 THEN jsonb_array_length(run.input) END
         FROM run JOIN pgflow.steps s ON s.flow_slug = run.flow_slug
     )
     SELECT ",
    run_started_event!("run_id", "flow_slug", "input", "remaining_steps", "started_at"),
    ", run_id
     FROM run"
    ),
    &[TEXTOID, JSONBOID, UUIDOID, INT4OID],
);

/// Starts a run; `priority` None takes the flow's default priority.
pub(crate) fn start_flow(
    client: &mut SpiClient<'_>,
    flow_slug: Option<&str>,
    input: Option<Jsonb>,
    run_id: Option<pgrx::Uuid>,
    priority: Option<i32>,
) -> Option<pgrx::Uuid> {
    let check = first(FLOW_CHECK.run(client, &[flow_slug.into(), input.into(), priority.into()]))?;
    let priority: i32 = named(&check, "priority").unwrap_or(0);
    let has_root_map: bool = named(&check, "has_root_map").unwrap_or(false);
    let has_maps: bool = named(&check, "has_maps").unwrap_or(false);
    let has_conditions: bool = named(&check, "has_conditions").unwrap_or(false);
    let step_count: i32 = named(&check, "step_count").unwrap_or(0);
    let input_type: Option<String> = named(&check, "input_type");
    if has_root_map {
        let slug = flow_slug.unwrap_or("");
        match input_type.as_deref() {
            None => raise(format!("Flow {slug} has root map steps but input is NULL")),
            Some("array") => {}
            Some(other) => raise(format!(
                "Flow {slug} has root map steps but input is not an array (got {other})"
            )),
        }
    }

    let inserted = INSERT_RUN.run(
        client,
        &[
            flow_slug.into(),
            input.into(),
            run_id.into(),
            step_count.into(),
        ],
    );
    let mut run_id = None;
    for row in inserted {
        run_id = named::<pgrx::Uuid>(&row, "run_id");
        emit_row(&row);
    }
    let run_id = run_id?;
    if priority != 0 {
        SET_PRIORITY.run(client, &[run_id.into(), flow_slug.into(), priority.into()]);
        if !crate::executor::features::features(client).priorities {
            crate::executor::features::changed();
        }
    }

    if super::flow_concurrency::must_wait(client, run_id, flow_slug.unwrap_or_default()) {
        return Some(run_id);
    }
    begin_run(
        client,
        run_id,
        flow_slug.unwrap_or_default(),
        Some(Shape {
            has_conditions,
            has_maps,
            empty: step_count == 0,
        }),
    );
    Some(run_id)
}

/// What a flow has that a run's beginning must look at.
pub(crate) struct Shape {
    pub has_conditions: bool,
    pub has_maps: bool,
    pub empty: bool,
}

/// The beginning of a run: its conditions are resolved, taskless steps complete, the ready steps
/// start, and a run with nothing left to do completes. Without `shape` (a run that waited for
/// its flow's concurrency limit), every part is looked at.
pub(crate) fn begin_run(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    flow_slug: &str,
    shape: Option<Shape>,
) {
    let shape = shape.unwrap_or(Shape {
        has_conditions: true,
        has_maps: true,
        empty: true,
    });
    // Conditions exist only on steps with patterns, taskless steps only among maps: a flow
    // without them skips those cascades (they would find nothing).
    if shape.has_conditions && !conditions::resolve_conditions(client, run_id) {
        return;
    }
    if shape.has_maps || shape.has_conditions {
        taskless_steps::complete_taskless_steps(client, run_id);
    }
    start_ready_steps::start_ready_steps_of(client, run_id, flow_slug);
    if shape.empty || shape.has_maps || shape.has_conditions {
        maybe_complete_run::maybe_complete_run(client, run_id);
    }
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_definer_of_flow;

    /// Starts a run of a flow and returns it (status may already be completed or failed).
    #[pg_extern(requires = ["pgflow_schema"])]
    fn start_flow(
        flow_slug: Option<&str>,
        input: Option<Jsonb>,
        run_id: default!(Option<pgrx::Uuid>, "NULL"),
    ) -> SetOfIterator<'static, RunRow> {
        let outer = caller_context();
        let row = Spi::connect_mut(|client| {
            as_definer_of_flow(client, flow_slug, |client| {
                let run_id = super::start_flow(client, flow_slug, input, run_id, None)?;
                crate::run::rows::run_row(client, outer, run_id)
            })
        });
        SetOfIterator::new(row)
    }
}
