//! What the stream worker's JSON API (`/api/...`, beside `/metrics`) answers, as types both
//! sides compile against: the worker serializes them, the web UI's Streams and Topics pages
//! deserialize them. Kept apart from the worker so the web server does not link Kafka,
//! Cassandra and VRL to read them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One stream as `GET /api/streams` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub name: String,
    pub topic: String,
    pub group: String,
    pub keyspace: String,
    pub tables: Vec<String>,
    pub dead_letter_topic: String,
    /// `starting`, `running`, or `failing` (writes failing without one succeeding).
    pub state: String,
    pub consumed: u64,
    pub written: u64,
    pub dropped: u64,
    pub dead_lettered: u64,
    pub dead_lettered_by_kind: BTreeMap<String, u64>,
    pub retries: u64,
    pub in_flight: i64,
    /// Rows written per second over the worker's last progress interval.
    pub rate_per_s: f64,
    pub write_p50_ms: Option<f64>,
    pub write_p99_ms: Option<f64>,
    /// The partitions this worker holds.
    pub lag: Vec<PartitionLag>,
    /// The latest errors, oldest first.
    pub recent_errors: Vec<RecentError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// A recent error of a stream: a dead letter, or the start of a write outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentError {
    pub at: DateTime<Utc>,
    /// A dead letter's kind (`not_json`, `transform`, …) or `write_failed`.
    pub kind: String,
    pub message: String,
    /// Where the record was, for a dead letter.
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

/// A record of a topic: the payload as text (invalid UTF-8 replaced) and its size. An Avro
/// payload in the Confluent wire format whose schema the registry gave is its datum as JSON,
/// with that schema's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub headers: Vec<(String, String)>,
    pub key: Option<String>,
    pub payload: Option<String>,
    pub bytes: usize,
    #[serde(default)]
    pub avro_schema_id: Option<u32>,
}

/// A topic of the brokers and its partitions (`GET /api/topics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicView {
    pub name: String,
    pub partitions: Vec<PartitionView>,
    pub records: i64,
}

/// A partition's first offset and the offset its next record will take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionView {
    pub partition: i32,
    pub first: i64,
    pub next: i64,
}

/// What a dead-letter replay did (`POST /api/streams/{name}/dead-letters/replay`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Dead letters read (those there when the replay started).
    pub read: usize,
    /// Written to the tables this time.
    pub written: usize,
    /// Refused again: sent to the dead-letter topic again, with the new reason.
    pub refused_again: usize,
    /// Skipped by the definition's `where:` or an `abort` in its `transform:`.
    pub dropped: usize,
    /// Sent as references only (too large for the dead-letter topic): their bytes are at their
    /// source offset, which `stream-worker replay --from` reads.
    pub references: usize,
}

/// An error answer: `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
