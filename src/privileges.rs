//! Workers with least privilege (docs/security.md). A role with no rights on the engine's tables
//! may start, complete and fail the tasks of the flows it may work: those whose queue table it
//! may UPDATE, as `pgflow.grant_flow` grants. start_tasks, complete_task and fail_task check
//! that, then do their work as the extension's owner. Superusers and members of the owner act
//! as themselves, unchecked: the hot path costs nothing more.

use std::cell::Cell;

use pgrx::pg_sys::{self, OIDOID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::error;
use crate::executor::{as_owner, extension_owner};
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
    as_owner(owner, || body(client))
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
    let flow: Option<String> = as_owner(owner, || {
        first(FLOW_OF_RUN.run(client, &[run_id.into()])).and_then(|row| named(&row, "flow_slug"))
    });
    let Some(flow) = flow else {
        return R::default();
    };
    check_may_work(client, me, &flow);
    as_owner(owner, || body(client))
}

// Definers: members of pgflow_definer create flows, which they then own, and act on their own
// flows and runs (add steps, start, cancel, pause, resume, retry, look up a run's status). The
// functions check ownership, then act as the extension's owner for the role they were called by
// (`caller`). Anyone else acts as itself, so its own table rights decide.

thread_local! {
    static ACTING_FOR: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// The role a call is made by, also while a function acts as the extension's owner for it.
pub(crate) fn caller() -> pg_sys::Oid {
    ACTING_FOR
        .get()
        .unwrap_or_else(|| unsafe { pg_sys::GetUserId() })
}

/// Puts `ACTING_FOR` back when the call ends, also when it ends in an error.
struct RestoreActingFor(Option<pg_sys::Oid>);

impl Drop for RestoreActingFor {
    fn drop(&mut self) {
        ACTING_FOR.set(self.0);
    }
}

fn act_for<R>(me: pg_sys::Oid, owner: pg_sys::Oid, body: impl FnOnce() -> R) -> R {
    let _restore = RestoreActingFor(ACTING_FOR.replace(Some(me)));
    as_owner(owner, body)
}

fn is_definer(me: pg_sys::Oid) -> bool {
    let role = unsafe { pg_sys::get_role_oid(c"pgflow_definer".as_ptr(), true) };
    role != pg_sys::Oid::INVALID && unsafe { pg_sys::has_privs_of_role(me, role) }
}

static FLOW_AND_OWNER: Statement = Statement::new(
    "SELECT f.flow_slug, o.owner::oid AS owner
     FROM pgflow.flows f LEFT JOIN pgflow._flow_owners o ON o.flow_slug = f.flow_slug
     WHERE f.flow_slug = $1",
    &[TEXTOID],
);

static RUN_FLOW_AND_OWNER: Statement = Statement::new(
    "SELECT r.flow_slug, o.owner::oid AS owner
     FROM pgflow.runs r LEFT JOIN pgflow._flow_owners o ON o.flow_slug = r.flow_slug
     WHERE r.run_id = $1",
    &[UUIDOID],
);

/// Runs `body` for a definer as the extension's owner when `found` (the flow and its owner, as
/// the owner sees them) says the flow is new or the caller's.
fn as_definer<R>(
    client: &mut SpiClient<'_>,
    look: impl FnOnce(&mut SpiClient<'_>) -> Option<(String, Option<pg_sys::Oid>)>,
    body: impl FnOnce(&mut SpiClient<'_>) -> R,
) -> R {
    let me = unsafe { pg_sys::GetUserId() };
    let Some(owner) = acting_owner(me) else {
        return body(client);
    };
    if !is_definer(me) {
        return body(client);
    }
    // A new flow (its creator becomes its owner) or an unknown run: the call's own errors.
    if let Some((flow, flow_owner)) = as_owner(owner, || look(client))
        && !flow_owner.is_some_and(|o| unsafe { pg_sys::has_privs_of_role(me, o) })
    {
        error(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be the owner of flow \"{flow}\""),
        );
    }
    act_for(me, owner, || body(client))
}

/// Runs a definer's call on `flow` (create_flow, add_step, start_flow, start_run).
pub(crate) fn as_definer_of_flow<R>(
    client: &mut SpiClient<'_>,
    flow: Option<&str>,
    body: impl FnOnce(&mut SpiClient<'_>) -> R,
) -> R {
    let look = |client: &mut SpiClient<'_>| {
        let row = first(FLOW_AND_OWNER.run(client, &[flow.into()]))?;
        Some((named(&row, "flow_slug")?, named(&row, "owner")))
    };
    as_definer(client, look, body)
}

/// Runs a definer's call on a run (cancel, pause, resume, retry, status).
pub(crate) fn as_definer_of_run<R>(
    client: &mut SpiClient<'_>,
    run_id: pgrx::Uuid,
    body: impl FnOnce(&mut SpiClient<'_>) -> R,
) -> R {
    let look = |client: &mut SpiClient<'_>| {
        let row = first(RUN_FLOW_AND_OWNER.run(client, &[run_id.into()]))?;
        Some((named(&row, "flow_slug")?, named(&row, "owner")))
    };
    as_definer(client, look, body)
}
