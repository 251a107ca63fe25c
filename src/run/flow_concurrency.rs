//! Flow concurrency: a flow's limit on its active runs (`set_flow_concurrency`). A run started
//! over the limit waits: 'waiting' in `pgflow._run_control`, 'started' in `pgflow.runs`, and no
//! step of it starts. The transaction that ends an active run (it completes, fails or is
//! cancelled) starts the waiting runs that fit, highest priority first, then in the order they
//! were started. Paused runs are active: they keep their slot.
//!
//! Every start and every end of a run of a limited flow locks the flow's row of
//! `pgflow._flow_options` before it counts, so each count sees every earlier start and end
//! committed. An end takes that lock after its run's lock; a transaction that ends several runs
//! (an executor's) defers its releases to its end (`deferring`), so that it never waits for a
//! run's lock while it holds a flow's row.

use std::cell::{Cell, RefCell};

use pgrx::pg_sys::{INT4OID, TEXTOID, UUIDOID};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::statement::{Statement, first, named};

// Only a flow with a limit has its row locked: one with a priority alone starts its runs freely.
static LOCK_OPTIONS: Statement = Statement::new(
    "SELECT o.max_active_runs FROM pgflow._flow_options o
     WHERE o.flow_slug = $1 AND o.max_active_runs IS NOT NULL
     FOR UPDATE",
    &[TEXTOID],
);

// Flows with a limit and waiting runs (the background worker's round looks at them).
static FLOWS_WITH_WAITING: Statement = Statement::new(
    "SELECT o.flow_slug FROM pgflow._flow_options o
     WHERE o.max_active_runs IS NOT NULL
       AND EXISTS (SELECT 1 FROM pgflow._run_control c JOIN pgflow.runs r ON r.run_id = c.run_id
                   WHERE c.state = 'waiting' AND r.flow_slug = o.flow_slug AND r.status = 'started')
     ORDER BY o.flow_slug",
    &[],
);

static ACTIVE: Statement = Statement::new(
    "SELECT count(*)::int AS active FROM pgflow.runs r
     WHERE r.flow_slug = $1 AND r.status = 'started'
       AND NOT EXISTS (SELECT 1 FROM pgflow._run_control c WHERE c.run_id = r.run_id AND c.state = 'waiting')",
    &[TEXTOID],
);

static ANY_WAITING: Statement = Statement::new(
    "SELECT 1 FROM pgflow._run_control c JOIN pgflow.runs r ON r.run_id = c.run_id
     WHERE c.state = 'waiting' AND r.flow_slug = $1 AND r.status = 'started'
     LIMIT 1",
    &[TEXTOID],
);

static STILL_WAITING: Statement = Statement::new(
    "SELECT 1 FROM pgflow._run_control WHERE run_id = $1 AND state = 'waiting'",
    &[UUIDOID],
);

static WAIT: Statement = Statement::new(
    "INSERT INTO pgflow._run_control (run_id, state, changed_at) VALUES ($1, 'waiting', clock_timestamp())",
    &[UUIDOID],
);

// Up to $2 waiting runs of flow $1 leave the waiting line (locked: one being cancelled is passed
// by), in the order they start.
static NEXT_WAITING: Statement = Statement::new(
    "WITH next AS (
         SELECT c.run_id,
                coalesce((SELECT ro.priority FROM pgflow._run_options ro WHERE ro.run_id = c.run_id), 0) AS priority,
                c.changed_at
         FROM pgflow._run_control c
         JOIN pgflow.runs r ON r.run_id = c.run_id
         WHERE c.state = 'waiting' AND r.flow_slug = $1 AND r.status = 'started'
         ORDER BY 2 DESC, c.changed_at, c.run_id
         LIMIT $2
         FOR NO KEY UPDATE OF r SKIP LOCKED
     ), gone AS (
         DELETE FROM pgflow._run_control c USING next WHERE c.run_id = next.run_id
     )
     SELECT run_id FROM next ORDER BY priority DESC, changed_at, run_id",
    &[TEXTOID, INT4OID],
);

static FLOW_OF: Statement = Statement::new(
    "SELECT flow_slug FROM pgflow.runs WHERE run_id = $1",
    &[UUIDOID],
);

/// The flow's limit, its options row locked; None when it has none.
fn lock_limit(client: &mut SpiClient<'_>, flow_slug: &str) -> Option<i32> {
    first(LOCK_OPTIONS.run(client, &[flow_slug.into()]))
        .and_then(|row| named::<i32>(&row, "max_active_runs"))
}

fn active_runs(client: &mut SpiClient<'_>, flow_slug: &str) -> i32 {
    first(ACTIVE.run(client, &[flow_slug.into()]))
        .and_then(|row| named(&row, "active"))
        .unwrap_or(0)
}

