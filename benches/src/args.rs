//! Command-line options. Hand-rolled to keep the dependency list short.

pub const USAGE: &str = "\
pgflow-bench: benchmarks of pgflow_core, run as a client with several connections

USAGE:
    pgflow-bench [WORKLOAD] [OPTIONS]

WORKLOADS (positional or --workload):
    dag       flow a -> (b, c) -> d; R runs started up front, then W workers drain them
    map       root map step over N elements plus a dependent single step; one run, W workers
    latency   single-step flow started at a steady rate; start_flow -> complete_task latency
    queue     raw pgmq: send_batch M messages, then W consumers read + archive
    limit     pgbench with benches/limit.sql: the minimum durable work per task
    sql-adhoc   2 x R ad-hoc `select 0` tasks (push_sql_batch) run by the executors in a pool of W
    sql-flow    R runs of a one-step flow with a SQL handler (`SELECT 1`), pool of W
    sql-dag     R runs of a three-step chain of SQL steps, pool of W
    sql-map     one run of a SQL map over the largest N of --elements, pool of W (1,4)
    sql-latency one-step SQL flow started at --rate for --seconds: start_flow -> handler end
    sql       the five sql-* workloads (the server must run executors for the database)
    all       everything above, then a summary table (default)
    observe   flow_stats, failing_and_stalled_tasks, explain_run and the pictures with 1,000,000
              completed tasks kept (--quick: 100,000); fails on a median over 50 ms or a whole-table
              scan. Not part of all: it leaves the tasks in the database

OPTIONS:
    --dsn DSN            connection string (default: host=localhost port=5444 user=postgres dbname=pgflow_bench)
    --workers LIST       worker / client counts, comma separated (defaults: dag 1,4,8; map 1,4;
                         latency 4; queue 1,4,8; limit 1,4,8)
    --runs N             dag: runs per round (default 1000)
    --elements LIST      map: array sizes (default 1000,10000)
    --rate N             latency: start_flow calls per second (default 50)
    --seconds N          latency: how long the starter runs (default 10)
    --poll-ms LIST       latency: poll_interval_ms values (default 100,10)
    --latency-qty N      latency: qty of each read_with_poll (default 10)
    --messages N         queue: messages sent per round (default 100000)
    --limit-seconds N    limit: pgbench -T (default 10)
    --pgbench PATH       pgbench binary (default /usr/lib/postgresql/15/bin/pgbench)
    --limit-script PATH  pgbench script (default: limit.sql beside this crate's Cargo.toml)
    --timeout SECS       give up on a round after this long (default 300)
    --quick              small sizes, for a smoke test
    --soak N             soak mode: complete N tasks with the dag workload in rounds of --runs runs
                         (W = first --workers value, default 4); prints tasks/s and table sizes per
                         round and verifies each round's runs as soon as it ends
    --prune SECS         soak: prune like a scheduled job, every --prune-every seconds calling
                         pgflow.prune_data_older_than(SECS seconds); SECS at least 60
    --prune-every SECS   soak: seconds between two prunes (default 10)
    --slow-ms N          print every start_tasks / complete_task call (and queue read / archive)
                         that takes at least N ms, to stderr
    --json               also print one JSON object per result
    --cleanup            delete the benchmark's flows, queues and table after verification
    --priorities         dag: start runs with pgflow.start_run and priorities 0-3 (one in four
                         runs has 0), so that the flow's queue is read in priority order
    -h, --help           this text

Every result ends in a line `RESULT workload=<name> key=value ...`. At the end every run is
checked (completed, right number of tasks, each task started once); the exit status is non-zero
if a check or a round failed.";

#[derive(Debug, Clone)]
pub struct Opts {
    pub dsn: String,
    pub workload: String,
    pub workers: Option<Vec<usize>>,
    pub runs: usize,
    pub elements: Vec<usize>,
    pub rate: f64,
    pub seconds: f64,
    pub poll_ms: Vec<i32>,
    pub latency_qty: i32,
    pub messages: usize,
    pub limit_seconds: u32,
    pub pgbench: String,
    pub limit_script: String,
    pub timeout: f64,
    pub slow_ms: u64,
    pub quick: bool,
    pub soak: Option<u64>,
    pub prune: Option<f64>,
    pub prune_every: f64,
    pub json: bool,
    pub cleanup: bool,
    pub priorities: bool,
    pub help: bool,
}

impl Opts {
    /// Worker counts for a workload: `--workers` if given, else the workload's default.
    pub fn workers_for(&self, workload: &str) -> Vec<usize> {
        if let Some(w) = &self.workers {
            return w.clone();
        }
        match workload {
            "map" | "sql-map" => vec![1, 4],
            "latency" => vec![4],
            _ => vec![1, 4, 8],
        }
    }
}

#[derive(Default)]
struct Raw {
    dsn: Option<String>,
    workload: Option<String>,
    workers: Option<Vec<usize>>,
    runs: Option<usize>,
    elements: Option<Vec<usize>>,
    rate: Option<f64>,
    seconds: Option<f64>,
    poll_ms: Option<Vec<i32>>,
    latency_qty: Option<i32>,
    messages: Option<usize>,
    limit_seconds: Option<u32>,
    pgbench: Option<String>,
    limit_script: Option<String>,
    timeout: Option<f64>,
    slow_ms: Option<u64>,
    quick: bool,
    soak: Option<u64>,
    prune: Option<f64>,
    prune_every: Option<f64>,
    json: bool,
    cleanup: bool,
    priorities: bool,
    help: bool,
}

const WORKLOADS: &[&str] = &[
    "dag",
    "map",
    "latency",
    "queue",
    "limit",
    "sql-adhoc",
    "sql-flow",
    "sql-dag",
    "sql-map",
    "sql-latency",
    "sql",
    "observe",
    "all",
];

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: not a valid number: {v:?}"))
}

