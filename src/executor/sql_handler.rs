//! Running one SQL handler: its statement as its role, with the task's input ($1) and the run's
//! input ($2), under the step's timeout. The result becomes the task's output:
//! - one row of one column: that value as JSON (SQL NULL and void give JSON null);
//! - any other result (zero rows, several rows or columns): the rows as an array of objects;
//! - a statement without a result (INSERT without RETURNING, a utility command): JSON null.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::as_role;
use crate::datum::Jsonb;

thread_local! {
    /// Kept plans of handler statements, by statement and role.
    static PLANS: RefCell<HashMap<(String, u32), pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
    /// Kept plans of the result conversions, by query and parameter type.
    static CONVERSIONS: RefCell<HashMap<(usize, u32), pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
    static TIMEOUT_ID: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Kept plans are not freed; past this many, the cache starts again.
const MAX_PLANS: usize = 512;

/// Set by the timeout's handler (in signal context), read when the handler's error is caught.
static TIMED_OUT: AtomicBool = AtomicBool::new(false);

const USER_TIMEOUT: i32 = 12;

unsafe extern "C-unwind" {
    fn RegisterTimeout(id: i32, handler: Option<unsafe extern "C-unwind" fn()>) -> i32;
    fn enable_timeout_after(id: i32, delay_ms: i32);
    fn disable_timeout(id: i32, keep_indicator: bool);
}

/// The timeout's handler: cancels the running statement, as statement_timeout does.
unsafe extern "C-unwind" fn on_timeout() {
    TIMED_OUT.store(true, Ordering::SeqCst);
    unsafe {
        pg_sys::QueryCancelPending = 1;
        pg_sys::InterruptPending = 1;
        pg_sys::SetLatch(pg_sys::MyLatch);
    }
}

/// Whether the last handler's error was its timeout.
pub(crate) fn timed_out() -> bool {
    TIMED_OUT.load(Ordering::SeqCst)
}

/// Records that the running handler was stopped at its timeout (see `timed_out`).
pub(crate) fn mark_timed_out() {
    TIMED_OUT.store(true, Ordering::SeqCst);
}

/// Forgets an earlier handler's timeout, before the next handler starts.
pub(crate) fn clear_timed_out() {
    TIMED_OUT.store(false, Ordering::SeqCst);
}

/// Disarms the timeout when the handler ends, however it ends.
struct Deadline(i32);

impl Deadline {
    fn arm(seconds: i32) -> Deadline {
        let id = TIMEOUT_ID.with(|id| {
            id.get().unwrap_or_else(|| {
                let new = unsafe { RegisterTimeout(USER_TIMEOUT, Some(on_timeout)) };
                id.set(Some(new));
                new
            })
        });
        TIMED_OUT.store(false, Ordering::SeqCst);
        let ms = seconds.saturating_mul(1000).max(1);
        unsafe { enable_timeout_after(id, ms) };
        Deadline(id)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        unsafe { disable_timeout(self.0, false) };
    }
}

fn prepare(sql: &str, types: &mut [pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let text = CString::new(sql).unwrap_or_else(|_| {
        crate::error::error(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "a SQL handler's statement must not contain NUL characters",
        )
    });
    unsafe {
        let plan = pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            let code = std::ptr::read(&raw const pg_sys::SPI_result);
            crate::error::internal_error(&format!(
                "could not prepare a handler's statement (SPI code {code})"
            ));
        }
        pg_sys::SPI_keepplan(plan);
        plan
    }
}

fn handler_plan(statement: &str, role: pg_sys::Oid) -> pg_sys::SPIPlanPtr {
    let key = (statement.to_owned(), u32::from(role));
    if let Some(plan) = PLANS.with(|p| p.borrow().get(&key).copied()) {
        return plan;
    }
    let plan = prepare(statement, &mut [pg_sys::JSONBOID, pg_sys::JSONBOID]);
    PLANS.with(|p| {
        let mut plans = p.borrow_mut();
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(key, plan);
    });
    plan
}

/// `to_jsonb(value)` of a value of type `type_oid`.
fn to_jsonb(value: pg_sys::Datum, type_oid: pg_sys::Oid) -> pg_sys::Datum {
    single_value("SELECT pg_catalog.to_jsonb($1)", type_oid, value)
}

/// The one jsonb value that `sql` (a query of one parameter of type `type_oid`, kept
/// prepared) returns for `value`.
fn single_value(sql: &'static str, type_oid: pg_sys::Oid, value: pg_sys::Datum) -> pg_sys::Datum {
    let key = (sql.as_ptr() as usize, u32::from(type_oid));
    let plan = CONVERSIONS
        .with(|p| p.borrow().get(&key).copied())
        .unwrap_or_else(|| {
            let plan = prepare(sql, &mut [type_oid]);
            CONVERSIONS.with(|p| p.borrow_mut().insert(key, plan));
            plan
        });
    let mut values = [value];
    let nulls = [b' ' as std::ffi::c_char];
    unsafe {
        let code = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), true, 1);
        if code != pg_sys::SPI_OK_SELECT as i32 || pg_sys::SPI_processed != 1 {
            crate::error::internal_error("a result conversion returned no row");
        }
        let table = pg_sys::SPI_tuptable;
        let mut is_null = false;
        let datum = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut is_null);
        if is_null { json_null() } else { datum }
    }
}

