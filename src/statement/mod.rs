//! Prepared statements kept for the life of the backend.
//!
//! Each statement is parsed and planned once per backend, on first use, and kept with
//! `SPI_keepplan`. PostgreSQL's plan cache revalidates kept plans when the objects they use
//! change, so a dropped and re-created table or function is picked up by name.
//! Statements on a queue's tables, whose text depends on the queue, are in `table`.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiHeapTupleData, SpiTupleTable};

use crate::error::internal_error;

mod table;
pub use table::{TableStatement, forget_table_plans};

/// A status for statements that find their rows by key: `(SELECT 'started'::text)` is an
/// InitPlan parameter, not a constant, so the planner can neither pick a partial index on the
/// status nor trust its statistics about it. Statistics taken while nothing ran say no run is
/// started and the `queued` / `started` partial indexes are empty; a plan led by one of them
/// (or by idx_runs_status) then visits every running run or task on each call
/// (tests/sql/pgflow/16_plan_stability.sql).
#[macro_export]
macro_rules! status {
    ($s:literal) => {
        concat!("(SELECT '", $s, "'::text)")
    };
}

pub struct Statement {
    sql: &'static str,
    arg_types: &'static [pg_sys::Oid],
}

thread_local! {
    static PLANS: RefCell<HashMap<usize, &'static OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Makes kept plans run as generic plans while it lives. Left to its heuristics, the plan cache
/// keeps choosing a fresh custom plan for statements such as `message_id = ANY($2)` (it knows
/// the array's size then), which costs a full planning on every call: 1.5 ms of a 2 ms
/// start_tasks. The statements are written so that their generic plans are the right ones.
pub(crate) struct GenericPlans(i32);

impl GenericPlans {
    pub(crate) fn force() -> GenericPlans {
        unsafe {
            let previous = pg_sys::plan_cache_mode;
            pg_sys::plan_cache_mode =
                pg_sys::PlanCacheMode::PLAN_CACHE_MODE_FORCE_GENERIC_PLAN as i32;
            GenericPlans(previous)
        }
    }
}

impl Drop for GenericPlans {
    fn drop(&mut self) {
        unsafe { pg_sys::plan_cache_mode = self.0 };
    }
}

impl Statement {
    pub const fn new(sql: &'static str, arg_types: &'static [pg_sys::Oid]) -> Self {
        Statement { sql, arg_types }
    }

    fn plan(&'static self, client: &SpiClient<'_>) -> &'static OwnedPreparedStatement {
        let key = self as *const Statement as usize;
        if let Some(plan) = PLANS.with(|plans| plans.borrow().get(&key).copied()) {
            return plan;
        }
        let types: Vec<PgOid> = self.arg_types.iter().map(|&oid| PgOid::from(oid)).collect();
        let prepared = client
            .prepare_mut(self.sql, &types)
            .unwrap_or_else(|e| internal_error(&format!("could not prepare statement: {e}")));
        // Kept plans live as long as the backend, like the map that finds them.
        let plan: &'static OwnedPreparedStatement = Box::leak(Box::new(prepared.keep()));
        PLANS.with(|plans| plans.borrow_mut().insert(key, plan));
        plan
    }

    /// Executes the statement with a fresh snapshot (it may modify data).
    pub fn run<'conn>(
        &'static self,
        client: &mut SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> SpiTupleTable<'conn> {
        let plan = self.plan(client);
        let _generic = GenericPlans::force();
        client
            .update(plan, None, args)
            .unwrap_or_else(|e| internal_error(&format!("statement failed: {e}")))
    }
}

impl Statement {
    /// `run` with sequential and bitmap scans disabled while the statement is planned and run: for statements on a queue table whose size swings between empty (when
    /// its statistics are taken) and large, where only an ordered index scan stopped early by
    /// LIMIT stays fast whatever the statistics say.
    pub fn run_by_index<'conn>(
        &'static self,
        client: &mut SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> SpiTupleTable<'conn> {
        let level = unsafe { pg_sys::NewGUCNestLevel() };
        // jit too: the cost of a disabled plan node would otherwise make every call compile.
        for name in [c"enable_seqscan", c"enable_bitmapscan", c"jit"] {
            unsafe {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    c"off".as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
            }
        }
        let result = self.run(client, args);
        unsafe { pg_sys::AtEOXact_GUC(true, level) };
        result
    }
}

/// The value of a one-column row. By-reference values stay in SPI memory for `Jsonb` and
/// `RawDatum`; copy them with `memory::copy_to` to keep them past the SPI connection.
pub fn only<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData<'_>) -> Option<T> {
    row.get::<T>(1)
        .unwrap_or_else(|e| internal_error(&format!("unexpected result column: {e}")))
}

/// Column `name` of a row (see `only` on by-reference values).
pub fn named<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData<'_>, name: &str) -> Option<T> {
    row.get_by_name::<T, _>(name)
        .unwrap_or_else(|e| internal_error(&format!("unexpected result column {name}: {e}")))
}

/// The first row of a result, if any.
pub fn first<'conn>(mut table: SpiTupleTable<'conn>) -> Option<SpiHeapTupleData<'conn>> {
    table.next()
}
