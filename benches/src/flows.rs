//! Workflow workloads: dag, map, latency and soak.
//!
//! Workers behave like pgflow's edge worker: a worker row in pgflow.workers, then a loop of
//! `pgmq.read_with_poll` → `pgflow.start_tasks` → one `pgflow.complete_task` per task, every
//! statement its own transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::report::{Kv, Outcome, fmt_num};
use crate::stats::{Calls, Latencies, quantile};
use crate::{Check, Ctx, connect, pg};

/// What the workers of one round share.
pub struct Round {
    slug: String,
    qty: i32,
    poll_ms: i32,
    /// The leaf step: its completion completes the run.
    leaf: &'static str,
    /// Leaf completions that end the round.
    target: u64,
    /// Runs of this flow completed before the round (soak rounds share one flow).
    base_completed: i64,
    /// Record (run_id, time complete_task returned) for every leaf completion.
    record: bool,
    deadline: Instant,
    done_runs: AtomicU64,
    stop: AtomicBool,
    finished: Mutex<Option<Instant>>,
    error: Mutex<Option<String>>,
    completions: Mutex<Vec<(Uuid, Instant)>>,
}

impl Round {
    fn new(ctx: &Ctx, slug: &str, qty: i32, poll_ms: i32, leaf: &'static str, target: u64) -> Self {
        Round {
            slug: slug.to_string(),
            qty,
            poll_ms,
            leaf,
            target,
            base_completed: 0,
            record: false,
            deadline: Instant::now() + Duration::from_secs_f64(ctx.opts.timeout),
            done_runs: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            finished: Mutex::new(None),
            error: Mutex::new(None),
            completions: Mutex::new(Vec::new()),
        }
    }

    fn fail(&self, msg: String) {
        let mut e = self.error.lock().unwrap();
        if e.is_none() {
            *e = Some(msg);
        }
        self.stop.store(true, SeqCst);
    }

    fn finish(&self) {
        let mut f = self.finished.lock().unwrap();
        if f.is_none() {
            *f = Some(Instant::now());
        }
        self.stop.store(true, SeqCst);
    }
}

struct WorkerStmts {
    read: Statement,
    start: Statement,
    complete: Statement,
    progress: Statement,
}

fn setup_worker(dsn: &str, r: &Round) -> Result<(Client, Uuid, WorkerStmts), String> {
    let mut c = connect(dsn)?;
    let wid: Uuid = c
        .query_one(
            "INSERT INTO pgflow.workers (worker_id, queue_name, function_name) \
             VALUES (gen_random_uuid(), $1, 'pgflow-bench') RETURNING worker_id",
            &[&r.slug],
        )
        .map_err(pg)?
        .get(0);
    let stmts = WorkerStmts {
        read: c
            .prepare(
                "SELECT * FROM pgmq.read_with_poll(queue_name => $1, vt => 30, qty => $2, \
                 max_poll_seconds => 1, poll_interval_ms => $3)",
            )
            .map_err(pg)?,
        start: c
            .prepare("SELECT * FROM pgflow.start_tasks($1, $2::bigint[], $3::uuid)")
            .map_err(pg)?,
        complete: c
            .prepare("SELECT pgflow.complete_task($1, $2, $3, $4::jsonb)")
            .map_err(pg)?,
        progress: c
            .prepare(
                "SELECT count(*) FILTER (WHERE status = 'completed'), \
                        count(*) FILTER (WHERE status = 'failed') \
                 FROM pgflow.runs WHERE flow_slug = $1",
            )
            .map_err(pg)?,
    };
    Ok((c, wid, stmts))
}

/// A task's tiny output: a map element's number + 1, `{"ok": true}` otherwise.
fn output_for(input: &Option<Value>) -> Value {
    match input.as_ref().and_then(Value::as_i64) {
        Some(n) => json!(n + 1),
        None => json!({"ok": true}),
    }
}

