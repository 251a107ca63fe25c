//! End-to-end runs of the workflow engine driven from outside the server, the way real workers
//! do it: `pgmq.read_with_poll` → `pgflow.start_tasks` → handler in the client →
//! `pgflow.complete_task` / `pgflow.fail_task`, each call its own transaction, several workers on
//! their own connections. Nothing may be lost or done twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use pgflow_client_tests::*;

const WORKER_TIMEOUT: Duration = Duration::from_secs(90);

/// Key of one task.
type TaskKey = (String, String, i32);

/// How often each task was started, completed (handler succeeded) and failed, over all workers.
#[derive(Default)]
struct Tally {
    started: HashMap<TaskKey, usize>,
    completed: HashMap<TaskKey, usize>,
    failed: HashMap<TaskKey, usize>,
}

fn tally(logs: &[Vec<WorkerEvent>]) -> Tally {
    let mut t = Tally::default();
    for log in logs {
        for ev in log {
            let (map, key) = match ev {
                WorkerEvent::Started {
                    run_id,
                    step,
                    task_index,
                    ..
                } => (&mut t.started, (run_id.clone(), step.clone(), *task_index)),
                WorkerEvent::Completed {
                    run_id,
                    step,
                    task_index,
                    ..
                } => (
                    &mut t.completed,
                    (run_id.clone(), step.clone(), *task_index),
                ),
                WorkerEvent::Failed {
                    run_id,
                    step,
                    task_index,
                    ..
                } => (&mut t.failed, (run_id.clone(), step.clone(), *task_index)),
            };
            *map.entry(key).or_default() += 1;
        }
    }
    t
}

/// Spawns `n` workers on `flow` running clones of `handler`, waits for all, returns their logs.
fn run_workers<F>(flow: &str, n: usize, poll: PollSettings, handler: F) -> Vec<Vec<WorkerEvent>>
where
    F: FnMut(&mut Client, &StartedTask) -> Outcome + Clone + Send + 'static,
{
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let flow = flow.to_string();
            let handler = handler.clone();
            thread::spawn(move || run_worker(&flow, poll, WORKER_TIMEOUT, handler))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect()
}

