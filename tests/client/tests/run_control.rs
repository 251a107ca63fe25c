//! Run control seen from several connections at once: idempotent starts racing on one key, and
//! workers draining a flow's queue in priority order.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use pgflow_client_tests::*;
use serde_json::json;

/// Eight connections start a run with the same key at the same moment, many times over: each
/// round makes exactly one run, and every caller gets its id.
#[test]
fn concurrent_starts_with_one_key_make_one_run() {
    const CALLERS: usize = 8;
    const ROUNDS: usize = 20;
    let flow = unique_name("idem");
    let mut admin = connect();
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "only", &[], "");

    for round in 0..ROUNDS {
        let key = format!("key-{round}");
        let barrier = Arc::new(Barrier::new(CALLERS));
        let handles: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let (flow, key, barrier) = (flow.clone(), key.clone(), barrier.clone());
                thread::spawn(move || {
                    let mut client = connect();
                    let mut tx = client.transaction().expect("begin");
                    barrier.wait();
                    let run: String = tx
                        .query_one(
                            "SELECT run_id::text FROM pgflow.start_run($1::text, $2::text::jsonb,
                                                                      idempotency_key => $3::text)",
                            &[&flow, &json!({ "caller": caller }).to_string(), &key],
                        )
                        .expect("start_run")
                        .get(0);
                    tx.commit().expect("commit");
                    run
                })
            })
            .collect();
        let runs: BTreeSet<String> = handles
            .into_iter()
            .map(|h| h.join().expect("caller"))
            .collect();
        assert_eq!(runs.len(), 1, "round {round}: callers got {runs:?}");
    }
    let count: i64 = admin
        .query_one(
            "SELECT count(*) FROM pgflow.runs WHERE flow_slug = $1::text",
            &[&flow],
        )
        .expect("count")
        .get(0);
    assert_eq!(count, ROUNDS as i64, "one run per key");
    let messages = count_rows(&mut admin, &queue_table(&flow));
    assert_eq!(messages, ROUNDS as i64, "one task message per run");
}

/// Four workers drain 120 queued runs of three priorities. Each claim is recorded with the
/// moment it was made: sorted by that moment, a claim can come before a claim of a higher
/// priority (or of an earlier run of its own priority) only when the two were made at about the
/// same time by different workers, so at most WORKERS - 1 such claims follow any claim.
#[test]
fn workers_take_higher_priorities_first_and_fifo_within_one() {
    const WORKERS: usize = 4;
    const RUNS: usize = 120;
    let flow = unique_name("prio");
    let mut admin = connect();
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "only", &[], "");
    let mut rng = Rng::new(7);
    for n in 0..RUNS {
        let priority = rng.below(3) as i32;
        admin
            .execute(
                "SELECT pgflow.start_run($1::text, $2::text::jsonb, $3::int)",
                &[
                    &flow,
                    &json!({ "n": n, "p": priority }).to_string(),
                    &priority,
                ],
            )
            .expect("start_run");
    }

    let claims: Arc<Mutex<Vec<(i64, i32, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (flow, claims, barrier) = (flow.clone(), claims.clone(), barrier.clone());
            thread::spawn(move || {
                let mut client = connect();
                let worker = register_worker(&mut client, &flow);
                barrier.wait();
                loop {
                    // The claim's moment, in microseconds, from the server's clock.
                    let rows = client
                        .query(
                            "SELECT m.msg_id, (m.message ->> 'run_id'),
                                    (extract(epoch FROM m.last_read_at) * 1e6)::bigint
                             FROM pgmq.read_with_poll($1::text, 30, 1, 1, 10) m",
                            &[&flow],
                        )
                        .expect("read_with_poll");
                    let Some(row) = rows.first() else { break };
                    let (msg_id, at): (i64, i64) = (row.get(0), row.get(2));
                    let tasks = start_tasks(&mut client, &flow, &[msg_id], &worker).expect("start");
                    let task = &tasks[0];
                    let input = task.flow_input.clone().expect("flow input");
                    let priority = input["p"].as_i64().expect("p") as i32;
                    let n = input["n"].as_i64().expect("n");
                    complete_task(&mut client, &task.run_id, "only", 0, &json!(n))
                        .expect("complete");
                    claims.lock().unwrap().push((at, priority, n));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    let mut claims = claims.lock().unwrap().clone();
    assert_eq!(claims.len(), RUNS, "every run's task was claimed once");
    claims.sort();
    for (i, &(_, priority, n)) in claims.iter().enumerate() {
        let jumped = claims[i + 1..]
            .iter()
            .filter(|&&(_, p, m)| p > priority || (p == priority && m < n))
            .count();
        assert!(
            jumped < WORKERS,
            "claim {i} (priority {priority}, run {n}) came before {jumped} claims that should have gone first: {claims:?}"
        );
    }
    let done: i64 = admin
        .query_one(
            "SELECT count(*) FROM pgflow.runs WHERE flow_slug = $1::text AND status = 'completed'",
            &[&flow],
        )
        .expect("count")
        .get(0);
    assert_eq!(done, RUNS as i64);
}
