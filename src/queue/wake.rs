//! Waking waiting readers when messages they can take are committed, without NOTIFY.
//!
//! Shared memory holds one slot per PostgreSQL process (indexed by `pgprocno`). A backend in a
//! `*_with_poll` read stores the key of the queue it waits on (database oid and a hash of the
//! queue's table name) in its slot. A transaction that sends to a queue remembers the queue's
//! key; right after it commits, it sets the latch of every process waiting on that key. The
//! waiter then reads again at once instead of at its next poll.
//!
//! Registration happens before the waiter's first read, so a commit is either seen by that read
//! or wakes it afterwards. A hash collision only causes a harmless extra read. Without the
//! library in shared_preload_libraries there is no shared memory and readers simply poll.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

struct Waiters {
    /// Number of slots with a registration; senders skip the scan when it is 0.
    active: AtomicU32,
    slots: u32,
    /// Bumped by every committed change of handlers or pools (`executor::features`), so that
    /// backends know when to look at those tables again.
    generation: AtomicU64,
    // followed by `slots` AtomicU64 keys (0 = not waiting)
}

static WAITERS: AtomicPtr<Waiters> = AtomicPtr::new(std::ptr::null_mut());
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

thread_local! {
    /// Keys of the queues this transaction sent to, with the number of messages.
    static PENDING: RefCell<HashMap<u64, u32>> = RefCell::new(HashMap::new());
    /// Whether this backend's slot holds a registration.
    static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static CALLBACK_REGISTERED: AtomicBool = AtomicBool::new(false);

fn slot_count() -> u32 {
    unsafe { (pg_sys::MaxBackends as u32) + 128 }
}

fn shmem_size(slots: u32) -> usize {
    std::mem::size_of::<Waiters>() + slots as usize * std::mem::size_of::<AtomicU64>()
}

/// Called from `_PG_init`: reserves the shared memory when the library is preloaded.
pub fn init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request_shmem);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup_shmem);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn request_shmem() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(shmem_size(slot_count()));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup_shmem() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let slots = slot_count();
        let mut found = false;
        let init_lock = addin_shmem_init_lock();
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let ptr = pg_sys::ShmemInitStruct(
            c"pgflow_core queue waiters".as_ptr(),
            shmem_size(slots),
            &mut found,
        ) as *mut Waiters;
        if !found {
            std::ptr::write_bytes(ptr as *mut u8, 0, shmem_size(slots));
            (*ptr).slots = slots;
        }
        pg_sys::LWLockRelease(init_lock);
        WAITERS.store(ptr, Ordering::SeqCst);
    }
}

/// PostgreSQL's AddinShmemInitLock (a C macro: slot 21 of the main LWLock array).
unsafe fn addin_shmem_init_lock() -> *mut pg_sys::LWLock {
    unsafe { &raw mut (*pg_sys::MainLWLockArray.add(21)).lock }
}

fn waiters() -> Option<&'static Waiters> {
    let ptr = WAITERS.load(Ordering::Relaxed);
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

fn slot(waiters: &Waiters, index: u32) -> &AtomicU64 {
    unsafe {
        let first = (waiters as *const Waiters).add(1) as *const AtomicU64;
        &*first.add(index as usize)
    }
}

/// FNV-1a of the queue's table stem (`QueueName::stem`, the lower-cased name), never 0.
fn queue_hash(stem: &str) -> u32 {
    let mut hash: u32 = 0x811c9dc5;
    for byte in stem.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x01000193);
    }
    hash.max(1)
}

/// The key of a queue in the current database: database oid and the queue's hash.
fn queue_key(stem: &str) -> u64 {
    let database = u64::from(u32::from(unsafe { pg_sys::MyDatabaseId }));
    (database << 32) | u64::from(queue_hash(stem))
}

fn ensure_callback() {
    if !CALLBACK_REGISTERED.swap(true, Ordering::Relaxed) {
        unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    }
}

/// Registers this backend as waiting on a queue until its transaction ends.
pub fn register(stem: &str) {
    let Some(waiters) = waiters() else { return };
    let me = unsafe { (*pg_sys::MyProc).pgprocno };
    if me < 0 || me as u32 >= waiters.slots {
        return;
    }
    ensure_callback();
    if slot(waiters, me as u32).swap(queue_key(stem), Ordering::SeqCst) == 0 {
        waiters.active.fetch_add(1, Ordering::SeqCst);
    }
    REGISTERED.with(|r| r.set(true));
}

