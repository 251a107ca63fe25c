//! pgflow-bench: a client-side benchmark of pgflow_core.
//!
//! It runs outside the server with several connections, each statement in its own transaction
//! (autocommit), the way pgflow workers and pgmq consumers talk to the database. See
//! `pgflow-bench --help` and benches/README.md.

mod args;
mod flows;
mod limit;
mod observe;
mod queue;
mod report;
mod sql;
mod stats;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::{Client, Config, NoTls};

use args::Opts;
use report::{Kv, Outcome};

/// A check done at the end, after every workload has run.
pub enum Check {
    /// Every run of `slug` completed, `runs` of them, each with `tasks_per_run` tasks, each
    /// task completed and started exactly once; the flow's queue is empty.
    Flow {
        workload: String,
        slug: String,
        runs: i64,
        tasks_per_run: i64,
    },
    /// `messages` messages went through queue `queue` and all of them are archived.
    Queue { queue: String, messages: i64 },
}

pub struct Ctx {
    pub opts: Opts,
    tag: String,
    seq: u32,
    pub outcomes: Vec<Outcome>,
    pub checks: Vec<Check>,
    pub errors: Vec<String>,
    /// Checks done during a workload (soak rounds), and how many of them failed.
    pub inline_checks: usize,
    pub inline_failed: usize,
    /// Flows verified inline, deleted by --cleanup like those of `checks`.
    pub inline_flows: Vec<String>,
    /// Whether the limit table has been (re)created in this process.
    pub limit_ready: bool,
}

impl Ctx {
    fn new(opts: Opts) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Ctx {
            opts,
            tag: base36(millis as u64),
            seq: 0,
            outcomes: Vec::new(),
            checks: Vec::new(),
            errors: Vec::new(),
            inline_checks: 0,
            inline_failed: 0,
            inline_flows: Vec::new(),
            limit_ready: false,
        }
    }

    /// A flow slug / queue name not used before: `b<tag>_<seq>_<kind>` (lower case, < 48 chars).
    pub fn name(&mut self, kind: &str) -> String {
        self.seq += 1;
        format!("b{}_{}_{}", self.tag, self.seq, kind)
    }

    pub fn connect(&self) -> Result<Client, String> {
        connect(&self.opts.dsn)
    }

    /// Prints the RESULT line (and JSON) of a round.
    pub fn emit(&self, workload: &str, kv: &Kv) {
        report::emit(workload, kv, self.opts.json);
    }
}

pub fn connect(dsn: &str) -> Result<Client, String> {
    let mut cfg: Config = dsn.parse().map_err(|e| format!("bad --dsn {dsn:?}: {e}"))?;
    if cfg.get_application_name().is_none() {
        cfg.application_name("pgflow-bench");
    }
    cfg.connect(NoTls)
        .map_err(|e| format!("cannot connect to {dsn:?}: {}", pg(e)))
}

