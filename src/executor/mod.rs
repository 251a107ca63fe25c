//! Steps run by the database itself: SQL handlers, run by executor background workers inside
//! the transaction that completes their task.
//!
//! - `handlers`: set_sql_handler, set_program_handler, remove_handler, and who may call them
//! - `sql_handler`: running one handler statement as its role, with its step's timeout, and
//!   turning its result into the task's output
//! - `target`: running a handler statement in another database through dblink
//! - `program`: running a program handler
//! - `pools`: create_pool, drop_pool, set_pool, and the slots of running tasks
//! - `run_local_tasks`: claim, run and complete (or fail) a batch of tasks, each in its own
//!   subtransaction; what an executor does in each of its transactions
//! - `adhoc`: ad-hoc SQL tasks (push_sql), one-off runs of a built-in flow
//! - `worker`: the executor background workers
//! - `wake`: waking idle executors when tasks are queued
//! - `features`: whether any handler or pool exists, for the engine's hot path
//!
//! Tasks of steps with a handler never get a message in the flow's queue: they are queued in
//! `pgflow._local_tasks` (see `run::start_ready_steps`) and claimed through `run::start_tasks`.

mod adhoc;
pub(crate) mod features;
mod handlers;
pub(crate) mod pools;
mod program;
mod run_local_tasks;
mod sql_handler;
mod target;
pub mod wake;
pub mod worker;

use pgrx::pg_sys;

pub(crate) use handlers::{record_owner, required};

/// Runs `body` as `role`, as a SECURITY DEFINER function runs as its owner: SET ROLE and
/// SET SESSION AUTHORIZATION are refused meanwhile. An error restores the caller's identity
/// with the (sub)transaction's abort.
pub(crate) fn as_role<R>(role: pg_sys::Oid, body: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(role, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let result = body();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

/// Runs `body` as `owner`, the extension's owner, with search_path `pg_catalog, pg_temp`: no
/// function or operator that the caller put ahead in its own search_path runs with the owner's
/// rights.
pub(crate) fn as_owner<R>(owner: pg_sys::Oid, body: impl FnOnce() -> R) -> R {
    as_role(owner, || {
        crate::transaction::with_search_path(c"pg_catalog, pg_temp", body)
    })
}

/// `as_owner` with the extension's owner.
pub(crate) fn as_extension_owner<R>(body: impl FnOnce() -> R) -> R {
    as_owner(extension_owner(), body)
}

/// The role that owns pgflow_core's tables (the extension's owner).
pub(crate) fn extension_owner() -> pg_sys::Oid {
    pgrx::Spi::get_one::<pg_sys::Oid>(
        // By name in the catalogs, not by regclass: that would need USAGE on schema pgflow.
        "SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'pgflow' AND c.relname = '_step_handlers'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| crate::error::internal_error("table pgflow._step_handlers is missing"))
}