/// Messages still in the queue of `flow`, and the archived message ids (with duplicates kept).
fn queue_and_archive(client: &mut Client, flow: &str) -> (i64, Vec<i64>) {
    let in_queue = count_rows(client, &queue_table(flow));
    let archived: Vec<i64> = client
        .query(
            format!("SELECT msg_id FROM {} ORDER BY msg_id", archive_table(flow)).as_str(),
            &[],
        )
        .expect("archive ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    (in_queue, archived)
}

/// All non-NULL message ids of the flow's tasks, sorted.
fn task_message_ids(client: &mut Client, flow: &str) -> Vec<i64> {
    client
        .query(
            "SELECT message_id FROM pgflow.step_tasks WHERE flow_slug = $1::text AND message_id IS NOT NULL
             ORDER BY message_id",
            &[&flow],
        )
        .expect("task message ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Asserts that the queue of `flow` is empty and that every task message is archived exactly once.
fn assert_all_archived(client: &mut Client, flow: &str, expected_messages: usize) {
    let (in_queue, archived) = queue_and_archive(client, flow);
    let task_ids = task_message_ids(client, flow);
    assert_eq!(in_queue, 0, "{flow}: messages left in the queue");
    assert_eq!(
        task_ids.len(),
        expected_messages,
        "{flow}: number of task messages"
    );
    let distinct: HashSet<i64> = task_ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        task_ids.len(),
        "{flow}: two tasks share a message id"
    );
    assert_eq!(
        archived, task_ids,
        "{flow}: archive is not exactly the tasks' messages"
    );
}

// ------------------------------------------------------------------------------------------------
// 1. The contract's example flow, 200 runs, 4 workers, some tasks failing once.
// ------------------------------------------------------------------------------------------------

const RUNS: usize = 200;

fn url_of(n: usize) -> String {
    format!("https://example.com/articles/{n}")
}

fn content_of(n: usize) -> String {
    format!("{} body", url_of(n))
}

fn score_of(content: &str) -> u64 {
    content.bytes().map(u64::from).sum::<u64>() % 1000
}

fn summary_of(content: &str) -> String {
    format!("summary of {content}")
}

fn save_of(summary: &str, score: u64) -> Value {
    json!({"saved": format!("{summary} / {score}"), "score": score})
}

/// Whether the first attempt of `summary` fails for run number `n`.
fn summary_fails_once(n: usize) -> bool {
    n % 7 == 0
}

/// What a step's handler returns for run `n`.
fn expected_output(step: &str, n: usize) -> Value {
    let content = content_of(n);
    match step {
        "website" => json!({"content": content}),
        "sentiment" => json!({"score": score_of(&content)}),
        "summary" => json!(summary_of(&content)),
        "saveToDb" => save_of(&summary_of(&content), score_of(&content)),
        other => panic!("unknown step {other}"),
    }
}

#[test]
fn analyze_website_200_runs_four_workers_with_retries() {
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("analyze_website");
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "website", &[], "");
    add_step(&mut admin, &flow, "sentiment", &["website"], "");
    add_step(&mut admin, &flow, "summary", &["website"], "");
    add_step(&mut admin, &flow, "saveToDb", &["sentiment", "summary"], "");

    let mut run_of: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..RUNS {
        let run_id = start_flow(&mut admin, &flow, &json!({"url": url_of(n), "n": n}));
        assert!(
            run_of.insert(run_id, n).is_none(),
            "start_flow returned a run id twice"
        );
    }
    let run_of = Arc::new(run_of);
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();

    let handler = {
        let run_of = Arc::clone(&run_of);
        let problems = Arc::clone(&problems);
        move |client: &mut Client, t: &StartedTask| -> Outcome {
            let n = run_of[&t.run_id];
            let content = content_of(n);
            let problem = |p: String| problems.lock().unwrap().push(p);
            if t.task_index != 0 {
                problem(format!("{t:?}: task_index of a single step"));
            }
            match t.step_slug.as_str() {
                "website" => {
                    if t.input != Some(json!({})) {
                        problem(format!("{t:?}: root single step input is not {{}}"));
                    }
                    if t.flow_input != Some(json!({"url": url_of(n), "n": n})) {
                        problem(format!("{t:?}: wrong flow_input"));
                    }
                    Outcome::Complete(json!({"content": format!("{} body", url_of(n))}))
                }
                "sentiment" | "summary" => {
                    if t.input != Some(json!({"website": {"content": content}})) {
                        problem(format!("{t:?}: wrong input"));
                    }
                    if t.flow_input.is_some() {
                        problem(format!("{t:?}: dependent step got flow_input"));
                    }
                    let c = t
                        .input
                        .as_ref()
                        .and_then(|i| i["website"]["content"].as_str())
                        .unwrap_or("");
                    if t.step_slug == "sentiment" {
                        return Outcome::Complete(json!({"score": score_of(c)}));
                    }
                    let attempts = get_task(client, &t.run_id, &t.step_slug, t.task_index)
                        .map(|r| r.attempts_count)
                        .unwrap_or(-1);
                    if summary_fails_once(n) && attempts == 1 {
                        Outcome::Fail(format!("summarizer overloaded (run {n})"))
                    } else {
                        Outcome::Complete(json!(summary_of(c)))
                    }
                }
                "saveToDb" => {
                    let expected_input = json!({
                        "sentiment": {"score": score_of(&content)},
                        "summary": summary_of(&content),
                    });
                    if t.input.as_ref() != Some(&expected_input) {
                        problem(format!("{t:?}: wrong input"));
                    }
                    let input = t.input.clone().unwrap_or(Value::Null);
                    let summary = input["summary"].as_str().unwrap_or("").to_string();
                    let score = input["sentiment"]["score"].as_u64().unwrap_or(u64::MAX);
                    Outcome::Complete(save_of(&summary, score))
                }
                other => {
                    problem(format!("{t:?}: unknown step {other}"));
                    Outcome::Fail("unknown step".into())
                }
            }
        }
    };
    let logs = run_workers(&flow, 4, PollSettings::default(), handler);
    let problems = problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "handler saw wrong inputs:\n{}",
        problems.join("\n")
    );

    // Every run completed with exactly the expected output.
    let runs = admin
        .query(
            "SELECT run_id::text, status, output::text, remaining_steps, completed_at IS NOT NULL, failed_at IS NULL
             FROM pgflow.runs WHERE flow_slug = $1::text",
            &[&flow],
        )
        .unwrap();
    assert_eq!(runs.len(), RUNS);
    for r in &runs {
        let run_id: String = r.get(0);
        let n = run_of[&run_id];
        let status: String = r.get(1);
        assert_eq!(status, "completed", "run {n} ({run_id})");
        assert_eq!(
            parse_json_opt(r.get(2)),
            Some(json!({"saveToDb": expected_output("saveToDb", n)})),
            "output of run {n}"
        );
        assert_eq!(r.get::<_, i32>(3), 0, "remaining_steps of run {n}");
        assert!(
            r.get::<_, bool>(4) && r.get::<_, bool>(5),
            "timestamps of run {n}"
        );
        assert_eq!(
            event_count(&mut admin, &run_id, "run:completed"),
            1,
            "run:completed events of run {n}"
        );
        assert_eq!(
            event_count(&mut admin, &run_id, "run:failed"),
            0,
            "run:failed events of run {n}"
        );
    }

    // Every step state completed with the handler's output.
    let states = admin
        .query(
            "SELECT run_id::text, step_slug, status, remaining_tasks, remaining_deps, output::text
             FROM pgflow.step_states WHERE flow_slug = $1::text",
            &[&flow],
        )
        .unwrap();
    assert_eq!(states.len(), RUNS * 4);
    for s in &states {
        let n = run_of[&s.get::<_, String>(0)];
        let step: String = s.get(1);
        assert_eq!(
            s.get::<_, String>(2),
            "completed",
            "state of {step} in run {n}"
        );
        assert_eq!(
            s.get::<_, Option<i32>>(3),
            Some(0),
            "remaining_tasks of {step} in run {n}"
        );
        assert_eq!(s.get::<_, i32>(4), 0, "remaining_deps of {step} in run {n}");
        assert_eq!(
            parse_json_opt(s.get(5)),
            Some(expected_output(&step, n)),
            "output of {step} in run {n}"
        );
    }

    // Every task completed after the expected number of attempts.
    let tasks = admin
        .query(
            "SELECT run_id::text, step_slug, task_index, status, attempts_count, output::text
             FROM pgflow.step_tasks WHERE flow_slug = $1::text",
            &[&flow],
        )
        .unwrap();
    assert_eq!(tasks.len(), RUNS * 4, "one task per step and run");
    let t = tally(&logs);
    for row in &tasks {
        let run_id: String = row.get(0);
        let n = run_of[&run_id];
        let step: String = row.get(1);
        let task_index: i32 = row.get(2);
        let expected_attempts = if step == "summary" && summary_fails_once(n) {
            2
        } else {
            1
        };
        assert_eq!(
            row.get::<_, String>(3),
            "completed",
            "task {step} of run {n}"
        );
        assert_eq!(
            row.get::<_, i32>(4),
            expected_attempts,
            "attempts_count of {step} in run {n}"
        );
        assert_eq!(
            parse_json_opt(row.get(5)),
            Some(expected_output(&step, n)),
            "task output of {step} in run {n}"
        );
        let key = (run_id, step.clone(), task_index);
        assert_eq!(
            t.completed.get(&key).copied().unwrap_or(0),
            1,
            "handler of {step} in run {n} completed"
        );
        assert_eq!(
            t.failed.get(&key).copied().unwrap_or(0),
            expected_attempts as usize - 1,
            "failed attempts of {step} in run {n}"
        );
        assert_eq!(
            t.started.get(&key).copied().unwrap_or(0),
            expected_attempts as usize,
            "starts of {step} in run {n}"
        );
    }
    assert_eq!(t.completed.len(), RUNS * 4, "completions of unknown tasks");
    assert_eq!(t.started.len(), RUNS * 4, "starts of unknown tasks");
    // What complete_task returned to the workers.
    for log in &logs {
        for ev in log {
            if let WorkerEvent::Completed { row, step, .. } = ev {
                let row = row.as_ref().expect("complete_task returned no row");
                assert_eq!(
                    row.status, "completed",
                    "complete_task of {step} returned {row:?}"
                );
            }
            if let WorkerEvent::Failed { row, step, .. } = ev {
                let row = row.as_ref().expect("fail_task returned no row");
                assert_eq!(
                    row.status, "queued",
                    "fail_task (first attempt) of {step} returned {row:?}"
                );
                assert_eq!(row.attempts_count, 1);
            }
        }
    }

    assert_all_archived(&mut admin, &flow, RUNS * 4);
}

