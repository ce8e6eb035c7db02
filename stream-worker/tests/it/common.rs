//! Helpers shared by the integration tests: real Kafka, real Cassandra.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use stream_worker::{Metrics, Stream, WorkerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Topic, group and keyspace unique to one test.
pub struct Names {
    pub topic: String,
    pub group: String,
    pub keyspace: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        let base = testkit::unique_name(prefix).to_lowercase();
        Self {
            topic: base.clone(),
            group: format!("{base}_g"),
            keyspace: base,
        }
    }
}

/// The shipped `users_created` definition, pointed at this test's topic, group and keyspace.
pub fn definition_yaml(names: &Names, extra: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../streams/users_created.yaml");
    let text = std::fs::read_to_string(path).expect("shipped definition");
    let text = text
        .replace("topic: users_created", &format!("topic: {}", names.topic))
        .replace(
            "group: updraft-stream-worker",
            &format!("group: {}", names.group),
        )
        .replace(
            "keyspace: spark_streaming",
            &format!("keyspace: {}", names.keyspace),
        )
        .replace(
            "dead_letter_topic: users_created.dlq",
            &format!("dead_letter_topic: {}.dlq", names.topic),
        );
    format!("{text}{extra}")
}

pub fn definition(names: &Names, extra: &str) -> Stream {
    let text = definition_yaml(names, extra).replace("max_record_bytes: 1048576\n", "");
    stream_worker::definition::parse(Path::new("test.yaml"), &text).expect("valid test definition")
}

pub fn config() -> WorkerConfig {
    WorkerConfig {
        kafka_bootstrap_servers: testkit::kafka_bootstrap_servers(),
        cassandra_contact_points: testkit::cassandra_contact_points()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
        session_timeout: Duration::from_secs(6),
        progress_interval: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

pub const NAMES: [(&str, &str); 8] = [
    ("Zoë", "Müller"),
    ("Łukasz", "Wójcik"),
    ("Søren", "Ørsted"),
    ("José", "Muñoz"),
    ("Ольга", "Смирнова"),
    ("美咲", "佐藤"),
    ("Aoife", "O'Brien"),
    ("Ngô", "Bảo Châu"),
];

/// A record shaped like the DAG's: flat fields, a numeric `post_code` for even `i`.
pub fn seed_record(i: usize) -> serde_json::Value {
    let (first, last) = NAMES[i % NAMES.len()];
    let post_code = if i.is_multiple_of(2) {
        serde_json::json!(10000 + i)
    } else {
        serde_json::json!(format!("AB{i} 2CD"))
    };
    serde_json::json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "first_name": first,
        "last_name": last,
        "gender": if i.is_multiple_of(3) { "female" } else { "male" },
        "address": format!("{i} Rue de l'Église, Montréal, Québec, Canada"),
        "post_code": post_code,
        "email": format!("user{i}@example.com"),
        "username": format!("user{i}"),
        "dob": "1987-03-14T09:26:53.589Z",
        "registered_date": "2015-06-01T12:00:00.000Z",
        "phone": format!("(555) 010-{:04}", i % 10000),
        "picture": format!("https://randomuser.me/api/portraits/med/women/{}.jpg", i % 100),
    })
}

pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", testkit::kafka_bootstrap_servers())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topic");
    for result in results {
        result.expect("topic created");
    }
}

pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", testkit::kafka_bootstrap_servers())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer")
}

/// Produces the payloads (keyed by index, so they spread over partitions) and waits for all.
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
            Err((error, _)) => panic!("cannot queue record {i}: {error}"),
        }
    }
    for delivery in pending {
        delivery.await.expect("delivery future").expect("delivered");
    }
}

pub async fn cassandra() -> Session {
    SessionBuilder::new()
        .known_nodes(testkit::cassandra_contact_points().split(','))
        .build()
        .await
        .expect("cassandra session")
}

pub async fn count_rows(session: &Session, keyspace: &str) -> i64 {
    let cql = format!("SELECT COUNT(*) FROM {keyspace}.created_users");
    let mut statement = scylla::statement::Statement::new(cql);
    statement.set_request_timeout(Some(Duration::from_secs(60)));
    match session.query_unpaged(statement, ()).await {
        Ok(result) => result
            .into_rows_result()
            .ok()
            .and_then(|rows| rows.single_row::<(i64,)>().ok())
            .map_or(0, |(n,)| n),
        // The table may not exist yet.
        Err(_) => 0,
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct RunningWorker {
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), stream_worker::WorkerError>>,
}

pub fn start_worker(config: WorkerConfig, streams: Vec<Stream>) -> RunningWorker {
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(stream_worker::run(
        config,
        streams,
        metrics.clone(),
        shutdown.clone(),
    ));
    RunningWorker {
        metrics,
        shutdown,
        task,
    }
}

impl RunningWorker {
    /// Waits until schemas and topics exist and the streams run.
    pub async fn ready(&self) {
        let metrics = self.metrics.clone();
        let ready = wait_for(Duration::from_secs(60), || {
            let metrics = metrics.clone();
            async move { metrics.is_ready() }
        })
        .await;
        assert!(ready, "worker did not become ready");
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("worker task")
            .expect("worker ran cleanly");
    }
}

/// A dead letter as read back: headers by name and payload.
pub struct DeadLetter {
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
}

/// Reads `count` records from the start of `topic` (fails after `timeout`).
pub async fn read_topic(topic: &str, count: usize, timeout: Duration) -> Vec<DeadLetter> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", testkit::kafka_bootstrap_servers())
        .set("group.id", testkit::unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, consumer.recv()).await {
            Err(_) => panic!("only {} of {count} records on {topic}", out.len()),
            Ok(Ok(message)) => message,
            // The topic may not exist yet: the worker creates it when it starts.
            Ok(Err(error)) => {
                eprintln!("reading {topic}: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut headers = HashMap::new();
        if let Some(list) = message.headers() {
            for header in list.iter() {
                let value = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                headers.insert(header.key.to_string(), value);
            }
        }
        out.push(DeadLetter {
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
        });
    }
    out
}