fn worker_loop(
    c: &mut Client,
    r: &Round,
    wid: Uuid,
    s: &WorkerStmts,
    calls: &mut Calls,
) -> Result<(), String> {
    let mut empty = 0u32;
    while !r.stop.load(SeqCst) {
        if Instant::now() > r.deadline {
            return Err(format!(
                "round timed out after {}/{} runs completed",
                r.done_runs.load(SeqCst),
                r.target
            ));
        }
        let t = Instant::now();
        let msgs = c
            .query(&s.read, &[&r.slug, &r.qty, &r.poll_ms])
            .map_err(pg)?;
        calls.reads += 1;
        if msgs.is_empty() {
            calls.empty_reads += 1;
            empty += 1;
            // Cheap safety net besides the shared counter: every few empty polls ask the
            // database whether the round is over or a run failed.
            if empty.is_multiple_of(3) {
                let row = c.query_one(&s.progress, &[&r.slug]).map_err(pg)?;
                let (completed, failed): (i64, i64) = (row.get(0), row.get(1));
                if failed > 0 {
                    return Err(format!("{failed} runs of {} failed", r.slug));
                }
                if (completed - r.base_completed) as u64 >= r.target {
                    r.finish();
                }
            }
            continue;
        }
        let d = t.elapsed();
        calls.read_time += d;
        calls.read_max = calls.read_max.max(d);
        calls.messages += msgs.len() as u64;
        empty = 0;
        let ids: Vec<i64> = msgs.iter().map(|m| m.get("msg_id")).collect();

        let t = Instant::now();
        let tasks = c.query(&s.start, &[&r.slug, &ids, &wid]).map_err(pg)?;
        let d = t.elapsed();
        crate::stats::trace_slow(d, || format!("start_tasks({} msg ids)", ids.len()));
        calls.start_time += d;
        calls.start_max = calls.start_max.max(d);
        calls.starts += 1;
        calls.started_tasks += tasks.len() as u64;

        for task in &tasks {
            let run_id: Uuid = task.get("run_id");
            let step: String = task.get("step_slug");
            let index: i32 = task.get("task_index");
            let input: Option<Value> = task.get("input");
            let output = output_for(&input);
            let t = Instant::now();
            let n = c
                .execute(&s.complete, &[&run_id, &step, &index, &output])
                .map_err(pg)?;
            let t1 = Instant::now();
            calls.complete_time += t1 - t;
            calls.complete_max = calls.complete_max.max(t1 - t);
            crate::stats::trace_slow(t1 - t, || {
                format!("complete_task({run_id}, {step}, {index})")
            });
            calls.completes += 1;
            if n != 1 {
                return Err(format!(
                    "complete_task({run_id}, {step}, {index}) returned {n} rows"
                ));
            }
            if step == r.leaf {
                if r.record {
                    r.completions.lock().unwrap().push((run_id, t1));
                }
                if r.done_runs.fetch_add(1, SeqCst) + 1 >= r.target {
                    r.finish();
                }
            }
        }
    }
    Ok(())
}

fn worker(dsn: &str, r: &Round, barrier: &Barrier) -> Calls {
    let setup = setup_worker(dsn, r);
    barrier.wait();
    let mut calls = Calls::default();
    let (mut c, wid, stmts) = match setup {
        Ok(x) => x,
        Err(e) => {
            r.fail(format!("worker setup: {e}"));
            return calls;
        }
    };
    if let Err(e) = worker_loop(&mut c, r, wid, &stmts, &mut calls) {
        r.fail(format!("worker: {e}"));
    }
    let _ = c.execute("SELECT pgflow.mark_worker_stopped($1)", &[&wid]);
    calls
}

/// Starts `workers` worker threads; once all are connected, runs `during` on this thread
/// (given the start instant) and then waits for the workers. Returns the start instant,
/// `during`'s value and the merged call statistics.
fn run_workers<T>(
    dsn: &str,
    r: &Round,
    workers: usize,
    during: impl FnOnce(Instant) -> Result<T, String>,
) -> Result<(Instant, T, Calls), String> {
    let barrier = Barrier::new(workers + 1);
    let (t0, res, calls) = thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| worker(dsn, r, &barrier)))
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let res = during(t0);
        if let Err(e) = &res {
            r.fail(e.clone());
        }
        let mut calls = Calls::default();
        for h in handles {
            match h.join() {
                Ok(c) => calls.merge(&c),
                Err(_) => r.fail("a worker thread panicked".into()),
            }
        }
        (t0, res, calls)
    });
    if let Some(e) = r.error.lock().unwrap().clone() {
        return Err(e);
    }
    Ok((t0, res?, calls))
}

fn exec(c: &mut Client, sql: &str, slug: &str) -> Result<(), String> {
    c.execute(sql, &[&slug]).map(|_| ()).map_err(pg)
}

