//! Streams and Topics: what the stream workers do (each stream's state, rate, counts, lag per
//! partition, recent errors, its dead letters and a replay of them for op/admin) and a browser
//! of the brokers' topics and records, read through the workers' JSON API
//! ([`crate::stream_workers`]); the seed's Kafka UI, inside Updraft.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use serde_json::json;

use super::{CsrfForm, Frame, PageResult, enc, fmt_date, render};
use crate::AppState;
use crate::audit::{self, Target};
use crate::auth::CurrentUser;
use crate::error::{AppError, PageError};
use crate::extract::{ApiPath, Params};
use crate::stream_workers::{RecordView, StreamStatus, Window, WorkerError};
use crate::users::Role;

/// Records a page shows at most.
const RECORDS_SHOWN: i64 = 50;
/// Characters of a payload a list shows.
const PAYLOAD_PREVIEW: usize = 400;

pub struct StreamRow {
    pub name: String,
    pub href: String,
    pub state: String,
    pub rate: String,
    pub written: u64,
    pub dropped: u64,
    pub dead_lettered: u64,
    pub lag: i64,
    pub topic: String,
    pub topic_href: String,
    pub tables: String,
}

impl StreamRow {
    fn of(status: &StreamStatus) -> StreamRow {
        StreamRow {
            name: status.name.clone(),
            href: format!("/streams/{}", enc(&status.name)),
            state: status.state.clone(),
            rate: format!("{:.0}/s", status.rate_per_s),
            written: status.written,
            dropped: status.dropped,
            dead_lettered: status.dead_lettered,
            lag: status.lag.iter().map(|lag| lag.lag).sum(),
            topic: status.topic.clone(),
            topic_href: format!("/topics/{}", enc(&status.topic)),
            tables: status
                .tables
                .iter()
                .map(|table| format!("{}.{table}", status.keyspace))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "streams.html")]
struct StreamsPage {
    user: String,
    role: String,
    csrf: String,
    rows: Vec<StreamRow>,
    unreachable: Vec<String>,
    workers: String,
}

pub async fn list(State(state): State<AppState>, user: CurrentUser) -> PageResult {
    user.require(Role::Viewer)?;
    let (streams, failures) = state.stream_workers.streams().await;
    let frame = Frame::of(&user);
    render(&StreamsPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        rows: streams.iter().map(StreamRow::of).collect(),
        unreachable: failures.iter().map(ToString::to_string).collect(),
        workers: state.stream_workers.urls().join(", "),
    })
}

/// A record as a page shows it.
pub struct RecordRow {
    pub partition: i32,
    pub offset: i64,
    pub time: String,
    pub key: String,
    /// `error`, `error.message`, … (a dead letter's reasons).
    pub headers: Vec<(String, String)>,
    pub payload: String,
    pub bytes: usize,
    /// The schema of an Avro payload, which the worker decoded to JSON.
    pub avro_schema_id: Option<u32>,
}

impl RecordRow {
    fn of(record: RecordView) -> RecordRow {
        let payload = record.payload.unwrap_or_default();
        // A JSON payload is shown indented; anything else as it is.
        let shown = serde_json::from_str::<serde_json::Value>(&payload)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or(payload);
        let shown = match shown.char_indices().nth(PAYLOAD_PREVIEW) {
            Some((cut, _)) => format!("{}…", &shown[..cut]),
            None => shown,
        };
        RecordRow {
            partition: record.partition,
            offset: record.offset,
            time: fmt_date(record.timestamp),
            key: record.key.unwrap_or_default(),
            headers: record.headers,
            payload: shown,
            bytes: record.bytes,
            avro_schema_id: record.avro_schema_id,
        }
    }
}

pub struct ErrorRow {
    pub time: String,
    pub kind: String,
    pub place: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "stream.html")]
