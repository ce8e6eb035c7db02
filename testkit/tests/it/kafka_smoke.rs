//! The local stack's Kafka, from Rust: create a topic, produce, consume in a group, commit.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
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

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(
        created.iter().all(Result::is_ok),
        "create topic: {created:?}"
    );

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

    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
}
