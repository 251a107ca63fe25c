//! Workloads of steps run by the database itself (SQL handlers), executed by the extension's
//! executors, with no client worker: sql-adhoc, sql-flow, sql-dag, sql-map and sql-latency.
//!
//! Each throughput round puts its flow (or the ad-hoc flow) in a pool of P slots (P = 1, 4, 8 by
//! default, `--workers`), queues all its work in one transaction, and measures from that commit
//! until no run of the round is left running (polled every 5 ms). The server must run at least
//! P executors for the database (`pgflow.executors`, `pgflow.worker_databases`; scripts/bench.sh
//! sets them).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::Client;

use crate::report::{Kv, Outcome, fmt_num};
use crate::stats::Latencies;
use crate::{Check, Ctx, pg};

/// pgasync's figures on a machine like ours (tasks/s of 2,000 queued `select 0` tasks, the top
/// of its range), by pool size: the reference for the ad-hoc workload.
fn pgasync_tasks_per_s(pool: usize) -> Option<f64> {
    match pool {
        1 => Some(299.0),
        4 => Some(640.0),
        8 => Some(814.0),
        _ => None,
    }
}

/// Refuses to start when fewer than `needed` executors serve the database.
fn check_executors(c: &mut Client, needed: usize) -> Result<(), String> {
    let running: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'pgflow_core executor' AND datname = current_database()",
            &[],
        )
        .map(|r| r.get(0))
        .map_err(pg)?;
    if (running as usize) < needed {
        return Err(format!(
            "{running} executors serve this database, the round needs {needed}: set pgflow.executors \
             and pgflow.worker_databases (scripts/bench.sh does)"
        ));
    }
    Ok(())
}

/// A pool of `size` slots for this round.
fn pool(ctx: &mut Ctx, c: &mut Client, size: usize) -> Result<String, String> {
    let name = ctx.name(&format!("pool{size}"));
    c.execute(
        "SELECT pgflow.create_pool($1, $2)",
        &[&name, &(size as i32)],
    )
    .map_err(pg)?;
    Ok(name)
}

