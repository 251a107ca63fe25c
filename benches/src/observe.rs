//! `observe`: the observability views and functions with many completed tasks kept (by default
//! 1,000,000 over the last 24 hours, plus failed, queued and started ones). Each query runs
//! 30 times; a median over 50 ms, or a plan that scans step_tasks, step_states or runs whole,
//! fails the round.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::report::{Kv, Outcome, fmt_num};
use crate::stats::Latencies;
use crate::{Ctx, pg};

const BUDGET_MS: f64 = 50.0;
const ROUNDS: usize = 30;

/// Fills the database: completed runs of a three-step flow (1 + 8 map + 1 tasks each) spread
/// over `hours`, 1% more that failed, and a live flow with queued and started tasks.
fn load(
    c: &mut postgres::Client,
    flow: &str,
    live: &str,
    tasks: usize,
    hours: f64,
) -> Result<String, String> {
    // `tasks` completed ones: a tenth as many completed runs, and 1% more runs that failed.
    let failed = (tasks / 1000).max(1);
    let runs = (tasks / 10).max(1) + failed;
    c.batch_execute(&format!(
        "SELECT pgflow.create_flow('{flow}');
         SELECT pgflow.add_step('{flow}', 'a');
         SELECT pgflow.add_step('{flow}', 'm', ARRAY['a'], step_type => 'map');
         SELECT pgflow.add_step('{flow}', 'z', ARRAY['m']);
         CREATE TEMP TABLE bench_runs AS
         SELECT gen_random_uuid() AS run_id, now() - i * interval '1 hour' * {hours} / {runs} AS t, i <= {failed} AS failed
         FROM generate_series(1, {runs}) i;
         INSERT INTO pgflow.runs (run_id, flow_slug, status, input, output, remaining_steps, started_at, completed_at, failed_at)
         SELECT run_id, '{flow}', CASE WHEN failed THEN 'failed' ELSE 'completed' END, '{{}}',
                CASE WHEN failed THEN NULL ELSE '{{}}'::jsonb END, CASE WHEN failed THEN 3 ELSE 0 END,
                t - interval '3 seconds', CASE WHEN NOT failed THEN t END, CASE WHEN failed THEN t END
         FROM bench_runs;
         INSERT INTO pgflow.step_states (flow_slug, run_id, step_slug, status, remaining_tasks, remaining_deps,
                                         created_at, started_at, completed_at, failed_at, initial_tasks, error_message)
         SELECT '{flow}', r.run_id, s.slug, CASE WHEN r.failed THEN 'failed' ELSE 'completed' END,
                CASE WHEN r.failed THEN 1 ELSE 0 END, 0, r.t - interval '3 seconds', r.t - interval '3 seconds',
                CASE WHEN NOT r.failed THEN r.t END, CASE WHEN r.failed THEN r.t END, s.n,
                CASE WHEN r.failed THEN 'bench failure' END
         FROM bench_runs r, (VALUES ('a', 1), ('m', 8), ('z', 1)) s(slug, n) WHERE NOT r.failed OR s.slug = 'a';
         INSERT INTO pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status, attempts_count, output,
                                        error_message, queued_at, started_at, completed_at, failed_at)
         SELECT '{flow}', r.run_id, s.slug, i, CASE WHEN r.failed THEN 'failed' ELSE 'completed' END, 1,
                CASE WHEN NOT r.failed THEN '1'::jsonb END, CASE WHEN r.failed THEN 'bench failure' END,
                r.t - interval '3 seconds', r.t - interval '3 seconds' + random() * interval '1 second',
                CASE WHEN NOT r.failed THEN r.t END, CASE WHEN r.failed THEN r.t END
         FROM bench_runs r, (VALUES ('a', 1), ('m', 8), ('z', 1)) s(slug, n), generate_series(0, s.n - 1) i
         WHERE NOT r.failed OR s.slug = 'a';
         SELECT pgflow.create_flow('{live}');
         SELECT pgflow.add_step('{live}', 'a');
         SELECT count(*) FROM generate_series(1, 200), pgflow.start_flow('{live}', '{{}}');
         INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
         VALUES ('00000000-0000-0000-0000-0000000000ee', '{live}', 'bench-observe');
         SELECT count(*) FROM pgflow.start_tasks('{live}', ARRAY(SELECT message_id FROM pgflow.step_tasks
                                                 WHERE flow_slug = '{live}' LIMIT 50), '00000000-0000-0000-0000-0000000000ee');"
    ))
    .map_err(pg)?;
    c.batch_execute("VACUUM ANALYZE pgflow.runs, pgflow.step_states, pgflow.step_tasks")
        .map_err(pg)?;
    let recent: String = c
        .query_one(
            "SELECT run_id::text FROM bench_runs WHERE NOT failed ORDER BY t DESC LIMIT 1",
            &[],
        )
        .map_err(pg)?
        .get(0);
    Ok(recent)
}