/// For a run just inserted: whether it must wait, because its flow has a limit and that many
/// other runs are active. A run that must wait is recorded as waiting. Waiting runs that a
/// release passed by (their row was locked at that moment) start when the next run of the flow
/// starts or ends, or at the background worker's next round (`release_all`).
pub(crate) fn must_wait(client: &mut SpiClient<'_>, run_id: pgrx::Uuid, flow_slug: &str) -> bool {
    if !crate::executor::features::features(client).limits {
        return false;
    }
    let Some(limit) = lock_limit(client, flow_slug) else {
        return false;
    };
    // The count includes the new run. Runs already waiting go first: the new one joins the line
    // and the free slots, if any, go to the line's head.
    if active_runs(client, flow_slug) <= limit && !any_waiting(client, flow_slug) {
        return false;
    }
    WAIT.run(client, &[run_id.into()]);
    if active_runs(client, flow_slug) < limit {
        release(client, flow_slug);
    }
    first(STILL_WAITING.run(client, &[run_id.into()])).is_some()
}

fn any_waiting(client: &mut SpiClient<'_>, flow_slug: &str) -> bool {
    first(ANY_WAITING.run(client, &[flow_slug.into()])).is_some()
}

thread_local! {
    /// Releases are deferred: a release or an executor's transaction is under way.
    static DEFERRED: Cell<bool> = const { Cell::new(false) };
    /// Flows whose runs ended and whose waiting runs have not been looked at yet.
    static PENDING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// After a run ended (completed, failed, cancelled): waiting runs of its flow start in the slots
/// that are free, now or at the end of a deferring transaction.
pub(crate) fn run_ended(client: &mut SpiClient<'_>, run_id: pgrx::Uuid) {
    if !crate::executor::features::features(client).limits {
        return;
    }
    let Some(flow) = first(FLOW_OF.run(client, &[run_id.into()]))
        .and_then(|row| named::<String>(&row, "flow_slug"))
    else {
        return;
    };
    PENDING.with_borrow_mut(|pending| {
        if !pending.contains(&flow) {
            pending.push(flow);
        }
    });
    if !DEFERRED.get() {
        release_pending(client);
    }
}

/// Resets `DEFERRED` when dropped, and forgets pending flows after an error.
struct Deferral(bool);

impl Deferral {
    fn begin() -> Deferral {
        Deferral(DEFERRED.replace(true))
    }
}

impl Drop for Deferral {
    fn drop(&mut self) {
        DEFERRED.set(self.0);
        if std::thread::panicking() {
            PENDING.with_borrow_mut(Vec::clear);
        }
    }
}

/// Runs `body` with the releases of the runs it ends deferred to its end.
pub(crate) fn deferring<R>(
    client: &mut SpiClient<'_>,
    body: impl FnOnce(&mut SpiClient<'_>) -> R,
) -> R {
    let result = {
        let _deferral = Deferral::begin();
        body(client)
    };
    if !DEFERRED.get() {
        release_pending(client);
    }
    result
}

/// Starts waiting runs of every pending flow, in the order of flow slugs, until none is left
/// (a run that starts may end at once and free its slot again).
fn release_pending(client: &mut SpiClient<'_>) {
    let _deferral = Deferral::begin();
    loop {
        let next = PENDING.with_borrow_mut(|pending| {
            pending.sort();
            (!pending.is_empty()).then(|| pending.remove(0))
        });
        let Some(flow) = next else { break };
        release(client, &flow);
    }
}

/// Starts as many waiting runs of a flow as its limit has free slots (all of them once it has
/// no limit). A waiting run whose row another transaction holds is passed by.
pub(crate) fn release(client: &mut SpiClient<'_>, flow_slug: &str) {
    let free = match lock_limit(client, flow_slug) {
        Some(limit) => limit - active_runs(client, flow_slug),
        None => i32::MAX,
    };
    if free <= 0 {
        return;
    }
    let runs: Vec<pgrx::Uuid> = NEXT_WAITING
        .run(client, &[flow_slug.into(), free.into()])
        .filter_map(|row| named(&row, "run_id"))
        .collect();
    for run_id in runs {
        super::start_flow::begin_run(client, run_id, flow_slug, None);
    }
}

/// Starts the waiting runs of every limited flow that has free slots; returns how many flows it
/// looked at. The background worker's round calls it, for runs that a release passed by.
pub(crate) fn release_all(client: &mut SpiClient<'_>) -> i32 {
    let flows: Vec<String> = FLOWS_WITH_WAITING
        .run(client, &[])
        .filter_map(|row| named(&row, "flow_slug"))
        .collect();
    for flow in &flows {
        release(client, flow);
    }
    flows.len() as i32
}

#[pg_schema]
mod pgflow {
    use super::*;

    /// Starts waiting runs that fit their flow's limit (the background worker's round).
    #[pg_extern(name = "_release_waiting_runs", requires = ["pgflow_schema"])]
    fn release_waiting_runs() -> i32 {
        Spi::connect_mut(super::release_all)
    }
}
