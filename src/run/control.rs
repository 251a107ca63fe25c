//! The run control table (`pgflow._run_control`): runs that were cancelled, are paused or wait
//! for their flow's concurrency limit. The
//! contract's runs table keeps its three statuses: a cancelled run is 'failed' there.

use pgrx::pg_sys::UUIDOID;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::statement::{Statement, first};

/// True unless run `$run` is paused or waiting for its flow's concurrency limit: no task of
/// such a run is claimed and no step of it starts.
#[macro_export]
macro_rules! not_paused_sql {
    ($run:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM pgflow._run_control rc WHERE rc.run_id = ",
            $run,
            " AND rc.state IN ('paused', 'waiting'))"
        )
    };
}

/// Run `$run`'s priority (0 unless it has one).
#[macro_export]
macro_rules! run_priority_sql {
    ($run:literal) => {
        concat!(
            "coalesce((SELECT ro.priority FROM pgflow._run_options ro WHERE ro.run_id = ",
            $run,
            "), 0)"
        )
    };
}

/// The order in which executors take tasks of `_local_tasks` (alias `$q`) once runs have
/// priorities: tasks visible for `pgflow.priority_max_wait` or more first (nothing starves), then
/// the highest priority, then the oldest.
#[macro_export]
macro_rules! local_priority_order_sql {
    ($q:literal) => {
        concat!(
            $crate::starving_sql!($q),
            " DESC, ",
            $q,
            "priority DESC, ",
            $q,
            "visible_at"
        )
    };
}

/// Whether a task of `_local_tasks` (alias `$q`) has been visible for `pgflow.priority_max_wait`.
#[macro_export]
macro_rules! starving_sql {
    ($q:literal) => {
        concat!(
            "(",
            $q,
            "visible_at <= clock_timestamp() - current_setting('pgflow.priority_max_wait')::interval)"
        )
    };
}

static IS_CANCELLED: Statement = Statement::new(
    "SELECT 1 FROM pgflow._run_control WHERE run_id = $1 AND state = 'cancelled'",
    &[UUIDOID],
);

/// Whether a run was cancelled. Asked only of runs that are 'failed', off the hot path.
pub(crate) fn is_cancelled(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) -> bool {
    first(IS_CANCELLED.run(client, &[run_id.into()])).is_some()
}

/// A task's completion or failure that arrives after its run was cancelled changes nothing
/// and returns no row; this notice says why.
pub(crate) fn ignored_after_cancel(run_id: pgrx::Uuid, what: &str) {
    ereport!(
        PgLogLevel::NOTICE,
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("run {run_id} was cancelled: the task's {what} changes nothing")
    );
}