struct StreamPage {
    user: String,
    role: String,
    csrf: String,
    stream: StreamRow,
    group: String,
    dead_letter_topic: String,
    dead_letter_topic_href: String,
    consumed: u64,
    retries: u64,
    in_flight: i64,
    latency: String,
    lag: Vec<(String, i32, i64)>,
    kinds: Vec<(String, u64)>,
    errors: Vec<ErrorRow>,
    /// The oldest dead letters.
    records: Vec<RecordRow>,
    records_error: Option<String>,
    can_replay: bool,
    replay_action: String,
    notice: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(name): ApiPath<String>,
    params: Params,
) -> PageResult {
    user.require(Role::Viewer)?;
    let (streams, failures) = state.stream_workers.streams().await;
    let Some(status) = streams.into_iter().find(|stream| stream.name == name) else {
        // Unknown, unless a worker that did not answer may run it.
        return Err(PageError(if failures.is_empty() {
            AppError::not_found(format!("no stream `{name}` on the stream workers"))
        } else {
            unavailable(&failures)
        }));
    };
    let (records, records_error) = match state
        .stream_workers
        .dead_letters(
            &name,
            Window {
                partition: None,
                offset: None,
                limit: RECORDS_SHOWN as usize,
            },
        )
        .await
    {
        Ok(letters) => (letters.into_iter().map(RecordRow::of).collect(), None),
        // No dead-letter topic yet: nothing was refused.
        Err(WorkerError::Refused { status: 404, .. }) => (Vec::new(), None),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    let ms = |value: Option<f64>| value.map_or_else(|| "–".to_string(), |ms| format!("{ms:.1} ms"));
    let frame = Frame::of(&user);
    render(&StreamPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        stream: StreamRow::of(&status),
        group: status.group.clone(),
        dead_letter_topic_href: format!("/topics/{}", enc(&status.dead_letter_topic)),
        dead_letter_topic: status.dead_letter_topic.clone(),
        consumed: status.consumed,
        retries: status.retries,
        in_flight: status.in_flight,
        latency: format!(
            "p50 {} · p99 {}",
            ms(status.write_p50_ms),
            ms(status.write_p99_ms)
        ),
        lag: status
            .lag
            .iter()
            .map(|lag| (lag.topic.clone(), lag.partition, lag.lag))
            .collect(),
        kinds: status.dead_lettered_by_kind.clone().into_iter().collect(),
        errors: status
            .recent_errors
            .iter()
            .rev()
            .map(|error| ErrorRow {
                time: fmt_date(Some(error.at)),
                kind: error.kind.clone(),
                place: match (&error.topic, error.partition, error.offset) {
                    (Some(topic), Some(partition), Some(offset)) => {
                        format!("{topic} [{partition}] @{offset}")
                    }
                    _ => String::new(),
                },
                message: error.message.clone(),
            })
            .collect(),
        records,
        records_error,
        can_replay: user.user.role.allows(Role::Op),
        replay_action: format!("/streams/{}/replay", enc(&name)),
        notice: params.get("replayed").map(str::to_string),
    })
}

/// Replays the stream's dead letters (op/admin), then back to its page saying what happened.
pub async fn replay(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(name): ApiPath<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Op)?;
    let replayed = state.stream_workers.replay(&name).await.map_err(|error| {
        PageError(match error {
            WorkerError::Refused {
                status: 404,
                message,
            } => AppError::NotFound(message),
            other => unavailable(&[other]),
        })
    })?;
    let summary = format!(
        "Replayed {} dead letter(s): {} written, {} dropped by where/transform, {} refused again, \
         {} reference(s) skipped.",
        replayed.read,
        replayed.written,
        replayed.dropped,
        replayed.refused_again,
        replayed.references
    );
    audit::record(
        &state.pool,
        &user,
        "stream_dead_letters_replay",
        Target::default(),
        Some(json!({
            "stream": name,
            "read": replayed.read,
            "written": replayed.written,
            "refused_again": replayed.refused_again,
        })),
    )
    .await;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("replayed", &summary)
        .finish();
    Ok(Redirect::to(&format!("/streams/{}?{query}", enc(&name))).into_response())
}

