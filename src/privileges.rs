//! Workers with least privilege (docs/security.md). A role with no rights on the engine's tables
//! may start, complete and fail the tasks of the flows it may work: those whose queue table it
//! may UPDATE, as `pgflow.grant_flow` grants. start_tasks, complete_task and fail_task check
//! that, then do their work as the extension's owner. Superusers and members of the owner act
//! as themselves, unchecked: the hot path costs nothing more.

use pgrx::pg_sys::{self, OIDOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::error;
use crate::executor::{as_role, extension_owner};
use crate::queue::name::sql_lower;
use crate::statement::{Statement, first, named};

static MAY_WORK: Statement = Statement::new(
    "SELECT pg_catalog.has_table_privilege($1, c.oid, 'UPDATE') AS allowed
     FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'pgmq'::pg_catalog.regnamespace AND c.relname = $2",
    &[OIDOID, TEXTOID],
);

static FLOW_OF_RUN: Statement = Statement::new(
    "SELECT flow_slug FROM pgflow.runs WHERE run_id = $1",
    &[UUIDOID],
);

/// The owner to act as, when the current user is not a superuser or a member of the owner.
fn acting_owner(me: pg_sys::Oid) -> Option<pg_sys::Oid> {
    if unsafe { pg_sys::superuser_arg(me) } {
        return None;
    }
    let owner = extension_owner();
    if unsafe { pg_sys::has_privs_of_role(me, owner) } {
        None
    } else {
        Some(owner)
    }
}

/// Raises 42501 unless `me` may UPDATE the queue table of `flow`.
fn check_may_work(client: &mut SpiClient<'_>, me: pg_sys::Oid, flow: &str) {
    let table = format!("q_{}", sql_lower(flow));
    let allowed = first(MAY_WORK.run(client, &[me.into(), table.into()]))
        .and_then(|row| named::<bool>(&row, "allowed"))
        .unwrap_or(false);
    if !allowed {
        error(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied to work on flow \"{flow}\": a superuser or the extension's owner grants it with pgflow.grant_flow"
            ),
        );
    }
}

/// Runs a worker's call on the tasks of `flow`.
pub(crate) fn as_worker_of_flow<R>(
    client: &mut SpiClient<'_>,
    flow: Option<&str>,
    body: impl FnOnce(&mut SpiClient<'_>) -> R,
) -> R {
    let me = unsafe { pg_sys::GetUserId() };
    let Some(owner) = acting_owner(me) else {
        return body(client);
    };
    check_may_work(client, me, flow.unwrap_or_default());
    as_role(owner, || body(client))
}

/// Runs a worker's call on a task of `run_id`. A run that does not exist gives the call's empty
/// answer without running it (what it would find could only be a run nobody checked).
pub(crate) fn as_worker_of_run<R: Default>(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    body: impl FnOnce(&mut SpiClient<'_>) -> R,
) -> R {
    let me = unsafe { pg_sys::GetUserId() };
    let Some(owner) = acting_owner(me) else {
        return body(client);
    };
    let flow: Option<String> = as_role(owner, || {
        first(FLOW_OF_RUN.run(client, &[run_id.into()])).and_then(|row| named(&row, "flow_slug"))
    });
    let Some(flow) = flow else {
        return R::default();
    };
    check_may_work(client, me, &flow);
    as_role(owner, || body(client))
}
