//! Counters of the worker, rendered in the Prometheus text format on `/metrics`, and `/healthz`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
pub use stream_worker_api::RecentError;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram of durations. Each observation bumps one bucket (the cumulative counts
/// are summed when read), so a write costs three atomic adds, not one per bucket.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; beyond the last bound they are only counted.
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let index = LATENCY_BUCKETS.partition_point(|bound| *bound < seconds);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// (upper bound, cumulative count) per bucket.
    fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.buckets
            .iter()
            .zip(LATENCY_BUCKETS)
            .scan(0u64, |total, (bucket, bound)| {
                *total += bucket.load(Relaxed);
                Some((bound, *total))
            })
    }

    /// The upper bound (seconds) of the bucket holding quantile `q`; `None` when empty or
    /// beyond the last bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q * count as f64).ceil() as u64;
        self.cumulative()
            .find(|(_, total)| *total >= rank)
            .map(|(bound, _)| bound)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, total) in self.cumulative() {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {total}");
        }
        let count = self.count();
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain numbers behind: still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many recent errors a stream keeps for its status.
const RECENT_ERRORS: usize = 20;

/// The metrics of one stream.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    pub stream: String,
    consumed: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicI64,
    dead_lettered: Mutex<BTreeMap<&'static str, u64>>,
    /// Receive → row written, retries included.
    pub write_latency: Histogram,
    /// Kafka record timestamp → row written (producer to Cassandra, same clock assumed).
    pub end_to_end: Histogram,
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    assigned: Mutex<BTreeSet<(String, i32)>>,
    /// The latest errors, newest last: dead letters and failed writes.
    recent_errors: Mutex<std::collections::VecDeque<RecentError>>,
    /// Rows written per second over the last progress interval.
    rate_per_s: Mutex<f64>,
    /// Since when writes have failed without one succeeding (ms after [`clock`]'s start; 0:
    /// they succeed), and the latest error.
    failing_since_ms: AtomicU64,
    last_error: Mutex<String>,
}

