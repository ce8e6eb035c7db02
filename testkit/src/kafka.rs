//! Kafka for tests, on the broker of [`crate::kafka_bootstrap_servers`]: create and delete
//! topics, produce, and read records back from the start of every partition.
//!
//! Metadata and watermark look-ups are blocking librdkafka calls of a few milliseconds on the
//! local broker; they are made directly from these async functions.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;

/// How long a metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_bootstrap_servers())
        .create()
        .expect("Kafka admin client")
}

/// Creates `name` with `partitions` partitions (replication factor 1); panics if it fails.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]).await;
}

/// [`create_topic`] with topic configs, e.g. `("max.message.bytes", "8388608")`.
pub async fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_replicated_topic(name, partitions, 1, configs).await;
}

/// [`create_topic_with`] on `replicas` brokers (a multi-node stack).
pub async fn create_replicated_topic(
    name: &str,
    partitions: i32,
    replicas: i32,
    configs: &[(&str, &str)],
) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replicas));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin()
        .create_topics(&[topic], &options)
        .await
        .unwrap_or_else(|error| panic!("cannot create topic {name}: {error}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("cannot create topic {topic}: {code}");
        }
    }
}

/// Deletes `name`; panics if it fails.
pub async fn delete_topic(name: &str) {
    let results = admin()
        .delete_topics(&[name], &AdminOptions::new())
        .await
        .unwrap_or_else(|error| panic!("cannot delete topic {name}: {error}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("cannot delete topic {topic}: {code}");
        }
    }
}

/// A producer that batches a little (`linger.ms` 5), queues up to 200,000 records, and sends
/// records up to 16 MiB (to topics whose `max.message.bytes` allows them).
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_bootstrap_servers())
        .set("linger.ms", "5")
        .set("message.max.bytes", "16777216")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("Kafka producer")
}

/// Produces the payloads, keyed by their index (so they spread over partitions), and waits until
/// every one is acknowledged.
pub async fn produce(topic: &str, payloads: &[Vec<u8>]) {
    let producer = producer();
    let mut pending = Vec::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        let key = i.to_string();
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(payload.as_slice());
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((error, _)) => panic!("cannot queue record {i} for {topic}: {error}"),
        }
    }
    for (i, delivery) in pending.into_iter().enumerate() {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => panic!("record {i} was not delivered to {topic}: {error}"),
            Err(_) => panic!("record {i} for {topic}: the producer went away"),
        }
    }
}

/// A record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// The key as text (invalid UTF-8 replaced).
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// Header values as text (invalid UTF-8 replaced).
    pub headers: BTreeMap<String, String>,
}

impl Record {
    /// The payload as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|error| {
            panic!(
                "record {}:{} is not JSON ({error}): {}",
                self.partition,
                self.offset,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    fn from_message(message: &impl Message) -> Record {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_string(),
                            header.value.map(text).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(text),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }
}

fn reader() -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_bootstrap_servers())
        .set("group.id", crate::unique_name("testkit_reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("Kafka consumer")
}

/// The partitions of `topic`, or `None` while it does not exist.
fn partitions(consumer: &StreamConsumer, topic: &str) -> Option<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT).ok()?;
    let topic = metadata.topics().first()?;
    let partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    (topic.error().is_none() && !partitions.is_empty()).then_some(partitions)
}

/// Reads `count` records from the start of every partition of `topic` (waiting for the topic to
/// exist: a worker may create it), in arrival order; panics naming how many arrived if `count`
/// are not there within `within`.
pub async fn read_topic(topic: &str, count: usize, within: Duration) -> Vec<Record> {
    if count == 0 {
        return Vec::new();
    }
    let started = Instant::now();
    let consumer = reader();
    let what = format!("topic {topic} to exist");
    let partitions = crate::eventually(&what, within, async || partitions(&consumer, topic)).await;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition from the beginning");
    }
    consumer.assign(&assignment).expect("assign the partitions");
    let mut records = Vec::with_capacity(count);
    let mut last_error = None;
    while records.len() < count {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(message)) => records.push(Record::from_message(&message)),
            // Transient (a partition without a leader yet): librdkafka retries by itself.
            Ok(Err(error)) => {
                last_error = Some(error);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => panic!(
                "only {} of {count} records on {topic} after {within:?} (last error: {last_error:?})",
                records.len()
            ),
        }
    }
    records
}

/// The broker leading `partition` of `topic` now (`None` while it has no leader).
pub fn leader_of(topic: &str, partition: i32) -> Option<i32> {
    let metadata = reader().fetch_metadata(Some(topic), REQUEST_TIMEOUT).ok()?;
    let topic = metadata.topics().first()?;
    let found = topic.partitions().iter().find(|p| p.id() == partition)?;
    (found.leader() >= 0).then_some(found.leader())
}

/// The offset `group` has committed for `partition` of `topic` (`None`: none yet).
pub fn committed_offset(group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_bootstrap_servers())
        .set("group.id", group)
        .create()
        .expect("Kafka consumer");
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(partitions, REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("committed offsets of {group}: {error}"));
    match committed.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// How many records `topic` holds now (high minus low watermark, summed); 0 when it does not
/// exist yet.
pub fn record_count(topic: &str) -> usize {
    let consumer = reader();
    let Some(partitions) = partitions(&consumer, topic) else {
        return 0;
    };
    partitions
        .into_iter()
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .unwrap_or_else(|error| panic!("watermarks of {topic}/{partition}: {error}"));
            usize::try_from(high - low).unwrap_or_default()
        })
        .sum()
}

/// Every record on `topic` up to its end offsets as they are now (none while it does not exist).
pub async fn read_all(topic: &str) -> Vec<Record> {
    read_topic(topic, record_count(topic), Duration::from_secs(30)).await
}
