//! The stream workers' JSON API as the Streams and Topics pages read it (`stream-worker`'s
//! `/api/...`, beside its `/metrics`): the workers are found at `UPDRAFT_STREAM_WORKERS`, a
//! comma-separated list of base URLs (default `http://127.0.0.1:9108`, the worker's default
//! `--metrics-addr`). Several workers of one consumer group each report the partitions they
//! hold; their reports of a stream are merged. Kafka itself (dead letters, topics, records) is
//! read through whichever worker answers first.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// How long a worker may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no stream worker is configured (UPDRAFT_STREAM_WORKERS is empty)")]
    NoneConfigured,
    #[error("stream worker {url}: {message}")]
    Failed { url: String, message: String },
    /// The worker answered with an error of its own (an unknown stream or topic: 404).
    #[error("{message}")]
    Refused { status: u16, message: String },
}

pub use stream_worker_api::{
    PartitionLag, PartitionView, RecentError, RecordView, Replayed, StreamStatus, TopicView,
};

/// The configured workers and one HTTP client for them.
#[derive(Clone)]
pub struct StreamWorkers {
    urls: Vec<String>,
    client: reqwest::Client,
}

impl StreamWorkers {
    pub fn new(urls: Vec<String>) -> StreamWorkers {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        let urls = urls
            .into_iter()
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
            .collect();
        StreamWorkers { urls, client }
    }

    /// `UPDRAFT_STREAM_WORKERS`, else the worker's default address.
    pub fn from_env() -> StreamWorkers {
        let urls = std::env::var("UPDRAFT_STREAM_WORKERS")
            .unwrap_or_else(|_| "http://127.0.0.1:9108".to_string());
        StreamWorkers::new(urls.split(',').map(str::to_string).collect())
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, WorkerError> {
        let failed = |message: String| WorkerError::Failed {
            url: url.to_string(),
            message,
        };
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let message = response
                .json::<stream_worker_api::ApiError>()
                .await
                .map_or_else(|_| status.to_string(), |body| body.error);
            return Err(WorkerError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        response.json().await.map_err(|e| failed(e.to_string()))
    }

    /// Every stream the workers run, merged by name, and the workers that did not answer.
    pub async fn streams(&self) -> (Vec<StreamStatus>, Vec<WorkerError>) {
        let mut merged: BTreeMap<String, StreamStatus> = BTreeMap::new();
        let mut failures = Vec::new();
        if self.urls.is_empty() {
            failures.push(WorkerError::NoneConfigured);
        }
        // Asked side by side: a worker that does not answer costs its timeout once.
        let answers = futures::future::join_all(self.urls.iter().map(|url| {
            self.send::<Vec<StreamStatus>>(url, self.client.get(format!("{url}/api/streams")))
        }))
        .await;
        for answer in answers {
            match answer {
                Ok(reports) => {
                    for report in reports {
                        match merged.get_mut(&report.name) {
                            Some(known) => merge(known, report),
                            None => {
                                merged.insert(report.name.clone(), report);
                            }
                        }
                    }
                }
                Err(error) => failures.push(error),
            }
        }
        (merged.into_values().collect(), failures)
    }

    /// The first answer of a worker to `method path` (they all read the same Kafka); a worker
    /// that refuses (404: no such stream here) answers, one that fails passes the turn.
    async fn first<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<T, WorkerError> {
        let mut last = WorkerError::NoneConfigured;
        for url in &self.urls {
            let request = self.client.request(method.clone(), format!("{url}{path}"));
            match self.send(url, request).await {
                Err(WorkerError::Failed { url, message }) => {
                    last = WorkerError::Failed { url, message };
                }
                answer => return answer,
            }
        }
        Err(last)
    }

    /// Dead letters of `stream`, oldest first.
    pub async fn dead_letters(
        &self,
        stream: &str,
        window: Window,
    ) -> Result<Vec<RecordView>, WorkerError> {
        let path = format!("/api/streams/{}/dead-letters", crate::ui::enc(stream));
        self.first(reqwest::Method::GET, &window.query(&path)).await
    }

    pub async fn topics(&self) -> Result<Vec<TopicView>, WorkerError> {
        self.first(reqwest::Method::GET, "/api/topics").await
    }

    /// Records of `topic`.
    pub async fn records(
        &self,
        topic: &str,
        window: Window,
    ) -> Result<Vec<RecordView>, WorkerError> {
        let path = format!("/api/topics/{}/records", crate::ui::enc(topic));
        self.first(reqwest::Method::GET, &window.query(&path)).await
    }

    /// Replays the stream's dead letters on the first worker that runs it.
    pub async fn replay(&self, stream: &str) -> Result<Replayed, WorkerError> {
        let path = format!(
            "/api/streams/{}/dead-letters/replay",
            crate::ui::enc(stream)
        );
        self.first(reqwest::Method::POST, &path).await
    }
}

/// Which records to read: of one partition or all, from an offset or the first kept.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub limit: usize,
}

impl Window {
    fn query(self, path: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(partition) = self.partition {
            query.append_pair("partition", &partition.to_string());
        }
        if let Some(offset) = self.offset {
            query.append_pair("offset", &offset.to_string());
        }
        query.append_pair("limit", &self.limit.to_string());
        format!("{path}?{}", query.finish())
    }
}

/// Adds another worker's report of the same stream: counts and rates add up, each worker
/// reports the partitions it holds, the worse state wins.
fn merge(known: &mut StreamStatus, other: StreamStatus) {
    let rank = |state: &str| match state {
        "failing" => 2,
        "starting" => 1,
        _ => 0,
    };
    if rank(&other.state) > rank(&known.state) {
        known.state = other.state;
    }
    known.consumed += other.consumed;
    known.written += other.written;
    known.dropped += other.dropped;
    known.dead_lettered += other.dead_lettered;
    for (kind, count) in other.dead_lettered_by_kind {
        *known.dead_lettered_by_kind.entry(kind).or_default() += count;
    }
    known.retries += other.retries;
    known.in_flight += other.in_flight;
    known.rate_per_s += other.rate_per_s;
    // The slower worker's latency: a quantile of two histograms is not theirs combined.
    let slower = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    known.write_p50_ms = slower(known.write_p50_ms, other.write_p50_ms);
    known.write_p99_ms = slower(known.write_p99_ms, other.write_p99_ms);
    known.lag.extend(other.lag);
    known
        .lag
        .sort_by_key(|lag| (lag.topic.clone(), lag.partition));
    known.recent_errors.extend(other.recent_errors);
    known.recent_errors.sort_by_key(|error| error.at);
}
