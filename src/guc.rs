//! Every setting of pgflow_core. None needs a server restart (pgflow.notify_events is per session,
//! the others change with a configuration reload), so defining them never fails when the library
//! is loaded late by CREATE EXTENSION.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `pgflow.notify_events`: where `realtime.send` does not exist, send run and step events with
/// pg_notify on channel `pgflow:run:<run_id>`. Off by default: NOTIFY serialises committing
/// transactions.
pub static NOTIFY_EVENTS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `pgflow.worker_enabled`: switches the background workers on or off.
pub static WORKER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `pgflow.worker_databases`: comma-separated databases the background worker serves.
pub static WORKER_DATABASES: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));

/// `pgflow.executors`: executor processes per database served (they run steps with a handler).
pub static EXECUTORS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// `pgflow.default_pool`: the concurrency pool of steps whose flow and step name none (empty:
/// no pool). Read in SQL with current_setting, where tasks are queued and claimed.
pub static DEFAULT_POOL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `pgflow.worker_interval_ms`: time between two rounds of background work in a database.
pub static WORKER_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// `pgflow.timeout_grace`: seconds past a task's timeout before the worker acts on it.
pub static TIMEOUT_GRACE: GucSetting<i32> = GucSetting::<i32>::new(30);

/// `pgflow.retention`: when set (an interval such as '7 days'), the worker prunes finished runs
/// older than this.
pub static RETENTION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `pgflow.prune_interval`: seconds between two prunes by the worker.
pub static PRUNE_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(3600);

/// `pgflow.priority_max_wait`: seconds a flow's message may wait, visible and unread, before it
/// is read ahead of every priority (the rule against starvation).
pub static PRIORITY_MAX_WAIT: GucSetting<i32> = GucSetting::<i32>::new(60);

/// `pgflow.schedule_grace`: seconds a schedule's tick may be late and still fire when the
/// schedule does not catch up (later ticks are skipped).
pub static SCHEDULE_GRACE: GucSetting<i32> = GucSetting::<i32>::new(60);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pgflow.notify_events",
        c"Send run and step events with pg_notify when realtime.send does not exist.",
        c"Channel pgflow:run:<run_id>; payload {\"event\": ..., \"payload\": ...}. NOTIFY serialises committing transactions, so this is off by default.",
        &NOTIFY_EVENTS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pgflow.worker_enabled",
        c"Run pgflow_core's background workers.",
        c"Needs pgflow_core in shared_preload_libraries.",
        &WORKER_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pgflow.worker_databases",
        c"Comma-separated list of databases served by pgflow_core's background worker.",
        c"One worker process runs per listed database that exists; it works once the extension is created there.",
        &WORKER_DATABASES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgflow.executors",
        c"Executor processes per database served by pgflow_core's background workers.",
        c"Executors run the tasks of steps with a SQL handler; each takes a background worker slot (max_worker_processes).",
        &EXECUTORS,
        0,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgflow.worker_interval_ms",
        c"Milliseconds between two rounds of background work in a database.",
        c"Each round requeues stalled tasks, fails timed-out tasks and prunes when due.",
        &WORKER_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgflow.timeout_grace",
        c"Seconds past a task's timeout before the background worker requeues or fails it.",
        c"The contract's requeue_stalled_tasks() always uses 30 seconds.",
        &TIMEOUT_GRACE,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pgflow.default_pool",
        c"Concurrency pool of the steps whose flow and step name none (empty: none).",
        c"A name that is no pool (pgflow.create_pool) limits nothing.",
        &DEFAULT_POOL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgflow.priority_max_wait",
        c"Seconds a flow's task may wait, visible and unread, before it is read ahead of every priority.",
        c"Reads of a flow's queue hand out such tasks first, oldest first, so low priorities do not starve.",
        &PRIORITY_MAX_WAIT,
        1,
        86_400 * 365,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgflow.schedule_grace",
        c"Seconds a schedule's tick may be late and still fire, for schedules that do not catch up.",
        c"A tick later than this (the database was down, or the schedule's worker was) is skipped.",
        &SCHEDULE_GRACE,
        0,
        86_400 * 365,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"pgflow.retention",
        c"Prune finished runs older than this interval (empty: never).",
        c"Every pgflow.prune_interval seconds the background worker prunes with pgflow._prune_step, one transaction per batch.",
        &RETENTION,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgflow.prune_interval",
        c"Seconds between two prunes by the background worker.",
        c"Only used when pgflow.retention is set.",
        &PRUNE_INTERVAL,
        1,
        604_800,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// The databases in `pgflow.worker_databases`, trimmed, without empty entries.
pub fn worker_databases() -> Vec<String> {
    WORKER_DATABASES
        .get()
        .map(|list| parse_list(&list.to_string_lossy()))
        .unwrap_or_default()
}

/// `pgflow.retention`, when set.
pub fn retention() -> Option<String> {
    RETENTION
        .get()
        .map(|r| r.to_string_lossy().trim().to_string())
        .filter(|r| !r.is_empty())
}

fn parse_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_list;

    #[test]
    fn database_lists_are_trimmed_and_skip_empty_entries() {
        assert_eq!(
            parse_list(" app, other ,,"),
            vec!["app".to_string(), "other".to_string()]
        );
        assert!(parse_list("").is_empty());
    }
}
