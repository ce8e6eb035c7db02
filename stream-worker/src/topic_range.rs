//! Reading a range of a topic as an operator does: how many records each partition holds, and
//! the records from a point, with their headers (`stream-worker dlq list|show`, the replays).
//! Reading commits nothing and joins no consumer group's assignment: it never moves a worker's
//! offsets.

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
pub enum ReadError {
    #[error("topic `{0}` does not exist")]
    NoTopic(String),
    #[error("topic `{topic}` has no partition {partition}")]
    NoPartition { topic: String, partition: i32 },
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("read {read} of {wanted} records of `{topic}` in {READ_TIMEOUT:?}")]
    TimedOut {
        topic: String,
        read: usize,
        wanted: usize,
    },
}

/// The records one partition holds: offsets `first` to `next - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: i32,
    pub first: i64,
    pub next: i64,
}

impl PartitionRange {
    pub fn count(&self) -> i64 {
        (self.next - self.first).max(0)
    }
}

/// One record: where it is, its headers (a dead letter's `error`, `error.message`,
/// `source.offset`, …) and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, String)>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl TopicRecord {
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
        .set("group.id", "stream-worker-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
}

/// Each partition of `topic` with the offsets of the records it holds, by partition.
pub fn partitions(client: &ClientConfig, topic: &str) -> Result<Vec<PartitionRange>, ReadError> {
    let consumer = reader(client)?;
    partitions_of(&consumer, topic)
}

fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<PartitionRange>, ReadError> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let Some(found) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    else {
        return Err(ReadError::NoTopic(topic.to_string()));
    };
    let mut ranges = Vec::new();
    for partition in found.partitions() {
        let (first, next) = consumer.fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)?;
        ranges.push(PartitionRange {
            partition: partition.id(),
            first,
            next,
        });
    }
    ranges.sort_by_key(|p| p.partition);
    Ok(ranges)
}

/// Every topic of the brokers (but Kafka's own, `__…`) with its partitions' offsets, by name.
pub fn topics(client: &ClientConfig) -> Result<Vec<(String, Vec<PartitionRange>)>, ReadError> {
    let consumer = reader(client)?;
    let metadata = consumer.fetch_metadata(None, REQUEST_TIMEOUT)?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none() && !topic.name().starts_with("__"))
        .map(|topic| topic.name().to_string())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let ranges = partitions_of(&consumer, &name)?;
            Ok((name, ranges))
        })
        .collect()
}

/// Up to `limit` records of `topic`, oldest first per partition: of `partition` only when given,
/// from `offset` when given (else from the first one kept).
pub fn read(
    client: &ClientConfig,
    topic: &str,
    partition: Option<i32>,
    offset: Option<i64>,
    limit: usize,
) -> Result<Vec<TopicRecord>, ReadError> {
    let consumer = reader(client)?;
    let mut ranges: Vec<PartitionRange> = partitions_of(&consumer, topic)?
        .into_iter()
        .filter(|p| partition.is_none_or(|wanted| p.partition == wanted))
        .collect();
    if let (Some(wanted), true) = (partition, ranges.is_empty()) {
        return Err(ReadError::NoPartition {
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
    let mut records: Vec<TopicRecord> = Vec::with_capacity(wanted);
    while records.len() < wanted {
        if started.elapsed() > READ_TIMEOUT {
            return Err(ReadError::TimedOut {
                topic: topic.to_string(),
                read: records.len(),
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
        records.push(TopicRecord {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            headers,
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        });
    }
    records.sort_by_key(|record| (record.partition, record.offset));
    Ok(records)
}

/// For each partition of `topic`, the offset of its first record at or after `millis` (epoch
/// ms); a partition with none yet starts at its end.
pub fn offsets_for_time(
    client: &ClientConfig,
    topic: &str,
    millis: i64,
) -> Result<Vec<(i32, i64)>, ReadError> {
    let consumer = reader(client)?;
    let ranges = partitions_of(&consumer, topic)?;
    let mut asked = TopicPartitionList::new();
    for range in &ranges {
        asked.add_partition_offset(topic, range.partition, Offset::Offset(millis))?;
    }
    let found = consumer.offsets_for_times(asked, REQUEST_TIMEOUT)?;
    Ok(ranges
        .iter()
        .map(|range| {
            let offset = match found
                .find_partition(topic, range.partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => range.next,
            };
            (range.partition, offset)
        })
        .collect())
}
