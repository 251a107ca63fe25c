//! The `*_with_poll` reads: they wait without burning CPU, notice new messages within one poll
//! interval, and can be cancelled or terminated at once.

use std::thread;
use std::time::{Duration, Instant};

use pgflow_client_tests::*;

#[derive(Clone, Copy, Debug)]
enum PollFn {
    Read,
    Grouped,
}

impl PollFn {
    /// The set-returning call; $1 queue, $2 max_poll_seconds, $3 poll_interval_ms.
    fn call(self) -> &'static str {
        match self {
            PollFn::Read => {
                "pgmq.read_with_poll(queue_name => $1::text, vt => 30, qty => 5,
                                     max_poll_seconds => $2::int, poll_interval_ms => $3::int)"
            }
            PollFn::Grouped => {
                "pgmq.read_grouped_with_poll(queue_name => $1::text, vt => 30, qty => 5,
                                             max_poll_seconds => $2::int, poll_interval_ms => $3::int)"
            }
        }
    }

    /// Text that identifies the running statement in pg_stat_activity.
    fn needle(self) -> &'static str {
        match self {
            PollFn::Read => "pgmq.read_with_poll(",
            PollFn::Grouped => "pgmq.read_grouped_with_poll(",
        }
    }

    fn send_one(self, client: &mut Client, queue: &str) -> i64 {
        match self {
            PollFn::Read => send(client, queue, r#"{"wake": true}"#),
            PollFn::Grouped => send_with_headers(
                client,
                queue,
                r#"{"wake": true}"#,
                r#"{"x-pgmq-group": "g1"}"#,
            ),
        }
    }

    fn poll(
        self,
        client: &mut Client,
        queue: &str,
        max_poll_seconds: i32,
        poll_interval_ms: i32,
    ) -> Result<Vec<Msg>, postgres::Error> {
        query_msgs(
            client,
            self.call(),
            &[&queue, &max_poll_seconds, &poll_interval_ms],
        )
    }
}

fn new_queue(prefix: &str) -> (Client, String) {
    let mut client = connect();
    let queue = unique_name(prefix);
    create_queue(&mut client, &queue);
    (client, queue)
}

/// (a) An empty queue: nothing comes back, after max_poll_seconds (not much later).
fn empty_queue_returns_nothing_after_max_poll(f: PollFn, prefix: &str) {
    let (mut client, queue) = new_queue(prefix);
    let start = Instant::now();
    let rows = f.poll(&mut client, &queue, 2, 100).expect("poll");
    let elapsed = start.elapsed();
    assert!(rows.is_empty(), "empty queue returned {rows:?}");
    assert!(
        elapsed >= Duration::from_millis(1_990),
        "returned after {elapsed:?}, before max_poll_seconds = 2"
    );
    assert!(
        elapsed < Duration::from_millis(2_500),
        "returned after {elapsed:?}, long after max_poll_seconds = 2"
    );

    // A message that only becomes visible later does not end the poll either.
    client
        .execute("SELECT pgmq.send($1::text, '{}'::jsonb, 60)", &[&queue])
        .expect("delayed send");
    let start = Instant::now();
    let rows = f.poll(&mut client, &queue, 1, 100).expect("poll");
    let elapsed = start.elapsed();
    assert!(rows.is_empty(), "invisible message returned: {rows:?}");
    assert!(
        elapsed >= Duration::from_millis(990) && elapsed < Duration::from_millis(1_500),
        "elapsed {elapsed:?}"
    );

    // max_poll_seconds <= 0: empty at once, without reading (even with a visible message).
    let id = f.send_one(&mut client, &queue);
    let start = Instant::now();
    let rows = f.poll(&mut client, &queue, 0, 100).expect("poll");
    assert!(rows.is_empty(), "max_poll_seconds = 0 read {rows:?}");
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "max_poll_seconds = 0 took {:?}",
        start.elapsed()
    );
    assert_eq!(
        queue_row(&mut client, &queue, id)
            .expect("message gone")
            .read_ct,
        0,
        "max_poll_seconds = 0 read the message"
    );
}

