//! `limit`: pgbench with benches/limit.sql, the minimum durable work per task (three commits:
//! enqueue, claim, completion) on a minimal table. One pgbench transaction = one task.

use std::process::Command;

use crate::report::{Kv, Outcome, fmt_num};
use crate::{Ctx, pg};

/// The figures pgbench prints that we use.
#[derive(Debug, Default, PartialEq)]
pub struct PgbenchOut {
    pub tps: f64,
    pub processed: i64,
    pub failed: i64,
    pub latency_ms: Option<f64>,
}

fn first_number(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let rest = &s[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Parses pgbench's report (PostgreSQL 15 format; older formats' "excluding connections
/// establishing" tps line is accepted too).
pub fn parse_pgbench(out: &str) -> Result<PgbenchOut, String> {
    let mut r = PgbenchOut::default();
    let mut tps: Option<f64> = None;
    for line in out.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("tps = ") {
            // Prefer the figure without connection time.
            if tps.is_none() || v.contains("without") || v.contains("excluding") {
                tps = first_number(v);
            }
        } else if let Some(v) = line.strip_prefix("number of transactions actually processed:") {
            r.processed = first_number(v).unwrap_or(0.0) as i64;
        } else if let Some(v) = line.strip_prefix("number of failed transactions:") {
            r.failed = first_number(v).unwrap_or(0.0) as i64;
        } else if let Some(v) = line.strip_prefix("latency average =") {
            r.latency_ms = first_number(v);
        }
    }
    r.tps = tps.ok_or("no `tps = ` line in pgbench's output")?;
    Ok(r)
}

pub fn run(ctx: &mut Ctx, clients: usize) -> Result<(), String> {
    let seconds = ctx.opts.limit_seconds;
    let script = ctx.opts.limit_script.clone();
    if !std::path::Path::new(&script).is_file() {
        return Err(format!(
            "pgbench script {script} not found (see --limit-script)"
        ));
    }
    let mut c = ctx.connect()?;
    if !ctx.limit_ready {
        c.batch_execute(
            "DROP TABLE IF EXISTS bench_limit_tasks; \
             CREATE TABLE bench_limit_tasks (id bigserial PRIMARY KEY, \
                                             state smallint NOT NULL DEFAULT 0, payload jsonb); \
             CREATE INDEX bench_limit_tasks_queued ON bench_limit_tasks (id) WHERE state = 0;",
        )
        .map_err(pg)?;
        ctx.limit_ready = true;
    }
    c.batch_execute("TRUNCATE bench_limit_tasks RESTART IDENTITY")
        .map_err(pg)?;

    let w = clients.to_string();
    let output = Command::new(&ctx.opts.pgbench)
        .args([
            "-n",
            "-T",
            &seconds.to_string(),
            "-c",
            &w,
            "-j",
            &w,
            "-f",
            &script,
        ])
        // pgbench takes a connection string in place of the database name.
        .arg(&ctx.opts.dsn)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ctx.opts.pgbench))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout.trim(),
            stderr.trim()
        ));
    }
    let p = parse_pgbench(&stdout)?;
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 2), count(*) FILTER (WHERE state = 0) FROM bench_limit_tasks",
            &[],
        )
        .map_err(pg)?;
    let (completed, queued): (i64, i64) = (row.get(0), row.get(1));
    if p.failed > 0 || p.processed == 0 {
        return Err(format!(
            "pgbench: {} transactions processed, {} failed",
            p.processed, p.failed
        ));
    }

    let mut kv = Kv::new();
    kv.add("workers", clients)
        .add("seconds", seconds as i64)
        .add("transactions", p.processed)
        .add("tps", p.tps)
        .add("tasks_per_s", p.tps)
        .add("commits_per_s", 3.0 * p.tps)
        .add("latency_ms_avg", p.latency_ms.unwrap_or(f64::NAN))
        .add("tasks_completed_in_table", completed)
        .add("tasks_left_queued", queued);
    ctx.emit("limit", &kv);
    ctx.outcomes.push(Outcome {
        workload: "limit".into(),
        params: format!("W={clients} T={seconds}s"),
        figure: format!(
            "{} tasks/s ({} commits/s)",
            fmt_num(p.tps),
            fmt_num(3.0 * p.tps)
        ),
        throughput: Some((p.tps, clients)),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg15_output() {
        let out = "transaction type: limit.sql\nscaling factor: 1\nquery mode: simple\n\
                   number of clients: 4\nnumber of threads: 4\nmaximum number of tries: 1\n\
                   duration: 10 s\nnumber of transactions actually processed: 12345\n\
                   number of failed transactions: 0 (0.000%)\nlatency average = 3.241 ms\n\
                   initial connection time = 5.120 ms\n\
                   tps = 1234.567890 (without initial connection time)\n";
        let p = parse_pgbench(out).unwrap();
        assert_eq!(p.processed, 12345);
        assert_eq!(p.failed, 0);
        assert_eq!(p.latency_ms, Some(3.241));
        assert!((p.tps - 1234.56789).abs() < 1e-9);
        assert!(parse_pgbench("nothing").is_err());
    }
}
