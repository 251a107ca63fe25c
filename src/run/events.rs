//! Run and step events: one builder for each payload, and their emission.
//!
//! Each `*_event!` macro gives the three leading result columns `event, topic, payload` of one
//! event, from SQL expressions for its fields. Statements that produce events return them in
//! emission order; `emit_events` sends them. Some events of one type carry more fields than
//! others, as pgflow's clients expect: a taskless step's `step:completed` also has
//! `started_at` and its counters, a type violation's `run:failed` has no `error_message`, and
//! only a skip by a condition or a cascade names the flow in `step:skipped`.

use pgrx::spi::{SpiHeapTupleData, SpiTupleTable};

use crate::datum::Jsonb;
use crate::statement::named;

// The columns of an event up to its payload's own fields: event name, topic, and the payload's
// event_type, run_id, status and flow_slug (runs) or step_slug (steps).
#[rustfmt::skip]
macro_rules! run_event_head {
    ($status:literal, $run:literal, $flow:literal) => { concat!(
        "'run:", $status, "' AS event, 'pgflow:run:' || ", $run, " AS topic, jsonb_build_object(",
        "'event_type', 'run:", $status, "', 'run_id', ", $run, ", 'flow_slug', ", $flow, ", 'status', '", $status, "'"
    ) };
}

#[rustfmt::skip]
macro_rules! step_event_head {
    ($status:literal, $run:literal, $step:literal) => { concat!(
        "'step:' || ", $step, " || ':", $status, "' AS event, 'pgflow:run:' || ", $run, " AS topic, jsonb_build_object(",
        "'event_type', 'step:", $status, "', 'run_id', ", $run, ", 'step_slug', ", $step, ", 'status', '", $status, "'"
    ) };
}

#[rustfmt::skip]
macro_rules! run_started_event {
    ($run:literal, $flow:literal, $input:literal, $remaining_steps:literal, $started_at:literal) => { concat!(
        run_event_head!("started", $run, $flow), ", 'input', ", $input,
        ", 'remaining_steps', ", $remaining_steps, ", 'started_at', ", $started_at, ") AS payload"
    ) };
}

#[rustfmt::skip]
macro_rules! run_completed_event {
    ($run:literal, $flow:literal, $output:literal, $completed_at:literal) => { concat!(
        run_event_head!("completed", $run, $flow), ", 'output', ", $output, ", 'completed_at', ", $completed_at,
        ") AS payload"
    ) };
}

/// `run:failed`, with an error message, or without one (a type violation's).
#[rustfmt::skip]
macro_rules! run_failed_event {
    ($run:literal, $flow:literal, $failed_at:literal) => { concat!(
        run_event_head!("failed", $run, $flow), ", 'failed_at', ", $failed_at, ") AS payload"
    ) };
    ($run:literal, $flow:literal, $failed_at:literal, error = $error:literal) => { concat!(
        run_event_head!("failed", $run, $flow), ", 'error_message', ", $error, ", 'failed_at', ", $failed_at,
        ") AS payload"
    ) };
}

/// `run:cancelled` (pgflow_core's own event; pgflow's clients know the other three).
#[rustfmt::skip]
macro_rules! run_cancelled_event {
    ($run:literal, $flow:literal, $cancelled_at:literal) => { concat!(
        run_event_head!("cancelled", $run, $flow), ", 'cancelled_at', ", $cancelled_at, ") AS payload"
    ) };
}

#[rustfmt::skip]
macro_rules! step_started_event {
    ($run:literal, $step:literal, $started_at:literal, $remaining_tasks:literal, $remaining_deps:literal) => { concat!(
        step_event_head!("started", $run, $step), ", 'started_at', ", $started_at,
        ", 'remaining_tasks', ", $remaining_tasks, ", 'remaining_deps', ", $remaining_deps, ") AS payload"
    ) };
}

/// `step:completed`; a taskless step's also has its start time and zero counters.
#[rustfmt::skip]
macro_rules! step_completed_event {
    ($run:literal, $step:literal, $output:literal, $completed_at:literal) => { concat!(
        step_event_head!("completed", $run, $step), ", 'output', ", $output, ", 'completed_at', ", $completed_at,
        ") AS payload"
    ) };
    ($run:literal, $step:literal, $output:literal, $completed_at:literal, taskless_started_at = $started_at:literal) => { concat!(
        step_event_head!("completed", $run, $step), ", 'output', ", $output, ", 'completed_at', ", $completed_at,
        ", 'started_at', ", $started_at, ", 'remaining_tasks', 0, 'remaining_deps', 0) AS payload"
    ) };
}

#[rustfmt::skip]
macro_rules! step_failed_event {
    ($run:literal, $step:literal, $error:literal, $failed_at:literal) => { concat!(
        step_event_head!("failed", $run, $step), ", 'error_message', ", $error, ", 'failed_at', ", $failed_at,
        ") AS payload"
    ) };
}

/// `step:skipped`: by a condition or a cascade (with the flow), or after its handler failed
/// (with the error, without the flow).
#[rustfmt::skip]
macro_rules! step_skipped_event {
    ($run:literal, $step:literal, $reason:literal, $skipped_at:literal, flow = $flow:literal) => { concat!(
        step_event_head!("skipped", $run, $step), ", 'flow_slug', ", $flow, ", 'skip_reason', ", $reason,
        ", 'skipped_at', ", $skipped_at, ") AS payload"
    ) };
    ($run:literal, $step:literal, $reason:literal, $skipped_at:literal, error = $error:literal) => { concat!(
        step_event_head!("skipped", $run, $step), ", 'skip_reason', ", $reason, ", 'error_message', ", $error,
        ", 'skipped_at', ", $skipped_at, ") AS payload"
    ) };
}

/// Sends the event of one result row (columns `event`, `topic`, `payload`).
pub(crate) fn emit_row(row: &SpiHeapTupleData<'_>) {
    if crate::events::enabled()
        && let Some(payload) = named::<Jsonb>(row, "payload")
    {
        let event: String = named(row, "event").unwrap_or_default();
        let topic: String = named(row, "topic").unwrap_or_default();
        crate::events::emit(&event, &topic, payload);
    }
}

/// Sends the events of a statement's result; returns the number of rows.
pub(crate) fn emit_events(table: SpiTupleTable<'_>) -> usize {
    let mut count = 0;
    for row in table {
        count += 1;
        emit_row(&row);
    }
    count
}
