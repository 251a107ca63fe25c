//! push_sql: ad-hoc SQL tasks. Each statement becomes a one-off run of the built-in flow
//! `pgflow_adhoc` (one step, `sql`), run by the executors as the role that pushed it; the run
//! is looked up like any other, with its output, error and events.

use pgrx::pg_sys::{self, OIDOID, TEXTOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{as_owner, extension_owner, handlers};
use crate::datum::Jsonb;
use crate::statement::Statement;

pub(crate) const FLOW: &str = "pgflow_adhoc";
const STEP: &str = "sql";

static FLOW_EXISTS: Statement = Statement::new(
    "SELECT 1 FROM pgflow._step_handlers WHERE flow_slug = $1 AND step_slug = $2 AND kind = 'adhoc'",
    &[TEXTOID, TEXTOID],
);

static CREATE_FLOW: Statement = Statement::new(
    "SELECT pgflow.create_flow($1, max_attempts => 1, timeout => 86400),
            pgflow.add_step($1, $2)",
    &[TEXTOID, TEXTOID],
);

static INSERT_TASK: Statement = Statement::new(
    "INSERT INTO pgflow._adhoc_tasks (run_id, statement, run_as)
     VALUES (pg_catalog.gen_random_uuid(), $1, $2) RETURNING run_id",
    &[TEXTOID, OIDOID],
);

static INPUT: Statement = Statement::new(
    "SELECT pg_catalog.jsonb_build_object('statement', $1::text) AS input",
    &[TEXTOID],
);

/// Creates the built-in flow the first time it is needed.
fn ensure_flow(client: &mut SpiClient<'_>) {
    if FLOW_EXISTS
        .run(client, &[FLOW.into(), STEP.into()])
        .next()
        .is_some()
    {
        return;
    }
    CREATE_FLOW.run(client, &[FLOW.into(), STEP.into()]);
    handlers::set_handler(client, FLOW, STEP, handlers::Handler::Adhoc);
}

fn push(statements: Vec<String>) -> Vec<pgrx::Uuid> {
    for statement in &statements {
        handlers::check_syntax(statement);
    }
    let me = unsafe { pg_sys::GetUserId() };
    let owner = extension_owner();
    Spi::connect_mut(|client| {
        as_owner(owner, || {
            ensure_flow(client);
            statements
                .iter()
                .filter_map(|statement| {
                    let run_id: pgrx::Uuid = INSERT_TASK
                        .run(client, &[statement.as_str().into(), me.into()])
                        .next()
                        .and_then(|row| crate::statement::named(&row, "run_id"))?;
                    let input = INPUT
                        .run(client, &[statement.as_str().into()])
                        .next()
                        .and_then(|row| crate::statement::named::<Jsonb>(&row, "input"));
                    crate::run::start_flow::start_flow(
                        client,
                        Some(FLOW),
                        input,
                        Some(run_id),
                        None,
                    )
                })
                .collect()
        })
    })
}

fn required(statement: Option<String>) -> String {
    statement.unwrap_or_else(|| {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "an ad-hoc task's statement must not be NULL",
        )
    })
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Queues one SQL statement to run in the background as the calling role; returns the id of
    /// its run (flow `pgflow_adhoc`), whose output is the statement's result.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn push_sql(statement: Option<String>) -> Option<pgrx::Uuid> {
        push(vec![required(statement)]).into_iter().next()
    }

    /// Queues many statements at once; returns their run ids in the same order.
    #[pg_extern(requires = ["pgflow_schema"])]
    fn push_sql_batch(
        statements: Option<Vec<Option<String>>>,
    ) -> SetOfIterator<'static, pgrx::Uuid> {
        let statements: Vec<String> = statements
            .unwrap_or_default()
            .into_iter()
            .map(required)
            .collect();
        SetOfIterator::new(push(statements))
    }
}
