//! run_local_tasks: claims up to a number of visible tasks of steps with a handler and runs
//! them one after the other in the current transaction, each in its own subtransaction together
//! with its task's completion. A handler's effects and its task's completion commit together or
//! not at all. A handler that fails leaves no effects: its subtransaction is rolled back and the
//! failed attempt recorded (fail_task: retry with the step's backoff, or the step fails).

use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{handlers, program, sql_handler, target};
use crate::datum::Jsonb;
use crate::run::{complete_task, fail_task, start_tasks::LocalGroup, start_tasks::LocalTask};
use crate::transaction::in_subtransaction;

/// Runs up to `max_tasks` tasks; returns how many were claimed. A transaction serves one pool;
/// with a `budget` (an executor) one group of tasks (`LocalGroup`), without (a session's call)
/// one group after the other. Tasks are claimed a few at a time (1, 2, 4, ...)
/// until `budget` has passed, so that slow tasks do not wait behind each other in one
/// transaction while other executors are idle. With `report`, each task is shown
/// in pg_stat_activity while it runs.
pub(crate) fn run_local_tasks(max_tasks: i32, budget: Option<Duration>, report: bool) -> i32 {
    let began = Instant::now();
    let outer = crate::memory::caller_context();
    // The runs its tasks end release their flows' waiting runs once all its tasks are done
    // (see `flow_concurrency`).
    Spi::connect_mut(|client| {
        crate::run::flow_concurrency::deferring(client, |client| {
            run_groups(client, outer, max_tasks, budget, began, report)
        })
    })
    .unwrap_or(0)
}

/// The groups of one call of `run_local_tasks`.
fn run_groups(
    client: &mut pgrx::spi::SpiClient<'_>,
    outer: pg_sys::MemoryContext,
    max_tasks: i32,
    budget: Option<Duration>,
    began: Instant,
    report: bool,
) -> Option<i32> {
    let pool = super::pools::choose_pool(client)?;
    let mut skip_singles = false;
    let mut total = 0;
    let mut from_run = None;
    while total < max_tasks {
        let Some(group) = super::pools::choose_group(client, pool.as_deref(), skip_singles) else {
            break;
        };
        let done = run_group(
            client,
            outer,
            &group,
            pool.as_deref(),
            max_tasks - total,
            budget,
            began,
            report,
            &mut from_run,
        );
        total += done;
        match (done, &group) {
            // The oldest tasks of steps without shards were all taken by other executors:
            // a lane may still be free.
            (0, LocalGroup::Singles) => skip_singles = true,
            (0, LocalGroup::Lane { .. }) => break,
            // An executor serves one group per transaction; a session's call goes on with
            // the next group (tasks its own completions queued, for one).
            _ if budget.is_some() => break,
            _ => skip_singles = false,
        }
    }
    Some(total)
}

/// Runs the tasks of one group, claimed a few at a time; returns how many. Tasks of steps
/// without shards are claimed and run in the order of their run ids, from `from_run` on, which
/// is moved on to the last run (see `CLAIM_SINGLES`).
#[allow(clippy::too_many_arguments)]
fn run_group(
    client: &mut pgrx::spi::SpiClient<'_>,
    outer: pg_sys::MemoryContext,
    group: &LocalGroup,
    pool: Option<&str>,
    max_tasks: i32,
    budget: Option<Duration>,
    began: Instant,
    report: bool,
    from_run: &mut Option<pgrx::Uuid>,
) -> i32 {
    let mut done = 0;
    let mut chunk = 1;
    while done < max_tasks {
        let asked = chunk.min(max_tasks - done);
        let tasks = crate::run::start_tasks::start_local_tasks(
            client, outer, asked, pool, group, *from_run,
        );
        for task in &tasks {
            run_task(client, outer, task, report);
        }
        if let Some(last) = tasks.last() {
            *from_run = Some(last.task.run_id);
        }
        done += tasks.len() as i32;
        if (tasks.len() as i32) < asked || budget.is_some_and(|b| began.elapsed() >= b) {
            break;
        }
        chunk *= 2;
    }
    if report {
        unsafe {
            pg_sys::pgstat_report_activity(
                pg_sys::BackendState::STATE_RUNNING,
                c"pgflow executor: committing".as_ptr(),
            )
        };
    }
    done
}

