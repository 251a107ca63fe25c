//! Prepared statements kept for the life of the backend.
//!
//! Each statement is parsed and planned once per backend, on first use, and kept with
//! `SPI_keepplan`. PostgreSQL's plan cache revalidates kept plans when the objects they use
//! change, so a dropped and re-created table or function is picked up by name.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiHeapTupleData, SpiTupleTable};

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
    static TABLE_PLANS: RefCell<TablePlans> = RefCell::new(TablePlans::default());
}

/// At most this many kept plans on queue tables per backend (a queue uses up to six). Beyond
/// it the least recently used are freed, so a session that goes through many queues stays small.
const MAX_TABLE_PLANS: usize = 192;

/// The kept plans of statements on queue tables, by statement name and table stem.
#[derive(Default)]
struct TablePlans {
    plans: HashMap<(&'static str, String), TablePlan>,
    /// Stems whose plans are to be freed (their queue was dropped).
    forgotten: Vec<String>,
    clock: u64,
    /// How many `TableStatement::run` calls are under way; plans are freed only at 0, never
    /// under a caller that may still be executing one of them.
    depth: u32,
}

struct TablePlan {
    /// Leaked while kept; freed by `TablePlans::free`.
    plan: &'static OwnedPreparedStatement,
    last_used: u64,
}

impl TablePlans {
    /// Frees the plans of forgotten queues and, over the limit, the least recently used.
    fn trim(&mut self) {
        if self.depth > 0 {
            return;
        }
        if !self.forgotten.is_empty() {
            let forgotten = std::mem::take(&mut self.forgotten);
            let keys: Vec<_> = self
                .plans
                .keys()
                .filter(|(_, stem)| forgotten.contains(stem))
                .cloned()
                .collect();
            for key in keys {
                self.free(&key);
            }
        }
        while self.plans.len() >= MAX_TABLE_PLANS {
            let Some(oldest) = self
                .plans
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.free(&oldest);
        }
    }

    fn free(&mut self, key: &(&'static str, String)) {
        if let Some(entry) = self.plans.remove(key) {
            // SAFETY: the plan was leaked from a Box in `TableStatement::run` and no call is
            // using it (depth 0); dropping it calls SPI_freeplan.
            drop(unsafe {
                Box::from_raw(
                    entry.plan as *const OwnedPreparedStatement as *mut OwnedPreparedStatement,
                )
            });
        }
    }
}

/// Frees this backend's kept plans on a queue's tables (`stem`: its lower-cased name), now or
/// when the statement that is running ends. Called when the queue is dropped.
pub fn forget_table_plans(stem: &str) {
    TABLE_PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        plans.forgotten.push(stem.to_string());
        plans.trim();
    });
}

/// Marks a `TableStatement::run` as under way until dropped (also when an error unwinds).
struct InRun;

impl InRun {
    fn enter() -> InRun {
        TABLE_PLANS.with(|plans| plans.borrow_mut().depth += 1);
        InRun
    }
}

impl Drop for InRun {
    fn drop(&mut self) {
        TABLE_PLANS.with(|plans| plans.borrow_mut().depth -= 1);
    }
}

/// A statement on a table chosen at run time (a queue's table): its text is built once per
/// table by `build`, and kept like a `Statement`.
pub struct TableStatement {
    name: &'static str,
    arg_types: &'static [pg_sys::Oid],
}

impl TableStatement {
    pub const fn new(name: &'static str, arg_types: &'static [pg_sys::Oid]) -> Self {
        TableStatement { name, arg_types }
    }

