//! Concurrency of the workflow engine seen from outside: many connections completing tasks of the
//! same step, or racing start_tasks on the same messages, must never leave a counter wrong, start a
//! dependent twice, start a task twice or complete a run twice.
//!
//! A monitor connection samples the engine's bookkeeping while the race runs; every sample is one
//! statement (one snapshot), in which the counters must agree with the rows they count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use pgflow_client_tests::*;

const WORKER_TIMEOUT: Duration = Duration::from_secs(90);

/// Violations of the engine's invariants for `flow`, as seen in one snapshot
/// (`pgflow.check_invariants`: counters, shards, messages against tasks).
const INVARIANTS_SQL: &str =
    "SELECT format('%s: run %s step %s: %s', invariant, run_id, step_slug, detail)
                              FROM pgflow.check_invariants($1::text)";

/// A connection sampling the invariants of `flow` until stopped.
struct Monitor {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(usize, Vec<String>)>,
}

impl Monitor {
    fn start(flow: &str) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flow = flow.to_string();
        let handle = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut client = connect();
                let mut samples = 0;
                let mut violations = Vec::new();
                loop {
                    // One last sample after the stop request, so the final state is checked too.
                    let last = stop.load(Ordering::SeqCst);
                    for row in client.query(INVARIANTS_SQL, &[&flow]).expect("invariants") {
                        violations.push(row.get::<_, String>(0));
                    }
                    samples += 1;
                    if last || violations.len() > 50 {
                        break;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                (samples, violations)
            })
        };
        Monitor { stop, handle }
    }

    /// Stops sampling and asserts that no sample saw a violation.
    fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        let (samples, violations) = self.handle.join().expect("monitor panicked");
        assert!(
            violations.is_empty(),
            "counter invariants violated ({} of {samples} samples):\n{}",
            violations.len(),
            violations.join("\n")
        );
        assert!(samples > 1, "the monitor took only {samples} sample(s)");
        eprintln!("monitor: {samples} samples, no violation");
    }
}

/// Reads every visible message of `flow` (one read, long vt) and starts their tasks.
fn start_all_visible(client: &mut Client, flow: &str, worker: &str) -> Vec<StartedTask> {
    let ids: Vec<i64> = read(client, flow, 300, 100_000)
        .iter()
        .map(|m| m.msg_id)
        .collect();
    start_tasks(client, flow, &ids, worker).expect("start_tasks")
}

/// (run_id, step_slug, task_index) of messages present more than once in queue + archive, and the
/// total number of messages there.
fn message_census(client: &mut Client, flow: &str) -> (Vec<String>, i64) {
    let sql = format!(
        "SELECT format('%s %s %s: %s messages', m->>'run_id', m->>'step_slug', m->>'task_index', count(*)),
                (sum(count(*)) OVER ())::bigint
           FROM (SELECT message AS m FROM {q} UNION ALL SELECT message FROM {a}) x
          GROUP BY m->>'run_id', m->>'step_slug', m->>'task_index'",
        q = queue_table(flow),
        a = archive_table(flow)
    );
    let rows = client.query(sql.as_str(), &[]).expect("message census");
    let total = rows.first().map(|r| r.get::<_, i64>(1)).unwrap_or(0);
    let dups = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|s| !s.ends_with(": 1 messages"))
        .collect();
    (dups, total)
}

/// Per-run facts after the race: steps' status, number of task rows, and event counts.
fn step_facts(
    client: &mut Client,
    run_id: &str,
) -> BTreeMap<String, (String, i64, Option<i32>, i32)> {
    client
        .query(
            "SELECT ss.step_slug, ss.status,
                    (SELECT count(*) FROM pgflow.step_tasks t WHERE t.run_id = ss.run_id AND t.step_slug = ss.step_slug),
                    ss.remaining_tasks, ss.remaining_deps
               FROM pgflow.step_states ss WHERE ss.run_id = $1::text::uuid",
            &[&run_id],
        )
        .expect("step facts")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect()
}