/// Runs one claimed task with its completion in a subtransaction; a failure is recorded after
/// the subtransaction is rolled back.
fn run_task(
    client: &mut pgrx::spi::SpiClient<'_>,
    outer: pg_sys::MemoryContext,
    task: &LocalTask,
    report: bool,
) {
    if report {
        report_activity(task);
    }
    sql_handler::clear_timed_out();
    let outcome = in_subtransaction(
        || {
            let output = run_handler(task);
            let row = complete_task::complete_task(
                client,
                outer,
                task.task.run_id,
                &task.task.step_slug,
                task.task.task_index,
                Some(output),
            );
            // The handler's effects commit only with its task's completion.
            if !row.is_some_and(is_completed) {
                crate::error::error(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "the task did not complete: its run or step is no longer running",
                );
            }
        },
        |_| true,
    );
    if let Err(error) = outcome {
        if let (Some(target), Some(role)) = (task.target.as_deref(), task.run_as) {
            target::after_failure(role, target);
        }
        let message = failure_message(*error, task);
        fail_task::fail_task(
            client,
            outer,
            task.task.run_id,
            &task.task.step_slug,
            task.task.task_index,
            Some(&message),
        );
    }
}

/// Whether a task row returned by complete_task is completed.
fn is_completed(row: crate::datum::TaskRow) -> bool {
    unsafe {
        let header = pg_sys::pg_detoast_datum(row.0.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
        let mut is_null = false;
        let status = pg_sys::GetAttributeByName(header, c"status".as_ptr(), &mut is_null);
        !is_null && String::from_datum(status, false).as_deref() == Some("completed")
    }
}

/// Runs a task's handler and returns its output; raises what the handler raises.
fn run_handler(task: &LocalTask) -> Jsonb {
    let (Some(kind), Some(role)) = (task.kind.as_deref(), task.run_as) else {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("step \"{}\" has no handler", task.task.step_slug),
        );
    };
    let (input, flow_input) = (task.task.input, task.task.flow_input);
    if kind == "program" {
        handlers::check_may_run_programs(role);
        let argv: Vec<String> = task.argv.iter().flatten().flatten().cloned().collect();
        let about = program::ProgramTask {
            flow_slug: task.task.flow_slug.as_deref().unwrap_or(""),
            step_slug: &task.task.step_slug,
            run_id: task.task.run_id,
            task_index: task.task.task_index,
        };
        return program::run(&argv, &about, input, flow_input, task.timeout);
    }
    let statement = task.statement.as_deref().unwrap_or_else(|| {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "the ad-hoc task's statement is missing",
        )
    });
    match task.target.as_deref() {
        Some(target) => target::run(target, statement, role, input, flow_input, task.timeout),
        None => sql_handler::run(statement, role, input, flow_input, task.timeout),
    }
}

/// The failed attempt's error message. A query cancel that was not the step's timeout is
/// raised again outside an executor: there it is the caller's own cancel request.
fn failure_message(error: pg_sys::panic::CaughtError, task: &LocalTask) -> String {
    let cancelled = crate::error::sqlstate_of(&error) == PgSqlErrorCode::ERRCODE_QUERY_CANCELED;
    if cancelled && sql_handler::timed_out() {
        return format!("Task timed out after {} seconds", task.timeout);
    }
    if cancelled && !unsafe { pg_sys::IsBackgroundWorker } {
        error.rethrow();
    }
    crate::error::message_of(&error)
}

fn report_activity(task: &LocalTask) {
    let text = format!(
        "pgflow task {}/{}[{}] of run {}: {}{}",
        task.task.flow_slug.as_deref().unwrap_or(""),
        task.task.step_slug,
        task.task.task_index,
        task.task.run_id,
        task.statement.clone().unwrap_or_else(|| {
            task.argv
                .iter()
                .flatten()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        }),
        task.target
            .as_deref()
            .map(|t| format!(" (on {t})"))
            .unwrap_or_default()
    );
    let text = std::ffi::CString::new(text.replace('\0', " ")).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr()) };
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Runs up to `max_tasks` queued tasks of steps with a handler in the current transaction
    /// (what the executors do); returns how many it claimed. Superusers only: handlers run as
    /// the roles that set them.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn run_local_tasks(max_tasks: default!(i32, 100)) -> i32 {
        if !unsafe { pg_sys::superuser() } {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "only superusers may run local tasks",
                "Handlers run as the roles that set them; the executors run them in the background."
            );
        }
        if max_tasks < 1 {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("max_tasks must be at least 1, got {max_tasks}")
            );
        }
        super::run_local_tasks(max_tasks, None, false)
    }
}