// ------------------------------------------------------------------------------------------------
// 2. A root map over 1,000 elements and a dependent single step summing its output.
// ------------------------------------------------------------------------------------------------

const MAP_SIZE: usize = 1000;

fn map_element(i: usize) -> i64 {
    ((i * 7919) % 10007) as i64
}

fn map_handler_output(v: i64) -> i64 {
    v * 3 + 1
}

#[test]
fn root_map_of_1000_and_dependent_sum() {
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("e2e_map");
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "square", &[], "step_type => 'map'");
    add_step(&mut admin, &flow, "total", &["square"], "");

    let input: Vec<i64> = (0..MAP_SIZE).map(map_element).collect();
    let run_id = start_flow(&mut admin, &flow, &json!(input));
    let expected_outputs: Vec<i64> = input.iter().map(|&v| map_handler_output(v)).collect();
    let expected_sum: i64 = expected_outputs.iter().sum();

    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let total_inputs: Arc<Mutex<Vec<Option<Value>>>> = Arc::default();
    let handler = {
        let problems = Arc::clone(&problems);
        let total_inputs = Arc::clone(&total_inputs);
        let input = input.clone();
        let run_id = run_id.clone();
        move |_: &mut Client, t: &StartedTask| -> Outcome {
            let problem = |p: String| problems.lock().unwrap().push(p);
            if t.run_id != run_id {
                problem(format!("{t:?}: unknown run"));
            }
            if t.flow_input.is_some() {
                problem(format!("{t:?}: map/dependent step got flow_input"));
            }
            match t.step_slug.as_str() {
                "square" => {
                    let i = t.task_index as usize;
                    let v = t.input.as_ref().and_then(Value::as_i64);
                    if i >= MAP_SIZE || v != Some(input[i]) {
                        problem(format!("{t:?}: input is not element {i} of the run input"));
                    }
                    Outcome::Complete(json!(map_handler_output(v.unwrap_or(0))))
                }
                "total" => {
                    total_inputs.lock().unwrap().push(t.input.clone());
                    let items = t
                        .input
                        .as_ref()
                        .and_then(|i| i["square"].as_array().cloned())
                        .unwrap_or_default();
                    let sum: i64 = items.iter().filter_map(Value::as_i64).sum();
                    Outcome::Complete(json!({"sum": sum, "count": items.len()}))
                }
                other => {
                    problem(format!("{t:?}: unknown step {other}"));
                    Outcome::Fail("unknown step".into())
                }
            }
        }
    };
    let poll = PollSettings {
        qty: 25,
        ..PollSettings::default()
    };
    let logs = run_workers(&flow, 4, poll, handler);
    let problems = problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "handler problems:\n{}",
        problems.join("\n")
    );

    let run = admin
        .query_one(
            "SELECT status, output::text, remaining_steps FROM pgflow.runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .unwrap();
    assert_eq!(run.get::<_, String>(0), "completed");
    assert_eq!(
        parse_json_opt(run.get(1)),
        Some(json!({"total": {"sum": expected_sum, "count": MAP_SIZE}}))
    );
    assert_eq!(run.get::<_, i32>(2), 0);
    assert_eq!(event_count(&mut admin, &run_id, "run:completed"), 1);

    let square = admin
        .query_one(
            "SELECT status, initial_tasks, remaining_tasks, output::text FROM pgflow.step_states
             WHERE run_id = $1::text::uuid AND step_slug = 'square'",
            &[&run_id],
        )
        .unwrap();
    assert_eq!(square.get::<_, String>(0), "completed");
    assert_eq!(square.get::<_, Option<i32>>(1), Some(MAP_SIZE as i32));
    assert_eq!(square.get::<_, Option<i32>>(2), Some(0));
    assert_eq!(
        parse_json_opt(square.get(3)),
        Some(json!(expected_outputs)),
        "map output is not the handler outputs in task_index order"
    );

    let total_inputs = total_inputs.lock().unwrap().clone();
    assert_eq!(
        total_inputs.len(),
        1,
        "the dependent step ran {} times",
        total_inputs.len()
    );
    assert_eq!(
        total_inputs[0],
        Some(json!({"square": expected_outputs})),
        "input of the dependent step"
    );

    let tasks = admin
        .query(
            "SELECT step_slug, task_index, status, attempts_count, output::text FROM pgflow.step_tasks
             WHERE run_id = $1::text::uuid ORDER BY step_slug, task_index",
            &[&run_id],
        )
        .unwrap();
    assert_eq!(tasks.len(), MAP_SIZE + 1);
    for (i, row) in tasks.iter().take(MAP_SIZE).enumerate() {
        assert_eq!(row.get::<_, String>(0), "square");
        assert_eq!(row.get::<_, i32>(1), i as i32);
        assert_eq!(row.get::<_, String>(2), "completed");
        assert_eq!(row.get::<_, i32>(3), 1);
        assert_eq!(parse_json_opt(row.get(4)), Some(json!(expected_outputs[i])));
    }
    assert_eq!(tasks[MAP_SIZE].get::<_, String>(0), "total");
    assert_eq!(tasks[MAP_SIZE].get::<_, String>(2), "completed");

    let t = tally(&logs);
    assert_eq!(t.started.len(), MAP_SIZE + 1);
    assert!(
        t.started.values().all(|&c| c == 1),
        "a task was started twice"
    );
    assert_eq!(t.completed.len(), MAP_SIZE + 1);
    assert!(
        t.completed.values().all(|&c| c == 1),
        "a handler completed twice"
    );
    assert!(t.failed.is_empty());

    assert_all_archived(&mut admin, &flow, MAP_SIZE + 1);
}