#[test]
fn read_with_poll_empty_queue_returns_nothing_after_max_poll_seconds() {
    empty_queue_returns_nothing_after_max_poll(PollFn::Read, "pw_empty");
}

#[test]
fn read_grouped_with_poll_empty_queue_returns_nothing_after_max_poll_seconds() {
    empty_queue_returns_nothing_after_max_poll(PollFn::Grouped, "pwg_empty");
}

/// (b) Waiting costs (almost) no CPU in the backend.
fn poll_does_not_burn_cpu(f: PollFn, prefix: &str) {
    let (mut client, queue) = new_queue(prefix);
    let pid = backend_pid(&mut client);
    let ticks_per_second = clock_ticks_per_second() as f64;
    // Warm up (plan caches, function compilation) so that only the waiting is measured.
    f.poll(&mut client, &queue, 1, 100).expect("warm-up poll");

    let before = process_cpu_ticks(pid);
    let start = Instant::now();
    let rows = f.poll(&mut client, &queue, 3, 100).expect("poll");
    let wall = start.elapsed().as_secs_f64();
    let cpu = (process_cpu_ticks(pid) - before) as f64 / ticks_per_second;
    assert!(rows.is_empty());
    assert!(wall >= 2.99, "poll returned after {wall} s");
    assert!(
        cpu < 0.1 * wall,
        "backend used {cpu:.3} s CPU during a {wall:.3} s poll (limit 10%)"
    );

    // The measurement works: a busy loop of 300 ms in the same backend shows up.
    let before = process_cpu_ticks(pid);
    client
        .batch_execute(
            "DO $$ DECLARE t timestamptz := clock_timestamp();
             BEGIN WHILE clock_timestamp() < t + interval '300 ms' LOOP END LOOP; END $$",
        )
        .expect("busy loop");
    let busy = (process_cpu_ticks(pid) - before) as f64 / ticks_per_second;
    assert!(
        busy >= 0.1,
        "a 300 ms busy loop measured only {busy:.3} s CPU: /proc accounting is not working"
    );
}

#[test]
fn read_with_poll_does_not_burn_cpu() {
    poll_does_not_burn_cpu(PollFn::Read, "pw_cpu");
}

#[test]
fn read_grouped_with_poll_does_not_burn_cpu() {
    poll_does_not_burn_cpu(PollFn::Grouped, "pwg_cpu");
}

/// (c) A message sent (and committed) by another connection ends the poll within one poll
/// interval plus a margin.
fn send_during_poll_returns_promptly(f: PollFn, prefix: &str) {
    const INTERVAL_MS: i32 = 250;
    let (mut admin, queue) = new_queue(prefix);
    let mut poller = connect();
    let pid = backend_pid(&mut poller);
    let q = queue.clone();
    let start = Instant::now();
    let handle = thread::spawn(move || {
        let rows = f.poll(&mut poller, &q, 10, INTERVAL_MS);
        (rows, Instant::now())
    });
    wait_until_active(&mut admin, pid, f.needle(), Duration::from_secs(5));
    thread::sleep(Duration::from_millis(400));
    let id = f.send_one(&mut admin, &queue);
    let sent_at = Instant::now();
    let (rows, returned_at) = handle.join().expect("poller panicked");
    let rows = rows.expect("poll failed");
    let ids: Vec<i64> = rows.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![id], "poll returned {rows:?}");
    assert_eq!(rows[0].read_ct, 1);
    let after_send = returned_at.saturating_duration_since(sent_at);
    assert!(
        after_send < Duration::from_millis(INTERVAL_MS as u64 + 400),
        "poll returned {after_send:?} after the send committed (interval {INTERVAL_MS} ms)"
    );
    assert!(
        returned_at.duration_since(start) >= Duration::from_millis(400),
        "poll returned before the send"
    );
}

#[test]
fn read_with_poll_returns_promptly_after_send_from_other_connection() {
    send_during_poll_returns_promptly(PollFn::Read, "pw_wake");
}

