//! _cascade_force_skip_steps: a step and everything downstream of it that has not finished
//! is skipped.

use pgrx::pg_sys::{TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::archive;
use super::events::emit_row;
use crate::error::raise;
use crate::statement::{Statement, first, named};

static RUN_FLOW: Statement = Statement::new(
    "SELECT r.flow_slug FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID],
);

static FORCE_SKIP: Statement = Statement::new(
    concat!(
        "WITH RECURSIVE targets(step_slug) AS (
             SELECT $2::text
             UNION
             SELECT d.step_slug FROM pgflow.deps d JOIN targets t ON d.dep_slug = t.step_slug
             WHERE d.flow_slug = $4
         ), skipped AS (
             UPDATE pgflow.step_states ss
             SET status = 'skipped',
                 skip_reason = CASE WHEN ss.step_slug = $2 THEN $3 ELSE 'dependency_skipped' END,
                 skipped_at = greatest(now(), ss.created_at),
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
         SELECT ",
        step_skipped_event!("run_id", "step_slug", "skip_reason", "skipped_at", flow = "flow_slug"),
        ", step_slug
         FROM skipped ORDER BY step_index"
    ),
    &[UUIDOID, TEXTOID, TEXTOID, TEXTOID],
);

/// Skips a step and its transitive dependents that have not finished. Returns how many.
pub(crate) fn force_skip_steps(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: Option<&str>,
    reason: Option<&str>,
) -> i32 {
    let Some(flow_slug) = first(RUN_FLOW.run(client, &[run_id.into()]))
        .and_then(|row| named::<String>(&row, "flow_slug"))
    else {
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
        skipped.push(named::<String>(&row, "step_slug").unwrap_or_default());
    }
    let count = skipped.len() as i32;
    archive::step_messages(client, run_id, skipped);
    count
}

#[pg_schema]
mod pgflow {
    use super::*;

    // Like cascade_complete_taskless_steps: no search_path in its catalogue entry, an empty one
    // for its statements.
    #[pg_extern(name = "_cascade_force_skip_steps", requires = ["pgflow_schema"])]
    fn cascade_force_skip_steps(
        run_id: Option<pgrx::Uuid>,
        step_slug: Option<&str>,
        skip_reason: Option<&str>,
    ) -> i32 {
        let Some(run_id) = run_id else {
            raise("Run not found: <NULL>".to_string());
        };
        crate::transaction::with_empty_search_path(|| {
            Spi::connect_mut(|client| {
                super::force_skip_steps(client, run_id, step_slug, skip_reason)
            })
        })
    }
}