// ------------------------------------------------------------------------------------------------
// 3. A step that always fails exhausts max_attempts 2 and fails the run; the run's other queued
//    messages are archived.
// ------------------------------------------------------------------------------------------------

#[test]
fn exhausted_step_fails_run_and_archives_its_queued_messages() {
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("e2e_fail");
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "doomed", &[], "max_attempts => 2");
    // Parallel roots delayed by an hour: still queued when the run fails.
    add_step(&mut admin, &flow, "later", &[], "start_delay => 3600");
    add_step(
        &mut admin,
        &flow,
        "later_map",
        &[],
        "step_type => 'map', start_delay => 3600",
    );
    add_step(&mut admin, &flow, "after", &["doomed"], "");

    let run_id = start_flow(&mut admin, &flow, &json!([10, 20, 30]));
    // A second run of the same flow that stays untouched: failing the first must not touch it.
    let other_run = start_flow(&mut admin, &flow, &json!([1]));
    // Keep the other run's "doomed" message away from the workers.
    let other_doomed: i64 = admin
        .query_one(
            "SELECT message_id FROM pgflow.step_tasks WHERE run_id = $1::text::uuid AND step_slug = 'doomed'",
            &[&other_run],
        )
        .unwrap()
        .get(0);
    admin
        .execute(
            "SELECT pgmq.set_vt($1::text, $2::bigint, 3600)",
            &[&flow, &other_doomed],
        )
        .unwrap();

    let handler = {
        let run_id = run_id.clone();
        move |client: &mut Client, t: &StartedTask| -> Outcome {
            assert_eq!(t.run_id, run_id, "a message of the other run was delivered");
            assert_eq!(t.step_slug, "doomed", "a delayed message was delivered");
            let attempts = get_task(client, &t.run_id, &t.step_slug, t.task_index)
                .map(|r| r.attempts_count)
                .unwrap_or(-1);
            Outcome::Fail(format!("boom #{attempts}"))
        }
    };
    // The other run stays 'started' forever, so stop on this run's status instead.
    let stop_run = run_id.clone();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let flow = flow.clone();
            let handler = handler.clone();
            let stop_run = stop_run.clone();
            thread::spawn(move || {
                run_worker_until(
                    &flow,
                    PollSettings::default(),
                    WORKER_TIMEOUT,
                    move |c| run_status(c, &stop_run) != "started",
                    handler,
                )
            })
        })
        .collect();
    let logs: Vec<Vec<WorkerEvent>> = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect();

    let t = tally(&logs);
    let key = (run_id.clone(), "doomed".to_string(), 0);
    assert_eq!(t.started.get(&key), Some(&2), "doomed starts");
    assert_eq!(t.failed.get(&key), Some(&2), "doomed failures");
    assert!(t.completed.is_empty());

    let run = admin
        .query_one(
            "SELECT status, output::text, failed_at IS NOT NULL, completed_at IS NULL, remaining_steps
             FROM pgflow.runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .unwrap();
    assert_eq!(run.get::<_, String>(0), "failed");
    assert_eq!(
        run.get::<_, Option<String>>(1),
        None,
        "failed run has an output"
    );
    assert!(
        run.get::<_, bool>(2) && run.get::<_, bool>(3),
        "run timestamps"
    );
    assert_eq!(
        run.get::<_, i32>(4),
        4,
        "a failed step must not decrement remaining_steps"
    );

    let states: BTreeMap<String, (String, Option<String>)> = admin
        .query(
            "SELECT step_slug, status, error_message FROM pgflow.step_states WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(
        states["doomed"],
        ("failed".to_string(), Some("boom #2".to_string()))
    );
    assert_eq!(states["later"].0, "started");
    assert_eq!(states["later_map"].0, "started");
    assert_eq!(states["after"].0, "created");

    let doomed = get_task(&mut admin, &run_id, "doomed", 0).unwrap();
    assert_eq!(doomed.status, "failed");
    assert_eq!(doomed.attempts_count, 2);
    assert_eq!(doomed.error_message.as_deref(), Some("boom #2"));

    // The delayed tasks keep status 'queued', but their messages are archived.
    let tasks = admin
        .query(
            "SELECT step_slug, task_index, status, message_id FROM pgflow.step_tasks
             WHERE run_id = $1::text::uuid ORDER BY step_slug, task_index",
            &[&run_id],
        )
        .unwrap();
    let summary: Vec<(String, i32, String)> = tasks
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("doomed".to_string(), 0, "failed".to_string()),
            ("later".to_string(), 0, "queued".to_string()),
            ("later_map".to_string(), 0, "queued".to_string()),
            ("later_map".to_string(), 1, "queued".to_string()),
            ("later_map".to_string(), 2, "queued".to_string()),
        ]
    );
    let run_msgs: Vec<i64> = tasks.iter().map(|r| r.get(3)).collect();
    let left: i64 = admin
        .query_one(
            format!(
                "SELECT count(*) FROM {} WHERE message->>'run_id' = $1::text OR msg_id = ANY($2::bigint[])",
                queue_table(&flow)
            )
            .as_str(),
            &[&run_id, &run_msgs],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "messages of the failed run left in the queue");
    let archived: Vec<i64> = admin
        .query(
            format!(
                "SELECT msg_id FROM {} WHERE message->>'run_id' = $1::text ORDER BY msg_id",
                archive_table(&flow)
            )
            .as_str(),
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected = run_msgs.clone();
    expected.sort_unstable();
    assert_eq!(
        archived, expected,
        "every message of the failed run archived exactly once"
    );

    // A worker that still holds an id of the failed run cannot start it.
    let mut late = connect();
    let worker = register_worker(&mut late, &flow);
    let started = start_tasks(&mut late, &flow, &run_msgs, &worker).unwrap();
    assert!(
        started.is_empty(),
        "tasks of a failed run were started: {started:?}"
    );

    // Events: one step:failed, one run:failed, no completion.
    assert_eq!(event_count(&mut admin, &run_id, "step:doomed:failed"), 1);
    assert_eq!(event_count(&mut admin, &run_id, "run:failed"), 1);
    assert_eq!(event_count(&mut admin, &run_id, "run:completed"), 0);

    // The other run of the flow is untouched.
    let other: (String, i64) = {
        let r = admin
            .query_one(
                format!(
                    "SELECT (SELECT status FROM pgflow.runs WHERE run_id = $1::text::uuid),
                            (SELECT count(*) FROM {} WHERE message->>'run_id' = $1::text)",
                    queue_table(&flow)
                )
                .as_str(),
                &[&other_run],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        other,
        ("started".to_string(), 3),
        "the other run was touched"
    );
}

fn run_status(client: &mut Client, run_id: &str) -> String {
    client
        .query_one(
            "SELECT status FROM pgflow.runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .expect("run status")
        .get(0)
}

// ------------------------------------------------------------------------------------------------
// 4. Events reach a realtime.send written in SQL (a void SQL function returns a NULL datum).
// ------------------------------------------------------------------------------------------------

/// The contract's emit is `realtime.send(payload, event, topic, false)` with the result ignored
/// (`PERFORM`), so any implementation of that signature must work, including a LANGUAGE sql one
/// whose void result is NULL. The replacement is done inside a transaction that is rolled back,
/// so the PL/pgSQL stub the other tests use is never changed for them.
#[test]
fn events_reach_a_sql_language_realtime_send() {
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("e2e_rtsql");
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "only", &[], "");

    let mut tx = admin.transaction().unwrap();
    tx.batch_execute(
        "SET LOCAL lock_timeout = '10s';
         CREATE OR REPLACE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
           RETURNS void LANGUAGE sql
           AS $fn$ INSERT INTO realtime.sent (topic, event, payload, private) VALUES (topic, event, payload, private) $fn$;",
    )
    .unwrap();
    let started = tx.query_one(
        "SELECT run_id::text FROM pgflow.start_flow(flow_slug => $1::text, input => '{}'::jsonb)",
        &[&flow],
    );
    let events: Vec<String> = match &started {
        Ok(row) => {
            let run_id: String = row.get(0);
            tx.query(
                "SELECT event FROM realtime.sent WHERE topic = 'pgflow:run:' || $1::text ORDER BY id",
                &[&run_id],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
        }
        Err(_) => Vec::new(),
    };
    let started = started.map(|_| ()).map_err(|e| match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    });
    // Dropping an aborted transaction rolls it back as well.
    drop(tx);
    assert_eq!(
        started,
        Ok(()),
        "start_flow with a LANGUAGE sql realtime.send"
    );
    assert_eq!(
        events,
        vec!["run:started".to_string(), "step:only:started".to_string()]
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Handlers slower than the visibility timeout: the message comes back while the task is still
//    being worked on, and start_tasks must not hand it out again.
// ------------------------------------------------------------------------------------------------

#[test]
fn redelivered_messages_of_slow_tasks_are_not_started_again() {
    const TASKS: usize = 24;
    let mut admin = connect();
    install_realtime_stub(&mut admin);
    let flow = unique_name("e2e_slow");
    create_flow(&mut admin, &flow, 3, 0, 60);
    add_step(&mut admin, &flow, "work", &[], "step_type => 'map'");
    let input: Vec<usize> = (0..TASKS).collect();
    let run_id = start_flow(&mut admin, &flow, &json!(input));

    // vt 1 s; every 6th task takes 2.5 s, so its message is visible again meanwhile.
    let poll = PollSettings {
        vt: 1,
        qty: 2,
        max_poll_seconds: 1,
        poll_interval_ms: 50,
    };
    let handler = |_: &mut Client, t: &StartedTask| -> Outcome {
        if t.task_index % 6 == 0 {
            thread::sleep(Duration::from_millis(2500));
        }
        Outcome::Complete(json!(t.task_index * 10))
    };
    let logs = run_workers(&flow, 4, poll, handler);

    let t = tally(&logs);
    assert_eq!(t.started.len(), TASKS);
    assert!(
        t.started.values().all(|&c| c == 1),
        "a task was started twice: {:?}",
        t.started
    );
    assert!(
        t.completed.values().all(|&c| c == 1),
        "a handler completed twice"
    );
    assert_eq!(t.completed.len(), TASKS);

    let redelivered: i64 = admin
        .query_one(
            format!(
                "SELECT count(*) FROM {} WHERE read_ct > 1",
                archive_table(&flow)
            )
            .as_str(),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        redelivered > 0,
        "no message was read twice; the test did not exercise redelivery"
    );

    let (status, output): (String, Option<String>) = {
        let r = admin
            .query_one(
                "SELECT status, output::text FROM pgflow.runs WHERE run_id = $1::text::uuid",
                &[&run_id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(status, "completed");
    let expected: Vec<usize> = (0..TASKS).map(|i| i * 10).collect();
    assert_eq!(parse_json_opt(output), Some(json!({"work": expected})));
    let attempts: Vec<i32> = admin
        .query(
            "SELECT attempts_count FROM pgflow.step_tasks WHERE run_id = $1::text::uuid ORDER BY task_index",
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts, vec![1; TASKS]);
    assert_eq!(event_count(&mut admin, &run_id, "run:completed"), 1);
    assert_all_archived(&mut admin, &flow, TASKS);
}
