//! One lock order for every transition (run, then step state, then task): complete_task,
//! fail_task and the worker's timeout path never deadlock each other. Before, a map task's
//! completion locked its task, shard and message before the run, and the fail paths the run
//! first: 17-37% of such races ended in 40P01, and a lost completion made the task run again.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use pgflow_client_tests::*;
use serde_json::json;

/// A flow with one root map step (`m`), `max_attempts` 1, and a started run over `elements`.
/// Returns the flow, the run id, and the connection that set it up.
fn started_map(prefix: &str, elements: usize) -> (String, String, Client) {
    let mut client = connect();
    let flow = unique_name(prefix);
    create_flow(&mut client, &flow, 1, 0, 60);
    add_step(&mut client, &flow, "m", &[], "step_type => 'map'");
    let input = json!((0..elements).collect::<Vec<_>>());
    let run = start_flow(&mut client, &flow, &input);
    let worker = register_worker(&mut client, &flow);
    let ids: Vec<i64> = client
        .query(
            "SELECT message_id FROM pgflow.step_tasks WHERE run_id = $1::text::uuid ORDER BY task_index",
            &[&run],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(start_tasks(&mut client, &flow, &ids, &worker).unwrap().len(), elements);
    (flow, run, client)
}

fn is_deadlock(result: &Result<(), postgres::Error>) -> bool {
    matches!(result, Err(e) if sqlstate(e) == Some("40P01"))
}

fn call(client: &mut Client, sql: &str) -> Result<(), postgres::Error> {
    client.batch_execute(sql)
}

/// Runs two statements on two connections at the same moment; returns their results.
fn race(a: String, b: String) -> (Result<(), postgres::Error>, Result<(), postgres::Error>) {
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    let ta = thread::spawn(move || {
        let mut c = connect();
        ba.wait();
        call(&mut c, &a)
    });
    let tb = thread::spawn(move || {
        let mut c = connect();
        bb.wait();
        call(&mut c, &b)
    });
    (ta.join().unwrap(), tb.join().unwrap())
}

fn complete_sql(run: &str, index: i32) -> String {
    format!("SELECT pgflow.complete_task('{run}', 'm', {index}, '{index}')")
}

fn fail_sql(run: &str, index: i32) -> String {
    format!("SELECT pgflow.fail_task('{run}', 'm', {index}, 'boom')")
}

/// Checks what every race must leave: a failed run whose completed tasks stay completed, or
/// a completed run; counters never below zero; no message left visible for a finished task.
fn check_consistent(client: &mut Client, flow: &str, run: &str) {
    let row = client
        .query_one(
            "SELECT r.status, r.remaining_steps, ss.status, coalesce(ss.remaining_tasks, 0),
                    (SELECT count(*) FROM pgflow.step_tasks t WHERE t.run_id = r.run_id AND t.status = 'started')
             FROM pgflow.runs r JOIN pgflow.step_states ss ON ss.run_id = r.run_id
             WHERE r.run_id = $1::text::uuid",
            &[&run],
        )
        .unwrap();
    let (run_status, remaining_steps, step_status, remaining_tasks, started): (String, i32, String, i32, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert!(remaining_steps >= 0 && remaining_tasks >= 0, "{run}: negative counter");
    match run_status.as_str() {
        "failed" => assert_eq!(step_status, "failed", "{run}"),
        "completed" => assert_eq!((step_status.as_str(), started), ("completed", 0), "{run}"),
        other => panic!("{run}: run is {other} after both calls returned"),
    }
    let visible: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE message->>'run_id' = $1", queue_table(flow)) as &str,
            &[&run],
        )
        .unwrap()
        .get(0);
    assert_eq!(visible, 0, "{run}: messages left in the queue");
}

const ROUNDS: usize = 200;

#[test]
fn complete_blocked_on_the_run_lock_never_deadlocks_with_a_fail_that_exhausts() {
    // The deterministic reproduction: session 2 holds the run lock; session 1's
    // completion of task 0 waits; session 2 then fails task 1 (exhausting it).
    let (flow, run, mut setup) = started_map("lo_det", 2);
    let mut holder = connect();
    holder.batch_execute("BEGIN").unwrap();
    holder
        .execute("SELECT 1 FROM pgflow.runs WHERE run_id = $1::text::uuid FOR UPDATE", &[&run])
        .unwrap();
    let completer_sql = complete_sql(&run, 0);
    let completer = thread::spawn(move || {
        let mut c = connect();
        let pid = backend_pid(&mut c);
        let handle = thread::spawn(move || call(&mut c, &completer_sql));
        (pid, handle)
    });
    let (pid, handle) = completer.join().unwrap();
    wait_until_waiting_on_lock(&mut setup, pid);
    let failed = call(&mut holder, &fail_sql(&run, 1));
    assert!(!is_deadlock(&failed), "fail_task got a deadlock: {failed:?}");
    failed.unwrap();
    holder.batch_execute("COMMIT").unwrap();
    let completed = handle.join().unwrap();
    assert!(!is_deadlock(&completed), "complete_task got a deadlock: {completed:?}");
    completed.unwrap();
    check_consistent(&mut setup, &flow, &run);
}

fn wait_until_waiting_on_lock(observer: &mut Client, pid: i32) {
    for _ in 0..500 {
        let waiting: Option<String> = observer
            .query_one("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .get(0);
        if waiting.as_deref() == Some("Lock") {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("backend {pid} never waited on a lock");
}

#[test]
fn complete_and_fail_of_the_same_map_task_never_deadlock() {
    let mut deadlocks = 0;
    for _ in 0..ROUNDS {
        let (flow, run, mut setup) = started_map("lo_same", 2);
        let (a, b) = race(complete_sql(&run, 0), fail_sql(&run, 0));
        deadlocks += usize::from(is_deadlock(&a)) + usize::from(is_deadlock(&b));
        a.unwrap_or_else(|e| if sqlstate(&e) != Some("40P01") { panic!("{e}") });
        b.unwrap_or_else(|e| if sqlstate(&e) != Some("40P01") { panic!("{e}") });
        // Finish the other task, so a completed run is possible too.
        setup.batch_execute(&complete_sql(&run, 1)).unwrap();
        check_consistent(&mut setup, &flow, &run);
    }
    assert_eq!(deadlocks, 0, "deadlocks in {ROUNDS} races");
}

#[test]
fn complete_of_one_task_and_a_fail_that_exhausts_another_never_deadlock() {
    let mut deadlocks = 0;
    for _ in 0..ROUNDS {
        let (flow, run, mut setup) = started_map("lo_other", 2);
        let (a, b) = race(complete_sql(&run, 0), fail_sql(&run, 1));
        deadlocks += usize::from(is_deadlock(&a)) + usize::from(is_deadlock(&b));
        a.unwrap_or_else(|e| if sqlstate(&e) != Some("40P01") { panic!("{e}") });
        b.unwrap_or_else(|e| if sqlstate(&e) != Some("40P01") { panic!("{e}") });
        check_consistent(&mut setup, &flow, &run);
    }
    assert_eq!(deadlocks, 0, "deadlocks in {ROUNDS} races");
}

#[test]
fn complete_and_the_timeout_path_never_deadlock() {
    let mut deadlocks = 0;
    for _ in 0..ROUNDS {
        let (flow, run, mut setup) = started_map("lo_tmo", 2);
        setup
            .execute(
                "UPDATE pgflow.step_tasks SET queued_at = now() - interval '2 hours',
                        started_at = now() - interval '1 hour'
                 WHERE run_id = $1::text::uuid AND task_index = 1",
                &[&run],
            )
            .unwrap();
        let (a, b) = race(complete_sql(&run, 0), "SELECT pgflow._fail_timed_out_tasks('0 seconds')".to_string());
        deadlocks += usize::from(is_deadlock(&a)) + usize::from(is_deadlock(&b));
        a.unwrap_or_else(|e| if sqlstate(&e) != Some("40P01") { panic!("{e}") });
        b.unwrap_or_else(|e| if sqlstate(&e) != Some("40P01") { panic!("{e}") });
        // The timeout path skips a run it can't lock at once; a later round handles it.
        setup.batch_execute("SELECT pgflow._fail_timed_out_tasks('0 seconds')").unwrap();
        check_consistent(&mut setup, &flow, &run);
    }
    assert_eq!(deadlocks, 0, "deadlocks in {ROUNDS} races");
}
