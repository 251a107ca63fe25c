//! cascade_resolve_conditions: ready steps whose condition is not met fail the run, are
//! skipped, or are skipped with everything downstream (`when_unmet`).

use pgrx::pg_sys::{TEXTARRAYOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::events::emit_events;
use super::rows::{Handling, RunStatus};
use super::{force_skip, step_failed};
use crate::error::raise;
use crate::statement::{Statement, first, named};

/// Both cascades (this one and taskless steps) give up after this many passes.
pub(crate) const SAFETY_LIMIT: usize = 50;

static RUN_STATUS: Statement = Statement::new(
    "SELECT r.status FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID],
);

// Created, dependency-free steps with a condition, with whether it is met.
static CONDITION_CANDIDATES: Statement = Statement::new(
    "SELECT ss.step_slug, s.when_unmet,
            (s.required_input_pattern IS NULL OR ci.input @> s.required_input_pattern)
            AND (s.forbidden_input_pattern IS NULL OR NOT ci.input @> s.forbidden_input_pattern) AS met
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

// Skips steps whose condition is unmet ('skip'); their dependents lose one dependency each.
static CONDITION_SKIP: Statement = Statement::new(
    concat!(
        "WITH skipped AS (
             UPDATE pgflow.step_states ss
             SET status = 'skipped', skip_reason = 'condition_unmet', skipped_at = greatest(now(), ss.created_at)
             FROM pgflow.steps s
             WHERE ss.run_id = $1 AND ss.step_slug = ANY($2)
               AND s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
             RETURNING ss.flow_slug, ss.run_id, ss.step_slug, s.step_index, ss.skipped_at,
                       NULL::jsonb AS output, true AS skipped
         ), children AS (",
        dependents_lose_dependency!("skipped", "$1"),
        "), run AS (
             UPDATE pgflow.runs SET remaining_steps = remaining_steps - (SELECT count(*) FROM skipped)
             WHERE run_id = $1
         )
         SELECT ",
        step_skipped_event!("run_id", "step_slug", "'condition_unmet'", "skipped_at", flow = "flow_slug"),
        " FROM skipped ORDER BY step_index"
    ),
    &[UUIDOID, TEXTARRAYOID],
);

fn run_status(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) -> Option<RunStatus> {
    let row = first(RUN_STATUS.run(client, &[run_id.into()]))?;
    RunStatus::read(&row, "status")
}

/// Evaluates the conditions of ready steps until nothing changes. Returns false when a 'fail'
/// condition failed the run.
pub(crate) fn resolve_conditions(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) -> bool {
    for pass in 1.. {
        match run_status(client, run_id) {
            None | Some(RunStatus::Completed) => return true,
            Some(RunStatus::Failed) => return false,
            Some(RunStatus::Started) => {}
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
            if named::<bool>(&row, "met").unwrap_or(false) {
                continue;
            }
            let step_slug: String = named(&row, "step_slug").unwrap_or_default();
            match Handling::read(&row, "when_unmet") {
                Some(Handling::Fail) if fail.is_none() => fail = Some(step_slug),
                Some(Handling::Skip) => skip.push(step_slug),
                Some(Handling::SkipCascade) => skip_cascade.push(step_slug),
                _ => {}
            }
        }
        if let Some(step_slug) = fail {
            step_failed::fail_step_and_run(client, run_id, &step_slug, Some("Condition not met"));
            return false;
        }
        let skipped = if skip.is_empty() {
            0
        } else {
            emit_events(CONDITION_SKIP.run(client, &[run_id.into(), skip.into()]))
        };
        for step_slug in skip_cascade {
            force_skip::force_skip_steps(client, run_id, Some(&step_slug), Some("condition_unmet"));
        }
        match run_status(client, run_id) {
            Some(RunStatus::Failed) => return false,
            Some(RunStatus::Completed) => return true,
            _ => {}
        }
        if skipped == 0 {
            return true;
        }
    }
    true
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
}
