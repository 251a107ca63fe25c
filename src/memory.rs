//! Memory contexts: results copied out of SPI memory for the caller.

use pgrx::pg_sys;

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