fn run_row(client: &mut Client, run_id: &str) -> (String, i32, Option<Value>) {
    let r = client
        .query_one(
            "SELECT status, remaining_steps, output::text FROM pgflow.runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .expect("run row");
    (r.get(0), r.get(1), parse_json_opt(r.get(2)))
}

/// Asserts every counter of every state of the flow ended at 0 and the queue is drained.
fn assert_flow_drained(client: &mut Client, flow: &str, expected_messages: i64) {
    let bad: Vec<String> = client
        .query(
            "SELECT format('%s %s: %s remaining_tasks %s remaining_deps %s', run_id, step_slug, status,
                           remaining_tasks, remaining_deps)
               FROM pgflow.step_states
              WHERE flow_slug = $1::text
                AND (status <> 'completed' OR remaining_tasks IS DISTINCT FROM 0 OR remaining_deps <> 0)",
            &[&flow],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        bad.is_empty(),
        "states not finished cleanly:\n{}",
        bad.join("\n")
    );
    let tasks_not_done: i64 = client
        .query_one(
            "SELECT count(*) FROM pgflow.step_tasks WHERE flow_slug = $1::text AND status <> 'completed'",
            &[&flow],
        )
        .unwrap()
        .get(0);
    assert_eq!(tasks_not_done, 0, "tasks not completed");
    assert_eq!(
        count_rows(client, &queue_table(flow)),
        0,
        "messages left in the queue"
    );
    assert_eq!(
        count_rows(client, &archive_table(flow)),
        expected_messages,
        "archived messages"
    );
    let (dups, total) = message_census(client, flow);
    assert!(
        dups.is_empty(),
        "tasks with more than one message:\n{}",
        dups.join("\n")
    );
    assert_eq!(total, expected_messages);
}

// ------------------------------------------------------------------------------------------------
// A map of 200 tasks completed by 8 connections at once (with some duplicate completions), with a
// single and a map dependent.
// ------------------------------------------------------------------------------------------------

const MAP_TASKS: usize = 200;
const MAP_RUNS: usize = 3;
const COMPLETERS: usize = 8;