/// A 503 naming the workers that did not answer.
fn unavailable(failures: &[WorkerError]) -> AppError {
    let why: Vec<String> = failures.iter().map(ToString::to_string).collect();
    AppError::Unavailable(why.join("; "))
}

pub struct TopicRow {
    pub name: String,
    pub href: String,
    pub partitions: usize,
    pub records: i64,
}

#[derive(Template)]
#[template(path = "topics.html")]
struct TopicsPage {
    user: String,
    role: String,
    csrf: String,
    rows: Vec<TopicRow>,
    error: Option<String>,
}

pub async fn topics(State(state): State<AppState>, user: CurrentUser) -> PageResult {
    user.require(Role::Viewer)?;
    let (rows, error) = match state.stream_workers.topics().await {
        Ok(topics) => (
            topics
                .into_iter()
                .map(|topic| TopicRow {
                    href: format!("/topics/{}", enc(&topic.name)),
                    partitions: topic.partitions.len(),
                    records: topic.records,
                    name: topic.name,
                })
                .collect(),
            None,
        ),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    let frame = Frame::of(&user);
    render(&TopicsPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        rows,
        error,
    })
}

pub struct PartitionRow {
    pub partition: i32,
    pub first: i64,
    pub next: i64,
    pub href: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "topic.html")]
struct TopicPage {
    user: String,
    role: String,
    csrf: String,
    name: String,
    partitions: Vec<PartitionRow>,
    partition: i32,
    offset: i64,
    records: Vec<RecordRow>,
    older_href: Option<String>,
    newer_href: Option<String>,
}

/// A topic's partitions and, for the one chosen, its records from `offset` (by default the
/// latest [`RECORDS_SHOWN`]).
pub async fn topic(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(name): ApiPath<String>,
    params: Params,
) -> PageResult {
    user.require(Role::Viewer)?;
    let topics = state
        .stream_workers
        .topics()
        .await
        .map_err(|error| PageError(unavailable(&[error])))?;
    let found = topics
        .into_iter()
        .find(|topic| topic.name == name)
        .ok_or_else(|| AppError::not_found(format!("no topic `{name}`")))?;
    let partition = i32::try_from(params.int("partition", 0, 0)?)
        .map_err(|_| AppError::BadRequest("partition is too large".into()))?;
    let range = found
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .ok_or_else(|| {
            AppError::not_found(format!("topic `{name}` has no partition {partition}"))
        })?;
    let latest = (range.next - RECORDS_SHOWN).max(range.first);
    let offset = params
        .int("offset", latest, 0)?
        .clamp(range.first, range.next);
    let records = state
        .stream_workers
        .records(
            &name,
            Window {
                partition: Some(partition),
                offset: Some(offset),
                limit: RECORDS_SHOWN as usize,
            },
        )
        .await
        .map_err(|error| PageError(unavailable(&[error])))?;
    let href = |offset: i64| {
        format!(
            "/topics/{}?partition={partition}&offset={offset}",
            enc(&name)
        )
    };
    let frame = Frame::of(&user);
    render(&TopicPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        partitions: found
            .partitions
            .iter()
            .map(|p| PartitionRow {
                partition: p.partition,
                first: p.first,
                next: p.next,
                href: format!("/topics/{}?partition={}", enc(&name), p.partition),
                selected: p.partition == partition,
            })
            .collect(),
        older_href: (offset > range.first).then(|| href((offset - RECORDS_SHOWN).max(range.first))),
        newer_href: (offset + RECORDS_SHOWN < range.next).then(|| href(offset + RECORDS_SHOWN)),
        name,
        partition,
        offset,
        records: records.into_iter().map(RecordRow::of).collect(),
    })
}
