//! Helpers shared by the integration tests: names, definitions and records for one test, and the
//! worker run in-process. Kafka and Cassandra themselves are reached through `testkit`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
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
    format!(
        "{}{extra}",
        shipped_definition("users_created.yaml", "users_created", names)
    )
}

/// `streams/<file>` (whose topic is `topic`), pointed at this test's topic, group and keyspace.
pub fn shipped_definition(file: &str, topic: &str, names: &Names) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../streams")
        .join(file);
    std::fs::read_to_string(path)
        .expect("shipped definition")
        .replace(
            &format!("topic: {topic}"),
            &format!("topic: {}", names.topic),
        )
        .replace(
            "group: updraft-stream-worker",
            &format!("group: {}", names.group),
        )
        .replace(
            "keyspace: spark_streaming",
            &format!("keyspace: {}", names.keyspace),
        )
        .replace(
            &format!("dead_letter_topic: {topic}.dlq"),
            &format!("dead_letter_topic: {}.dlq", names.topic),
        )
}

/// The shipped definition fanned out: each record also goes to `users_by_email` and
/// `users_by_username`, each with a subset of the columns.
pub fn fan_out_yaml(names: &Names) -> String {
    definition_yaml(names, "").replace(
        "  primary_key: [id]\n",
        "  primary_key: [id]
  tables:
    - table: users_by_email
      primary_key: [email]
      columns: [email, id, first_name, last_name]
    - table: users_by_username
      primary_key: [username]
      columns: [username, id, email]
",
    )
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
        schema_registry_url: testkit::schema_registry_url(),
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

/// Rows in the test's `created_users` table (0 while the worker has not created it).
pub async fn count_rows(session: &Session, keyspace: &str) -> i64 {
    testkit::cassandra::count_rows(session, &format!("{keyspace}.created_users")).await
}

/// Waits until the test's `created_users` table holds exactly `want` rows.
pub async fn wait_for_rows(session: &Session, keyspace: &str, want: i64, within: Duration) {
    wait_for_table(session, &format!("{keyspace}.created_users"), want, within).await;
}

/// Waits until `table` (`keyspace.table`) holds exactly `want` rows.
pub async fn wait_for_table(session: &Session, table: &str, want: i64, within: Duration) {
    testkit::eventually(&format!("{want} rows in {table}"), within, async || {
        let rows = testkit::cassandra::count_rows(session, table).await;
        if rows == want { Ok(()) } else { Err(rows) }
    })
    .await;
}

/// The first record on the test's dead-letter topic (waiting up to a minute for it).
pub async fn first_dead_letter(names: &Names) -> testkit::kafka::Record {
    let topic = format!("{}.dlq", names.topic);
    let mut letters = testkit::kafka::read_topic(&topic, 1, Duration::from_secs(60)).await;
    letters.remove(0)
}

/// `count` records of the test's dead-letter topic, in the order of their source offsets: the
/// worker decodes records concurrently, so two bad records may be dead-lettered in either order.
pub async fn dead_letters_by_offset(names: &Names, count: usize) -> Vec<testkit::kafka::Record> {
    let topic = format!("{}.dlq", names.topic);
    let mut letters = testkit::kafka::read_topic(&topic, count, Duration::from_secs(60)).await;
    letters.sort_by_key(|letter| {
        letter
            .headers
            .get("source.offset")
            .and_then(|offset| offset.parse::<i64>().ok())
    });
    letters
}

/// Checks a dead letter's `error` kind, source offset and the start of its message.
pub fn assert_dead_letter(
    letter: &testkit::kafka::Record,
    kind: &str,
    source_offset: i64,
    message_start: &str,
) {
    let header = |name: &str| letter.headers.get(name).map(String::as_str);
    assert_eq!(header("error"), Some(kind), "{:?}", letter.headers);
    assert_eq!(
        header("source.offset"),
        Some(source_offset.to_string().as_str())
    );
    let message = header("error.message").unwrap_or_default();
    assert!(message.starts_with(message_start), "{message}");
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
        testkit::eventually(
            "the worker to be ready",
            Duration::from_secs(60),
            async || self.metrics.is_ready(),
        )
        .await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("worker task")
            .expect("worker ran cleanly");
    }
}

/// Runs the `stream-worker` binary with `args` against the definitions at `definitions`.
pub fn stream_worker(definitions: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stream-worker"))
        .arg("--definitions")
        .arg(definitions)
        .args(args)
        .envs(testkit::service_env())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run stream-worker")
}

/// Writes the test's definition (`definition_yaml`) to a file of its own and returns its path.
pub fn definition_file(names: &Names) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(&names.topic);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("users_created.yaml");
    std::fs::write(&file, definition_yaml(names, "")).expect("definition");
    file
}

/// A plain HTTP/1.1 request without a body; returns the whole response (status line, headers,
/// body).
pub async fn http_request(port: u16, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}
