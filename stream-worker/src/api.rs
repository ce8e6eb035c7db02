//! The worker's JSON API, beside `/metrics` and `/healthz`: what the Updraft UI's Streams pages
//! read (each stream's state, counts, rate, lag per partition and recent errors; its dead
//! letters; the topics of its brokers and their records) and the dead-letter replay they start.
//! It reads Kafka as `stream-worker dlq`/`replay` do, never through a consumer group.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /api/streams` | every stream's definition summary and state |
//! | `GET /api/streams/{name}/dead-letters?partition=&offset=&limit=` | its dead letters |
//! | `POST /api/streams/{name}/dead-letters/replay` | replays them; what it did |
//! | `GET /api/topics` | the brokers' topics, each partition's first and next offset |
//! | `GET /api/topics/{topic}/records?partition=&offset=&limit=` | records of a topic |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use stream_worker_api::{
    PartitionLag, PartitionView, RecordView, Replayed, StreamStatus, TopicView,
};

use crate::avro::{self, AvroSchemas};
use crate::metrics::Metrics;
use crate::topic_range::{self, PartitionRange, ReadError, TopicRecord};
use crate::{Stream, WorkerConfig};

/// Records returned at most per request.
const MAX_RECORDS: usize = 500;

#[derive(Clone)]
struct Api {
    metrics: Arc<Metrics>,
    streams: Arc<Vec<Stream>>,
    /// Set once the definitions' connections are applied: until then only the streams'
    /// state is served (`starting`), Kafka is not read.
    config: Arc<std::sync::OnceLock<WorkerConfig>>,
    /// The worker's schema registry, to show Avro records as JSON (made with the config).
    avro: Arc<std::sync::OnceLock<Option<AvroSchemas>>>,
}

impl Api {
    fn avro_schemas(&self) -> Option<&AvroSchemas> {
        let config = self.config.get()?;
        self.avro
            .get_or_init(|| {
                let registry = config.schema_registry().ok()?;
                Some(AvroSchemas::new(
                    crate::definition::DEFAULT_MAX_RECORD_BYTES,
                    registry,
                ))
            })
            .as_ref()
    }
}

/// The API's routes, to merge with [`crate::metrics::router`]; `config` is set when the
/// worker knows its brokers (after its connections are read).
pub fn router(
    metrics: Arc<Metrics>,
    streams: Vec<Stream>,
    config: Arc<std::sync::OnceLock<WorkerConfig>>,
) -> Router {
    Router::new()
        .route("/api/streams", get(streams_status))
        .route("/api/streams/{name}/dead-letters", get(dead_letters))
        .route("/api/streams/{name}/dead-letters/replay", post(replay))
        .route("/api/topics", get(topics))
        .route("/api/topics/{topic}/records", get(records))
        .with_state(Api {
            metrics,
            streams: Arc::new(streams),
            config,
            avro: Arc::default(),
        })
}

