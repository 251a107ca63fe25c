//! Sleeping between the attempts of a `*_with_poll` read.
//!
//! The wait is a latch wait: it costs no CPU, it is cut short by a query cancel or a
//! shutdown request (both set the latch, and `check_for_interrupts!` then raises), and the
//! backend exits on postmaster death.

use pgrx::prelude::*;

/// Milliseconds to sleep before the next poll: the poll interval, but never past the deadline.
pub fn sleep_millis(poll_interval_ms: i32, now: i64, deadline: i64) -> i64 {
    let until_deadline = ((deadline - now).max(0) + 999) / 1000;
    i64::from(poll_interval_ms.max(0)).min(until_deadline)
}

/// The poll arguments of every `*_with_poll` function: NULL would otherwise poll forever.
pub fn check_poll_args(max_poll_seconds: Option<i32>, poll_interval_ms: Option<i32>) -> (i32, i32) {
    let (Some(max_poll_seconds), Some(poll_interval_ms)) = (max_poll_seconds, poll_interval_ms)
    else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "max_poll_seconds and poll_interval_ms must not be NULL"
        );
    };
    (max_poll_seconds, poll_interval_ms)
}

/// Blocks on the backend's latch for up to `millis`. Returns early when the latch is set.
pub fn latch_sleep(millis: i64) {
    if millis <= 0 {
        pg_sys::check_for_interrupts!();
        return;
    }
    let events = pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            events as i32,
            millis as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

#[pg_schema]
mod pgmq {
    use pgrx::prelude::*;

    /// `check_poll_args` for the grouped `*_with_poll` functions in SQL.
    #[pg_extern(name = "_check_poll_args", requires = ["pgmq"])]
    fn check_poll_args(max_poll_seconds: Option<i32>, poll_interval_ms: Option<i32>) {
        super::check_poll_args(max_poll_seconds, poll_interval_ms);
    }

    /// Waits until the next poll attempt of a `*_with_poll` function is due.
    #[pg_extern(name = "_poll_wait")]
    fn poll_wait(
        _queue_name: Option<&str>,
        poll_interval_ms: Option<i32>,
        deadline: Option<TimestampWithTimeZone>,
    ) {
        let (Some(poll_interval_ms), Some(deadline)) = (poll_interval_ms, deadline) else {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "poll_interval_ms and deadline must not be NULL"
            );
        };
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let deadline: i64 = deadline.into();
        super::latch_sleep(super::sleep_millis(poll_interval_ms, now, deadline));
    }
}

#[cfg(test)]
mod tests {
    use super::sleep_millis;

    #[test]
    fn sleeps_the_poll_interval_when_the_deadline_is_far() {
        assert_eq!(sleep_millis(100, 0, 5_000_000), 100);
    }

    #[test]
    fn never_sleeps_past_the_deadline() {
        assert_eq!(sleep_millis(100, 0, 30_500), 31);
        assert_eq!(sleep_millis(100, 10, 5), 0);
    }

    #[test]
    fn negative_interval_means_no_sleep() {
        assert_eq!(sleep_millis(-5, 0, 5_000_000), 0);
    }
}
