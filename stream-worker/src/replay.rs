//! Records sent through a stream's current definition again, outside the worker's consumer
//! group: its dead letters (`stream-worker dlq replay`, in [`crate::dlq`]) or its source topic
//! from a point in time or from offsets (`stream-worker replay --from`). Each record is decoded
//! and written as the worker would, with its Kafka time as the write time, so a replay never
//! overwrites a newer row and replaying twice is harmless; a record refused goes to the
//! dead-letter topic. A replay reads up to the end offsets it found when it started, so it ends.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::dead_letter::{DeadLetters, SourceRecord};
use crate::decode::Decoder;
use crate::sink::Sink;
use crate::topic_range::{self, PartitionRange, TopicRecord};
use crate::worker::WorkerError;
use crate::{Stream, WorkerConfig};

/// Records read per request: memory stays bounded whatever the topic holds.
const BATCH: usize = 500;

/// Where `stream-worker replay --from` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPoint {
    /// The first record of each partition at or after this time.
    Time(DateTime<Utc>),
    /// These offsets (`partition:offset`); partitions not named are not read.
    Offsets(Vec<(i32, i64)>),
}

impl FromStr for StartPoint {
    type Err = String;

    /// `2026-12-07T10:00:00Z` or `0:120,1:80`.
    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(time) = DateTime::parse_from_rfc3339(text.trim()) {
            return Ok(StartPoint::Time(time.with_timezone(&Utc)));
        }
        text.split(',')
            .map(|pair| {
                let (partition, offset) = pair.trim().split_once(':')?;
                Some((partition.parse().ok()?, offset.parse().ok()?))
            })
            .collect::<Option<Vec<(i32, i64)>>>()
            .filter(|offsets| !offsets.is_empty())
            .map(StartPoint::Offsets)
            .ok_or_else(|| {
                format!(
                    "`{text}` is neither an RFC 3339 time (2026-12-07T10:00:00Z) nor \
                     partition:offset pairs (0:120,1:80)"
                )
            })
    }
}

/// What a replay of a source topic did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceReplayed {
    pub read: usize,
    pub written: usize,
    /// Skipped by `where:` or an `abort` in `transform:`.
    pub dropped: usize,
    /// Refused, and sent to the dead-letter topic.
    pub dead_lettered: usize,
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewritten {
    Written,
    Dropped,
    DeadLettered,
}

/// Writes records through a stream's definition as the worker does.
pub struct Rewriter<'s> {
    stream: &'s Stream,
    decoder: Decoder,
    sink: Sink,
    dead_letters: DeadLetters,
}

impl<'s> Rewriter<'s> {
    /// Connects, and creates the stream's keyspace, tables and topics if missing.
    pub async fn new(config: &WorkerConfig, stream: &'s Stream) -> Result<Self, WorkerError> {
        let session = crate::worker::prepare_once(config, std::slice::from_ref(stream)).await?;
        let metrics = crate::Metrics::new().stream(&stream.name);
        let sink = Sink::prepare(session, stream, metrics.clone()).await?;
        let dead_letters =
            DeadLetters::new(config.kafka_client(), &stream.dead_letter_topic, metrics).map_err(
                |source| WorkerError::Kafka {
                    what: "create the dead-letter producer".into(),
                    source,
                },
            )?;
        Ok(Self {
            decoder: Decoder::for_stream(stream, config)?,
            stream,
            sink,
            dead_letters,
        })
    }

    /// Decodes and writes `record` with its Kafka time (`timestamp_ms`; else now) as the write
    /// time, or dead-letters it.
    pub async fn write(&self, record: &SourceRecord, timestamp_ms: Option<i64>) -> Rewritten {
        let micros = timestamp_ms
            .filter(|ms| *ms >= 0)
            .unwrap_or_else(|| Utc::now().timestamp_millis())
            .saturating_mul(1000);
        let outcome = match self
            .decoder
            .decode(self.stream, record.payload.as_deref())
            .await
        {
            Ok(Some(row)) => self.sink.write(row, micros).await,
            Ok(None) => return Rewritten::Dropped,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => Rewritten::Written,
            Err(error) => {
                self.dead_letters.send(record, &error).await;
                Rewritten::DeadLettered
            }
        }
    }
}