/// Milliseconds since the first call (never 0).
fn clock() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl StreamMetrics {
    pub fn consumed(&self) {
        self.consumed.fetch_add(1, Relaxed);
    }
    pub fn written(&self, latency: Duration, end_to_end: Option<Duration>) {
        self.written.fetch_add(1, Relaxed);
        self.write_latency.observe(latency);
        if let Some(end_to_end) = end_to_end {
            self.end_to_end.observe(end_to_end);
        }
    }
    /// Skipped by `where:` or an `abort` in the transform (its offset is committed).
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }
    pub fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
    pub fn write_failed(&self, error: &str) {
        let began = self
            .failing_since_ms
            .compare_exchange(0, clock(), Relaxed, Relaxed)
            .is_ok();
        *lock(&self.last_error) = error.to_string();
        // An outage is one recent error (its first failure), not one per retry.
        if began {
            self.add_recent_error(RecentError {
                at: chrono::Utc::now(),
                kind: "write_failed".into(),
                message: error.to_string(),
                topic: None,
                partition: None,
                offset: None,
            });
        }
    }
    pub fn write_succeeded(&self) {
        if self.failing_since_ms.load(Relaxed) != 0 {
            self.failing_since_ms.store(0, Relaxed);
        }
    }
    /// How long writes have failed without one succeeding, and the latest error.
    pub fn failing_for(&self) -> Option<(Duration, String)> {
        let since = self.failing_since_ms.load(Relaxed);
        (since != 0).then(|| {
            let failing = Duration::from_millis(clock().saturating_sub(since));
            (failing, lock(&self.last_error).clone())
        })
    }
    pub fn dead_lettered(&self, kind: &'static str) {
        *lock(&self.dead_lettered).entry(kind).or_default() += 1;
    }
    pub fn add_recent_error(&self, error: RecentError) {
        let mut recent = lock(&self.recent_errors);
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(error);
    }
    pub fn recent_errors(&self) -> Vec<RecentError> {
        lock(&self.recent_errors).iter().cloned().collect()
    }
    pub fn dead_lettered_by_kind(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.dead_lettered).clone()
    }
    pub fn lag(&self) -> BTreeMap<(String, i32), i64> {
        lock(&self.lag).clone()
    }
    pub fn set_rate(&self, per_second: f64) {
        *lock(&self.rate_per_s) = per_second;
    }
    pub fn rate(&self) -> f64 {
        *lock(&self.rate_per_s)
    }
    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Relaxed);
    }
    pub fn set_lag(&self, lag: BTreeMap<(String, i32), i64>) {
        *lock(&self.lag) = lag;
    }
    pub fn set_assigned(&self, partitions: BTreeSet<(String, i32)>) {
        lock(&self.lag).retain(|key, _| partitions.contains(key));
        *lock(&self.assigned) = partitions;
    }

    pub fn consumed_total(&self) -> u64 {
        self.consumed.load(Relaxed)
    }
    pub fn written_total(&self) -> u64 {
        self.written.load(Relaxed)
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
    pub fn retries_total(&self) -> u64 {
        self.retries.load(Relaxed)
    }
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Relaxed)
    }
    pub fn dead_lettered_total(&self) -> u64 {
        lock(&self.dead_lettered).values().sum()
    }
    pub fn total_lag(&self) -> i64 {
        lock(&self.lag).values().filter(|lag| **lag > 0).sum()
    }
    /// Partitions currently assigned to this worker.
    pub fn assigned(&self) -> BTreeSet<(String, i32)> {
        lock(&self.assigned).clone()
    }

    fn render(&self, out: &mut String) {
        let s = escape(&self.stream);
        let _ = writeln!(
            out,
            "updraft_stream_records_consumed_total{{stream=\"{s}\"}} {}",
            self.consumed_total()
        );
        let _ = writeln!(
            out,
            "updraft_stream_records_written_total{{stream=\"{s}\"}} {}",
            self.written_total()
        );
        let _ = writeln!(
            out,
            "updraft_stream_records_dropped_total{{stream=\"{s}\"}} {}",
            self.dropped_total()
        );
        for (kind, count) in lock(&self.dead_lettered).iter() {
            let _ = writeln!(
                out,
                "updraft_stream_records_dead_lettered_total{{stream=\"{s}\",error=\"{kind}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "updraft_stream_write_retries_total{{stream=\"{s}\"}} {}",
            self.retries_total()
        );
        let _ = writeln!(
            out,
            "updraft_stream_in_flight{{stream=\"{s}\"}} {}",
            self.in_flight()
        );
        let labels = format!("stream=\"{s}\"");
        self.write_latency
            .render(out, "updraft_stream_write_latency_seconds", &labels);
        self.end_to_end
            .render(out, "updraft_stream_end_to_end_latency_seconds", &labels);
        for ((topic, partition), lag) in lock(&self.lag).iter() {
            let _ = writeln!(
                out,
                "updraft_stream_consumer_lag{{stream=\"{s}\",topic=\"{}\",partition=\"{partition}\"}} {lag}",
                escape(topic)
            );
        }
        let _ = writeln!(
            out,
            "updraft_stream_assigned_partitions{{stream=\"{s}\"}} {}",
            lock(&self.assigned).len()
        );
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// All streams of this process.
#[derive(Debug, Default)]
pub struct Metrics {
    streams: Mutex<Vec<Arc<StreamMetrics>>>,
    ready: AtomicBool,
}

const HELP: &str = "\
# HELP updraft_stream_records_consumed_total Records received from Kafka.
# TYPE updraft_stream_records_consumed_total counter
# HELP updraft_stream_records_written_total Rows written to Cassandra.
# TYPE updraft_stream_records_written_total counter
# HELP updraft_stream_records_dropped_total Records skipped by the stream's where: or an abort in its transform.
# TYPE updraft_stream_records_dropped_total counter
# HELP updraft_stream_records_dead_lettered_total Records sent to the dead-letter topic, by error.
# TYPE updraft_stream_records_dead_lettered_total counter
# HELP updraft_stream_write_retries_total Failed write attempts that were retried.
# TYPE updraft_stream_write_retries_total counter
# HELP updraft_stream_in_flight Writes and dead-letter sends not yet finished.
# TYPE updraft_stream_in_flight gauge
# HELP updraft_stream_write_latency_seconds Time from receiving a record to its row being written, retries included.
# TYPE updraft_stream_write_latency_seconds histogram
# HELP updraft_stream_end_to_end_latency_seconds Time from the Kafka record timestamp to its row being written.
# TYPE updraft_stream_end_to_end_latency_seconds histogram
# HELP updraft_stream_consumer_lag Records in the partition not yet committed by the group.
# TYPE updraft_stream_consumer_lag gauge
# HELP updraft_stream_assigned_partitions Partitions assigned to this worker.
# TYPE updraft_stream_assigned_partitions gauge
";

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The metrics of stream `name`, created on first use.
    pub fn stream(&self, name: &str) -> Arc<StreamMetrics> {
        let mut streams = lock(&self.streams);
        if let Some(found) = streams.iter().find(|s| s.stream == name) {
            return found.clone();
        }
        let created = Arc::new(StreamMetrics {
            stream: name.to_string(),
            ..Default::default()
        });
        streams.push(created.clone());
        created
    }

    /// Marks the worker ready (schemas checked, consumers subscribed) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// Why the worker is not healthy: starting, or a stream whose writes have failed for
    /// [`FAILING_UNHEALTHY`] without one succeeding (Cassandra down, the table missing).
    pub fn unhealthy(&self) -> Option<String> {
        if !self.is_ready() {
            return Some("starting".to_string());
        }
        lock(&self.streams).iter().find_map(|stream| {
            let (failing, error) = stream.failing_for()?;
            (failing >= FAILING_UNHEALTHY).then(|| {
                format!(
                    "stream `{}`: writes failing for {} s: {error}",
                    stream.stream,
                    failing.as_secs()
                )
            })
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from(HELP);
        for stream in lock(&self.streams).iter() {
            stream.render(&mut out);
        }
        out
    }
}

/// Writes failing this long without one succeeding make `/healthz` answer 503.
pub const FAILING_UNHEALTHY: Duration = Duration::from_secs(10);

/// `/metrics` and `/healthz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .route(
            "/healthz",
            get(|State(m): State<Arc<Metrics>>| async move {
                match m.unhealthy() {
                    None => (StatusCode::OK, "ok".to_string()),
                    Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
                }
            }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_writes_are_timed_until_one_succeeds() {
        let metrics = Metrics::new();
        metrics.set_ready(true);
        let stream = metrics.stream("users");
        assert!(stream.failing_for().is_none());
        stream.write_failed("unconfigured table created_users");
        stream.write_failed("still unconfigured");
        let (_, error) = stream.failing_for().expect("failing");
        assert_eq!(error, "still unconfigured");
        // Healthy until the failures have lasted FAILING_UNHEALTHY.
        assert_eq!(metrics.unhealthy(), None);
        stream.write_succeeded();
        assert!(stream.failing_for().is_none());
    }

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        let stream = metrics.stream("users");
        stream.consumed();
        stream.written(Duration::from_millis(3), Some(Duration::from_millis(40)));
        stream.dead_lettered("not_json");
        stream.set_assigned(BTreeSet::from([("t".to_string(), 0)]));
        stream.set_lag(BTreeMap::from([(("t".to_string(), 0), 42)]));
        let text = metrics.render();
        assert!(
            text.contains("updraft_stream_records_consumed_total{stream=\"users\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "updraft_stream_records_dead_lettered_total{stream=\"users\",error=\"not_json\"} 1\n"
        ));
        assert!(text.contains(
            "updraft_stream_write_latency_seconds_bucket{stream=\"users\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "updraft_stream_write_latency_seconds_bucket{stream=\"users\",le=\"0.002\"} 0\n"
        ));
        assert!(
            text.contains("updraft_stream_end_to_end_latency_seconds_count{stream=\"users\"} 1\n")
        );
        assert_eq!(stream.end_to_end.quantile(0.99), Some(0.05));
        assert!(text.contains(
            "updraft_stream_consumer_lag{stream=\"users\",topic=\"t\",partition=\"0\"} 42\n"
        ));
        assert!(text.contains("updraft_stream_assigned_partitions{stream=\"users\"} 1\n"));
        assert!(Arc::ptr_eq(&stream, &metrics.stream("users")));
    }
}
