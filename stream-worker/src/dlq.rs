//! A stream's dead letters as an operator reads them: how many each partition of its
//! dead-letter topic holds (`stream-worker dlq list`), and the records themselves with the
//! headers that say why they were refused (`stream-worker dlq show`). Reading commits nothing
//! and joins no consumer group's assignment: it never moves a worker's offsets.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// How long Kafka may take to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the records asked for may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("dead-letter topic `{0}` does not exist (no record was dead-lettered yet?)")]
    NoTopic(String),
    #[error("dead-letter topic `{topic}` has no partition {partition}")]
    NoPartition { topic: String, partition: i32 },
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("read {read} of {wanted} dead letters of `{topic}` in {READ_TIMEOUT:?}")]
    TimedOut {
        topic: String,
        read: usize,
        wanted: usize,
    },
}

/// The dead letters one partition holds: offsets `first` to `next - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLetters {
    pub partition: i32,
    pub first: i64,
    pub next: i64,
}

impl PartitionLetters {
    pub fn count(&self) -> i64 {
        (self.next - self.first).max(0)
    }
}

/// One dead letter: where it is, its headers (`error`, `error.field`, `error.message`,
/// `source.topic`, `source.partition`, `source.offset`, …) and the refused bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, String)>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn reader(client: &ClientConfig) -> Result<BaseConsumer, KafkaError> {
    client
        .clone()
        .set("group.id", "stream-worker-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
}

/// Each partition of `topic` with the offsets of the letters it holds, by partition.
pub fn partitions(client: &ClientConfig, topic: &str) -> Result<Vec<PartitionLetters>, DlqError> {
    let consumer = reader(client)?;
    partitions_of(&consumer, topic)
}

fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<PartitionLetters>, DlqError> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let Some(found) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    else {
        return Err(DlqError::NoTopic(topic.to_string()));
    };
    let mut letters = Vec::new();
    for partition in found.partitions() {
        let (first, next) = consumer.fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)?;
        letters.push(PartitionLetters {
            partition: partition.id(),
            first,
            next,
        });
    }
    letters.sort_by_key(|p| p.partition);
    Ok(letters)
}

