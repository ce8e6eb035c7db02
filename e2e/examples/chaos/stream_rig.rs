//! A stream of its own for a scenario: a topic, a keyspace, a definition derived from the
//! shipped one, and a `stream-worker` process writing the topic into Cassandra.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use scylla::client::session::Session;

use crate::processes::{Process, binary, free_port, workspace};

pub struct StreamRig {
    pub topic: String,
    pub keyspace: String,
    pub worker: Process,
    pub session: Session,
    folder: tempfile::TempDir,
}

/// How the stream's data is kept: Kafka replicas of the topic, and the keyspace's replication
/// and write consistency.
pub struct Durability {
    pub topic_replicas: i32,
    pub keyspace_replicas: u32,
    pub consistency: &'static str,
}

impl StreamRig {
    /// Creates the topic (3 partitions) and starts a worker on it.
    pub async fn start(prefix: &str, durability: &Durability) -> StreamRig {
        let keyspace = testkit::unique_name(prefix);
        let topic = format!("{keyspace}_topic");
        let min_isr = (durability.topic_replicas - 1).max(1).to_string();
        let configs = [("min.insync.replicas", min_isr.as_str())];
        testkit::kafka::create_replicated_topic(&topic, 3, durability.topic_replicas, &configs)
            .await;
        let folder = tempfile::tempdir().expect("tempdir");
        let definition = folder.path().join("stream.yaml");
        let shipped = std::fs::read_to_string(workspace().join("streams/users_created.yaml"))
            .expect("the shipped definition");
        let replication = format!(
            "replication: {{class: SimpleStrategy, replication_factor: {}}}\n  consistency: {}",
            durability.keyspace_replicas, durability.consistency
        );
        let text = shipped
            .replace("topic: users_created", &format!("topic: {topic}"))
            .replace(
                "group: updraft-stream-worker",
                &format!("group: {keyspace}"),
            )
            .replace(
                "keyspace: spark_streaming",
                &format!("keyspace: {keyspace}"),
            )
            .replace(
                "dead_letter_topic: users_created.dlq",
                &format!("dead_letter_topic: {topic}.dlq"),
            )
            .replace(
                "replication: {class: SimpleStrategy, replication_factor: 1}",
                &replication,
            );
        std::fs::write(&definition, text).expect("definition");
        let env = [
            (
                "KAFKA_BOOTSTRAP_SERVERS",
                testkit::kafka_bootstrap_servers(),
            ),
            (
                "CASSANDRA_CONTACT_POINTS",
                testkit::cassandra_contact_points(),
            ),
            ("RUST_LOG", "warn".to_string()),
        ];
        let args = [
            "--definitions".to_string(),
            definition.display().to_string(),
            "--metrics-addr".to_string(),
            format!("127.0.0.1:{}", free_port()),
            "--session-timeout-ms".to_string(),
            "6000".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = folder.path().join("worker.log");
        let worker = Process::start("stream-worker", &binary("stream-worker"), &args, &env, &log);
        StreamRig {
            topic,
            keyspace,
            worker,
            session: testkit::cassandra::session().await,
            folder,
        }
    }

    pub async fn rows(&self) -> i64 {
        let table = format!("{}.created_users", self.keyspace);
        testkit::cassandra::count_rows(&self.session, &table).await
    }

    /// Waits up to `limit` for `want` rows; returns the rows seen last and when.
    pub async fn wait_rows(&self, want: i64, limit: Duration) -> (i64, Duration) {
        let started = Instant::now();
        loop {
            let rows = self.rows().await;
            if rows >= want || started.elapsed() > limit {
                return (rows, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn dead_letters(&self) -> usize {
        testkit::kafka::record_count(&format!("{}.dlq", self.topic))
    }

    /// Drops what it made when the scenario held; keeps the worker's log otherwise.
    pub async fn finish(mut self, held: bool, scenario: &str) -> Option<PathBuf> {
        self.worker.kill();
        if !held {
            let kept = self.folder.keep();
            eprintln!("{scenario}: worker log kept in {}", kept.display());
            return Some(kept);
        }
        testkit::cassandra::drop_keyspace(&self.session, &self.keyspace).await;
        testkit::kafka::delete_topic(&self.topic).await;
        None
    }
}

/// A record of the seed's shape with a distinct id per index.
pub fn record(index: usize) -> serde_json::Value {
    serde_json::json!({
        "id": uuid::Uuid::from_u128(0xC4A0_5000_0000_0000_0000_0000_0000_0000 + index as u128).to_string(),
        "first_name": format!("First{index}"),
        "last_name": "Chaos",
        "gender": "female",
        "address": "1 Fault Street",
        "post_code": "00000",
        "email": format!("user{index}@example.com"),
        "username": format!("user{index}"),
        "dob": "1990-01-01T00:00:00.000Z",
        "registered_date": "2020-01-01T00:00:00.000Z",
        "phone": "000",
        "picture": "https://example.com/p.jpg",
    })
}
