//! start_run: start_flow with options — the run's own priority and an idempotency key (a second
//! start with the key an earlier run of the flow used returns that run while it is kept).

use pgrx::pg_sys::{TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::datum::{Jsonb, RunRow};
use crate::error::error;
use crate::memory::caller_context;
use crate::statement::{Statement, first, named};

static FLOW_EXISTS: Statement = Statement::new(
    "SELECT 1 FROM pgflow.flows WHERE flow_slug = $1",
    &[TEXTOID],
);

// Takes the key for a new run; a concurrent start with the same key waits here for the first
// to commit, and then finds its run.
static TAKE_KEY: Statement = Statement::new(
    "INSERT INTO pgflow._run_options (run_id, flow_slug, idempotency_key)
     VALUES (coalesce($3, gen_random_uuid()), $1, $2)
     ON CONFLICT (flow_slug, idempotency_key) DO NOTHING
     RETURNING run_id",
    &[TEXTOID, TEXTOID, UUIDOID],
);

// The run that holds a key, and whether it is still there.
static KEY_HOLDER: Statement = Statement::new(
    "SELECT o.run_id, EXISTS (SELECT 1 FROM pgflow.runs r WHERE r.run_id = o.run_id) AS kept
     FROM pgflow._run_options o WHERE o.flow_slug = $1 AND o.idempotency_key = $2",
    &[TEXTOID, TEXTOID],
);

// A key left behind by a run deleted without pgflow's pruning frees up.
static DROP_KEY: Statement = Statement::new(
    "DELETE FROM pgflow._run_options WHERE run_id = $1",
    &[UUIDOID],
);

/// The run behind `key`: an earlier run of the flow that used it, or a new one.
pub(crate) fn keyed_run(
    client: &mut SpiClient<'_>,
    flow_slug: &str,
    input: Option<Jsonb>,
    priority: Option<i32>,
    key: &str,
    run_id: Option<pgrx::Uuid>,
) -> Option<pgrx::Uuid> {
    loop {
        let taken = first(TAKE_KEY.run(client, &[flow_slug.into(), key.into(), run_id.into()]))
            .and_then(|row| named::<pgrx::Uuid>(&row, "run_id"));
        if let Some(new_run) = taken {
            return super::start_flow::start_flow(
                client,
                Some(flow_slug),
                input,
                Some(new_run),
                priority,
            );
        }
        // The holder may be gone already (pruned since): take the key again.
        let Some(holder) = first(KEY_HOLDER.run(client, &[flow_slug.into(), key.into()])) else {
            continue;
        };
        let held_by: pgrx::Uuid = named(&holder, "run_id")?;
        if named::<bool>(&holder, "kept").unwrap_or(false) {
            return Some(held_by);
        }
        DROP_KEY.run(client, &[held_by.into()]);
    }
}

#[pg_schema]
mod pgflow {
    use super::*;
    use crate::privileges::as_definer_of_flow;

    /// Starts a run of a flow, as start_flow does, with its own priority (NULL: the flow's) and
    /// an optional idempotency key; returns the run (an earlier one for a key already used).
    #[pg_extern(requires = ["pgflow_schema"])]
    fn start_run(
        flow_slug: Option<&str>,
        input: Option<Jsonb>,
        priority: default!(Option<i32>, "NULL"),
        idempotency_key: default!(Option<&str>, "NULL"),
        run_id: default!(Option<pgrx::Uuid>, "NULL"),
    ) -> SetOfIterator<'static, RunRow> {
        let flow = crate::executor::required(flow_slug, "flow_slug");
        if idempotency_key == Some("") {
            error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "idempotency_key must not be empty",
            );
        }
        let outer = caller_context();
        let row = Spi::connect_mut(|client| {
            as_definer_of_flow(client, Some(flow), |client| {
                if first(FLOW_EXISTS.run(client, &[flow.into()])).is_none() {
                    error(
                        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                        format!("flow \"{flow}\" does not exist"),
                    );
                }
                let run = match idempotency_key {
                    Some(key) => keyed_run(client, flow, input, priority, key, run_id),
                    None => super::super::start_flow::start_flow(
                        client,
                        Some(flow),
                        input,
                        run_id,
                        priority,
                    ),
                }?;
                super::super::rows::run_row(client, outer, run)
            })
        });
        SetOfIterator::new(row)
    }
}
