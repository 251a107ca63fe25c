//! Statements on a table chosen at run time (a queue's tables): kept per table, at most
//! `MAX_TABLE_PLANS` per backend, freed when their queue is dropped.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};

use super::GenericPlans;
use crate::error::internal_error;

thread_local! {
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