async fn streams_status(State(api): State<Api>) -> Json<Vec<StreamStatus>> {
    let ready = api.metrics.is_ready();
    Json(
        api.streams
            .iter()
            .map(|stream| {
                let metrics = api.metrics.stream(&stream.name);
                let state = match (ready, metrics.failing_for()) {
                    (false, _) => "starting",
                    (true, Some(_)) => "failing",
                    (true, None) => "running",
                };
                let ms = |q: f64| metrics.write_latency.quantile(q).map(|s| s * 1000.0);
                StreamStatus {
                    name: stream.name.clone(),
                    topic: stream.topic.clone(),
                    group: stream.group.clone(),
                    keyspace: stream.keyspace.clone(),
                    tables: stream.tables.iter().map(|t| t.name.clone()).collect(),
                    dead_letter_topic: stream.dead_letter_topic.clone(),
                    state: state.to_string(),
                    consumed: metrics.consumed_total(),
                    written: metrics.written_total(),
                    dropped: metrics.dropped_total(),
                    dead_lettered: metrics.dead_lettered_total(),
                    dead_lettered_by_kind: metrics
                        .dead_lettered_by_kind()
                        .into_iter()
                        .map(|(kind, count)| (kind.to_string(), count))
                        .collect(),
                    retries: metrics.retries_total(),
                    in_flight: metrics.in_flight(),
                    rate_per_s: metrics.rate(),
                    write_p50_ms: ms(0.5),
                    write_p99_ms: ms(0.99),
                    lag: metrics
                        .lag()
                        .into_iter()
                        .map(|((topic, partition), lag)| PartitionLag {
                            topic,
                            partition,
                            lag,
                        })
                        .collect(),
                    recent_errors: metrics.recent_errors(),
                }
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
struct Window {
    partition: Option<i32>,
    offset: Option<i64>,
    limit: Option<usize>,
}

/// The records as views, Avro payloads decoded through the worker's schema registry.
async fn record_views(api: &Api, records: Vec<TopicRecord>) -> Vec<RecordView> {
    let mut views = Vec::with_capacity(records.len());
    for record in records {
        let decoded = match (&record.payload, api.avro_schemas()) {
            (Some(payload), Some(schemas)) => avro::as_json(schemas, payload).await,
            _ => None,
        };
        let mut view = record_view(record);
        if let Some((id, json)) = decoded {
            view.payload = Some(json.to_string());
            view.avro_schema_id = Some(id);
        }
        views.push(view);
    }
    views
}

fn record_view(record: TopicRecord) -> RecordView {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    RecordView {
        partition: record.partition,
        offset: record.offset,
        timestamp: record
            .timestamp_ms
            .and_then(chrono::DateTime::from_timestamp_millis),
        headers: record.headers,
        key: record.key.as_deref().map(text),
        bytes: record.payload.as_ref().map_or(0, Vec::len),
        payload: record.payload.as_deref().map(text),
        avro_schema_id: None,
    }
}

/// An error as JSON `{"error": …}` with its status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(stream_worker_api::ApiError { error: self.1 })).into_response()
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        let status = match error {
            ReadError::NoTopic(_) | ReadError::NoPartition { .. } => StatusCode::NOT_FOUND,
            ReadError::Kafka(_) | ReadError::TimedOut { .. } => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, error.to_string())
    }
}

impl Api {
    fn config(&self) -> Result<&WorkerConfig, ApiError> {
        self.config.get().ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the worker is starting".into(),
            )
        })
    }
}

fn stream_named<'a>(api: &'a Api, name: &str) -> Result<&'a Stream, ApiError> {
    api.streams
        .iter()
        .find(|stream| stream.name == name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no stream `{name}`")))
}

/// A blocking librdkafka read, off the runtime's threads.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
        .map_err(ApiError::from)
}

async fn read_window(
    api: &Api,
    topic: String,
    window: Window,
) -> Result<Json<Vec<RecordView>>, ApiError> {
    let client = api.config()?.kafka_client();
    let limit = window.limit.unwrap_or(50).min(MAX_RECORDS);
    let records = blocking(move || {
        topic_range::read(&client, &topic, window.partition, window.offset, limit)
    })
    .await?;
    Ok(Json(record_views(api, records).await))
}

async fn dead_letters(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(window): Query<Window>,
) -> Result<Json<Vec<RecordView>>, ApiError> {
    let topic = stream_named(&api, &name)?.dead_letter_topic.clone();
    read_window(&api, topic, window).await
}

async fn replay(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Replayed>, ApiError> {
    let stream = stream_named(&api, &name)?;
    let replayed = crate::dlq::replay(api.config()?, stream, None, None)
        .await
        .map_err(|error| ApiError(StatusCode::BAD_GATEWAY, error.to_string()))?;
    tracing::info!(stream = %name, ?replayed, "dead letters replayed through the API");
    Ok(Json(replayed))
}

fn partition_view(range: PartitionRange) -> PartitionView {
    PartitionView {
        partition: range.partition,
        first: range.first,
        next: range.next,
    }
}

async fn topics(State(api): State<Api>) -> Result<Json<Vec<TopicView>>, ApiError> {
    let client = api.config()?.kafka_client();
    let topics = blocking(move || topic_range::topics(&client)).await?;
    Ok(Json(
        topics
            .into_iter()
            .map(|(name, ranges)| TopicView {
                name,
                records: ranges.iter().map(PartitionRange::count).sum(),
                partitions: ranges.into_iter().map(partition_view).collect(),
            })
            .collect(),
    ))
}

async fn records(
    State(api): State<Api>,
    Path(topic): Path<String>,
    Query(window): Query<Window>,
) -> Result<Json<Vec<RecordView>>, ApiError> {
    read_window(&api, topic, window).await
}
