//! The lock order of every transition: the run, then the step state, then tasks and their
//! messages. A transition that changes a run or a step takes both row locks first, through
//! `lock_run_and_step`, and only then touches tasks. The locks are FOR NO KEY UPDATE: they
//! exclude each other, but not the key-share locks of foreign-key checks, which a transaction
//! that wrote a task row earlier (an executor completing several tasks in one transaction)
//! holds on the run and the step until it ends.
//!
//! A map step with shards puts one lock in front: a completion of one of its tasks counts its
//! task's shard row down first (`shards::count_down`); only the completion that empties the
//! shard then takes the run and step locks, before its task. Nothing waits for a shard row
//! while it holds a run or a step.

use pgrx::pg_sys::{TEXTOID, UUIDOID};
use pgrx::spi::{SpiClient, SpiHeapTupleData};

use super::rows::{Handling, RunStatus, StepStatus, StepType};
use crate::statement::{Statement, first, named};

// The run and step state of a task.
macro_rules! step_context_sql {
    ($extra:literal, $lock:literal) => {
        concat!(
            "SELECT r.status AS run_status, ss.status AS step_status, s.step_type, r.flow_slug,
                    s.when_exhausted, ss.initial_tasks",
            $extra,
            "
             FROM pgflow.runs r
             JOIN pgflow.step_states ss ON ss.run_id = r.run_id AND ss.step_slug = $2
             JOIN pgflow.steps s ON s.flow_slug = ss.flow_slug AND s.step_slug = ss.step_slug
             WHERE r.run_id = $1 ",
            $lock
        )
    };
}

static LOCK_RUN_AND_STEP: Statement = Statement::new(
    step_context_sql!(
        ",
         EXISTS (SELECT 1 FROM pgflow.deps d
                 JOIN pgflow.steps ms ON ms.flow_slug = d.flow_slug AND ms.step_slug = d.step_slug
                 WHERE d.flow_slug = r.flow_slug AND d.dep_slug = $2 AND ms.step_type = 'map') AS feeds_map,
         EXISTS (SELECT 1 FROM pgflow.steps cs
                 WHERE cs.flow_slug = r.flow_slug
                   AND (cs.required_input_pattern IS NOT NULL OR cs.forbidden_input_pattern IS NOT NULL))
           AS has_conditions",
        "FOR NO KEY UPDATE OF r, ss"
    ),
    &[UUIDOID, TEXTOID],
);

static STEP_CONTEXT: Statement = Statement::new(step_context_sql!("", ""), &[UUIDOID, TEXTOID]);

/// A task's run and step, as read.
pub(crate) struct StepContext {
    pub run_status: RunStatus,
    pub step_status: StepStatus,
    pub step_type: StepType,
    pub flow_slug: String,
    pub when_exhausted: Handling,
    pub initial_tasks: Option<i32>,
}

impl StepContext {
    fn read(row: &SpiHeapTupleData<'_>) -> Option<StepContext> {
        Some(StepContext {
            run_status: RunStatus::read(row, "run_status")?,
            step_status: StepStatus::read(row, "step_status")?,
            step_type: StepType::read(row, "step_type")?,
            flow_slug: named(row, "flow_slug")?,
            when_exhausted: Handling::read(row, "when_exhausted")?,
            initial_tasks: named(row, "initial_tasks"),
        })
    }

    /// Whether the task's completion may still change its step.
    pub fn is_running(&self) -> bool {
        self.run_status == RunStatus::Started && self.step_status == StepStatus::Started
    }
}

/// A task's run and step, locked in the transitions' order, with what the follow-up of a
/// completion needs to know of the flow.
pub(crate) struct Locked {
    pub context: StepContext,
    /// A map step depends on this step (its output must be an array).
    pub feeds_map: bool,
    /// Some step of the flow has a condition.
    pub has_conditions: bool,
}

impl std::ops::Deref for Locked {
    type Target = StepContext;
    fn deref(&self) -> &StepContext {
        &self.context
    }
}

/// Locks the run, then the step state, of a task (`None`: no such run or step).
pub(crate) fn lock_run_and_step(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
) -> Option<Locked> {
    let row = first(LOCK_RUN_AND_STEP.run(client, &[run_id.into(), step_slug.into()]))?;
    Some(Locked {
        context: StepContext::read(&row)?,
        feeds_map: named(&row, "feeds_map").unwrap_or(false),
        has_conditions: named(&row, "has_conditions").unwrap_or(false),
    })
}

/// A task's run and step without locks, to choose a path before locking.
pub(crate) fn step_context(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
) -> Option<StepContext> {
    let row = first(STEP_CONTEXT.run(client, &[run_id.into(), step_slug.into()]))?;
    StepContext::read(&row)
}

static LOCK_RUN: Statement = Statement::new(
    "SELECT r.status AS run_status, r.flow_slug, c.state AS control
     FROM pgflow.runs r LEFT JOIN pgflow._run_control c ON c.run_id = r.run_id
     WHERE r.run_id = $1
     FOR NO KEY UPDATE OF r",
    &[UUIDOID],
);

/// A run, locked by a transition of the whole run (cancel, pause, resume), with its control
/// state (`cancelled`, `paused`, or none).
pub(crate) struct LockedRun {
    pub run_status: RunStatus,
    pub flow_slug: String,
    pub control: Option<String>,
}

/// Locks a run (`None`: no such run). The first lock of the order, like `lock_run_and_step`'s.
pub(crate) fn lock_run(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) -> Option<LockedRun> {
    let row = first(LOCK_RUN.run(client, &[run_id.into()]))?;
    Some(LockedRun {
        run_status: RunStatus::read(&row, "run_status")?,
        flow_slug: named(&row, "flow_slug")?,
        control: named(&row, "control"),
    })
}