/// The jsonb value `null`.
pub(crate) fn json_null() -> pg_sys::Datum {
    unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::jsonb_in,
            &[Some(pg_sys::Datum::from(c"null".as_ptr()))],
        )
        .unwrap_or_else(|| crate::error::internal_error("jsonb_in returned NULL"))
    }
}

/// Runs `statement` as `role` under a timeout of `timeout` seconds and returns its output.
/// Raises what the statement raises; a timeout raises a query cancel (see `timed_out`). Settings
/// the statement changes are put back afterwards, so the next handler in this backend starts
/// from the same ones.
pub(crate) fn run(
    statement: &str,
    role: pg_sys::Oid,
    input: Option<pg_sys::Datum>,
    flow_input: Option<pg_sys::Datum>,
    timeout: i32,
) -> Jsonb {
    super::target::close_other_roles(role);
    // The handler runs with the session's own search_path (the database's or role's default):
    // the executors run their own statements with pg_catalog only (executor::worker).
    let path = unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetConfigOptionResetString(c"search_path".as_ptr()))
    }
    .to_owned();
    as_role(role, || {
        crate::transaction::with_search_path(&path, || {
            let level = unsafe { pg_sys::NewGUCNestLevel() };
            let plan = handler_plan(statement, role);
            let mut values = [
                input.unwrap_or(pg_sys::Datum::from(0)),
                flow_input.unwrap_or(pg_sys::Datum::from(0)),
            ];
            let nulls = [
                if input.is_some() { b' ' } else { b'n' } as std::ffi::c_char,
                if flow_input.is_some() { b' ' } else { b'n' } as std::ffi::c_char,
            ];
            let deadline = Deadline::arm(timeout);
            let code = unsafe {
                pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
            };
            drop(deadline);
            if code < 0 {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("a SQL handler cannot run this statement (SPI code {code})"),
                    "Handlers run inside the transaction that completes their task: transaction control and COPY to or from the client are not available."
                );
            }
            let output = result_to_jsonb();
            unsafe { pg_sys::AtEOXact_GUC(false, level) };
            Jsonb(output)
        })
    })
}

/// The last SPI result as the task's output (see the module's documentation).
fn result_to_jsonb() -> pg_sys::Datum {
    unsafe {
        let table = pg_sys::SPI_tuptable;
        if table.is_null() || (*table).tupdesc.is_null() {
            return json_null();
        }
        let tupdesc = (*table).tupdesc;
        let rows = pg_sys::SPI_processed as usize;
        let columns = (*tupdesc).natts;
        if rows == 1 && columns == 1 {
            let mut is_null = false;
            let value = pg_sys::SPI_getbinval(*(*table).vals, tupdesc, 1, &mut is_null);
            if is_null {
                return json_null();
            }
            let type_oid = pg_sys::SPI_gettypeid(tupdesc, 1);
            if type_oid == pg_sys::JSONBOID {
                return value;
            }
            // A function returning void (pg_sleep, a procedure-like function) gives no value.
            if type_oid == pg_sys::VOIDOID {
                return json_null();
            }
            return to_jsonb(value, type_oid);
        }
        // Each row as a record, then the records as one array.
        pg_sys::BlessTupleDesc(tupdesc);
        let records: Vec<pg_sys::Datum> = (0..rows)
            .map(|i| pg_sys::heap_copy_tuple_as_datum(*(*table).vals.add(i), tupdesc))
            .collect();
        let mut elements: Vec<pg_sys::Datum> = records
            .into_iter()
            .map(|record| to_jsonb(record, pg_sys::RECORDOID))
            .collect();
        let array = pg_sys::construct_array(
            elements.as_mut_ptr(),
            elements.len() as i32,
            pg_sys::JSONBOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
        );
        single_value(
            "SELECT coalesce(pg_catalog.jsonb_agg(u.e ORDER BY u.o), '[]'::pg_catalog.jsonb)
             FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(e, o)",
            pg_sys::JSONBARRAYOID,
            pg_sys::Datum::from(array),
        )
    }
}