pub fn run(ctx: &mut Ctx) -> Result<(), String> {
    let tasks = if ctx.opts.quick { 100_000 } else { 1_000_000 };
    let hours = 24.0;
    let flow = ctx.name("obs");
    let live = ctx.name("obslive");
    let mut c = ctx.connect()?;
    // The plans of every statement, nested ones too (flow_stats calls a function per flow), as
    // notices: auto_explain with log_level notice.
    let plans: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut explained = {
        let mut cfg: postgres::Config = ctx.opts.dsn.parse().map_err(|e| format!("{e}"))?;
        let sink = Arc::clone(&plans);
        cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
        cfg.connect(postgres::NoTls).map_err(pg)?
    };
    explained
        .batch_execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; \
             SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice; \
             SET client_min_messages = notice",
        )
        .map_err(pg)?;
    let started = Instant::now();
    let run = load(&mut c, &flow, &live, tasks, hours)?;
    let load_s = started.elapsed().as_secs_f64();
    let kept: i64 = c
        .query_one(
            "SELECT count(*) FROM pgflow.step_tasks WHERE status = 'completed'",
            &[],
        )
        .map_err(pg)?
        .get(0);

    let queries = [
        ("flow_stats", "SELECT * FROM pgflow.flow_stats".to_string()),
        (
            "flow_stats_one",
            format!("SELECT * FROM pgflow.flow_stats WHERE flow_slug = '{flow}'"),
        ),
        (
            "failing_and_stalled_tasks",
            "SELECT * FROM pgflow.failing_and_stalled_tasks".to_string(),
        ),
        (
            "explain_run",
            format!("SELECT * FROM pgflow.explain_run('{run}')"),
        ),
        (
            "run_graph",
            format!("SELECT pgflow.run_graph('{run}', 'dot')"),
        ),
        ("flow_graph", format!("SELECT pgflow.flow_graph('{flow}')")),
    ];
    let mut over = Vec::new();
    for (name, sql) in &queries {
        plans.lock().unwrap().clear();
        explained.simple_query(sql).map_err(pg)?;
        let whole = plans.lock().unwrap().iter().find_map(|plan| {
            plan.lines()
                .find(|l| {
                    ["step_tasks", "step_states", "runs"]
                        .iter()
                        .any(|t| l.contains(&format!("Seq Scan on {t} ")))
                })
                .map(|l| l.trim().to_string())
        });
        if let Some(line) = whole {
            over.push(format!("{name} scans a whole table: {line}"));
        }
        for _ in 0..3 {
            c.simple_query(sql).map_err(pg)?;
        }
        let mut ms = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            c.simple_query(sql).map_err(pg)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let lat = Latencies::of_sorted(&ms);
        if lat.p50 > BUDGET_MS {
            over.push(format!(
                "{name}: median {} ms > {BUDGET_MS} ms",
                fmt_num(lat.p50)
            ));
        }
        let mut kv = Kv::new();
        kv.add("query", *name)
            .add("completed_tasks", kept)
            .add("hours", hours)
            .add("load_s", load_s);
        lat.add_to(&mut kv);
        ctx.emit("observe", &kv);
        ctx.outcomes.push(Outcome {
            workload: "observe".into(),
            params: format!("{name}, {kept} completed tasks"),
            figure: lat.figure(),
            throughput: None,
        });
    }
    if over.is_empty() {
        Ok(())
    } else {
        Err(over.join("; "))
    }
}
