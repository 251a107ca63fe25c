//! Archiving the messages of tasks that are done or will not run, through the queue layer's
//! one archiving routine (`queue::messages::archive_messages`, also behind `pgmq.archive`).

use pgrx::pg_sys::{INT4OID, TEXTARRAYOID, TEXTOID, UUIDOID};
use pgrx::spi::SpiClient;

use crate::queue::messages::archive_messages;
use crate::queue::name::QueueName;
use crate::statement::{Statement, named};

static RUN_MESSAGES: Statement = Statement::new(
    "SELECT t.flow_slug, array_agg(t.message_id) AS ids
     FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.status IN ('queued', 'started') AND t.message_id IS NOT NULL
     GROUP BY t.flow_slug",
    &[UUIDOID],
);

static STEP_MESSAGES: Statement = Statement::new(
    "SELECT t.flow_slug, array_agg(t.message_id) AS ids
     FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.step_slug = ANY($2) AND t.status IN ('queued', 'started')
       AND t.message_id IS NOT NULL
     GROUP BY t.flow_slug",
    &[UUIDOID, TEXTARRAYOID],
);

static TASK_MESSAGE: Statement = Statement::new(
    "SELECT t.flow_slug, ARRAY[t.message_id] AS ids
     FROM pgflow.step_tasks t
     WHERE t.run_id = $1 AND t.step_slug = $2 AND t.task_index = $3 AND t.message_id IS NOT NULL",
    &[UUIDOID, TEXTOID, INT4OID],
);

/// Archives the messages that a statement returns as rows of `flow_slug, ids`.
fn archive_found(client: &mut SpiClient<'_>, found: Vec<(String, Vec<Option<i64>>)>) {
    for (flow_slug, ids) in found {
        archive_messages(client, &QueueName::parse(Some(&flow_slug)), Some(ids));
    }
}

fn find(
    client: &mut SpiClient<'_>,
    statement: &'static Statement,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Vec<(String, Vec<Option<i64>>)> {
    statement
        .run(client, args)
        .filter_map(|row| Some((named(&row, "flow_slug")?, named(&row, "ids")?)))
        .collect()
}

/// Archives the messages of every queued or started task of a run.
pub(crate) fn run_messages(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) {
    let found = find(client, &RUN_MESSAGES, &[run_id.into()]);
    archive_found(client, found);
}

/// Archives the messages of the queued or started tasks of some steps of a run.
pub(crate) fn step_messages(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slugs: Vec<String>,
) {
    if !step_slugs.is_empty() {
        let found = find(client, &STEP_MESSAGES, &[run_id.into(), step_slugs.into()]);
        archive_found(client, found);
    }
}

/// Archives one task's message, if it has one.
pub(crate) fn task_message(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    step_slug: &str,
    task_index: i32,
) {
    let found = find(
        client,
        &TASK_MESSAGE,
        &[run_id.into(), step_slug.into(), task_index.into()],
    );
    archive_found(client, found);
}

/// Archives a message whose id the caller has.
pub(crate) fn message(client: &mut SpiClient<'_>, flow_slug: &str, message_id: Option<i64>) {
    if message_id.is_some() {
        archive_found(client, vec![(flow_slug.to_string(), vec![message_id])]);
    }
}
