//! Per-call timing of the worker connections, and percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `--slow-ms`: calls slower than this many milliseconds are printed (0 = off).
pub static SLOW_MS: AtomicU64 = AtomicU64::new(0);

/// Prints `what` to stderr when `took` exceeds `--slow-ms`.
pub fn trace_slow(took: Duration, what: impl FnOnce() -> String) {
    let limit = SLOW_MS.load(Ordering::Relaxed);
    if limit > 0 && took.as_millis() as u64 >= limit {
        eprintln!("SLOW {:.1} ms: {}", took.as_secs_f64() * 1000.0, what());
    }
}

use crate::report::{Kv, fmt_num};

/// Counts and summed client-side times of the calls a worker makes.
#[derive(Default, Clone, Debug)]
pub struct Calls {
    pub reads: u64,
    pub empty_reads: u64,
    /// Time in reads that returned messages, including any polling wait before the messages
    /// arrived (reads that came back empty are not counted).
    pub read_time: Duration,
    pub messages: u64,
    pub starts: u64,
    pub start_time: Duration,
    pub started_tasks: u64,
    pub completes: u64,
    pub complete_time: Duration,
    pub archives: u64,
    pub archive_time: Duration,
    /// Slowest single call of each kind.
    pub read_max: Duration,
    pub start_max: Duration,
    pub complete_max: Duration,
}

fn avg_ms(total: Duration, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        total.as_secs_f64() * 1000.0 / n as f64
    }
}

impl Calls {
    pub fn merge(&mut self, o: &Calls) {
        self.reads += o.reads;
        self.empty_reads += o.empty_reads;
        self.read_time += o.read_time;
        self.messages += o.messages;
        self.starts += o.starts;
        self.start_time += o.start_time;
        self.started_tasks += o.started_tasks;
        self.completes += o.completes;
        self.complete_time += o.complete_time;
        self.archives += o.archives;
        self.archive_time += o.archive_time;
        self.read_max = self.read_max.max(o.read_max);
        self.start_max = self.start_max.max(o.start_max);
        self.complete_max = self.complete_max.max(o.complete_max);
    }

    /// Adds the flow-worker figures to a result. `wall` and `workers` give the share of the
    /// workers' time spent in each call.
    pub fn add_flow(&self, kv: &mut Kv, wall: f64, workers: usize) {
        let busy = wall * workers as f64;
        let share = |d: Duration| {
            if busy > 0.0 {
                d.as_secs_f64() / busy
            } else {
                0.0
            }
        };
        kv.add("reads", self.reads)
            .add("empty_reads", self.empty_reads)
            .add(
                "msgs_per_read",
                if self.reads > self.empty_reads {
                    self.messages as f64 / (self.reads - self.empty_reads) as f64
                } else {
                    0.0
                },
            )
            .add(
                "read_ms_avg",
                avg_ms(self.read_time, self.reads - self.empty_reads),
            )
            .add("start_tasks_ms_avg", avg_ms(self.start_time, self.starts))
            .add(
                "complete_task_ms_avg",
                avg_ms(self.complete_time, self.completes),
            )
            .add("read_ms_max", self.read_max.as_secs_f64() * 1000.0)
            .add("start_tasks_ms_max", self.start_max.as_secs_f64() * 1000.0)
            .add(
                "complete_task_ms_max",
                self.complete_max.as_secs_f64() * 1000.0,
            )
            .add("share_read", share(self.read_time))
            .add("share_start_tasks", share(self.start_time))
            .add("share_complete_task", share(self.complete_time));
    }
}

/// The q-quantile (0..=1) of sorted values, nearest-rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The percentiles of latencies in milliseconds.
pub struct Latencies {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latencies {
    /// From latencies sorted in ascending order.
    pub fn of_sorted(sorted: &[f64]) -> Latencies {
        Latencies {
            p50: quantile(sorted, 0.5),
            p95: quantile(sorted, 0.95),
            p99: quantile(sorted, 0.99),
            max: quantile(sorted, 1.0),
        }
    }

    /// Adds `p50_ms`, `p95_ms`, `p99_ms` and `max_ms` to a result.
    pub fn add_to(&self, kv: &mut Kv) {
        kv.add("p50_ms", self.p50)
            .add("p95_ms", self.p95)
            .add("p99_ms", self.p99)
            .add("max_ms", self.max);
    }

    /// The summary table's figure.
    pub fn figure(&self) -> String {
        format!(
            "p50 {} / p95 {} / p99 {} / max {} ms",
            fmt_num(self.p50),
            fmt_num(self.p95),
            fmt_num(self.p99),
            fmt_num(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.95), 95.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[3.0], 0.5), 3.0);
    }
}
