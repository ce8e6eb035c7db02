//! Bad records go, byte for byte, to the stream's dead-letter topic with headers saying why and
//! where they came from; one too large for that topic goes as a reference (headers only).
//! Sending is retried until Kafka accepts it: a record is only "done" (and its offset
//! committable) once it is written or dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::decode::RecordError;
use crate::metrics::StreamMetrics;

/// A record as received, kept for dead-lettering.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// Shared: every record of a stream has the same topic, no copy per record.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// The headers of a dead letter, in order.
pub fn headers(record: &SourceRecord, error: &RecordError) -> Vec<(&'static str, String)> {
    let mut headers = vec![("error", error.kind().to_string())];
    if let Some(field) = error.field() {
        headers.push(("error.field", field.to_string()));
    }
    headers.push(("error.message", error.to_string()));
    headers.push(("source.topic", record.topic.to_string()));
    headers.push(("source.partition", record.partition.to_string()));
    headers.push(("source.offset", record.offset.to_string()));
    headers
}

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    metrics: Arc<StreamMetrics>,
}

impl DeadLetters {
    /// A producer made from `client` (the brokers and the connection's settings).
    pub fn new(
        mut client: ClientConfig,
        topic: &str,
        metrics: Arc<StreamMetrics>,
    ) -> Result<Self, KafkaError> {
        let producer = client
            // No duplicates from producer retries; the record may still repeat on a replay.
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            metrics,
        })
    }

    /// Sends `record` to the dead-letter topic, retrying until Kafka has it. A record too
    /// large for the dead-letter topic (or the producer) goes as a reference: its headers, a
    /// `payload.omitted` header, and no payload; its bytes stay readable at its source offset
    /// for the topic's retention.
    pub async fn send(&self, record: &SourceRecord, error: &RecordError) {
        let mut headers = headers(record, error);
        let mut whole = true;
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (key, value) in &headers {
                owned = owned.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let mut message: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(owned);
            if let Some(key) = record
                .key
                .as_ref()
                .filter(|key| whole || key.len() <= MAX_KEPT_KEY)
            {
                message = message.key(key.as_slice());
            }
            if let Some(payload) = record.payload.as_ref().filter(|_| whole) {
                message = message.payload(payload.as_slice());
            }
            match self.producer.send(message, Duration::from_secs(30)).await {
                Ok(_) => {
                    self.metrics.dead_lettered(error.kind());
                    self.metrics.add_recent_error(crate::metrics::RecentError {
                        at: chrono::Utc::now(),
                        kind: error.kind().to_string(),
                        message: error.to_string(),
                        topic: Some(record.topic.to_string()),
                        partition: Some(record.partition),
                        offset: Some(record.offset),
                    });
                    tracing::warn!(
                        stream = %self.metrics.stream, topic = %record.topic, partition = record.partition,
                        offset = record.offset, error = error.kind(), field = error.field(),
                        message = %error, dead_letter_topic = %self.topic, "record dead-lettered"
                    );
                    return;
                }
                Err((kafka_error, _)) if whole && is_too_large(&kafka_error) => {
                    let bytes = record.payload.as_ref().map_or(0, Vec::len);
                    tracing::warn!(
                        stream = %self.metrics.stream, topic = %self.topic, bytes,
                        error = %kafka_error, "dead letter too large: sending its reference only"
                    );
                    headers.push(("payload.omitted", omitted(bytes)));
                    whole = false;
                }
                Err((kafka_error, _)) => {
                    tracing::warn!(
                        stream = %self.metrics.stream, topic = %self.topic, error = %kafka_error,
                        "cannot send a dead letter; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// A key longer than this is left out of a dead letter sent as a reference.
const MAX_KEPT_KEY: usize = 16 * 1024;

/// Kafka's answers to a record larger than the producer or the topic accepts: sending it again
/// can never succeed.
fn is_too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

/// The `payload.omitted` header of a dead letter sent as a reference.
fn omitted(bytes: usize) -> String {
    format!(
        "{bytes} bytes: larger than the dead-letter topic accepts; \
         read them at source.topic/source.partition/source.offset"
    )
}

/// Creates the topics that do not exist yet, with the broker's default partitions and
/// replication. An existing topic is left as it is.
pub async fn ensure_topics(client: &ClientConfig, topics: &[String]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, -1, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, %code, "cannot create topic");
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_error_field_and_source() {
        let record = SourceRecord {
            topic: "users_created".into(),
            partition: 3,
            offset: 42,
            key: None,
            payload: Some(b"{}".to_vec()),
        };
        let error = RecordError::MissingField { field: "id".into() };
        let headers = headers(&record, &error);
        let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "error",
                "error.field",
                "error.message",
                "source.topic",
                "source.partition",
                "source.offset"
            ]
        );
        assert_eq!(headers[0].1, "missing_field");
        assert_eq!(headers[1].1, "id");
        assert_eq!(headers[4].1, "3");
        assert_eq!(headers[5].1, "42");
    }
}