/// Up to `limit` dead letters of `topic`, oldest first per partition: of `partition` only when
/// given, from `offset` when given (else from the first one kept).
pub fn read(
    client: &ClientConfig,
    topic: &str,
    partition: Option<i32>,
    offset: Option<i64>,
    limit: usize,
) -> Result<Vec<DeadLetter>, DlqError> {
    let consumer = reader(client)?;
    let mut ranges: Vec<PartitionLetters> = partitions_of(&consumer, topic)?
        .into_iter()
        .filter(|p| partition.is_none_or(|wanted| p.partition == wanted))
        .collect();
    if let (Some(wanted), true) = (partition, ranges.is_empty()) {
        return Err(DlqError::NoPartition {
            topic: topic.to_string(),
            partition: wanted,
        });
    }
    for range in &mut ranges {
        range.first = offset.map_or(range.first, |from| from.clamp(range.first, range.next));
    }
    ranges.retain(|range| range.count() > 0);
    let wanted = ranges
        .iter()
        .map(|range| range.count() as usize)
        .sum::<usize>()
        .min(limit);
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let mut assignment = TopicPartitionList::new();
    for range in &ranges {
        assignment.add_partition_offset(topic, range.partition, Offset::Offset(range.first))?;
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let mut letters: Vec<DeadLetter> = Vec::with_capacity(wanted);
    while letters.len() < wanted {
        if started.elapsed() > READ_TIMEOUT {
            return Err(DlqError::TimedOut {
                topic: topic.to_string(),
                read: letters.len(),
                wanted,
            });
        }
        let Some(received) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        // A transient error (a partition without a leader yet): librdkafka retries by itself.
        let Ok(message) = received else {
            continue;
        };
        let end = ranges
            .iter()
            .find(|range| range.partition == message.partition())
            .map_or(0, |range| range.next);
        if message.offset() >= end {
            continue;
        }
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = header
                            .value
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        (header.key.to_string(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        letters.push(DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            headers,
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        });
    }
    letters.sort_by_key(|letter| (letter.partition, letter.offset));
    Ok(letters)
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Dead letters read (those there when the replay started).
    pub read: usize,
    /// Written to the table this time.
    pub written: usize,
    /// Refused again: sent to the dead-letter topic again, with the new reason.
    pub refused_again: usize,
    /// Skipped by the definition's `where:` or an `abort` in its `transform:`.
    pub dropped: usize,
    /// Sent as references only (too large for the dead-letter topic): their bytes are at their
    /// source offset, which `stream-worker replay` of the source topic reads.
    pub references: usize,
}

/// Letters read per request while replaying: memory stays bounded whatever the topic holds.
const REPLAY_BATCH: usize = 500;

/// Sends every dead letter of `stream` there when it starts (of `partition` only, from
/// `offset`, when given) through the current definition: decoded and written as the worker
/// would (the dead letter's time is the write time), or dead-lettered again with the new
/// reason. Returns when done; letters added meanwhile (its own included) are not read.
pub async fn replay(
    config: &crate::WorkerConfig,
    stream: &crate::Stream,
    partition: Option<i32>,
    offset: Option<i64>,
) -> Result<Replayed, crate::WorkerError> {
    use crate::dead_letter::{DeadLetters, SourceRecord};
    use crate::worker::WorkerError;

    let session = crate::worker::prepare_once(config, std::slice::from_ref(stream)).await?;
    let metrics = crate::Metrics::new().stream(&stream.name);
    let sink = crate::sink::Sink::prepare(session, stream, metrics.clone()).await?;
    let client = config.kafka_client();
    let dead_letters = DeadLetters::new(client.clone(), &stream.dead_letter_topic, metrics)
        .map_err(|source| WorkerError::Kafka {
            what: "create the dead-letter producer".into(),
            source,
        })?;
    let topic = stream.dead_letter_topic.clone();
    let blocking_client = client.clone();
    let blocking_topic = topic.clone();
    let ends = tokio::task::spawn_blocking(move || partitions(&blocking_client, &blocking_topic))
        .await
        .map_err(|error| WorkerError::Task(error.to_string()))?
        .map_err(|error| WorkerError::Task(error.to_string()))?;
    let mut replayed = Replayed::default();
    for end in ends
        .into_iter()
        .filter(|p| partition.is_none_or(|wanted| p.partition == wanted))
    {
        let mut next = offset.map_or(end.first, |from| from.clamp(end.first, end.next));
        while next < end.next {
            let (client, topic) = (client.clone(), topic.clone());
            let wanted = usize::try_from(end.next - next)
                .unwrap_or(usize::MAX)
                .min(REPLAY_BATCH);
            let letters = tokio::task::spawn_blocking(move || {
                read(&client, &topic, Some(end.partition), Some(next), wanted)
            })
            .await
            .map_err(|error| WorkerError::Task(error.to_string()))?
            .map_err(|error| WorkerError::Task(error.to_string()))?;
            let Some(last) = letters.last().map(|letter| letter.offset) else {
                break;
            };
            next = last + 1;
            for letter in letters {
                replayed.read += 1;
                if letter.header("payload.omitted").is_some() {
                    replayed.references += 1;
                    continue;
                }
                let source = SourceRecord {
                    topic: letter
                        .header("source.topic")
                        .unwrap_or(&stream.topic)
                        .into(),
                    partition: letter
                        .header("source.partition")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(-1),
                    offset: letter
                        .header("source.offset")
                        .and_then(|o| o.parse().ok())
                        .unwrap_or(-1),
                    key: letter.key.clone(),
                    payload: letter.payload.clone(),
                };
                let micros = letter
                    .timestamp_ms
                    .filter(|ms| *ms >= 0)
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
                    .saturating_mul(1000);
                let outcome = match crate::decode::decode(stream, source.payload.as_deref()) {
                    Ok(Some(row)) => sink.write(row, micros).await,
                    Ok(None) => {
                        replayed.dropped += 1;
                        continue;
                    }
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(()) => replayed.written += 1,
                    Err(error) => {
                        dead_letters.send(&source, &error).await;
                        replayed.refused_again += 1;
                    }
                }
            }
        }
    }
    Ok(replayed)
}
