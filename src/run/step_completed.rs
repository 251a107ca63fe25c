//! What follows a step's completion: its dependents lose a dependency, the run has one step
//! fewer to go, conditions and taskless steps are resolved, ready steps start, and the run
//! completes when nothing is left.

use pgrx::pg_sys::{TEXTOID, UUIDOID};
use pgrx::spi::{SpiClient, SpiHeapTupleData};

use super::events::emit_row;
use super::lock::Locked;
use super::{conditions, maybe_complete_run, start_ready_steps, taskless_steps};
use crate::statement::{Statement, named};

/// The rest of a completed step's statement, after a CTE `step` of the completed step
/// (`run_id, flow_slug, step_slug, output, completed_at, skipped`) and before `FROM step`:
/// dependents lose a dependency, the run has one step fewer to go; returns the step's event,
/// the run's remaining steps, and how many dependents became ready with tasks or without any.
macro_rules! after_step_completed_sql {
    () => {
        concat!(
            ", children AS (",
            dependents_lose_dependency!(one "step", "$1"),
            "), run AS (
                 UPDATE pgflow.runs SET remaining_steps = remaining_steps - 1
                 WHERE run_id = $1 AND EXISTS (SELECT 1 FROM step)
                 RETURNING remaining_steps
             )
             SELECT ",
            step_completed_event!("step.run_id", "step.step_slug", "step.output", "step.completed_at"),
            ",
                    (SELECT remaining_steps FROM run) AS remaining_steps,
                    (SELECT count(*)::int FROM children
                     WHERE status = 'created' AND remaining_deps = 0 AND initial_tasks > 0) AS ready,
                    (SELECT count(*)::int FROM children
                     WHERE status = 'created' AND remaining_deps = 0 AND initial_tasks = 0) AS taskless"
        )
    };
}

// A step completed by an earlier statement of the same call.
static STEP_COMPLETED: Statement = Statement::new(
    concat!(
        "WITH step AS (
             SELECT ss.run_id, ss.flow_slug, ss.step_slug, ss.output, ss.completed_at, false AS skipped
             FROM pgflow.step_states ss WHERE ss.run_id = $1 AND ss.step_slug = $2
         )",
        after_step_completed_sql!(),
        " FROM step"
    ),
    &[UUIDOID, TEXTOID],
);

/// What a step's completion changed: the run's remaining steps, and how many dependents became
/// ready with tasks or without any.
pub(crate) struct StepCounts {
    remaining_steps: i32,
    ready: i32,
    taskless: i32,
}

impl StepCounts {
    /// Reads the columns of `after_step_completed_sql!` (and sends the step's event).
    pub(crate) fn read(row: &SpiHeapTupleData<'_>) -> StepCounts {
        emit_row(row);
        StepCounts {
            remaining_steps: named(row, "remaining_steps").unwrap_or(1),
            ready: named(row, "ready").unwrap_or(0),
            taskless: named(row, "taskless").unwrap_or(0),
        }
    }
}

/// What remains to do after a step completed and the cascades ran.
pub(crate) enum Next {
    /// A condition failed the run: nothing more.
    RunFailed,
    /// Start `ready` newly ready steps; complete the run if no step remains.
    Continue { ready: i32, remaining_steps: i32 },
    /// Cascades changed states: check everything.
    CheckAll,
}

/// The follow-up of a step that an earlier statement completed, up to the cascades.
pub(crate) fn after_step_completed(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    locked: &Locked,
) -> Next {
    let mut counts = StepCounts {
        remaining_steps: 1,
        ready: 0,
        taskless: 0,
    };
    for row in STEP_COMPLETED.run(client, &[run_id.into(), step_slug.into()]) {
        counts = StepCounts::read(&row);
    }
    cascades_after_step(client, run_id, locked, counts)
}

/// Conditions and taskless steps after a step completed, when the flow can have them.
pub(crate) fn cascades_after_step(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    locked: &Locked,
    counts: StepCounts,
) -> Next {
    if locked.has_conditions && !conditions::resolve_conditions(client, run_id) {
        return Next::RunFailed;
    }
    if locked.has_conditions || counts.taskless > 0 {
        taskless_steps::complete_taskless_steps(client, run_id);
        return Next::CheckAll;
    }
    Next::Continue {
        ready: counts.ready,
        remaining_steps: counts.remaining_steps,
    }
}

/// Starts whatever became ready and completes the run when nothing is left.
pub(crate) fn start_and_finish(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    flow_slug: &str,
    next: Next,
) {
    let (start, finish) = match next {
        Next::RunFailed => (false, false),
        Next::Continue {
            ready,
            remaining_steps,
        } => (ready > 0, remaining_steps == 0),
        Next::CheckAll => (true, true),
    };
    if start {
        start_ready_steps::start_ready_steps_of(client, run_id, flow_slug);
    }
    if finish {
        maybe_complete_run::maybe_complete_run(client, run_id);
    }
}
