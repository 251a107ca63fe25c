//! Shared helpers for the client tests of pgflow_core's pgmq layer.
//!
//! Every test opens its own connections (to `PGFLOW_TEST_DSN`) and works on queues whose names
//! are unique to the test, so the tests of one binary can run in parallel threads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

pub use postgres::{Client, NoTls};

/// The default DSN used when `PGFLOW_TEST_DSN` is not set.
pub const DEFAULT_DSN: &str = "host=localhost port=5439 user=postgres dbname=pgflow_client_test";

/// The connection string of the test database.
pub fn dsn() -> String {
    std::env::var("PGFLOW_TEST_DSN").unwrap_or_else(|_| DEFAULT_DSN.to_string())
}

/// A new connection to the test database.
pub fn connect() -> Client {
    let dsn = dsn();
    Client::connect(&dsn, NoTls).unwrap_or_else(|e| panic!("cannot connect to {dsn:?}: {e}"))
}

/// A queue name that no other test (of this or of an earlier run in the same database) uses:
/// `prefix` + `_` + a short token made of the process id and a per-process counter.
/// Keep prefixes short: channel names (`pgmq.q_<name>.INSERT`) must stay under 64 bytes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}_{}{}",
        base36(u64::from(std::process::id())),
        base36(u64::from(n))
    )
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
    String::from_utf8(out).unwrap()
}

/// Creates the queue `name` (dropping a leftover of the same name first).
pub fn create_queue(client: &mut Client, name: &str) {
    client
        .execute("SELECT pgmq.drop_queue($1::text)", &[&name])
        .expect("drop_queue");
    client
        .execute("SELECT pgmq.create($1::text)", &[&name])
        .expect("create");
}

/// The queue table of `name` as a quoted, schema-qualified identifier (`pgmq."q_<lower(name)>"`).
pub fn queue_table(name: &str) -> String {
    format!(
        "pgmq.{}",
        quote_ident(&format!("q_{}", name.to_lowercase()))
    )
}

/// The archive table of `name` as a quoted, schema-qualified identifier.
pub fn archive_table(name: &str) -> String {
    format!(
        "pgmq.{}",
        quote_ident(&format!("a_{}", name.to_lowercase()))
    )
}

/// Double-quotes an SQL identifier.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Sends `n` messages `{"n": 1}` .. `{"n": n}` with one `send_batch` call and returns their ids.
pub fn send_batch_n(client: &mut Client, queue: &str, n: i32) -> Vec<i64> {
    client
        .query(
            "SELECT * FROM pgmq.send_batch($1::text,
                 ARRAY(SELECT jsonb_build_object('n', g) FROM generate_series(1, $2::int) g))",
            &[&queue, &n],
        )
        .expect("send_batch")
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// Sends one message (JSON text) and returns its id.
pub fn send(client: &mut Client, queue: &str, msg: &str) -> i64 {
    client
        .query_one(
            "SELECT * FROM pgmq.send($1::text, $2::text::jsonb)",
            &[&queue, &msg],
        )
        .expect("send")
        .get(0)
}

/// Sends one message with headers and returns its id.
pub fn send_with_headers(client: &mut Client, queue: &str, msg: &str, headers: &str) -> i64 {
    client
        .query_one(
            "SELECT * FROM pgmq.send($1::text, $2::text::jsonb, $3::text::jsonb)",
            &[&queue, &msg, &headers],
        )
        .expect("send with headers")
        .get(0)
}

/// One row of `pgmq.message_record`, with message and headers as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub msg_id: i64,
    pub read_ct: i32,
    pub enqueued_at: SystemTime,
    pub last_read_at: Option<SystemTime>,
    pub vt: SystemTime,
    pub message: Option<String>,
    pub headers: Option<String>,
}

/// The select list that turns a `message_record` source into [`Msg`] rows.
pub const MSG_COLUMNS: &str = "msg_id, read_ct, enqueued_at, last_read_at, vt, message::text AS message, headers::text AS headers";

impl Msg {
    pub fn from_row(row: &postgres::Row) -> Msg {
        Msg {
            msg_id: row.get("msg_id"),
            read_ct: row.get("read_ct"),
            enqueued_at: row.get("enqueued_at"),
            last_read_at: row.get("last_read_at"),
            vt: row.get("vt"),
            message: row.get("message"),
            headers: row.get("headers"),
        }
    }
}