fn list<T: std::str::FromStr>(flag: &str, v: &str) -> Result<Vec<T>, String> {
    let out: Result<Vec<T>, String> = v
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| num(flag, s.trim()))
        .collect();
    let out = out?;
    if out.is_empty() {
        return Err(format!("{flag}: empty list"));
    }
    Ok(out)
}

pub fn parse(args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut raw = Raw::default();
    let mut it = args.peekable();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            it.next().ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => raw.help = true,
            "--quick" => raw.quick = true,
            "--json" => raw.json = true,
            "--cleanup" => raw.cleanup = true,
            "--priorities" => raw.priorities = true,
            "--dsn" => raw.dsn = Some(value("--dsn")?),
            "--workload" => raw.workload = Some(value("--workload")?),
            "--workers" => raw.workers = Some(list("--workers", &value("--workers")?)?),
            "--runs" => raw.runs = Some(num("--runs", &value("--runs")?)?),
            "--elements" => raw.elements = Some(list("--elements", &value("--elements")?)?),
            "--rate" => raw.rate = Some(num("--rate", &value("--rate")?)?),
            "--seconds" => raw.seconds = Some(num("--seconds", &value("--seconds")?)?),
            "--poll-ms" => raw.poll_ms = Some(list("--poll-ms", &value("--poll-ms")?)?),
            "--latency-qty" => {
                raw.latency_qty = Some(num("--latency-qty", &value("--latency-qty")?)?)
            }
            "--messages" => raw.messages = Some(num("--messages", &value("--messages")?)?),
            "--limit-seconds" => {
                raw.limit_seconds = Some(num("--limit-seconds", &value("--limit-seconds")?)?)
            }
            "--pgbench" => raw.pgbench = Some(value("--pgbench")?),
            "--limit-script" => raw.limit_script = Some(value("--limit-script")?),
            "--timeout" => raw.timeout = Some(num("--timeout", &value("--timeout")?)?),
            "--slow-ms" => raw.slow_ms = Some(num("--slow-ms", &value("--slow-ms")?)?),
            "--soak" => raw.soak = Some(num("--soak", &value("--soak")?)?),
            "--prune" => raw.prune = Some(num("--prune", &value("--prune")?)?),
            "--prune-every" => {
                raw.prune_every = Some(num("--prune-every", &value("--prune-every")?)?)
            }
            s if !s.starts_with('-') && inline.is_none() => raw.workload = Some(s.to_string()),
            s => return Err(format!("unknown option {s:?}")),
        }
    }

    let workload = raw.workload.unwrap_or_else(|| "all".to_string());
    if !WORKLOADS.contains(&workload.as_str()) {
        return Err(format!(
            "unknown workload {workload:?} (one of {})",
            WORKLOADS.join(", ")
        ));
    }
    if raw.workers.as_ref().is_some_and(|w| w.contains(&0)) {
        return Err("--workers: counts must be at least 1".into());
    }
    let q = raw.quick;
    let opts = Opts {
        dsn: raw
            .dsn
            .unwrap_or_else(|| "host=localhost port=5444 user=postgres dbname=pgflow_bench".into()),
        workload,
        workers: raw.workers,
        runs: raw.runs.unwrap_or(if q { 100 } else { 1000 }),
        elements: raw
            .elements
            .unwrap_or_else(|| if q { vec![100, 500] } else { vec![1000, 10000] }),
        rate: raw.rate.unwrap_or(if q { 20.0 } else { 50.0 }),
        seconds: raw.seconds.unwrap_or(if q { 3.0 } else { 10.0 }),
        poll_ms: raw.poll_ms.unwrap_or_else(|| vec![100, 10]),
        latency_qty: raw.latency_qty.unwrap_or(10),
        messages: raw.messages.unwrap_or(if q { 5000 } else { 100_000 }),
        limit_seconds: raw.limit_seconds.unwrap_or(if q { 3 } else { 10 }),
        pgbench: raw
            .pgbench
            .unwrap_or_else(|| "/usr/lib/postgresql/15/bin/pgbench".into()),
        limit_script: raw
            .limit_script
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/limit.sql").into()),
        timeout: raw.timeout.unwrap_or(300.0),
        slow_ms: raw.slow_ms.unwrap_or(0),
        quick: q,
        soak: raw.soak,
        prune: raw.prune,
        prune_every: raw.prune_every.unwrap_or(10.0),
        json: raw.json,
        cleanup: raw.cleanup,
        priorities: raw.priorities,
        help: raw.help,
    };
    if opts.runs == 0 || opts.messages == 0 || opts.rate <= 0.0 || opts.seconds <= 0.0 {
        return Err("--runs, --messages, --rate and --seconds must be positive".into());
    }
    if opts.elements.contains(&0) || opts.poll_ms.iter().any(|&p| p <= 0) {
        return Err("--elements and --poll-ms must be positive".into());
    }
    // Each round is verified when it ends; a shorter retention could prune its runs first.
    if opts.prune.is_some_and(|p| p < 60.0) || opts.prune_every <= 0.0 {
        return Err("--prune must be at least 60 and --prune-every positive".into());
    }
    if opts.prune.is_some() && opts.soak.is_none() {
        return Err("--prune only applies to --soak".into());
    }
    if !(1..=1000).contains(&opts.latency_qty) {
        return Err("--latency-qty must be between 1 and 1000".into());
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Opts, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_overrides() {
        let o = p("").unwrap();
        assert_eq!(o.workload, "all");
        assert_eq!(o.runs, 1000);
        assert_eq!(o.workers_for("dag"), vec![1, 4, 8]);
        assert_eq!(o.workers_for("map"), vec![1, 4]);
        let o = p("dag --workers 2,3 --runs=50 --quick").unwrap();
        assert_eq!(o.workload, "dag");
        assert_eq!(o.runs, 50);
        assert_eq!(o.workers_for("map"), vec![2, 3]);
        assert_eq!(o.messages, 5000);
        assert!(p("nosuch").is_err());
        assert!(p("--workers 0").is_err());
        assert!(p("--bogus").is_err());
        let o = p("--soak 1000 --prune 90").unwrap();
        assert_eq!(
            (o.soak, o.prune, o.prune_every),
            (Some(1000), Some(90.0), 10.0)
        );
        assert!(p("--soak 1000 --prune 30").is_err());
        assert!(p("--prune 90").is_err());
    }
}
