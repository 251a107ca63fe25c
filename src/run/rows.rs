//! Statuses and step types as enums, and the rows that the SQL functions return.

use pgrx::pg_sys::{INT4OID, TEXTOID, UUIDOID};
use pgrx::spi::{SpiClient, SpiHeapTupleData};

use crate::datum::{RawDatum, RunRow, TaskRow};
use crate::memory::copy_to;
use crate::statement::{Statement, first, named};

/// A text column's values as an enum: `as_sql` gives the text, `read` reads a named column.
macro_rules! sql_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name {
            $($variant),+
        }

        impl $name {
            #[allow(dead_code)]
            pub(crate) fn as_sql(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub(crate) fn from_sql(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => crate::error::internal_error(&format!(
                        concat!("unexpected ", stringify!($name), " {:?}"),
                        other
                    )),
                }
            }

            /// Column `column` of a row.
            pub(crate) fn read(row: &SpiHeapTupleData<'_>, column: &str) -> Option<Self> {
                named::<String>(row, column).map(|text| Self::from_sql(&text))
            }
        }
    };
}

sql_enum!(RunStatus { Started = "started", Completed = "completed", Failed = "failed" });

sql_enum!(StepStatus {
    Created = "created",
    Started = "started",
    Completed = "completed",
    Failed = "failed",
    Skipped = "skipped",
});

sql_enum!(TaskStatus {
    Queued = "queued",
    Started = "started",
    Completed = "completed",
    Failed = "failed",
});

sql_enum!(StepType { Single = "single", Map = "map" });

sql_enum!(
    /// What happens to a step whose tasks used up their attempts (`when_exhausted`) or whose
    /// condition is not met (`when_unmet`).
    Handling {
        Fail = "fail",
        Skip = "skip",
        SkipCascade = "skip-cascade",
    }
);

static RUN_ROW: Statement = Statement::new(
    "SELECT r AS run FROM pgflow.runs r WHERE r.run_id = $1",
    &[UUIDOID],
);

static TASK_ROW: Statement = Statement::new(
    "SELECT t AS task, t.status, t.message_id FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3",
    &[UUIDOID, TEXTOID, INT4OID],
);

/// The run's row, copied into `outer`.
pub(crate) fn run_row(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
) -> Option<RunRow> {
    let row = first(RUN_ROW.run(client, &[run_id.into()]))?;
    named::<RawDatum>(&row, "run").map(|d| RunRow(copy_to(outer, d.0)))
}

/// A task as read at the end of a call: its row (copied into `outer`), status and message id.
pub(crate) struct TaskState {
    pub row: TaskRow,
    pub status: TaskStatus,
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
        row: TaskRow(copy_to(outer, named::<RawDatum>(&row, "task")?.0)),
        status: TaskStatus::read(&row, "status")?,
        message_id: named(&row, "message_id"),
    })
}

/// The task's row as it is now, copied into `outer`.
pub(crate) fn task_row(
    client: &mut SpiClient<'_>,
    outer: pgrx::pg_sys::MemoryContext,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
) -> Option<TaskRow> {
    task_state(client, outer, run_id, step_slug, task_index).map(|t| t.row)
}