/// Runs `SELECT <MSG_COLUMNS> FROM <source>` where `source` is a set-returning call.
pub fn query_msgs(
    client: &mut impl postgres::GenericClient,
    source: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<Msg>, postgres::Error> {
    let sql = format!("SELECT {MSG_COLUMNS} FROM {source}");
    Ok(client
        .query(sql.as_str(), params)?
        .iter()
        .map(Msg::from_row)
        .collect())
}

/// `pgmq.read(queue, vt, qty)`.
pub fn read(client: &mut impl postgres::GenericClient, queue: &str, vt: i32, qty: i32) -> Vec<Msg> {
    query_msgs(
        client,
        "pgmq.read($1::text, $2::int, $3::int)",
        &[&queue, &vt, &qty],
    )
    .expect("read")
}

/// The current row of a message in the queue table (None when it is not there).
pub fn queue_row(client: &mut Client, queue: &str, msg_id: i64) -> Option<Msg> {
    let sql = format!(
        "SELECT {MSG_COLUMNS} FROM {} WHERE msg_id = $1",
        queue_table(queue)
    );
    client
        .query_opt(sql.as_str(), &[&msg_id])
        .expect("queue row")
        .map(|r| Msg::from_row(&r))
}

/// `count(*)` of a table given as a quoted identifier.
pub fn count_rows(client: &mut Client, table: &str) -> i64 {
    client
        .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
        .expect("count")
        .get(0)
}

/// The backend process id of a connection.
pub fn backend_pid(client: &mut Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("pg_backend_pid")
        .get(0)
}

/// The SQLSTATE of an error, when the server sent one.
pub fn sqlstate(err: &postgres::Error) -> Option<&str> {
    err.code().map(|c| c.code())
}

/// Waits (up to `timeout`) until backend `pid` is running a statement whose text contains
/// `needle`; panics otherwise.
pub fn wait_until_active(observer: &mut Client, pid: i32, needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let row = observer
            .query_opt(
                "SELECT state, query FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .expect("pg_stat_activity");
        if let Some(row) = row {
            let state: Option<String> = row.get(0);
            let query: Option<String> = row.get(1);
            if state.as_deref() == Some("active") && query.is_some_and(|q| q.contains(needle)) {
                return;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "backend {pid} never became active with {needle:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a backend with this pid is still listed in pg_stat_activity.
pub fn backend_alive(observer: &mut Client, pid: i32) -> bool {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .expect("pg_stat_activity")
        .get::<_, i64>(0)
        > 0
}

/// Clock ticks per second used by /proc/<pid>/stat (sysconf(_SC_CLK_TCK) via `getconf`,
/// 100 when that is not available).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime (in clock ticks) of process `pid`, from /proc/<pid>/stat.
pub fn process_cpu_ticks(pid: i32) -> u64 {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path} (is the server on this machine?): {e}"));
    // The command name (field 2) is in parentheses and may contain spaces: split after the
    // last ')'. Then field 3 (state) is the first, utime (14) the 12th, stime (15) the 13th.
    let rest = &stat[stat.rfind(')').expect("malformed stat") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Duration between two server timestamps (`later - earlier`), negative results as Err.
pub fn ts_diff(later: SystemTime, earlier: SystemTime) -> Result<Duration, Duration> {
    later.duration_since(earlier).map_err(|e| e.duration())
}

/// A small deterministic pseudo-random generator (xorshift64*), so tests need no extra crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

// ------------------------------------------------------------------------------------------------
// Workflow engine (schema `pgflow`) helpers: what a worker does from outside the server.
// Every call below is one statement in autocommit mode, i.e. its own transaction.
// ------------------------------------------------------------------------------------------------

pub use serde_json::{Value, json};

/// Parses JSON text returned by the server (`…::text` of a jsonb).
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON from server {text:?}: {e}"))
}

/// Parses an optional JSON text (SQL NULL → None).
pub fn parse_json_opt(text: Option<String>) -> Option<Value> {
    text.as_deref().map(parse_json)
}

/// Installs, once per database, a stub `realtime.send(payload, event, topic, private)` that records
/// every call in `realtime.sent(id, topic, event, payload, private, sent_at)`. Idempotent and safe to
/// call from parallel tests (serialized by an advisory lock). PL/pgSQL like Supabase's own, whose
/// void result is a non-NULL datum.
pub fn install_realtime_stub(client: &mut Client) {
    let mut tx = client.transaction().expect("begin");
    tx.batch_execute(
        r#"SELECT pg_advisory_xact_lock(724871, 1);
        DO $do$
        BEGIN
          IF to_regprocedure('realtime.send(jsonb,text,text,boolean)') IS NULL THEN
            CREATE SCHEMA IF NOT EXISTS realtime;
            CREATE TABLE IF NOT EXISTS realtime.sent (
              id bigserial PRIMARY KEY,
              topic text NOT NULL,
              event text NOT NULL,
              payload jsonb,
              private boolean,
              sent_at timestamptz NOT NULL DEFAULT clock_timestamp());
            CREATE INDEX IF NOT EXISTS sent_topic_idx ON realtime.sent (topic);
            CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
              RETURNS void LANGUAGE plpgsql
              AS $fn$ BEGIN
                        INSERT INTO realtime.sent (topic, event, payload, private)
                        VALUES (topic, event, payload, private);
                      END $fn$;
          END IF;
        END
        $do$;"#,
    )
    .expect("install realtime stub");
    tx.commit().expect("commit realtime stub");
}

/// Number of recorded realtime events `event` (e.g. `run:completed`) of a run.
pub fn event_count(client: &mut Client, run_id: &str, event: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM realtime.sent WHERE topic = 'pgflow:run:' || $1::text AND event = $2::text",
            &[&run_id, &event],
        )
        .expect("event count")
        .get(0)
}

/// `pgflow.create_flow(flow_slug, max_attempts, base_delay, timeout)`.
pub fn create_flow(
    client: &mut Client,
    flow: &str,
    max_attempts: i32,
    base_delay: i32,
    timeout: i32,
) {
    client
        .execute(
            "SELECT pgflow.create_flow(flow_slug => $1::text, max_attempts => $2::int,
                                       base_delay => $3::int, timeout => $4::int)",
            &[&flow, &max_attempts, &base_delay, &timeout],
        )
        .expect("create_flow");
}

/// `pgflow.add_step(flow_slug, step_slug, deps_slugs, <extra>)`; `extra` is a list of further named
/// arguments in SQL, e.g. `"step_type => 'map', start_delay => 5"` (or empty).
pub fn add_step(client: &mut Client, flow: &str, step: &str, deps: &[&str], extra: &str) {
    let deps: Vec<String> = deps.iter().map(|s| s.to_string()).collect();
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    let sql = format!(
        "SELECT pgflow.add_step(flow_slug => $1::text, step_slug => $2::text, deps_slugs => $3::text[]{extra})"
    );
    client
        .execute(sql.as_str(), &[&flow, &step, &deps])
        .unwrap_or_else(|e| panic!("add_step {step}: {e}"));
}

/// `pgflow.start_flow(flow_slug, input)`; returns the new run id (as text).
pub fn start_flow(client: &mut Client, flow: &str, input: &Value) -> String {
    client
        .query_one(
            "SELECT run_id::text FROM pgflow.start_flow(flow_slug => $1::text, input => $2::text::jsonb)",
            &[&flow, &input.to_string()],
        )
        .expect("start_flow")
        .get(0)
}

/// Inserts a row into `pgflow.workers` (as workers do before their first start_tasks) and returns
/// the new worker id (as text).
pub fn register_worker(client: &mut Client, queue: &str) -> String {
    client
        .query_one(
            "INSERT INTO pgflow.workers (worker_id, queue_name, function_name)
             VALUES (gen_random_uuid(), $1::text, 'client_tests') RETURNING worker_id::text",
            &[&queue],
        )
        .expect("insert worker")
        .get(0)
}

/// `pgmq.read_with_poll` with named arguments, as workers call it; returns the message ids.
pub fn poll_ids(
    client: &mut Client,
    queue: &str,
    vt: i32,
    qty: i32,
    max_poll_seconds: i32,
    poll_interval_ms: i32,
) -> Vec<i64> {
    client
        .query(
            "SELECT msg_id FROM pgmq.read_with_poll(queue_name => $1::text, vt => $2::int, qty => $3::int,
                 max_poll_seconds => $4::int, poll_interval_ms => $5::int)",
            &[&queue, &vt, &qty, &max_poll_seconds, &poll_interval_ms],
        )
        .expect("read_with_poll")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// One `pgflow.step_task_record` returned by start_tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedTask {
    pub flow_slug: String,
    pub run_id: String,
    pub step_slug: String,
    pub input: Option<Value>,
    pub msg_id: i64,
    pub task_index: i32,
    pub flow_input: Option<Value>,
}

/// `pgflow.start_tasks(flow_slug, msg_ids, worker_id)`.
pub fn start_tasks(
    client: &mut Client,
    flow: &str,
    msg_ids: &[i64],
    worker_id: &str,
) -> Result<Vec<StartedTask>, postgres::Error> {
    let ids: Vec<i64> = msg_ids.to_vec();
    Ok(client
        .query(
            "SELECT flow_slug, run_id::text, step_slug, input::text, msg_id, task_index, flow_input::text
             FROM pgflow.start_tasks(flow_slug => $1::text, msg_ids => $2::bigint[], worker_id => $3::text::uuid)",
            &[&flow, &ids, &worker_id],
        )?
        .iter()
        .map(|r| StartedTask {
            flow_slug: r.get(0),
            run_id: r.get(1),
            step_slug: r.get(2),
            input: parse_json_opt(r.get(3)),
            msg_id: r.get(4),
            task_index: r.get(5),
            flow_input: parse_json_opt(r.get(6)),
        })
        .collect())
}

/// The parts of a `pgflow.step_tasks` row the tests look at.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub status: String,
    pub attempts_count: i32,
    pub error_message: Option<String>,
    pub output: Option<Value>,
    pub message_id: Option<i64>,
}

const TASK_ROW_COLUMNS: &str = "status, attempts_count, error_message, output::text, message_id";

fn task_row(r: &postgres::Row) -> TaskRow {
    TaskRow {
        status: r.get(0),
        attempts_count: r.get(1),
        error_message: r.get(2),
        output: parse_json_opt(r.get(3)),
        message_id: r.get(4),
    }
}

/// `pgflow.complete_task(run_id, step_slug, task_index, output)`; the returned task row, if any.
pub fn complete_task(
    client: &mut Client,
    run_id: &str,
    step: &str,
    task_index: i32,
    output: &Value,
) -> Result<Option<TaskRow>, postgres::Error> {
    let sql = format!(
        "SELECT {TASK_ROW_COLUMNS} FROM pgflow.complete_task(run_id => $1::text::uuid, step_slug => $2::text,
             task_index => $3::int, output => $4::text::jsonb)"
    );
    Ok(client
        .query(
            sql.as_str(),
            &[&run_id, &step, &task_index, &output.to_string()],
        )?
        .first()
        .map(task_row))
}

