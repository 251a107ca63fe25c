//! Scopes inside the caller's transaction: subtransactions and function-local settings.

use pgrx::pg_sys;

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
    with_search_path(c"", body)
}

/// Sets a background process's search_path to `pg_catalog, pg_temp` for its whole session: the
/// functions and operators its statements call are PostgreSQL's, whatever search_path the
/// database's owner set.
pub fn pin_search_path() {
    pgrx::bgworkers::BackgroundWorker::transaction(|| {
        pgrx::Spi::run("SET search_path = pg_catalog, pg_temp")
    })
    .unwrap_or_else(|e| panic!("pgflow_core: cannot set the search_path: {e}"));
}

/// Runs `body` with `search_path` set to `path` (see `with_empty_search_path`).
pub fn with_search_path<R>(path: &std::ffi::CStr, body: impl FnOnce() -> R) -> R {
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            path.as_ptr(),
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