/// Waits until no run of `slug` is left running; returns the seconds since `since`.
fn wait_done(ctx: &Ctx, c: &mut Client, slug: &str, since: Instant) -> Result<f64, String> {
    let deadline = since + Duration::from_secs_f64(ctx.opts.timeout);
    let stmt = c
        .prepare(
            "SELECT EXISTS (SELECT 1 FROM pgflow.runs WHERE flow_slug = $1 AND status = 'started')",
        )
        .map_err(pg)?;
    loop {
        let running: bool = c.query_one(&stmt, &[&slug]).map(|r| r.get(0)).map_err(pg)?;
        if !running {
            return Ok(since.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "runs of {slug} still running after {} s",
                ctx.opts.timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A flow of `steps` single steps in a chain (or one map step with `map`), each with a trivial
/// SQL handler, in `pool`.
fn create_flow(
    c: &mut Client,
    slug: &str,
    steps: &[&str],
    map: bool,
    pool: &str,
) -> Result<(), String> {
    c.execute("SELECT pgflow.create_flow($1)", &[&slug])
        .map_err(pg)?;
    let mut previous: Option<&str> = None;
    for step in steps {
        let deps: Vec<&str> = previous.into_iter().collect();
        let step_type = if map { "map" } else { "single" };
        c.execute(
            "SELECT pgflow.add_step($1, $2, $3, step_type => $4)",
            &[&slug, step, &deps, &step_type],
        )
        .map_err(pg)?;
        let statement = if map { "SELECT $1" } else { "SELECT 1" };
        c.execute(
            "SELECT pgflow.set_sql_handler($1, $2, $3)",
            &[&slug, step, &statement],
        )
        .map_err(pg)?;
        previous = Some(step);
    }
    c.execute("SELECT pgflow.set_pool($1, $2)", &[&slug, &pool])
        .map_err(pg)?;
    Ok(())
}

fn throughput_outcome(
    ctx: &mut Ctx,
    workload: &str,
    params: String,
    tasks: usize,
    wall: f64,
    pool: usize,
    extra: String,
) {
    let per_s = tasks as f64 / wall;
    ctx.outcomes.push(Outcome {
        workload: workload.into(),
        params,
        figure: format!("{} tasks/s{extra}", fmt_num(per_s)),
        throughput: Some((per_s, pool)),
    });
}

/// 2,000 (`--runs` x 2) ad-hoc `select 0` tasks queued at once, run in a pool of P.
pub fn adhoc(ctx: &mut Ctx, pool_size: usize) -> Result<(), String> {
    let tasks = ctx.opts.runs * 2;
    let mut c = ctx.connect()?;
    check_executors(&mut c, pool_size)?;
    // The ad-hoc flow exists once something was pushed.
    c.execute("SELECT pgflow.push_sql('select 0')", &[])
        .map_err(pg)?;
    wait_done(ctx, &mut c, "pgflow_adhoc", Instant::now())?;
    let pool = pool(ctx, &mut c, pool_size)?;
    c.execute("SELECT pgflow.set_pool('pgflow_adhoc', $1)", &[&pool])
        .map_err(pg)?;
    let statements: Vec<String> = (0..tasks).map(|_| "select 0".to_string()).collect();

    let t = Instant::now();
    let ids: Vec<uuid::Uuid> = c
        .query("SELECT pgflow.push_sql_batch($1)", &[&statements])
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let committed = Instant::now();
    let queue_s = (committed - t).as_secs_f64();
    let wall = wait_done(ctx, &mut c, "pgflow_adhoc", committed)?;
    let ok: i64 = c
        .query_one(
            "SELECT count(*) FROM pgflow.runs r JOIN pgflow.step_tasks t USING (run_id)
             WHERE r.run_id = ANY($1) AND r.status = 'completed' AND t.attempts_count = 1",
            &[&ids],
        )
        .map(|r| r.get(0))
        .map_err(pg)?;
    if ok as usize != tasks {
        return Err(format!(
            "{ok} of {tasks} ad-hoc runs completed at their first attempt"
        ));
    }
    let per_s = tasks as f64 / wall;
    let mut kv = Kv::new();
    kv.add("pool", pool_size)
        .add("tasks", tasks)
        .add("queue_s", queue_s)
        .add("wall_s", wall)
        .add("tasks_per_s", per_s);
    let vs = pgasync_tasks_per_s(pool_size).map(|p| per_s / p);
    if let Some(x) = vs {
        kv.add("x_pgasync", x);
    }
    ctx.emit("sql-adhoc", &kv);
    let extra = vs
        .map(|x| format!(" ({}x pgasync)", fmt_num(x)))
        .unwrap_or_default();
    throughput_outcome(
        ctx,
        "sql-adhoc",
        format!("tasks={tasks} pool={pool_size}"),
        tasks,
        wall,
        pool_size,
        extra,
    );
    c.execute("SELECT pgflow.set_pool('pgflow_adhoc', NULL)", &[])
        .map_err(pg)?;
    Ok(())
}

/// `--runs` runs of a flow of `steps` chained SQL steps, started in one transaction, in a pool
/// of P.
pub fn chain(
    ctx: &mut Ctx,
    workload: &str,
    steps: &[&str],
    pool_size: usize,
) -> Result<(), String> {
    let runs = ctx.opts.runs;
    let slug = ctx.name(&format!("{}_p{pool_size}", workload.replace('-', "_")));
    let mut c = ctx.connect()?;
    check_executors(&mut c, pool_size)?;
    let pool = pool(ctx, &mut c, pool_size)?;
    create_flow(&mut c, &slug, steps, false, &pool)?;
    ctx.checks.push(Check::Flow {
        workload: workload.into(),
        slug: slug.clone(),
        runs: runs as i64,
        tasks_per_run: steps.len() as i64,
    });
    let t = Instant::now();
    c.execute(
        "SELECT count(*) FROM (SELECT pgflow.start_flow($1, '{}') FROM generate_series(1, $2)) s",
        &[&slug, &(runs as i32)],
    )
    .map_err(pg)?;
    let committed = Instant::now();
    let queue_s = (committed - t).as_secs_f64();
    let wall = wait_done(ctx, &mut c, &slug, committed)?;
    let tasks = runs * steps.len();
    let mut kv = Kv::new();
    kv.add("pool", pool_size)
        .add("runs", runs)
        .add("tasks", tasks)
        .add("start_s", queue_s)
        .add("wall_s", wall)
        .add("runs_per_s", runs as f64 / wall)
        .add("tasks_per_s", tasks as f64 / wall);
    ctx.emit(workload, &kv);
    throughput_outcome(
        ctx,
        workload,
        format!("runs={runs} steps={} pool={pool_size}", steps.len()),
        tasks,
        wall,
        pool_size,
        format!(" ({} runs/s)", fmt_num(runs as f64 / wall)),
    );
    Ok(())
}

/// One run of a SQL map over N elements in a pool of P; returns the seconds to completion.
pub fn map(ctx: &mut Ctx, elements: usize, pool_size: usize) -> Result<f64, String> {
    let slug = ctx.name(&format!("sqlmap_n{elements}_p{pool_size}"));
    let mut c = ctx.connect()?;
    check_executors(&mut c, pool_size)?;
    let pool = pool(ctx, &mut c, pool_size)?;
    create_flow(&mut c, &slug, &["items"], true, &pool)?;
    ctx.checks.push(Check::Flow {
        workload: "sql-map".into(),
        slug: slug.clone(),
        runs: 1,
        tasks_per_run: elements as i64,
    });
    let input =
        serde_json::Value::Array((0..elements as i64).map(serde_json::Value::from).collect());
    let t = Instant::now();
    c.execute("SELECT pgflow.start_flow($1, $2::jsonb)", &[&slug, &input])
        .map_err(pg)?;
    let committed = Instant::now();
    let start_ms = (committed - t).as_secs_f64() * 1000.0;
    let wall = wait_done(ctx, &mut c, &slug, committed)?;
    let mut kv = Kv::new();
    kv.add("elements", elements)
        .add("pool", pool_size)
        .add("start_flow_ms", start_ms)
        .add("completion_s", wall)
        .add("tasks_per_s", elements as f64 / wall);
    ctx.emit("sql-map", &kv);
    throughput_outcome(
        ctx,
        "sql-map",
        format!("N={elements} pool={pool_size}"),
        elements,
        wall,
        pool_size,
        format!(
            " (start_flow {} ms, run done in {} s)",
            fmt_num(start_ms),
            fmt_num(wall)
        ),
    );
    Ok(wall)
}

/// A one-step SQL flow started at `--rate` runs per second for `--seconds`: the time from the
/// start_flow call to the end of the run's handler, which stamps clock_timestamp() as its
/// output just before the executor commits.
pub fn latency(ctx: &mut Ctx) -> Result<(), String> {
    let (rate, seconds) = (ctx.opts.rate, ctx.opts.seconds);
    let slug = ctx.name("sqllat");
    let mut c = ctx.connect()?;
    check_executors(&mut c, 1)?;
    c.execute("SELECT pgflow.create_flow($1)", &[&slug])
        .map_err(pg)?;
    c.execute("SELECT pgflow.add_step($1, 'stamp')", &[&slug])
        .map_err(pg)?;
    c.execute(
        "SELECT pgflow.set_sql_handler($1, 'stamp', 'SELECT extract(epoch FROM clock_timestamp())::float8')",
        &[&slug],
    )
    .map_err(pg)?;
    let runs = (rate * seconds).round() as usize;
    ctx.checks.push(Check::Flow {
        workload: "sql-latency".into(),
        slug: slug.clone(),
        runs: runs as i64,
        tasks_per_run: 1,
    });
    let start = c
        .prepare("SELECT run_id FROM pgflow.start_flow($1, '{}')")
        .map_err(pg)?;
    let t0 = Instant::now();
    let mut started: Vec<(uuid::Uuid, f64)> = Vec::with_capacity(runs);
    for i in 0..runs {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let run: uuid::Uuid = c
            .query_one(&start, &[&slug])
            .map(|r| r.get(0))
            .map_err(pg)?;
        started.push((run, at));
    }
    wait_done(ctx, &mut c, &slug, Instant::now())?;
    let ids: Vec<uuid::Uuid> = started.iter().map(|s| s.0).collect();
    let rows = c
        .query(
            "SELECT run_id, (output->>'stamp')::float8 FROM pgflow.runs WHERE run_id = ANY($1)",
            &[&ids],
        )
        .map_err(pg)?;
    let ends: std::collections::HashMap<uuid::Uuid, f64> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut ms: Vec<f64> = started
        .iter()
        .filter_map(|(id, at)| ends.get(id).map(|end| (end - at) * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    let latencies = Latencies::of_sorted(&ms);
    let mut kv = Kv::new();
    kv.add("rate", rate).add("runs", runs);
    latencies.add_to(&mut kv);
    ctx.emit("sql-latency", &kv);
    ctx.outcomes.push(Outcome {
        workload: "sql-latency".into(),
        params: format!("rate={rate}/s runs={runs}"),
        figure: latencies.figure(),
        throughput: None,
    });
    Ok(())
}

/// Reports the map speed-up of the largest pool over a pool of one.
pub fn map_speedup(ctx: &mut Ctx, elements: usize, walls: &[(usize, f64)]) {
    let one = walls.iter().find(|(p, _)| *p == 1).map(|w| w.1);
    let most = walls.iter().max_by_key(|(p, _)| *p);
    if let (Some(one), Some(&(p, wall))) = (one, most)
        && p > 1
    {
        let mut kv = Kv::new();
        kv.add("elements", elements)
            .add("pool", p)
            .add("speedup_vs_pool_1", one / wall);
        ctx.emit("sql-map-speedup", &kv);
        ctx.outcomes.push(Outcome {
            workload: "sql-map".into(),
            params: format!("N={elements} pool={p} vs 1"),
            figure: format!("{}x as fast", fmt_num(one / wall)),
            throughput: None,
        });
    }
}
