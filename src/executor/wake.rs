//! Waking idle executors when tasks for them are committed, through the queue layer's latch
//! wake-ups (`queue::wake`) under a key of their own.

/// Not a queue name (queue names have no spaces), so no queue's readers share the key.
const KEY: &str = " pgflow executors";

/// This transaction queued `count` tasks visible now: wake up to that many executors at commit.
pub fn tasks_queued(count: usize) {
    if count > 0 {
        crate::queue::wake::sent(KEY, count);
    }
}

/// Called once by an executor: it is woken by every commit that queues tasks from now on.
pub fn listen() {
    crate::queue::wake::register_until_exit(KEY);
}