/// `pgflow.fail_task(run_id, step_slug, task_index, error_message)`; the returned task row, if any.
pub fn fail_task(
    client: &mut Client,
    run_id: &str,
    step: &str,
    task_index: i32,
    error_message: &str,
) -> Result<Option<TaskRow>, postgres::Error> {
    let sql = format!(
        "SELECT {TASK_ROW_COLUMNS} FROM pgflow.fail_task(run_id => $1::text::uuid, step_slug => $2::text,
             task_index => $3::int, error_message => $4::text)"
    );
    Ok(client
        .query(sql.as_str(), &[&run_id, &step, &task_index, &error_message])?
        .first()
        .map(task_row))
}

/// The current `pgflow.step_tasks` row of a task.
pub fn get_task(client: &mut Client, run_id: &str, step: &str, task_index: i32) -> Option<TaskRow> {
    let sql = format!(
        "SELECT {TASK_ROW_COLUMNS} FROM pgflow.step_tasks
         WHERE run_id = $1::text::uuid AND step_slug = $2::text AND task_index = $3::int"
    );
    client
        .query_opt(sql.as_str(), &[&run_id, &step, &task_index])
        .expect("step_tasks row")
        .as_ref()
        .map(task_row)
}

/// Whether no run of the flow is still 'started'.
pub fn flow_runs_finished(client: &mut Client, flow: &str) -> bool {
    client
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM pgflow.runs WHERE flow_slug = $1::text AND status = 'started')",
            &[&flow],
        )
        .expect("runs finished")
        .get(0)
}

