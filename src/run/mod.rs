//! The runtime: runs, step states and tasks, one file per SQL function or state change.
//!
//! SQL functions:
//! - `start_flow`: a run starts with its step states
//! - `start_run`: start_flow with a priority and an idempotency key
//! - `start_ready_steps`: ready steps start and their tasks are enqueued
//! - `start_tasks`: queued tasks are claimed and their inputs built
//! - `complete_task`: a task completes (single steps, map steps, sharded map steps)
//! - `fail_task`: a task's attempt failed: retry, or the step fails or is skipped
//! - `conditions`: cascade_resolve_conditions
//! - `taskless_steps`: cascade_complete_taskless_steps
//! - `force_skip`: _cascade_force_skip_steps
//! - `maybe_complete_run`: maybe_complete_run
//! - `cancel_run`: a started run is cancelled
//! - `pause_run`: pause_run and resume_run
//! - `run_status`: a run's status, with cancelled, paused and waiting
//! - `retry_run`: a failed run runs again, or a finished one from a step
//! - `release_task`: a worker gives a started task back (its attempt not counted)
//! - `run_input`: a run's input, for the workers of its flow
//!
//! State changes shared by them:
//! - `step_completed`: what follows a step's completion
//! - `step_failed`: a step fails and the run with it; a step skipped after its handler failed;
//!   type violations
//! - `dependents`: dependents of finished steps lose a dependency
//! - `archive`: messages of a run, of steps or of a task are archived
//! - `control`: the run control table (cancelled and paused runs)
//! - `flow_concurrency`: runs over their flow's limit wait, and start when active ones end
//!
//! And what they all use:
//! - `lock`: the lock order of every transition, and the step context read under it
//! - `shards`: the countdown shards of big map steps
//! - `events`: the builder of each event payload, and their emission
//! - `rows`: statuses and step types as enums; the rows returned to callers
//!
//! Every function works in the caller's transaction through one SPI connection; statements are
//! prepared once per backend (`crate::statement`) and read their results by column name.

// Modules with SQL-building macros come first: their macros are in scope in the ones after.
#[macro_use]
mod events;
#[macro_use]
mod dependents;
#[macro_use]
mod shards;
#[macro_use]
mod step_completed;

mod archive;
mod cancel_run;
pub(crate) mod complete_task;
mod conditions;
mod control;
pub(crate) mod fail_task;
pub(crate) mod flow_concurrency;
mod force_skip;
mod lock;
mod maybe_complete_run;
mod pause_run;
mod release_task;
mod retry_run;
mod rows;
mod run_input;
mod run_status;
pub(crate) mod start_flow;
mod start_ready_steps;
pub(crate) mod start_run;
pub(crate) mod start_tasks;
mod step_failed;
mod taskless_steps;