/// Registers this process as waiting on a key for as long as it lives (the executors wait on
/// their queue between transactions); the slot is cleared when the process exits.
pub fn register_until_exit(stem: &str) {
    let Some(waiters) = waiters() else { return };
    let me = unsafe { (*pg_sys::MyProc).pgprocno };
    if me < 0 || me as u32 >= waiters.slots {
        return;
    }
    if slot(waiters, me as u32).swap(queue_key(stem), Ordering::SeqCst) == 0 {
        waiters.active.fetch_add(1, Ordering::SeqCst);
    }
    unsafe { pg_sys::before_shmem_exit(Some(unregister_at_exit), pg_sys::Datum::from(0)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn unregister_at_exit(_code: i32, _arg: pg_sys::Datum) {
    let Some(waiters) = waiters() else { return };
    let me = unsafe { (*pg_sys::MyProc).pgprocno };
    if me >= 0
        && (me as u32) < waiters.slots
        && slot(waiters, me as u32).swap(0, Ordering::SeqCst) != 0
    {
        waiters.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shared generation of the executors' configuration, when there is shared memory.
pub fn generation() -> Option<u64> {
    waiters().map(|w| w.generation.load(Ordering::SeqCst))
}

/// Moves the generation on (called after a commit that changed handlers or pools).
pub fn next_generation() {
    if let Some(w) = waiters() {
        w.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Remembers that this transaction made `count` messages visible in a queue; after commit, up
/// to that many of its waiters are woken (not all of them: they would only race for the same
/// messages).
pub fn sent(stem: &str, count: usize) {
    if waiters().is_none() || count == 0 {
        return;
    }
    ensure_callback();
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    PENDING.with(|p| {
        let mut pending = p.borrow_mut();
        let entry = pending.entry(queue_key(stem)).or_insert(0);
        *entry = entry.saturating_add(count);
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    let committed = match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => true,
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => false,
        _ => return,
    };
    if committed {
        // Whoever is woken must see what this transaction changed in the features it reads
        // (the callbacks run in either order).
        crate::executor::features::publish();
    }
    let Some(waiters) = waiters() else { return };
    if REGISTERED.with(|r| r.replace(false)) {
        let me = unsafe { (*pg_sys::MyProc).pgprocno } as u32;
        if slot(waiters, me).swap(0, Ordering::SeqCst) != 0 {
            waiters.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if committed && !pending.is_empty() && waiters.active.load(Ordering::SeqCst) > 0 {
        wake(waiters, &pending);
    }
}

/// Sets the latches of up to `keys[key]` waiters of each key, starting at a rotating slot so
/// that wake-ups spread over the waiters.
fn wake(waiters: &Waiters, keys: &HashMap<u64, u32>) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut budget = keys.clone();
    unsafe {
        let procs = (*pg_sys::ProcGlobal).allProcs;
        let count = waiters.slots.min((*pg_sys::ProcGlobal).allProcCount);
        if count == 0 {
            return;
        }
        let start = NEXT.fetch_add(1, Ordering::Relaxed) % count;
        for offset in 0..count {
            let index = (start + offset) % count;
            let key = slot(waiters, index).load(Ordering::SeqCst);
            if key == 0 {
                continue;
            }
            if let Some(left) = budget.get_mut(&key).filter(|left| **left > 0) {
                *left -= 1;
                pg_sys::SetLatch(&mut (*procs.add(index as usize)).procLatch);
            }
        }
    }
}

#[pg_schema]
mod pgmq {
    use pgrx::prelude::*;

    /// Registers the calling backend as a reader waiting on a queue (until its transaction ends).
    #[pg_extern(name = "_poll_register")]
    fn poll_register(queue_name: Option<&str>) {
        if let Some(queue_name) = queue_name {
            super::register(&crate::queue::name::sql_lower(queue_name));
        }
    }

    /// Marks a queue as sent to by this transaction, so its waiting readers wake at commit.
    #[pg_extern(name = "_signal_queue")]
    fn signal_queue(queue_name: Option<&str>, messages: default!(Option<i32>, 1)) {
        if let Some(queue_name) = queue_name {
            super::sent(
                &crate::queue::name::sql_lower(queue_name),
                messages.unwrap_or(1).max(0) as usize,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::queue_hash;

    #[test]
    fn queue_hashes_differ_by_stem() {
        assert_ne!(queue_hash("jobs"), queue_hash("jobs2"));
        assert_ne!(queue_hash("jobs"), queue_hash("Jobs"));
    }

    #[test]
    fn queue_hashes_are_never_zero() {
        assert_ne!(queue_hash(""), 0);
    }
}