/// a → (b, c) → d
fn create_dag_flow(c: &mut Client, slug: &str) -> Result<(), String> {
    exec(c, "SELECT pgflow.create_flow(flow_slug => $1)", slug)?;
    exec(
        c,
        "SELECT pgflow.add_step(flow_slug => $1, step_slug => 'a')",
        slug,
    )?;
    exec(
        c,
        "SELECT pgflow.add_step(flow_slug => $1, step_slug => 'b', deps_slugs => ARRAY['a'])",
        slug,
    )?;
    exec(
        c,
        "SELECT pgflow.add_step(flow_slug => $1, step_slug => 'c', deps_slugs => ARRAY['a'])",
        slug,
    )?;
    exec(
        c,
        "SELECT pgflow.add_step(flow_slug => $1, step_slug => 'd', deps_slugs => ARRAY['b', 'c'])",
        slug,
    )
}

/// Starts `runs` runs, one start_flow call per transaction (with `priorities`, start_run with
/// priorities 0 to 3 in turn). Returns the total time.
fn start_runs(
    c: &mut Client,
    slug: &str,
    runs: usize,
    first: usize,
    priorities: bool,
) -> Result<Duration, String> {
    let stmt = c
        .prepare(if priorities {
            "SELECT run_id FROM pgflow.start_run(flow_slug => $1, input => $2::jsonb,
                                                 priority => (($2::jsonb ->> 'n')::int % 4))"
        } else {
            "SELECT run_id FROM pgflow.start_flow(flow_slug => $1, input => $2::jsonb)"
        })
        .map_err(pg)?;
    let t = Instant::now();
    for i in first..first + runs {
        let rows = c.query(&stmt, &[&slug, &json!({"n": i})]).map_err(pg)?;
        if rows.len() != 1 {
            return Err(format!("start_flow returned {} rows", rows.len()));
        }
    }
    Ok(t.elapsed())
}

fn finished_secs(r: &Round, t0: Instant) -> f64 {
    let end = r.finished.lock().unwrap().unwrap_or_else(Instant::now);
    end.duration_since(t0).as_secs_f64()
}

/// Refreshes planner statistics after a bulk load, as autovacuum would in a running system (a
/// fresh table's statistics say "empty", and plans made from them are poor).
fn analyze(c: &mut postgres::Client, slug: &str) -> Result<(), String> {
    c.batch_execute("ANALYZE pgflow.runs, pgflow.step_states, pgflow.step_tasks")
        .map_err(pg)?;
    let table: String = c
        .query_one(
            "SELECT format('pgmq.%I', 'q_' || lower($1::text))",
            &[&slug],
        )
        .map_err(pg)?
        .get(0);
    c.batch_execute(&format!("ANALYZE {table}")).map_err(pg)
}

pub fn dag(ctx: &mut Ctx, runs: usize, workers: usize) -> Result<(), String> {
    let slug = ctx.name(&format!("dag_w{workers}"));
    let mut c = ctx.connect()?;
    create_dag_flow(&mut c, &slug)?;
    ctx.checks.push(Check::Flow {
        workload: "dag".into(),
        slug: slug.clone(),
        runs: runs as i64,
        tasks_per_run: 4,
    });

    let start_time = start_runs(&mut c, &slug, runs, 0, ctx.opts.priorities)?.as_secs_f64();
    analyze(&mut c, &slug)?;
    let r = Round::new(ctx, &slug, 10, 100, "d", runs as u64);
    let (t0, (), calls) = run_workers(&ctx.opts.dsn, &r, workers, |_| Ok(()))?;
    let wall = finished_secs(&r, t0);
    let tasks = 4 * runs;
    let tasks_per_s = tasks as f64 / wall;

    let mut kv = Kv::new();
    kv.add("runs", runs)
        .add("workers", workers)
        .add("tasks", tasks)
        .add("wall_s", wall)
        .add("runs_per_s", runs as f64 / wall)
        .add("tasks_per_s", tasks_per_s)
        .add("start_flow_per_s", runs as f64 / start_time)
        .add("start_flow_ms_avg", start_time * 1000.0 / runs as f64)
        .add("start_phase_s", start_time);
    calls.add_flow(&mut kv, wall, workers);
    ctx.emit("dag", &kv);
    ctx.outcomes.push(Outcome {
        workload: "dag".into(),
        params: format!(
            "runs={runs} W={workers}{}",
            if ctx.opts.priorities {
                " priorities"
            } else {
                ""
            }
        ),
        figure: format!(
            "{} tasks/s ({} runs/s; start_flow {}/s)",
            fmt_num(tasks_per_s),
            fmt_num(runs as f64 / wall),
            fmt_num(runs as f64 / start_time)
        ),
        throughput: Some((tasks_per_s, workers)),
    });
    Ok(())
}