/// Turns a postgres error into a string with the server's message when there is one.
pub fn pg(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn base36(mut v: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Runs one round; a failure is recorded and the next round goes on.
fn round(ctx: &mut Ctx, what: &str, f: impl FnOnce(&mut Ctx) -> Result<(), String>) {
    if let Err(e) = f(ctx) {
        eprintln!("ERROR {what}: {e}");
        println!(
            "RESULT workload={} status=error",
            what.split_whitespace().next().unwrap_or(what)
        );
        ctx.errors.push(format!("{what}: {e}"));
    }
}

fn run_workload(ctx: &mut Ctx, workload: &str) {
    let o = ctx.opts.clone();
    match workload {
        "dag" => {
            for w in o.workers_for("dag") {
                round(ctx, &format!("dag W={w}"), |c| flows::dag(c, o.runs, w));
            }
        }
        "map" => {
            for &n in &o.elements {
                for w in o.workers_for("map") {
                    round(ctx, &format!("map N={n} W={w}"), |c| flows::map(c, n, w));
                }
            }
        }
        "latency" => {
            for &p in &o.poll_ms {
                for w in o.workers_for("latency") {
                    round(ctx, &format!("latency poll={p}ms W={w}"), |c| {
                        flows::latency(c, w, p)
                    });
                }
            }
        }
        "queue" => {
            for w in o.workers_for("queue") {
                round(ctx, &format!("queue W={w}"), |c| {
                    queue::run(c, o.messages, w)
                });
            }
        }
        "limit" => {
            for w in o.workers_for("limit") {
                round(ctx, &format!("limit W={w}"), |c| limit::run(c, w));
            }
        }
        "sql-adhoc" => {
            for p in o.workers_for("sql-adhoc") {
                round(ctx, &format!("sql-adhoc pool={p}"), |c| sql::adhoc(c, p));
            }
        }
        "sql-flow" => {
            for p in o.workers_for("sql-flow") {
                round(ctx, &format!("sql-flow pool={p}"), |c| {
                    sql::chain(c, "sql-flow", &["only"], p)
                });
            }
        }
        "sql-dag" => {
            for p in o.workers_for("sql-dag") {
                round(ctx, &format!("sql-dag pool={p}"), |c| {
                    sql::chain(c, "sql-dag", &["a", "b", "c"], p)
                });
            }
        }
        "sql-map" => {
            let n = o.elements.iter().copied().max().unwrap_or(10000);
            let mut walls = Vec::new();
            for p in o.workers_for("sql-map") {
                round(ctx, &format!("sql-map N={n} pool={p}"), |c| {
                    walls.push((p, sql::map(c, n, p)?));
                    Ok(())
                });
            }
            sql::map_speedup(ctx, n, &walls);
        }
        "sql-latency" => round(ctx, "sql-latency", sql::latency),
        "observe" => round(ctx, "observe", observe::run),
        "sql" => {
            for w in ["sql-adhoc", "sql-flow", "sql-dag", "sql-map", "sql-latency"] {
                run_workload(ctx, w);
            }
        }
        "all" => {
            for w in ["dag", "map", "latency", "queue", "limit", "sql"] {
                run_workload(ctx, w);
            }
        }
        other => ctx.errors.push(format!("unknown workload {other}")),
    }
}

/// Checks every run / queue the benchmark created. Returns the number of failed checks.
fn verify(ctx: &Ctx) -> Result<usize, String> {
    if ctx.checks.is_empty() {
        return Ok(0);
    }
    let mut c = ctx.connect()?;
    let mut failed = 0;
    println!();
    for check in &ctx.checks {
        let ok = match check {
            Check::Flow {
                workload,
                slug,
                runs,
                tasks_per_run,
            } => verify_runs(&mut c, workload, slug, *runs, *tasks_per_run, None)?,
            Check::Queue { queue, messages } => {
                let left: i64 = c
                    .query_one("SELECT queue_length FROM pgmq.metrics($1)", &[queue])
                    .map(|r| r.get(0))
                    .map_err(pg)?;
                let archived: i64 = c
                    .query_one(&format!("SELECT count(*) FROM pgmq.\"a_{queue}\""), &[])
                    .map(|r| r.get(0))
                    .map_err(pg)?;
                let ok = left == 0 && archived == *messages;
                println!(
                    "VERIFY workload=queue queue={queue} archived={archived}/{messages} left={left} -> {}",
                    if ok { "OK" } else { "FAILED" }
                );
                ok
            }
        };
        if !ok {
            failed += 1;
        }
    }
    Ok(failed)
}

/// Checks the runs of flow `slug` (only those whose input `n` lies in `range`, when given):
/// `runs` of them, all completed, each with `tasks_per_run` tasks, each task completed and
/// started exactly once, and the flow's queue empty. Prints a VERIFY line; true when all hold.
pub fn verify_runs(
    c: &mut Client,
    workload: &str,
    slug: &str,
    runs: i64,
    tasks_per_run: i64,
    range: Option<(i64, i64)>,
) -> Result<bool, String> {
    let (lo, hi) = range.unzip();
    let row = c
        .query_one(
            "SELECT count(*), \
                    count(*) FILTER (WHERE r.status = 'completed'), \
                    count(*) FILTER (WHERE coalesce(t.n, 0) <> $2), \
                    coalesce(sum(t.bad), 0)::bigint, \
                    coalesce(sum(t.n), 0)::bigint \
             FROM pgflow.runs r \
             LEFT JOIN LATERAL ( \
                 SELECT count(*) AS n, \
                        count(*) FILTER (WHERE st.attempts_count <> 1 \
                                            OR st.status <> 'completed') AS bad \
                 FROM pgflow.step_tasks st WHERE st.run_id = r.run_id) t ON true \
             WHERE r.flow_slug = $1 \
               AND ($3::bigint IS NULL OR (r.input->>'n')::bigint BETWEEN $3 AND $4)",
            &[&slug, &tasks_per_run, &lo, &hi],
        )
        .map_err(pg)?;
    let (n, completed, wrong, bad, tasks): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let left: i64 = c
        .query_one("SELECT queue_length FROM pgmq.metrics($1)", &[&slug])
        .map(|r| r.get(0))
        .map_err(pg)?;
    let ok = n == runs && completed == n && wrong == 0 && bad == 0 && left == 0;
    let which = range.map_or(String::new(), |(lo, hi)| format!(" inputs={lo}..={hi}"));
    println!(
        "VERIFY workload={workload} flow={slug}{which} runs={n}/{runs} completed={completed} \
         tasks={tasks} runs_with_wrong_task_count={wrong} tasks_not_completed_once={bad} \
         messages_left={left} -> {}",
        if ok { "OK" } else { "FAILED" }
    );
    Ok(ok)
}

/// Deletes what the benchmark created (only with --cleanup).
fn cleanup(ctx: &Ctx) -> Result<(), String> {
    let mut c = ctx.connect()?;
    let flows = ctx.checks.iter().filter_map(|check| match check {
        Check::Flow { slug, .. } => Some(slug),
        Check::Queue { .. } => None,
    });
    for slug in flows.chain(&ctx.inline_flows) {
        c.execute("SELECT pgflow.delete_flow_and_data($1)", &[slug])
            .map_err(pg)?;
        // Worker rows are not part of a flow's data.
        c.execute("DELETE FROM pgflow.workers WHERE queue_name = $1", &[slug])
            .map_err(pg)?;
    }
    for check in &ctx.checks {
        if let Check::Queue { queue, .. } = check {
            c.execute("SELECT pgmq.drop_queue($1)", &[queue])
                .map_err(pg)?;
        }
    }
    if ctx.limit_ready {
        c.batch_execute("DROP TABLE IF EXISTS bench_limit_tasks")
            .map_err(pg)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = match args::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pgflow-bench: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if opts.help {
        println!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    stats::SLOW_MS.store(opts.slow_ms, std::sync::atomic::Ordering::Relaxed);
    let mut ctx = Ctx::new(opts);
    // Fail early and clearly when the database is not reachable or lacks the extension.
    match ctx.connect().and_then(|mut c| {
        c.query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pgflow_core'",
            &[],
        )
        .map(|r| r.get::<_, String>(0))
        .map_err(|e| format!("pgflow_core is not installed in that database ({})", pg(e)))
    }) {
        Ok(v) => println!(
            "# pgflow-bench: dsn={:?} pgflow_core {v}{}",
            ctx.opts.dsn,
            if ctx.opts.quick { " (quick)" } else { "" }
        ),
        Err(e) => {
            eprintln!("pgflow-bench: {e}");
            return ExitCode::from(2);
        }
    }

    if let Some(n) = ctx.opts.soak {
        let w = ctx
            .opts
            .workers
            .as_ref()
            .and_then(|v| v.first().copied())
            .unwrap_or(4);
        let runs = ctx.opts.runs;
        round(&mut ctx, &format!("soak W={w}"), |c| {
            flows::soak(c, n, runs, w)
        });
    } else {
        let w = ctx.opts.workload.clone();
        run_workload(&mut ctx, &w);
    }

    let failed_checks = match verify(&ctx) {
        Ok(n) => n + ctx.inline_failed,
        Err(e) => {
            ctx.errors.push(format!("verification: {e}"));
            1
        }
    };
    if ctx.opts.cleanup
        && let Err(e) = cleanup(&ctx)
    {
        eprintln!("cleanup failed: {e}");
    }
    report::print_table(&ctx.outcomes);
    for e in &ctx.errors {
        println!("ERROR {e}");
    }
    if failed_checks == 0 && ctx.errors.is_empty() {
        println!(
            "verification: OK ({} checks)",
            ctx.checks.len() + ctx.inline_checks
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "verification: FAILED ({failed_checks} of {} checks failed, {} rounds with errors)",
            ctx.checks.len() + ctx.inline_checks,
            ctx.errors.len()
        );
        ExitCode::FAILURE
    }
}
