//! The runtime (contract section 2.3): runs, step states and tasks.
//!
//! - `start`: start_flow and start_ready_steps
//! - `cascade`: conditions, taskless steps, forced skips and run completion
//! - `tasks`: start_tasks, complete_task and fail_task
//!
//! Every function works in the caller's transaction through one SPI connection; statements are
//! prepared once per backend (`crate::statement`). Statements that produce events return
//! `(event, topic, payload)` as their first three columns, in emission order.

pub mod cascade;
pub mod start;
pub mod tasks;

use pgrx::pg_sys::{INT4OID, TEXTARRAYOID, TEXTOID, UUIDOID};
use pgrx::spi::{SpiClient, SpiHeapTupleData, SpiTupleTable};

use crate::datum::{Jsonb, RawDatum, RunRow, TaskRow};
use crate::events;
use crate::statement::{Statement, col, copy_to, first};

/// Sends the event of one result row: columns 1..3 = event, topic, payload.
pub(crate) fn emit_row(row: &SpiHeapTupleData<'_>) {
    if crate::events::enabled()
        && let Some(payload) = col::<Jsonb>(row, 3)
    {
        let event: String = col(row, 1).unwrap_or_default();
        let topic: String = col(row, 2).unwrap_or_default();
        events::emit(&event, &topic, payload);
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

static ARCHIVE_RUN_MESSAGES: Statement = Statement::new(
    "SELECT pgmq.archive(t.flow_slug, array_agg(t.message_id))
     FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.status IN ('queued', 'started') AND t.message_id IS NOT NULL
     GROUP BY t.flow_slug",
    &[UUIDOID],
);

static ARCHIVE_STEP_MESSAGES: Statement = Statement::new(
    "SELECT pgmq.archive(t.flow_slug, array_agg(t.message_id))
     FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.step_slug = ANY($2) AND t.status IN ('queued', 'started')
       AND t.message_id IS NOT NULL
     GROUP BY t.flow_slug",
    &[UUIDOID, TEXTARRAYOID],
);

static ARCHIVE_TASK_MESSAGE: Statement = Statement::new(
    "SELECT pgmq.archive(t.flow_slug, t.message_id)
     FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.message_id IS NOT NULL",
    &[UUIDOID, TEXTOID, INT4OID],
);

static RUN_ROW: Statement = Statement::new(
    "SELECT r FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID],
);

static TASK_ROW: Statement = Statement::new(
    "SELECT t, t.status, t.message_id FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3",
    &[UUIDOID, TEXTOID, INT4OID],
);

/// Archives the messages of every queued or started task of a run.
pub(crate) fn archive_run_messages(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) {
    ARCHIVE_RUN_MESSAGES.run(client, &[run_id.into()]);
}

/// Archives the messages of the queued or started tasks of some steps of a run.
pub(crate) fn archive_step_messages(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slugs: Vec<String>,
) {
    if !step_slugs.is_empty() {
        ARCHIVE_STEP_MESSAGES.run(client, &[run_id.into(), step_slugs.into()]);
    }
}

/// Archives one task's message, if it has one.
pub(crate) fn archive_task_message(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
) {
    ARCHIVE_TASK_MESSAGE.run(
        client,
        &[run_id.into(), step_slug.into(), task_index.into()],
    );
}

/// The run's row, copied into `outer`.
pub(crate) fn run_row(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
) -> Option<RunRow> {
    let row = first(RUN_ROW.run(client, &[run_id.into()]))?;
    col::<RawDatum>(&row, 1).map(|d| RunRow(copy_to(outer, d.0)))
}

/// A task as read at the end of a call: its row (copied into `outer`), status and message id.
pub(crate) struct TaskState {
    pub row: TaskRow,
    pub status: String,
    pub message_id: Option<i64>,
}

pub(crate) fn task_state(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
) -> Option<TaskState> {
    let row = first(TASK_ROW.run(
        client,
        &[run_id.into(), step_slug.into(), task_index.into()],
    ))?;
    Some(TaskState {
        row: TaskRow(copy_to(outer, col::<RawDatum>(&row, 1)?.0)),
        status: col(&row, 2).unwrap_or_default(),
        message_id: col(&row, 3),
    })
}