/// The range to read of each partition of `topic`: from the offset `start` gives it (`None`:
/// skip the partition), clamped to what the partition holds, up to its end now.
pub async fn ranges_from(
    config: &WorkerConfig,
    topic: &str,
    start: impl Fn(&PartitionRange) -> Option<i64>,
) -> Result<Vec<PartitionRange>, WorkerError> {
    let (client, owned_topic) = (config.kafka_client(), topic.to_string());
    let ranges = blocking(move || topic_range::partitions(&client, &owned_topic)).await?;
    Ok(ranges
        .into_iter()
        .filter_map(|range| {
            let first = start(&range)?.clamp(range.first, range.next);
            Some(PartitionRange { first, ..range })
        })
        .collect())
}

/// Reads `ranges` of `topic` partition by partition, in offset order, [`BATCH`] records at a
/// time.
pub struct RangeReader {
    client: rdkafka::ClientConfig,
    topic: String,
    ranges: std::vec::IntoIter<PartitionRange>,
    current: Option<PartitionRange>,
}

impl RangeReader {
    pub fn new(config: &WorkerConfig, topic: &str, ranges: Vec<PartitionRange>) -> RangeReader {
        RangeReader {
            client: config.kafka_client(),
            topic: topic.to_string(),
            ranges: ranges.into_iter(),
            current: None,
        }
    }

    /// The next records, or `None` when every range is read.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<TopicRecord>>, WorkerError> {
        loop {
            let range = match self.current.take() {
                Some(range) if range.first < range.next => range,
                _ => match self.ranges.next() {
                    Some(range) => range,
                    None => return Ok(None),
                },
            };
            let wanted = usize::try_from(range.next - range.first)
                .unwrap_or(usize::MAX)
                .min(BATCH);
            let (client, topic) = (self.client.clone(), self.topic.clone());
            let (partition, from) = (range.partition, range.first);
            let records = blocking(move || {
                topic_range::read(&client, &topic, Some(partition), Some(from), wanted)
            })
            .await?;
            let Some(last) = records.last().map(|record| record.offset) else {
                // Nothing more to read here (records removed meanwhile): the next partition.
                continue;
            };
            self.current = Some(PartitionRange {
                first: last + 1,
                ..range
            });
            return Ok(Some(records));
        }
    }
}

/// Reads `stream`'s source topic from `from` up to its end now, through the current definition.
pub async fn replay_source(
    config: &WorkerConfig,
    stream: &Stream,
    from: &StartPoint,
) -> Result<SourceReplayed, WorkerError> {
    let rewriter = Rewriter::new(config, stream).await?;
    let starts: Vec<(i32, i64)> = match from {
        StartPoint::Offsets(offsets) => offsets.clone(),
        StartPoint::Time(time) => {
            let (client, topic, millis) = (
                config.kafka_client(),
                stream.topic.clone(),
                time.timestamp_millis(),
            );
            blocking(move || topic_range::offsets_for_time(&client, &topic, millis)).await?
        }
    };
    let ranges = ranges_from(config, &stream.topic, |range| {
        starts
            .iter()
            .find(|(partition, _)| *partition == range.partition)
            .map(|(_, offset)| *offset)
    })
    .await?;
    let topic: Arc<str> = Arc::from(stream.topic.as_str());
    let mut replayed = SourceReplayed::default();
    let mut reader = RangeReader::new(config, &stream.topic, ranges);
    while let Some(records) = reader.next_batch().await? {
        for record in records {
            replayed.read += 1;
            let source = SourceRecord {
                topic: topic.clone(),
                partition: record.partition,
                offset: record.offset,
                key: record.key,
                payload: record.payload,
            };
            match rewriter.write(&source, record.timestamp_ms).await {
                Rewritten::Written => replayed.written += 1,
                Rewritten::Dropped => replayed.dropped += 1,
                Rewritten::DeadLettered => replayed.dead_lettered += 1,
            }
        }
    }
    Ok(replayed)
}

async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, topic_range::ReadError> + Send + 'static,
) -> Result<T, WorkerError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|error| WorkerError::Task(error.to_string()))?
        .map_err(|error| WorkerError::Task(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_point_is_a_time_or_offsets() {
        assert_eq!(
            "2026-12-07T10:00:00+01:00".parse::<StartPoint>(),
            Ok(StartPoint::Time(
                DateTime::parse_from_rfc3339("2026-12-07T09:00:00Z")
                    .expect("time")
                    .with_timezone(&Utc)
            ))
        );
        assert_eq!(
            "0:120, 1:80".parse::<StartPoint>(),
            Ok(StartPoint::Offsets(vec![(0, 120), (1, 80)]))
        );
        for bad in ["yesterday", "0:x", "", "0:1,"] {
            assert!(bad.parse::<StartPoint>().is_err(), "{bad}");
        }
    }
}