pub fn map(ctx: &mut Ctx, elements: usize, workers: usize) -> Result<(), String> {
    let slug = ctx.name(&format!("map_n{elements}_w{workers}"));
    let mut c = ctx.connect()?;
    exec(&mut c, "SELECT pgflow.create_flow(flow_slug => $1)", &slug)?;
    exec(
        &mut c,
        "SELECT pgflow.add_step(flow_slug => $1, step_slug => 'items', step_type => 'map')",
        &slug,
    )?;
    exec(
        &mut c,
        "SELECT pgflow.add_step(flow_slug => $1, step_slug => 'total', deps_slugs => ARRAY['items'])",
        &slug,
    )?;
    ctx.checks.push(Check::Flow {
        workload: "map".into(),
        slug: slug.clone(),
        runs: 1,
        tasks_per_run: elements as i64 + 1,
    });

    let input = Value::Array((0..elements as i64).map(Value::from).collect());
    let t = Instant::now();
    c.query_one(
        "SELECT run_id FROM pgflow.start_flow(flow_slug => $1, input => $2::jsonb)",
        &[&slug, &input],
    )
    .map_err(pg)?;
    let start_ms = t.elapsed().as_secs_f64() * 1000.0;
    analyze(&mut c, &slug)?;

    let r = Round::new(ctx, &slug, 100, 100, "total", 1);
    let (t0, (), calls) = run_workers(&ctx.opts.dsn, &r, workers, |_| Ok(()))?;
    let wall = finished_secs(&r, t0);
    let tasks = elements + 1;
    let tasks_per_s = tasks as f64 / wall;

    let mut kv = Kv::new();
    kv.add("elements", elements)
        .add("workers", workers)
        .add("tasks", tasks)
        .add("start_flow_ms", start_ms)
        .add("completion_s", wall)
        .add("tasks_per_s", tasks_per_s);
    calls.add_flow(&mut kv, wall, workers);
    ctx.emit("map", &kv);
    ctx.outcomes.push(Outcome {
        workload: "map".into(),
        params: format!("N={elements} W={workers}"),
        figure: format!(
            "{} tasks/s (start_flow {} ms, run done in {} s)",
            fmt_num(tasks_per_s),
            fmt_num(start_ms),
            fmt_num(wall)
        ),
        throughput: Some((tasks_per_s, workers)),
    });
    Ok(())
}

pub fn latency(ctx: &mut Ctx, workers: usize, poll_ms: i32) -> Result<(), String> {
    let (rate, seconds, qty) = (ctx.opts.rate, ctx.opts.seconds, ctx.opts.latency_qty);
    let slug = ctx.name(&format!("lat_p{poll_ms}_w{workers}"));
    let mut c = ctx.connect()?;
    exec(&mut c, "SELECT pgflow.create_flow(flow_slug => $1)", &slug)?;
    exec(
        &mut c,
        "SELECT pgflow.add_step(flow_slug => $1, step_slug => 'only')",
        &slug,
    )?;
    let total = ((rate * seconds).round() as usize).max(1);
    ctx.checks.push(Check::Flow {
        workload: "latency".into(),
        slug: slug.clone(),
        runs: total as i64,
        tasks_per_run: 1,
    });

    let stmt = c
        .prepare("SELECT run_id FROM pgflow.start_flow(flow_slug => $1, input => $2::jsonb)")
        .map_err(pg)?;
    let mut r = Round::new(ctx, &slug, qty, poll_ms, "only", total as u64);
    r.record = true;
    r.deadline += Duration::from_secs_f64(seconds);
    let r = r;

    // The starter: start_flow calls at a steady rate, t0 taken just before each call.
    type Started = (Vec<(Uuid, Instant)>, Duration, Instant);
    let starter = |t0: Instant| -> Result<Started, String> {
        let mut starts = Vec::with_capacity(total);
        let mut call_time = Duration::ZERO;
        for i in 0..total {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if r.stop.load(SeqCst) {
                break;
            }
            let ts = Instant::now();
            let row = c.query_one(&stmt, &[&slug, &json!({"n": i})]).map_err(pg)?;
            call_time += ts.elapsed();
            starts.push((row.get::<_, Uuid>(0), ts));
        }
        Ok((starts, call_time, Instant::now()))
    };
    let (t0, (starts, call_time, started_end), calls) =
        run_workers(&ctx.opts.dsn, &r, workers, starter)?;

    let done: HashMap<Uuid, Instant> = r.completions.lock().unwrap().iter().copied().collect();
    let mut lat: Vec<f64> = starts
        .iter()
        .filter_map(|(id, ts)| {
            done.get(id)
                .map(|t1| t1.duration_since(*ts).as_secs_f64() * 1000.0)
        })
        .collect();
    if lat.len() != starts.len() {
        return Err(format!(
            "{} of {} runs have no completion time",
            starts.len() - lat.len(),
            starts.len()
        ));
    }
    lat.sort_by(f64::total_cmp);
    let latencies = Latencies::of_sorted(&lat);
    let achieved = total as f64 / started_end.duration_since(t0).as_secs_f64();
    let wall = finished_secs(&r, t0);

    let mut kv = Kv::new();
    kv.add("workers", workers)
        .add("poll_ms", poll_ms)
        .add("qty", qty)
        .add("rate", rate)
        .add("achieved_rate", achieved)
        .add("runs", total);
    latencies.add_to(&mut kv);
    kv.add("mean_ms", lat.iter().sum::<f64>() / lat.len() as f64)
        .add(
            "start_flow_ms_avg",
            call_time.as_secs_f64() * 1000.0 / total as f64,
        );
    calls.add_flow(&mut kv, wall, workers);
    ctx.emit("latency", &kv);
    ctx.outcomes.push(Outcome {
        workload: "latency".into(),
        params: format!("rate={}/s W={workers} poll={poll_ms}ms", fmt_num(rate)),
        figure: latencies.figure(),
        throughput: None,
    });
    Ok(())
}