#[test]
fn map_tasks_completed_concurrently_start_dependents_once() {
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("conc_map");
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "items", &[], "step_type => 'map'");
    add_step(&mut admin, &flow, "total", &["items"], "");
    add_step(&mut admin, &flow, "again", &["items"], "step_type => 'map'");

    let input: Vec<i64> = (0..MAP_TASKS as i64).map(|i| i * 10 + 3).collect();
    let runs: Vec<String> = (0..MAP_RUNS)
        .map(|_| start_flow(&mut admin, &flow, &json!(input)))
        .collect();
    let worker = register_worker(&mut admin, &flow);
    let mut tasks = start_all_visible(&mut admin, &flow, &worker);
    assert_eq!(tasks.len(), MAP_TASKS * MAP_RUNS);
    assert!(tasks.iter().all(|t| t.step_slug == "items"));

    // Shuffle, deal round-robin to the completers; every 10th task is also sent by the next one.
    let mut rng = Rng::new(0x5eed_0001);
    for i in (1..tasks.len()).rev() {
        tasks.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut plans: Vec<Vec<StartedTask>> = vec![Vec::new(); COMPLETERS];
    for (pos, t) in tasks.iter().enumerate() {
        plans[pos % COMPLETERS].push(t.clone());
        if t.task_index % 10 == 0 {
            plans[(pos + 1) % COMPLETERS].push(t.clone());
        }
    }
    for (k, plan) in plans.iter_mut().enumerate() {
        let mut r = Rng::new(k as u64 + 77);
        for i in (1..plan.len()).rev() {
            plan.swap(i, r.below(i as u64 + 1) as usize);
        }
    }

    let monitor = Monitor::start(&flow);
    let barrier = Arc::new(Barrier::new(COMPLETERS));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let handles: Vec<_> = plans
        .into_iter()
        .map(|plan| {
            let barrier = Arc::clone(&barrier);
            let errors = Arc::clone(&errors);
            thread::spawn(move || {
                let mut client = connect();
                barrier.wait();
                for t in plan {
                    let v = t.input.as_ref().and_then(Value::as_i64).unwrap_or(-1);
                    let output = json!({"i": t.task_index, "v": v * 2});
                    match complete_task(&mut client, &t.run_id, &t.step_slug, t.task_index, &output)
                    {
                        Ok(Some(row))
                            if row.status == "completed" && row.output == Some(output.clone()) => {}
                        other => errors
                            .lock()
                            .unwrap()
                            .push(format!("complete_task {t:?} -> {other:?}")),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("completer panicked");
    }
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "completion errors:\n{}",
        errors.join("\n")
    );

    let expected_items: Vec<Value> = input
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"i": i, "v": v * 2}))
        .collect();
    for run_id in &runs {
        let facts = step_facts(&mut admin, run_id);
        assert_eq!(
            facts["items"],
            ("completed".to_string(), MAP_TASKS as i64, Some(0), 0),
            "items of {run_id}"
        );
        assert_eq!(
            facts["total"],
            ("started".to_string(), 1, Some(1), 0),
            "total of {run_id}"
        );
        assert_eq!(
            facts["again"],
            (
                "started".to_string(),
                MAP_TASKS as i64,
                Some(MAP_TASKS as i32),
                0
            ),
            "again of {run_id}"
        );
        let items_output: Option<Value> = parse_json_opt(
            admin
                .query_one(
                    "SELECT output::text FROM pgflow.step_states WHERE run_id = $1::text::uuid AND step_slug = 'items'",
                    &[run_id],
                )
                .unwrap()
                .get(0),
        );
        assert_eq!(
            items_output,
            Some(json!(expected_items)),
            "map output of {run_id}"
        );
        assert_eq!(event_count(&mut admin, run_id, "step:items:completed"), 1);
        assert_eq!(event_count(&mut admin, run_id, "step:total:started"), 1);
        assert_eq!(event_count(&mut admin, run_id, "step:again:started"), 1);
        let (status, remaining_steps, _) = run_row(&mut admin, run_id);
        assert_eq!((status.as_str(), remaining_steps), ("started", 2));
    }
    let (dups, total) = message_census(&mut admin, &flow);
    assert!(
        dups.is_empty(),
        "tasks with more than one message:\n{}",
        dups.join("\n")
    );
    assert_eq!(total, ((MAP_TASKS * 2 + 1) * MAP_RUNS) as i64);
    // Messages of the items tasks are archived, the dependents' are waiting.
    assert_eq!(
        count_rows(&mut admin, &queue_table(&flow)),
        ((MAP_TASKS + 1) * MAP_RUNS) as i64
    );

    // Finish the runs with 8 ordinary workers.
    let seen_total_inputs: Arc<Mutex<Vec<(String, Option<Value>)>>> = Arc::default();
    let handles: Vec<_> = (0..COMPLETERS)
        .map(|_| {
            let flow = flow.clone();
            let seen = Arc::clone(&seen_total_inputs);
            thread::spawn(move || {
                run_worker(
                    &flow,
                    PollSettings {
                        qty: 20,
                        ..PollSettings::default()
                    },
                    WORKER_TIMEOUT,
                    move |_, t| match t.step_slug.as_str() {
                        "total" => {
                            seen.lock()
                                .unwrap()
                                .push((t.run_id.clone(), t.input.clone()));
                            let n = t
                                .input
                                .as_ref()
                                .and_then(|i| i["items"].as_array().map(Vec::len))
                                .unwrap_or(0);
                            Outcome::Complete(json!({"n": n}))
                        }
                        "again" => {
                            let v = t
                                .input
                                .as_ref()
                                .map(|i| i["v"].clone())
                                .unwrap_or(Value::Null);
                            Outcome::Complete(json!(v))
                        }
                        _ => Outcome::Fail("unexpected step".into()),
                    },
                )
            })
        })
        .collect();
    let logs: Vec<Vec<WorkerEvent>> = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    monitor.finish();

    let mut completions: HashMap<(String, String, i32), usize> = HashMap::new();
    for ev in logs.iter().flatten() {
        if let WorkerEvent::Completed {
            run_id,
            step,
            task_index,
            ..
        } = ev
        {
            *completions
                .entry((run_id.clone(), step.clone(), *task_index))
                .or_default() += 1;
        }
    }
    assert_eq!(completions.len(), (MAP_TASKS + 1) * MAP_RUNS);
    assert!(
        completions.values().all(|&c| c == 1),
        "a dependent task was completed twice"
    );
    let seen = seen_total_inputs.lock().unwrap().clone();
    assert_eq!(seen.len(), MAP_RUNS, "total ran {} times", seen.len());
    for (_, input) in &seen {
        assert_eq!(input, &Some(json!({"items": expected_items})));
    }

    let expected_again: Vec<Value> = input.iter().map(|v| json!(v * 2)).collect();
    for run_id in &runs {
        let (status, remaining_steps, output) = run_row(&mut admin, run_id);
        assert_eq!(
            (status.as_str(), remaining_steps),
            ("completed", 0),
            "run {run_id}"
        );
        assert_eq!(
            output,
            Some(json!({"total": {"n": MAP_TASKS}, "again": expected_again}))
        );
        assert_eq!(
            event_count(&mut admin, run_id, "run:completed"),
            1,
            "run:completed events of {run_id}"
        );
    }
    assert_flow_drained(&mut admin, &flow, ((MAP_TASKS * 2 + 1) * MAP_RUNS) as i64);
}

// ------------------------------------------------------------------------------------------------
// Several parallel single steps completed at the same moment, joining into one step.
// ------------------------------------------------------------------------------------------------

const PARALLEL: usize = 8;
const JOIN_RUNS: usize = 24;

#[test]
fn parallel_steps_completed_at_once_start_join_once() {
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("conc_join");
    create_flow(&mut admin, &flow, 3, 0, 60);
    let parents: Vec<String> = (0..PARALLEL).map(|k| format!("p{k}")).collect();
    for p in &parents {
        add_step(&mut admin, &flow, p, &[], "");
    }
    let parent_refs: Vec<&str> = parents.iter().map(String::as_str).collect();
    add_step(&mut admin, &flow, "join", &parent_refs, "");

    let runs: Vec<String> = (0..JOIN_RUNS)
        .map(|r| start_flow(&mut admin, &flow, &json!({"r": r})))
        .collect();
    let worker = register_worker(&mut admin, &flow);
    let tasks = start_all_visible(&mut admin, &flow, &worker);
    assert_eq!(tasks.len(), PARALLEL * JOIN_RUNS);
    let runs = Arc::new(runs);

    let monitor = Monitor::start(&flow);
    let barrier = Arc::new(Barrier::new(PARALLEL));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let handles: Vec<_> = (0..PARALLEL)
        .map(|k| {
            let barrier = Arc::clone(&barrier);
            let errors = Arc::clone(&errors);
            let runs = Arc::clone(&runs);
            thread::spawn(move || {
                let mut client = connect();
                let step = format!("p{k}");
                for (r, run_id) in runs.iter().enumerate() {
                    barrier.wait();
                    let output = json!({"k": k, "r": r});
                    match complete_task(&mut client, run_id, &step, 0, &output) {
                        Ok(Some(row)) if row.status == "completed" => {}
                        other => errors
                            .lock()
                            .unwrap()
                            .push(format!("complete_task {run_id} {step} -> {other:?}")),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("completer panicked");
    }
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "completion errors:\n{}",
        errors.join("\n")
    );

    for run_id in runs.iter() {
        let facts = step_facts(&mut admin, run_id);
        assert_eq!(
            facts["join"],
            ("started".to_string(), 1, Some(1), 0),
            "join of {run_id}"
        );
        for p in &parents {
            assert_eq!(
                facts[p.as_str()],
                ("completed".to_string(), 1, Some(0), 0),
                "{p} of {run_id}"
            );
        }
        assert_eq!(
            event_count(&mut admin, run_id, "step:join:started"),
            1,
            "join started events of {run_id}"
        );
        let (status, remaining_steps, _) = run_row(&mut admin, run_id);
        assert_eq!((status.as_str(), remaining_steps), ("started", 1));
    }
    let (dups, total) = message_census(&mut admin, &flow);
    assert!(
        dups.is_empty(),
        "tasks with more than one message:\n{}",
        dups.join("\n")
    );
    assert_eq!(total, ((PARALLEL + 1) * JOIN_RUNS) as i64);

    let run_index: Arc<HashMap<String, usize>> = Arc::new(
        runs.iter()
            .enumerate()
            .map(|(r, id)| (id.clone(), r))
            .collect(),
    );
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let flow = flow.clone();
            let run_index = Arc::clone(&run_index);
            let problems = Arc::clone(&problems);
            thread::spawn(move || {
                run_worker(
                    &flow,
                    PollSettings::default(),
                    WORKER_TIMEOUT,
                    move |_, t| {
                        let r = run_index[&t.run_id];
                        let expected: serde_json::Map<String, Value> = (0..PARALLEL)
                            .map(|k| (format!("p{k}"), json!({"k": k, "r": r})))
                            .collect();
                        if t.step_slug != "join" || t.input != Some(Value::Object(expected)) {
                            problems.lock().unwrap().push(format!("{t:?}"));
                        }
                        Outcome::Complete(json!({"joined": r}))
                    },
                )
            })
        })
        .collect();
    let logs: Vec<Vec<WorkerEvent>> = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    monitor.finish();
    let problems = problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "join tasks with wrong input:\n{}",
        problems.join("\n")
    );
    let completed = logs
        .iter()
        .flatten()
        .filter(|e| matches!(e, WorkerEvent::Completed { .. }))
        .count();
    assert_eq!(completed, JOIN_RUNS, "join handlers completed");

    for (r, run_id) in runs.iter().enumerate() {
        let (status, remaining_steps, output) = run_row(&mut admin, run_id);
        assert_eq!(
            (status.as_str(), remaining_steps),
            ("completed", 0),
            "run {run_id}"
        );
        assert_eq!(output, Some(json!({"join": {"joined": r}})));
        assert_eq!(
            event_count(&mut admin, run_id, "run:completed"),
            1,
            "run:completed events of {run_id}"
        );
    }
    assert_flow_drained(&mut admin, &flow, ((PARALLEL + 1) * JOIN_RUNS) as i64);
}

// ------------------------------------------------------------------------------------------------
// Workers racing start_tasks on the same message ids.
// ------------------------------------------------------------------------------------------------

const RACE_TASKS: usize = 100;
const RACE_ROUNDS: usize = 6;

#[test]
fn racing_start_tasks_start_each_task_once() {
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("conc_start");
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "m", &[], "step_type => 'map'");

    for round in 0..RACE_ROUNDS {
        let input: Vec<usize> = (0..RACE_TASKS).collect();
        let run_id = start_flow(&mut admin, &flow, &json!(input));
        let ids: Vec<i64> = read(&mut admin, &flow, 300, 1000)
            .iter()
            .map(|m| m.msg_id)
            .collect();
        assert_eq!(ids.len(), RACE_TASKS);

        // Three workers: all ids ascending, all ids descending, every other id.
        let id_lists: Vec<Vec<i64>> = vec![
            ids.clone(),
            ids.iter().rev().copied().collect(),
            ids.iter().step_by(2).copied().collect(),
        ];
        let barrier = Arc::new(Barrier::new(id_lists.len()));
        let handles: Vec<_> = id_lists
            .into_iter()
            .map(|list| {
                let barrier = Arc::clone(&barrier);
                let flow = flow.clone();
                thread::spawn(move || {
                    let mut client = connect();
                    let worker = register_worker(&mut client, &flow);
                    barrier.wait();
                    let started = start_tasks(&mut client, &flow, &list, &worker).map_err(|e| {
                        e.as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or(e.to_string())
                    });
                    (worker, started)
                })
            })
            .collect();
        let results: Vec<(String, Result<Vec<StartedTask>, String>)> = handles
            .into_iter()
            .map(|h| h.join().expect("starter panicked"))
            .collect();

        let mut got: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (worker, started) in &results {
            let started = started
                .as_ref()
                .unwrap_or_else(|e| panic!("round {round}: start_tasks failed: {e}"));
            for t in started {
                assert_eq!(t.run_id, run_id);
                assert_eq!(t.input, Some(json!(t.task_index)));
                got.entry(t.task_index).or_default().push(worker.clone());
            }
        }
        let twice: Vec<_> = got.iter().filter(|(_, w)| w.len() > 1).collect();
        assert!(
            twice.is_empty(),
            "round {round}: tasks started by more than one worker: {twice:?}"
        );
        assert_eq!(
            got.keys().copied().collect::<BTreeSet<i32>>(),
            (0..RACE_TASKS as i32).collect::<BTreeSet<i32>>(),
            "round {round}: not every task was started"
        );
        let rows = admin
            .query(
                "SELECT task_index, status, attempts_count, last_worker_id::text FROM pgflow.step_tasks
                 WHERE run_id = $1::text::uuid ORDER BY task_index",
                &[&run_id],
            )
            .unwrap();
        for row in &rows {
            let i: i32 = row.get(0);
            assert_eq!(row.get::<_, String>(1), "started", "round {round} task {i}");
            assert_eq!(
                row.get::<_, i32>(2),
                1,
                "round {round} task {i}: attempts_count"
            );
            assert_eq!(
                row.get::<_, Option<String>>(3).as_ref(),
                got[&i].first(),
                "round {round} task {i}: last_worker_id is not the worker that got it"
            );
        }

        // Complete everything so the run ends; exactly one completion event.
        for i in 0..RACE_TASKS as i32 {
            let row = complete_task(&mut admin, &run_id, "m", i, &json!(i * i))
                .unwrap()
                .unwrap();
            assert_eq!(row.status, "completed");
        }
        let (status, remaining_steps, output) = run_row(&mut admin, &run_id);
        assert_eq!((status.as_str(), remaining_steps), ("completed", 0));
        let squares: Vec<i32> = (0..RACE_TASKS as i32).map(|i| i * i).collect();
        assert_eq!(output, Some(json!({"m": squares})));
        assert_eq!(event_count(&mut admin, &run_id, "run:completed"), 1);
    }
    assert_flow_drained(&mut admin, &flow, (RACE_TASKS * RACE_ROUNDS) as i64);
}
