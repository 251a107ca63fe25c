//! Raw pgmq throughput: send_batch M messages, then W consumers `read(queue, 30, 100)` +
//! `archive(queue, ids)`, each call its own transaction, until every message is archived.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::{Kv, Outcome, fmt_num};
use crate::stats::Calls;
use crate::{Check, Ctx, connect, pg};

const BATCH: usize = 1000;

struct Shared {
    queue: String,
    total: u64,
    archived: AtomicU64,
    stop: AtomicBool,
    finished: Mutex<Option<Instant>>,
    error: Mutex<Option<String>>,
    deadline: Instant,
}

impl Shared {
    fn fail(&self, e: String) {
        self.error.lock().unwrap().get_or_insert(e);
        self.stop.store(true, SeqCst);
    }
}

fn loop_consume(
    c: &mut postgres::Client,
    s: &Shared,
    read: &postgres::Statement,
    archive: &postgres::Statement,
    calls: &mut Calls,
) -> Result<(), String> {
    while !s.stop.load(SeqCst) {
        if Instant::now() > s.deadline {
            return Err(format!(
                "timed out with {}/{} archived",
                s.archived.load(SeqCst),
                s.total
            ));
        }
        let t = Instant::now();
        let rows = c.query(read, &[&s.queue]).map_err(pg)?;
        calls.reads += 1;
        if rows.is_empty() {
            calls.empty_reads += 1;
            if s.archived.load(SeqCst) >= s.total {
                break;
            }
            // The rest is invisible: read by other consumers, not archived yet.
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let d = t.elapsed();
        crate::stats::trace_slow(d, || format!("read returning {} messages", rows.len()));
        calls.read_time += d;
        calls.messages += rows.len() as u64;
        let ids: Vec<i64> = rows.iter().map(|r| r.get("msg_id")).collect();
        let t = Instant::now();
        let n: i64 = c.query_one(archive, &[&s.queue, &ids]).map_err(pg)?.get(0);
        let d = t.elapsed();
        crate::stats::trace_slow(d, || format!("archive of {} ids", ids.len()));
        calls.archive_time += d;
        calls.archives += 1;
        if n as usize != ids.len() {
            return Err(format!("archive returned {n} of {} ids", ids.len()));
        }
        if s.archived.fetch_add(n as u64, SeqCst) + n as u64 >= s.total {
            s.finished.lock().unwrap().get_or_insert(Instant::now());
            s.stop.store(true, SeqCst);
        }
    }
    Ok(())
}

pub fn run(ctx: &mut Ctx, messages: usize, consumers: usize) -> Result<(), String> {
    let queue = ctx.name(&format!("q_w{consumers}"));
    let mut c = ctx.connect()?;
    c.execute("SELECT pgmq.create($1)", &[&queue]).map_err(pg)?;
    ctx.checks.push(Check::Queue {
        queue: queue.clone(),
        messages: messages as i64,
    });

    // Send phase: one connection, batches of 1000, one transaction per batch.
    let send = c
        .prepare("SELECT count(*) FROM pgmq.send_batch($1, $2::jsonb[])")
        .map_err(pg)?;
    let t = Instant::now();
    let mut sent = 0usize;
    while sent < messages {
        let n = BATCH.min(messages - sent);
        let msgs: Vec<Value> = (sent..sent + n).map(|i| json!({"i": i})).collect();
        let got: i64 = c.query_one(&send, &[&queue, &msgs]).map_err(pg)?.get(0);
        if got as usize != n {
            return Err(format!("send_batch returned {got} ids for {n} messages"));
        }
        sent += n;
    }
    let send_s = t.elapsed().as_secs_f64();

    // Consume phase.
    let shared = Shared {
        queue: queue.clone(),
        total: messages as u64,
        archived: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        finished: Mutex::new(None),
        error: Mutex::new(None),
        deadline: Instant::now() + Duration::from_secs_f64(ctx.opts.timeout),
    };
    let dsn = ctx.opts.dsn.clone();
    let barrier = Barrier::new(consumers + 1);
    let (t0, calls) = thread::scope(|sc| {
        let handles: Vec<_> = (0..consumers)
            .map(|_| {
                sc.spawn(|| {
                    let mut calls = Calls::default();
                    // Connect and prepare before the barrier so the clock starts with every
                    // consumer ready.
                    let setup = connect(&dsn).and_then(|mut c| {
                        let read = c
                            .prepare("SELECT * FROM pgmq.read($1, 30, 100)")
                            .map_err(pg)?;
                        let archive = c
                            .prepare("SELECT count(*) FROM pgmq.archive($1, $2::bigint[])")
                            .map_err(pg)?;
                        Ok((c, read, archive))
                    });
                    barrier.wait();
                    let res = setup.and_then(|(mut c, read, archive)| {
                        loop_consume(&mut c, &shared, &read, &archive, &mut calls)
                    });
                    if let Err(e) = res {
                        shared.fail(e);
                    }
                    calls
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let mut calls = Calls::default();
        for h in handles {
            match h.join() {
                Ok(c) => calls.merge(&c),
                Err(_) => shared.fail("a consumer thread panicked".into()),
            }
        }
        (t0, calls)
    });
    if let Some(e) = shared.error.lock().unwrap().clone() {
        return Err(e);
    }
    let end = shared.finished.lock().unwrap().unwrap_or_else(Instant::now);
    let consume_s = end.duration_since(t0).as_secs_f64();
    let per_s = messages as f64 / consume_s;
    let ms = |d: Duration, n: u64| {
        if n == 0 {
            0.0
        } else {
            d.as_secs_f64() * 1000.0 / n as f64
        }
    };

    let mut kv = Kv::new();
    kv.add("messages", messages)
        .add("workers", consumers)
        .add("send_s", send_s)
        .add("send_msgs_per_s", messages as f64 / send_s)
        .add("consume_s", consume_s)
        .add("msgs_per_s", per_s)
        .add("reads", calls.reads)
        .add("empty_reads", calls.empty_reads)
        .add(
            "read_ms_avg",
            ms(calls.read_time, calls.reads - calls.empty_reads),
        )
        .add("archive_ms_avg", ms(calls.archive_time, calls.archives));
    ctx.emit("queue", &kv);
    ctx.outcomes.push(Outcome {
        workload: "queue".into(),
        params: format!("M={messages} W={consumers}"),
        figure: format!(
            "{} msgs/s consumed (send {} msgs/s)",
            fmt_num(per_s),
            fmt_num(messages as f64 / send_s)
        ),
        throughput: Some((per_s, consumers)),
    });
    Ok(())
}