/// Table sizes after a soak round, in MiB, and the runs of the flow still in the database.
fn soak_sizes(c: &mut Client, slug: &str) -> Result<(Kv, i64), String> {
    let row = c
        .query_one(
            "SELECT pg_database_size(current_database()), \
                    pg_total_relation_size('pgflow.runs'), \
                    pg_total_relation_size('pgflow.step_states'), \
                    pg_total_relation_size('pgflow.step_tasks'), \
                    pg_total_relation_size('pgflow._step_shards'), \
                    pg_total_relation_size(format('pgmq.%I', 'q_' || lower($1::text))), \
                    pg_total_relation_size(format('pgmq.%I', 'a_' || lower($1::text))), \
                    (SELECT count(*) FROM pgflow.runs WHERE flow_slug = $1)",
            &[&slug],
        )
        .map_err(pg)?;
    let mut kv = Kv::new();
    for (i, name) in [
        "db",
        "runs",
        "step_states",
        "step_tasks",
        "shards",
        "queue",
        "archive",
    ]
    .iter()
    .enumerate()
    {
        let bytes: i64 = row.get(i);
        kv.add(&format!("{name}_mib"), bytes as f64 / 1_048_576.0);
    }
    Ok((kv, row.get(7)))
}

/// Median of the first and of the last `k` values (fewer when there are fewer).
fn end_medians(v: &[f64], k: usize) -> (f64, f64) {
    let med = |s: &[f64]| {
        let mut s = s.to_vec();
        s.sort_by(f64::total_cmp);
        quantile(&s, 0.5)
    };
    let k = k.min(v.len()).max(1);
    (med(&v[..k]), med(&v[v.len() - k..]))
}