    pub fn run<'conn>(
        &'static self,
        client: &mut SpiClient<'conn>,
        table_key: &str,
        build: impl FnOnce() -> String,
        args: &[DatumWithOid<'_>],
    ) -> SpiTupleTable<'conn> {
        let key = (self.name, table_key.to_string());
        let found = TABLE_PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            plans.clock += 1;
            let now = plans.clock;
            plans.plans.get_mut(&key).map(|entry| {
                entry.last_used = now;
                entry.plan
            })
        });
        let plan = match found {
            Some(plan) => plan,
            None => {
                TABLE_PLANS.with(|plans| plans.borrow_mut().trim());
                let types: Vec<PgOid> =
                    self.arg_types.iter().map(|&oid| PgOid::from(oid)).collect();
                let sql = build();
                let prepared = client
                    .prepare_mut(sql.as_str(), &types)
                    .unwrap_or_else(|e| {
                        internal_error(&format!("could not prepare statement: {e}"))
                    });
                let plan: &'static OwnedPreparedStatement = Box::leak(Box::new(prepared.keep()));
                TABLE_PLANS.with(|plans| {
                    let mut plans = plans.borrow_mut();
                    let last_used = plans.clock;
                    plans.plans.insert(key, TablePlan { plan, last_used });
                });
                plan
            }
        };
        let _running = InRun::enter();
        let _generic = GenericPlans::force();
        client
            .update(plan, None, args)
            .unwrap_or_else(|e| internal_error(&format!("statement failed: {e}")))
    }
}

/// Makes kept plans run as generic plans while it lives. Left to its heuristics, the plan cache
/// keeps choosing a fresh custom plan for statements such as `message_id = ANY($2)` (it knows
/// the array's size then), which costs a full planning on every call: 1.5 ms of a 2 ms
/// start_tasks. The statements are written so that their generic plans are the right ones.
struct GenericPlans(i32);

impl GenericPlans {
    fn force() -> GenericPlans {
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

/// Column `ordinal` (1-based) of a row. By-reference values stay in SPI memory for
/// `Jsonb` and `RawDatum`; copy them with `copy_to` to keep them past the SPI connection.
pub fn col<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData<'_>, ordinal: usize) -> Option<T> {
    row.get::<T>(ordinal)
        .unwrap_or_else(|e| internal_error(&format!("unexpected result column {ordinal}: {e}")))
}

/// The first row of a result, if any.
pub fn first<'conn>(mut table: SpiTupleTable<'conn>) -> Option<SpiHeapTupleData<'conn>> {
    table.next()
}

/// Copies a varlena datum (a composite row, a jsonb) into `context`, detoasted.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn copy_to(context: pg_sys::MemoryContext, datum: pg_sys::Datum) -> pg_sys::Datum {
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(context);
        let copy = pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr()));
        pg_sys::MemoryContextSwitchTo(old);
        copy
    }
}

/// The memory context of the caller, to copy results into before SPI memory is released.
pub fn caller_context() -> pg_sys::MemoryContext {
    unsafe { pg_sys::CurrentMemoryContext }
}

/// Runs `body` in a subtransaction, as a PL/pgSQL block with an EXCEPTION clause does: released
/// when `keep` says so of the result, rolled back otherwise, and rolled back when `body` raises,
/// in which case the error is returned (to be raised again or handled) and the caller's
/// transaction goes on.
pub fn in_subtransaction<R>(
    body: impl FnOnce() -> R,
    keep: impl FnOnce(&R) -> bool,
) -> Result<R, Box<pg_sys::panic::CaughtError>> {
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let end = |commit: bool| unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        if commit {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
    }
    let result = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(body())))
        .catch_others(|error| {
            end(false);
            Err(Box::new(error))
        })
        .execute();
    if let Ok(value) = &result {
        end(keep(value));
    }
    result
}

/// Runs `body` with `search_path` set to '', as `SET search_path = ''` on a function does, for
/// functions whose catalogue entry must not carry that setting (the contract gives them none):
/// their statements then can't resolve a name to a look-alike in a caller's schema. An error
/// restores the setting with the (sub)transaction's abort.
pub fn with_empty_search_path<R>(body: impl FnOnce() -> R) -> R {
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let result = body();
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}

pub fn internal_error(message: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        message.to_string()
    );
}

/// Raises a `RAISE EXCEPTION`-style error (SQLSTATE P0001) with an exact message.
pub fn raise(message: String) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION, message);
}
