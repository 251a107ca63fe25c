//! Whether any step has a handler, whether any pool exists, whether any run has a priority and
//! whether any flow limits its active runs,
//! known to each backend without a query on the hot path: the engine's statements for flows that
//! use none of them (the common case) stay as they were before these existed.
//!
//! Each backend keeps the answer with the shared generation it was read under
//! (`queue::wake::generation`); a transaction that changes handlers or pools moves the
//! generation on when it commits, and backends then read the tables again. Without shared memory
//! (library not preloaded) the tables are read every time.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::queue::wake;
use crate::statement::{Statement, first, named};

#[derive(Clone, Copy)]
pub(crate) struct Features {
    pub handlers: bool,
    pub pools: bool,
    /// Some kept run has a priority other than 0: flow queues are read in priority order.
    pub priorities: bool,
    /// Some flow limits how many of its runs are active (`run::flow_concurrency`).
    pub limits: bool,
}

thread_local! {
    static CACHED: Cell<Option<(u64, Features)>> = const { Cell::new(None) };
}

static READ: Statement = Statement::new(
    "SELECT EXISTS (SELECT 1 FROM pgflow._step_handlers) AS handlers,
            EXISTS (SELECT 1 FROM pgflow._pools) AS pools,
            EXISTS (SELECT 1 FROM pgflow._run_options WHERE priority <> 0) AS priorities,
            EXISTS (SELECT 1 FROM pgflow._flow_options WHERE max_active_runs IS NOT NULL) AS limits",
    &[],
);

fn read(client: &mut SpiClient<'_>) -> Features {
    let row = first(READ.run(client, &[]));
    // Without an answer, assume each exists: the statements that look are always right.
    let has = |column: &str| {
        row.as_ref()
            .and_then(|r| named::<bool>(r, column))
            .unwrap_or(true)
    };
    Features {
        handlers: has("handlers"),
        pools: has("pools"),
        priorities: has("priorities"),
        limits: has("limits"),
    }
}

/// What exists now (as of the last committed change this backend has seen).
pub(crate) fn features(client: &mut SpiClient<'_>) -> Features {
    // A transaction that changed them reads them every time until it ends (it sees its change,
    // other backends do not yet).
    let generation = wake::generation().filter(|_| !PENDING.load(Ordering::Relaxed));
    if let (Some(g), Some((cached_g, cached))) = (generation, CACHED.get())
        && g == cached_g
    {
        return cached;
    }
    // As the tables' owner: a role that may only read its queues (pgmq's users, pgflow_worker)
    // has no rights on these tables.
    let now = if unsafe { pg_sys::superuser() } {
        read(client)
    } else {
        super::as_extension_owner(|| read(client))
    };
    if let Some(g) = generation {
        CACHED.set(Some((g, now)));
    }
    now
}

static PENDING: AtomicBool = AtomicBool::new(false);
static CALLBACK: AtomicBool = AtomicBool::new(false);

/// Called by every change of handlers, pools or flow limits, and by the first run with a priority: the
/// generation moves on when the transaction commits.
pub(crate) fn changed() {
    PENDING.store(true, Ordering::Relaxed);
    if !CALLBACK.swap(true, Ordering::Relaxed) {
        unsafe { pg_sys::RegisterXactCallback(Some(at_end), std::ptr::null_mut()) };
    }
}

/// At commit, once: moves the generation on if this transaction changed what `features` reads.
/// Called before the commit's wake-ups, so that a woken backend reads the change.
pub(crate) fn publish() {
    if PENDING.swap(false, Ordering::Relaxed) {
        wake::next_generation();
        CACHED.set(None);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => publish(),
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            PENDING.store(false, Ordering::Relaxed);
            CACHED.set(None);
        }
        _ => {}
    }
}
