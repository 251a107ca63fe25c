//! maybe_complete_run: a run with no step left completes, with the outputs of its leaf steps.

use pgrx::pg_sys::UUIDOID;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::events::emit_events;
use crate::statement::Statement;

static MAYBE_COMPLETE: Statement = Statement::new(
    concat!(
        "WITH run AS (
             UPDATE pgflow.runs r
             SET status = 'completed', completed_at = greatest(now(), r.started_at),
                 output = (SELECT jsonb_object_agg(ss.step_slug, ss.output)
                           FROM pgflow.step_states ss
                           WHERE ss.run_id = r.run_id AND ss.status = 'completed'
                             AND NOT EXISTS (SELECT 1 FROM pgflow.deps d
                                             WHERE d.flow_slug = ss.flow_slug AND d.dep_slug = ss.step_slug))
             WHERE r.run_id = $1 AND r.remaining_steps = 0 AND r.status <> 'completed'
             RETURNING r.run_id, r.flow_slug, r.output, r.completed_at
         )
         SELECT ",
        run_completed_event!("run_id", "flow_slug", "output", "completed_at"),
        " FROM run"
    ),
    &[UUIDOID],
);

/// Completes the run when no step remains.
pub(crate) fn maybe_complete_run(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) {
    if emit_events(MAYBE_COMPLETE.run(client, &[run_id.into()])) > 0 {
        super::flow_concurrency::run_ended(client, run_id);
    }
}

#[pg_schema]
mod pgflow {
    use super::*;

    #[pg_extern(requires = ["pgflow_schema"])]
    fn maybe_complete_run(run_id: Option<pgrx::Uuid>) {
        if let Some(run_id) = run_id {
            Spi::connect_mut(|client| super::maybe_complete_run(client, run_id));
        }
    }
}
