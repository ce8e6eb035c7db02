//! The local stack's Kafka, from Rust: create a topic, produce, consume in a group, commit.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

#[tokio::test]
async fn kafka_round_trip_in_a_consumer_group() {
    if !testkit::require_kafka() {
        return;
    }
    let brokers = testkit::kafka_bootstrap_servers();
    let topic = testkit::unique_name("smoke");
    let group = testkit::unique_name("smoke_group");

    testkit::kafka::create_topic(&topic, 1).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key("k1")
                .payload("hello from updraft"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();
    let (partition, offset) = (delivery.partition, delivery.offset);

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("no record within 30 s")
        .unwrap();
    assert_eq!(message.payload(), Some(&b"hello from updraft"[..]));
    assert_eq!(message.key(), Some(&b"k1"[..]));
    assert_eq!((message.partition(), message.offset()), (partition, offset));

    consumer.commit_message(&message, CommitMode::Sync).unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(&topic, partition);
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    let stored = committed
        .find_partition(&topic, partition)
        .unwrap()
        .offset();
    assert_eq!(stored, Offset::Offset(offset + 1));

    testkit::kafka::delete_topic(&topic).await;
}

/// testkit's own helpers: records produced over three partitions all read back, with their keys.
#[tokio::test]
async fn produced_records_read_back_from_every_partition() {
    if !testkit::require_kafka() {
        return;
    }
    let topic = testkit::unique_name("smoke_helpers");
    testkit::kafka::create_topic(&topic, 3).await;
    assert_eq!(testkit::kafka::record_count(&topic), 0);
    let payloads: Vec<Vec<u8>> = (0..30)
        .map(|i| format!("{{\"n\": {i}}}").into_bytes())
        .collect();
    testkit::kafka::produce(&topic, &payloads).await;

    let records = testkit::kafka::read_topic(&topic, 30, Duration::from_secs(30)).await;
    let mut seen: Vec<(String, i64)> = records
        .iter()
        .map(|record| {
            let key = record.key.clone().expect("a key");
            (key, record.json()["n"].as_i64().expect("n"))
        })
        .collect();
    seen.sort_by_key(|(_, n)| *n);
    let expected: Vec<(String, i64)> = (0..30).map(|i| (i.to_string(), i)).collect();
    assert_eq!(seen, expected, "every record once, keyed by its index");
    let partitions: std::collections::BTreeSet<i32> =
        records.iter().map(|record| record.partition).collect();
    assert!(
        partitions.len() > 1,
        "keys spread over partitions: {partitions:?}"
    );

    assert_eq!(testkit::kafka::record_count(&topic), 30);
    assert_eq!(testkit::kafka::read_all(&topic).await.len(), 30);
    testkit::kafka::delete_topic(&topic).await;
}
