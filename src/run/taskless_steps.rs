//! cascade_complete_taskless_steps: ready steps without tasks (maps over empty arrays)
//! complete at once, wave by wave; their dependents lose a dependency.

use pgrx::pg_sys::UUIDOID;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::conditions::SAFETY_LIMIT;
use super::events::emit_events;
use crate::error::raise;
use crate::statement::Statement;

// One wave of taskless steps (initial_tasks = 0) completing.
static TASKLESS_PASS: Statement = Statement::new(
    concat!(
        "WITH done AS (
             UPDATE pgflow.step_states ss
             SET status = 'completed', started_at = greatest(now(), ss.created_at),
                 completed_at = greatest(now(), ss.created_at), remaining_tasks = 0,
                 output = CASE WHEN s.step_type = 'map' THEN '[]'::jsonb END
             FROM pgflow.steps s
             WHERE ss.run_id = $1 AND ss.status = 'created' AND ss.remaining_deps = 0 AND ss.initial_tasks = 0
               AND s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
             RETURNING ss.flow_slug, ss.run_id, ss.step_slug, s.step_index, ss.started_at, ss.completed_at,
                       ss.output, false AS skipped
         ), children AS (",
        dependents_lose_dependency!("done", "$1"),
        "), run AS (
             UPDATE pgflow.runs SET remaining_steps = remaining_steps - (SELECT count(*) FROM done)
             WHERE run_id = $1 AND EXISTS (SELECT 1 FROM done)
         )
         SELECT ",
        step_completed_event!(
            "run_id", "step_slug", "output", "completed_at", taskless_started_at = "started_at"
        ),
        " FROM done ORDER BY step_index"
    ),
    &[UUIDOID],
);

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

#[pg_schema]
mod pgflow {
    use super::*;

    // Its catalogue entry has no search_path setting (as pgflow's); it runs its statements
    // with an empty one all the same.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn cascade_complete_taskless_steps(run_id: Option<pgrx::Uuid>) -> i32 {
        match run_id {
            Some(run_id) => crate::transaction::with_empty_search_path(|| {
                Spi::connect_mut(|client| super::complete_taskless_steps(client, run_id))
            }),
            None => 0,
        }
    }
}
