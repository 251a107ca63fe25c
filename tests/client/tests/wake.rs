//! Waiting readers are woken when messages they can take are committed (the test cluster has
//! pgflow_core in shared_preload_libraries), instead of finding them at their next poll.

use std::thread;
use std::time::{Duration, Instant};

use pgflow_client_tests::{connect, create_queue, unique_name};

/// Poll interval far longer than any wake-up should take.
const POLL_MS: i32 = 3000;

struct Poll {
    handle: thread::JoinHandle<(Vec<i64>, Instant)>,
    started: Instant,
}

fn start_poll(queue: &str) -> Poll {
    let mut poller = connect();
    let queue = queue.to_string();
    let started = Instant::now();
    let handle = thread::spawn(move || {
        let rows = poller
            .query(
                "SELECT msg_id FROM pgmq.read_with_poll(queue_name => $1::text, vt => 30, qty => 10,
                                                      max_poll_seconds => 10, poll_interval_ms => $2)",
                &[&queue, &POLL_MS],
            )
            .expect("read_with_poll");
        (rows.iter().map(|r| r.get(0)).collect(), Instant::now())
    });
    // Let the poller reach its first sleep.
    thread::sleep(Duration::from_millis(300));
    Poll { handle, started }
}

#[test]
fn a_committed_send_wakes_the_waiting_reader_at_once() {
    let mut admin = connect();
    let queue = unique_name("wk_now");
    create_queue(&mut admin, &queue);
    let poll = start_poll(&queue);
    let id: i64 = admin.query_one("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&queue]).unwrap().get(0);
    let sent = Instant::now();
    let (ids, returned) = poll.handle.join().unwrap();
    assert_eq!(ids, vec![id]);
    let delay = returned.duration_since(sent);
    assert!(delay < Duration::from_millis(250), "woken {delay:?} after the commit (poll interval {POLL_MS} ms)");
}

#[test]
fn an_uncommitted_send_does_not_end_the_wait_but_its_commit_does() {
    let mut admin = connect();
    let queue = unique_name("wk_tx");
    create_queue(&mut admin, &queue);
    let poll = start_poll(&queue);
    let mut tx = admin.transaction().unwrap();
    let id: i64 = tx.query_one("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&queue]).unwrap().get(0);
    thread::sleep(Duration::from_millis(500));
    assert!(!poll.handle.is_finished(), "the reader returned before the send committed");
    tx.commit().unwrap();
    let committed = Instant::now();
    let (ids, returned) = poll.handle.join().unwrap();
    assert_eq!(ids, vec![id]);
    assert!(returned.duration_since(committed) < Duration::from_millis(250));
}

#[test]
fn a_rolled_back_send_wakes_nobody_and_a_send_to_another_queue_is_not_returned() {
    let mut admin = connect();
    let queue = unique_name("wk_rb");
    let other = unique_name("wk_other");
    create_queue(&mut admin, &queue);
    create_queue(&mut admin, &other);
    let poll = start_poll(&queue);
    let mut tx = admin.transaction().unwrap();
    tx.execute("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&queue]).unwrap();
    tx.rollback().unwrap();
    admin.execute("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&other]).unwrap();
    thread::sleep(Duration::from_millis(500));
    assert!(!poll.handle.is_finished(), "the reader returned without a message for its queue");
    let id: i64 = admin.query_one("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&queue]).unwrap().get(0);
    let (ids, _) = poll.handle.join().unwrap();
    assert_eq!(ids, vec![id]);
    assert!(poll.started.elapsed() < Duration::from_millis(POLL_MS as u64 + 1500));
}

#[test]
fn a_workflow_step_becoming_ready_wakes_its_worker() {
    let mut admin = connect();
    let flow = unique_name("wk_flow");
    admin
        .batch_execute(&format!(
            "SELECT pgflow.create_flow('{flow}'); SELECT pgflow.add_step('{flow}', 'a');
             SELECT pgflow.add_step('{flow}', 'b', ARRAY['a']);
             INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
             VALUES ('00000000-0000-0000-0000-0000000000c1', '{flow}', 'wake') ON CONFLICT DO NOTHING;"
        ))
        .unwrap();
    let run: String = admin
        .query_one("SELECT run_id::text FROM pgflow.start_flow($1::text, '{}'::jsonb)", &[&flow])
        .unwrap()
        .get(0);
    admin
        .execute(
            "SELECT count(*) FROM pgflow.start_tasks($1::text, ARRAY(SELECT msg_id FROM pgmq.read($1::text, 30, 1)),
                                                    '00000000-0000-0000-0000-0000000000c1')",
            &[&flow],
        )
        .unwrap();
    let poll = start_poll(&flow);
    admin
        .execute("SELECT count(*) FROM pgflow.complete_task($1::text::uuid, 'a', 0, '1'::jsonb)", &[&run])
        .unwrap();
    let completed = Instant::now();
    let (ids, returned) = poll.handle.join().unwrap();
    assert_eq!(ids.len(), 1, "the worker gets step b's task");
    assert!(returned.duration_since(completed) < Duration::from_millis(250));
}

#[test]
fn spellings_of_one_queue_that_differ_in_non_ascii_case_share_wake_ups() {
    // 'Äq' and 'äq' are one queue (its table is named by lower()); a send under one spelling
    // wakes a reader waiting under the other.
    let mut admin = connect();
    let suffix = unique_name("wk");
    let (upper, lower) = (format!("Ä{suffix}"), format!("ä{suffix}"));
    create_queue(&mut admin, &upper);
    let poll = start_poll(&lower);
    let id: i64 = admin.query_one("SELECT pgmq.send($1::text, '{}'::jsonb)", &[&upper]).unwrap().get(0);
    let sent = Instant::now();
    let (ids, returned) = poll.handle.join().unwrap();
    assert_eq!(ids, vec![id]);
    let delay = returned.duration_since(sent);
    assert!(delay < Duration::from_millis(250), "woken {delay:?} after the commit (poll interval {POLL_MS} ms)");
}