/// What a handler decided for one started task.
pub enum Outcome {
    Complete(Value),
    Fail(String),
}

/// One thing a worker did, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    /// start_tasks returned this task.
    Started {
        run_id: String,
        step: String,
        task_index: i32,
        msg_id: i64,
    },
    /// The handler succeeded and complete_task returned this row.
    Completed {
        run_id: String,
        step: String,
        task_index: i32,
        row: Option<TaskRow>,
    },
    /// The handler failed and fail_task returned this row.
    Failed {
        run_id: String,
        step: String,
        task_index: i32,
        row: Option<TaskRow>,
    },
}

/// How a worker polls.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    pub vt: i32,
    pub qty: i32,
    pub max_poll_seconds: i32,
    pub poll_interval_ms: i32,
}

impl Default for PollSettings {
    fn default() -> PollSettings {
        PollSettings {
            vt: 30,
            qty: 10,
            max_poll_seconds: 1,
            poll_interval_ms: 50,
        }
    }
}

/// A worker loop on its own connection: register in pgflow.workers, then read_with_poll →
/// start_tasks → handler → complete_task / fail_task, each its own transaction, until a poll comes
/// back empty and no run of the flow is still 'started'. Panics after `timeout`.
pub fn run_worker<F>(
    flow: &str,
    poll: PollSettings,
    timeout: Duration,
    handler: F,
) -> Vec<WorkerEvent>
where
    F: FnMut(&mut Client, &StartedTask) -> Outcome,
{
    let flow_slug = flow.to_string();
    run_worker_until(
        flow,
        poll,
        timeout,
        |c| flow_runs_finished(c, &flow_slug),
        handler,
    )
}

