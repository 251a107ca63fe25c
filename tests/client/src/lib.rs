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