/// Prunes like a scheduled job until `stop`: every `every` seconds,
/// `pgflow.prune_data_older_than(retention seconds)`. Returns (calls, total seconds in them).
fn pruner(dsn: &str, retention: f64, every: f64, stop: &AtomicBool) -> Result<(u64, f64), String> {
    let mut c = connect(dsn)?;
    let stmt = c
        .prepare("SELECT pgflow.prune_data_older_than(make_interval(secs => $1))")
        .map_err(pg)?;
    let (mut calls, mut spent) = (0u64, 0.0);
    let mut next = Instant::now() + Duration::from_secs_f64(every);
    while !stop.load(SeqCst) {
        if Instant::now() < next {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        let t = Instant::now();
        c.execute(&stmt, &[&retention]).map_err(pg)?;
        spent += t.elapsed().as_secs_f64();
        calls += 1;
        next = Instant::now() + Duration::from_secs_f64(every);
    }
    Ok((calls, spent))
}

/// Soak: dag rounds of `runs` runs on one flow until `total_tasks` tasks are completed. Each
/// round is verified as soon as it ends (pruning may remove it later).
pub fn soak(ctx: &mut Ctx, total_tasks: u64, runs: usize, workers: usize) -> Result<(), String> {
    let slug = ctx.name(&format!("soak_w{workers}"));
    let mut c = ctx.connect()?;
    create_dag_flow(&mut c, &slug)?;
    ctx.inline_flows.push(slug.clone());
    let stop = AtomicBool::new(false);
    let dsn = ctx.opts.dsn.clone();
    let (prune, every) = (ctx.opts.prune, ctx.opts.prune_every);
    let mut rounds: Vec<f64> = Vec::new();
    let mut failed_rounds = 0usize;
    let mut done_tasks = 0u64;
    let mut runs_left = 0i64;
    let (result, pruned) = thread::scope(|s| {
        let (dsn, stop_flag) = (&dsn, &stop);
        let pruner = prune.map(|p| s.spawn(move || pruner(dsn, p, every, stop_flag)));
        let result = (|| -> Result<(), String> {
            while done_tasks < total_tasks {
                let i = rounds.len();
                let start_time = start_runs(&mut c, &slug, runs, i * runs, false)?.as_secs_f64();
                let mut r = Round::new(ctx, &slug, 10, 100, "d", runs as u64);
                // Pruning only lowers this count, so the workers' check never ends a round early.
                r.base_completed = c
                    .query_one(
                        "SELECT count(*) FROM pgflow.runs WHERE flow_slug = $1 AND status = 'completed'",
                        &[&slug],
                    )
                    .map_err(pg)?
                    .get(0);
                let (t0, (), calls) = run_workers(&ctx.opts.dsn, &r, workers, |_| Ok(()))?;
                let tps = (4 * runs) as f64 / finished_secs(&r, t0);
                done_tasks += 4 * runs as u64;
                rounds.push(tps);
                let range = ((i * runs) as i64, ((i + 1) * runs - 1) as i64);
                if !crate::verify_runs(&mut c, "soak", &slug, runs as i64, 4, Some(range))? {
                    failed_rounds += 1;
                }
                let (sizes, left) = soak_sizes(&mut c, &slug)?;
                runs_left = left;
                let mut kv = Kv::new();
                kv.add("round", i + 1)
                    .add("tasks_total", done_tasks)
                    .add("tasks_per_s", tps)
                    .add("start_flow_per_s", runs as f64 / start_time)
                    .add(
                        "complete_task_ms_avg",
                        calls.complete_time.as_secs_f64() * 1000.0 / calls.completes.max(1) as f64,
                    )
                    .add("runs_in_db", left);
                println!("SOAK {} {}", kv.line(), sizes.line());
            }
            Ok(())
        })();
        stop.store(true, SeqCst);
        let pruned = pruner.map(|h| h.join().unwrap_or_else(|_| Err("pruner panicked".into())));
        (result, pruned)
    });
    ctx.inline_checks += rounds.len();
    ctx.inline_failed += failed_rounds;
    result?;
    let (prune_calls, prune_secs) = pruned.transpose()?.unwrap_or((0, 0.0));
    let (first, last) = (rounds[0], *rounds.last().unwrap_or(&rounds[0]));
    let (med_first, med_last) = end_medians(&rounds, 5);
    let mut kv = Kv::new();
    kv.add("workers", workers)
        .add("runs_per_round", runs)
        .add("rounds", rounds.len())
        .add("tasks", done_tasks)
        .add("first_tasks_per_s", first)
        .add("last_tasks_per_s", last)
        .add("last_over_first", last / first)
        .add("median_first5", med_first)
        .add("median_last5", med_last)
        .add("median_last5_over_first5", med_last / med_first)
        .add("runs_in_db", runs_left)
        .add("prune_calls", prune_calls)
        .add("prune_s", prune_secs);
    ctx.emit("soak", &kv);
    ctx.outcomes.push(Outcome {
        workload: "soak".into(),
        params: format!(
            "tasks={done_tasks} rounds={} W={workers}{}",
            rounds.len(),
            prune.map_or(String::new(), |p| format!(" prune={p}s"))
        ),
        figure: format!(
            "first {} / last {} tasks/s (ratio {}; medians of 5: {} / {}, ratio {})",
            fmt_num(first),
            fmt_num(last),
            fmt_num(last / first),
            fmt_num(med_first),
            fmt_num(med_last),
            fmt_num(med_last / med_first)
        ),
        throughput: None,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::end_medians;

    #[test]
    fn medians_of_both_ends() {
        assert_eq!(end_medians(&[1.0, 5.0, 3.0, 9.0, 7.0, 2.0], 3), (3.0, 7.0));
        assert_eq!(end_medians(&[4.0], 5), (4.0, 4.0));
    }
}
