//! Process-wide metrics in Prometheus text format: scheduler loop duration, task handoff
//! latency, DAG processor timings. Plain atomics: no registry crate needed for three histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

pub struct Histogram {
    name: &'static str,
    help: &'static str,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Histogram {
        Histogram {
            name,
            help,
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    /// The smallest bucket bound (seconds) at or below which a `q` share of the observations
    /// lie; `None` before any, or beyond the largest bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count.load(Ordering::Relaxed);
        let wanted = (q * count as f64).ceil() as u64;
        if count == 0 {
            return None;
        }
        BUCKETS
            .iter()
            .zip(&self.buckets)
            .find(|(_, bucket)| bucket.load(Ordering::Relaxed) >= wanted)
            .map(|(bound, _)| *bound)
    }

    /// The mean observation, in seconds.
    pub fn mean(&self) -> Option<f64> {
        let count = self.count.load(Ordering::Relaxed);
        (count > 0).then(|| self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6 / count as f64)
    }

    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{}_bucket{{le=\"{bound}\"}} {}",
                self.name,
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} {count}", self.name);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{}_sum {sum}", self.name);
        let _ = writeln!(out, "{}_count {count}", self.name);
    }
}

pub static SCHEDULER_LOOP: Histogram = Histogram::new(
    "updraft_scheduler_loop_duration_seconds",
    "Duration of one scheduler pass (event batch or periodic sweep).",
);
pub static HANDOFF: Histogram = Histogram::new(
    "updraft_task_handoff_seconds",
    "From a task try's end to its downstream tasks being queued by the same process.",
);
pub static PROCESSOR_SYNC: Histogram = Histogram::new(
    "updraft_dag_processor_sync_seconds",
    "Duration of one DAG folder sync (parse and write).",
);

pub static TASKS_STARTED: AtomicU64 = AtomicU64::new(0);
pub static TASKS_FINISHED: AtomicU64 = AtomicU64::new(0);

/// All metrics of this process, Prometheus text format.
pub fn render_prometheus() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for histogram in [&SCHEDULER_LOOP, &HANDOFF, &PROCESSOR_SYNC] {
        histogram.render(&mut out);
    }
    for (name, counter) in [
        ("updraft_task_tries_started_total", &TASKS_STARTED),
        ("updraft_task_tries_finished_total", &TASKS_FINISHED),
    ] {
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let histogram = Histogram::new("h", "test");
        assert_eq!(histogram.quantile_bound(0.5), None);
        for millis in [1, 1, 1, 30] {
            histogram.observe(Duration::from_millis(millis));
        }
        assert_eq!(histogram.quantile_bound(0.5), Some(0.001));
        assert_eq!(histogram.quantile_bound(0.99), Some(0.05));
        assert_eq!(histogram.mean(), Some(0.00825));
    }

    #[test]
    fn renders_histograms() {
        HANDOFF.observe(Duration::from_millis(3));
        let text = render_prometheus();
        assert!(text.contains("updraft_task_handoff_seconds_bucket{le=\"0.005\"}"));
        assert!(text.contains("updraft_scheduler_loop_duration_seconds_count"));
    }
}