/// [`run_worker`] with its own stop condition: the loop ends when a poll comes back empty and
/// `finished` (called on the worker's connection) returns true.
pub fn run_worker_until<S, F>(
    flow: &str,
    poll: PollSettings,
    timeout: Duration,
    mut finished: S,
    mut handler: F,
) -> Vec<WorkerEvent>
where
    S: FnMut(&mut Client) -> bool,
    F: FnMut(&mut Client, &StartedTask) -> Outcome,
{
    let mut client = connect();
    let worker_id = register_worker(&mut client, flow);
    let deadline = Instant::now() + timeout;
    let mut log = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "worker {worker_id} on {flow}: work still unfinished after {timeout:?}"
        );
        let ids = poll_ids(
            &mut client,
            flow,
            poll.vt,
            poll.qty,
            poll.max_poll_seconds,
            poll.poll_interval_ms,
        );
        if ids.is_empty() {
            if finished(&mut client) {
                break;
            }
            continue;
        }
        let tasks = start_tasks(&mut client, flow, &ids, &worker_id)
            .unwrap_or_else(|e| panic!("start_tasks({flow}, {ids:?}): {e}"));
        for t in tasks {
            log.push(WorkerEvent::Started {
                run_id: t.run_id.clone(),
                step: t.step_slug.clone(),
                task_index: t.task_index,
                msg_id: t.msg_id,
            });
            match handler(&mut client, &t) {
                Outcome::Complete(output) => {
                    let row =
                        complete_task(&mut client, &t.run_id, &t.step_slug, t.task_index, &output)
                            .unwrap_or_else(|e| panic!("complete_task {t:?}: {e}"));
                    log.push(WorkerEvent::Completed {
                        run_id: t.run_id,
                        step: t.step_slug,
                        task_index: t.task_index,
                        row,
                    });
                }
                Outcome::Fail(message) => {
                    let row =
                        fail_task(&mut client, &t.run_id, &t.step_slug, t.task_index, &message)
                            .unwrap_or_else(|e| panic!("fail_task {t:?}: {e}"));
                    log.push(WorkerEvent::Failed {
                        run_id: t.run_id,
                        step: t.step_slug,
                        task_index: t.task_index,
                        row,
                    });
                }
            }
        }
    }
    log
}