#[test]
fn read_grouped_with_poll_returns_promptly_after_send_from_other_connection() {
    send_during_poll_returns_promptly(PollFn::Grouped, "pwg_wake");
}

/// What a poller thread hands back: the poll's result, when it returned, and its connection.
type PollOutcome = (Result<Vec<Msg>, postgres::Error>, Instant, Client);

/// Starts a 30 s poll (with a long poll interval, so that only an interruptible wait passes)
/// on its own connection; returns the observer connection, the poller's pid and its thread.
fn start_long_poll(f: PollFn, prefix: &str) -> (Client, i32, thread::JoinHandle<PollOutcome>) {
    let (mut admin, queue) = new_queue(prefix);
    let mut poller = connect();
    let pid = backend_pid(&mut poller);
    let handle = thread::spawn(move || {
        let rows = f.poll(&mut poller, &queue, 30, 5_000);
        (rows, Instant::now(), poller)
    });
    wait_until_active(&mut admin, pid, f.needle(), Duration::from_secs(5));
    // Let it get past the first (empty) attempt into its wait.
    thread::sleep(Duration::from_millis(300));
    (admin, pid, handle)
}

/// (d) pg_cancel_backend ends the poll at once with SQLSTATE 57014; the connection survives.
fn cancel_ends_poll_promptly(f: PollFn, prefix: &str) {
    let (mut admin, pid, handle) = start_long_poll(f, prefix);
    let cancelled_at = Instant::now();
    let ok: bool = admin
        .query_one("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(ok, "pg_cancel_backend returned false");
    let (result, returned_at, mut poller) = handle.join().expect("poller panicked");
    let elapsed = returned_at.saturating_duration_since(cancelled_at);
    let err = result.expect_err("poll was not cancelled");
    assert_eq!(sqlstate(&err), Some("57014"), "unexpected error: {err:?}");
    assert!(
        elapsed < Duration::from_millis(1_000),
        "cancel took {elapsed:?}"
    );
    // The session is still usable and no transaction is left open.
    let one: i32 = poller
        .query_one("SELECT 1", &[])
        .expect("connection unusable after cancel")
        .get(0);
    assert_eq!(one, 1);
    assert_eq!(backend_pid(&mut poller), pid);
}

#[test]
fn read_with_poll_is_cancelled_promptly() {
    cancel_ends_poll_promptly(PollFn::Read, "pw_cancel");
}

#[test]
fn read_grouped_with_poll_is_cancelled_promptly() {
    cancel_ends_poll_promptly(PollFn::Grouped, "pwg_cancel");
}

/// (e) pg_terminate_backend ends the poll (and the session) at once.
fn terminate_ends_poll_promptly(f: PollFn, prefix: &str) {
    let (mut admin, pid, handle) = start_long_poll(f, prefix);
    let terminated_at = Instant::now();
    let ok: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(ok, "pg_terminate_backend returned false");
    let (result, returned_at, mut poller) = handle.join().expect("poller panicked");
    let elapsed = returned_at.saturating_duration_since(terminated_at);
    let err = result.expect_err("poll survived pg_terminate_backend");
    // Either the FATAL admin_shutdown message or the closed connection is what the client sees.
    assert!(
        sqlstate(&err) == Some("57P01") || err.is_closed(),
        "unexpected error: {err:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1_000),
        "terminate took {elapsed:?}"
    );
    assert!(
        poller.query_one("SELECT 1", &[]).is_err(),
        "connection still usable after terminate"
    );
    let start = Instant::now();
    while backend_alive(&mut admin, pid) {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "backend {pid} still alive 1 s after terminate"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn read_with_poll_is_terminated_promptly() {
    terminate_ends_poll_promptly(PollFn::Read, "pw_term");
}

#[test]
fn read_grouped_with_poll_is_terminated_promptly() {
    terminate_ends_poll_promptly(PollFn::Grouped, "pwg_term");
}
