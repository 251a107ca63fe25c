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

/// A flow limited to 2 active runs, 40 runs started by two connections while eight workers
/// complete tasks: a monitor never sees more than 2 active runs, nor tasks of more than 2 runs
/// started, and every run completes (no run is left waiting while a slot is free). Each sample
/// is one plain statement, one snapshot (run_status would read with snapshots of its own).
#[test]
fn flow_concurrency_limit_holds_under_eight_workers() {
    const WORKERS: usize = 8;
    const STARTERS: usize = 2;
    const RUNS_EACH: usize = 20;
    const LIMIT: i64 = 2;
    let total = (STARTERS * RUNS_EACH) as i64;
    let flow = unique_name("limit");
    let mut admin = connect();
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "a", &[], "");
    add_step(&mut admin, &flow, "b", &["a"], "");
    admin
        .execute(
            "SELECT pgflow.set_flow_concurrency($1::text, $2::int)",
            &[&flow, &(LIMIT as i32)],
        )
        .expect("set_flow_concurrency");

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let (flow, done) = (flow.clone(), done.clone());
        thread::spawn(move || {
            let mut client = connect();
            let mut samples = 0;
            let mut most = (0i64, 0i64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let row = client
                    .query_one(
                        "SELECT (SELECT count(*) FROM pgflow.runs r
                                 WHERE r.flow_slug = $1::text AND r.status = 'started'
                                   AND NOT EXISTS (SELECT 1 FROM pgflow._run_control c
                                                   WHERE c.run_id = r.run_id AND c.state = 'waiting')),
                                (SELECT count(DISTINCT t.run_id) FROM pgflow.step_tasks t
                                 WHERE t.flow_slug = $1::text AND t.status = 'started')",
                        &[&flow],
                    )
                    .expect("sample");
                let (active, running): (i64, i64) = (row.get(0), row.get(1));
                most = (most.0.max(active), most.1.max(running));
                samples += 1;
            }
            (samples, most)
        })
    };
    let starters: Vec<_> = (0..STARTERS)
        .map(|s| {
            let flow = flow.clone();
            thread::spawn(move || {
                let mut client = connect();
                for n in 0..RUNS_EACH {
                    start_flow(&mut client, &flow, &json!({ "s": s, "n": n }));
                    thread::sleep(std::time::Duration::from_millis(5));
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let flow = flow.clone();
            thread::spawn(move || {
                let mut client = connect();
                let worker = register_worker(&mut client, &flow);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                while std::time::Instant::now() < deadline {
                    let completed: i64 = client
                        .query_one(
                            "SELECT count(*) FROM pgflow.runs WHERE flow_slug = $1::text AND status = 'completed'",
                            &[&flow],
                        )
                        .expect("count")
                        .get(0);
                    if completed == total {
                        break;
                    }
                    let ids = poll_ids(&mut client, &flow, 30, 1, 1, 10);
                    for task in start_tasks(&mut client, &flow, &ids, &worker).expect("start") {
                        thread::sleep(std::time::Duration::from_millis(2));
                        complete_task(&mut client, &task.run_id, &task.step_slug, task.task_index, &json!(1))
                            .expect("complete");
                    }
                }
            })
        })
        .collect();
    for h in starters {
        h.join().expect("starter");
    }
    for h in workers {
        h.join().expect("worker");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (samples, (active, running)) = monitor.join().expect("monitor");
    let completed: i64 = admin
        .query_one(
            "SELECT count(*) FROM pgflow.runs WHERE flow_slug = $1::text AND status = 'completed'",
            &[&flow],
        )
        .expect("count")
        .get(0);
    assert_eq!(completed, total, "every run completed");
    assert!(
        samples > 20,
        "the monitor sampled the race ({samples} samples)"
    );
    assert!(
        active <= LIMIT,
        "at most {LIMIT} active runs at once, saw {active}"
    );
    assert!(
        running <= LIMIT,
        "tasks of at most {LIMIT} runs started at once, saw {running}"
    );
    assert_eq!(active, LIMIT, "the limit was reached: runs did wait");
}
