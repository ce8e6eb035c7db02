//! The `stream-worker` binary as a process: killed with SIGKILL, stopped with SIGTERM.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::common::*;
use scylla::client::session::Session;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A `stream-worker` process, killed when the test ends (a failing one included).
struct Worker(Child);

impl Deref for Worker {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(definitions: &PathBuf, log_name: &str) -> Worker {
    spawn_worker_on(definitions, log_name, 0)
}

fn spawn_worker_on(definitions: &PathBuf, log_name: &str, metrics_port: u16) -> Worker {
    spawn_worker_with(definitions, log_name, metrics_port, |command| command)
}

/// Spawns the worker after `adjust` has changed its command (environment, arguments).
fn spawn_worker_with(
    definitions: &PathBuf,
    log_name: &str,
    metrics_port: u16,
    adjust: impl FnOnce(&mut Command) -> &mut Command,
) -> Worker {
    let log_path = definitions.with_file_name(log_name);
    let log = std::fs::File::create(&log_path).expect("log file");
    eprintln!("worker log: {}", log_path.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_stream-worker"));
    command
        .arg("--definitions")
        .arg(definitions)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .args(["--session-timeout-ms", "6000", "--progress-secs", "2"])
        .envs(testkit::service_env())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    let child = adjust(&mut command).spawn().expect("spawn stream-worker");
    Worker(child)
}

async fn wait_exit(worker: &mut Worker, timeout: Duration) -> ExitStatus {
    testkit::eventually("the worker to exit", timeout, async || {
        worker.try_wait().ok().flatten()
    })
    .await
}

/// Waits until the test's table holds at least `want` rows.
async fn wait_for_at_least(session: &Session, keyspace: &str, want: i64, within: Duration) {
    let what = format!("at least {want} rows in {keyspace}.created_users");
    testkit::eventually(&what, within, async || {
        let rows = count_rows(session, keyspace).await;
        if rows >= want { Ok(()) } else { Err(rows) }
    })
    .await;
}

/// Starts a worker, kills it with SIGKILL once `created_users` holds `rows`, and checks that
/// the kill landed before all `total` records were written.
async fn kill_9_after(
    definitions: &PathBuf,
    session: &Session,
    keyspace: &str,
    rows: i64,
    total: usize,
) {
    let mut first = spawn_worker(definitions, "first.log");
    wait_for_at_least(session, keyspace, rows, Duration::from_secs(90)).await;
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let at_kill = count_rows(session, keyspace).await;
    assert!(
        at_kill < total as i64,
        "the kill should land mid-stream ({at_kill} rows)"
    );
}

fn payloads(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|i| seed_record(i).to_string().into_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_then_restart_loses_nothing() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_kill");
    testkit::kafka::create_topic(&names.topic, 2).await;
    let total = 50_000;
    testkit::kafka::produce(&names.topic, &payloads(0..total)).await;
    let definitions = definition_file(&names);
    let session = testkit::cassandra::session().await;

    // Far enough in that offsets were committed (every second) before the kill.
    kill_9_after(&definitions, &session, &names.keyspace, 15_000, total).await;

    let mut second = spawn_worker(&definitions, "second.log");
    wait_for_at_least(
        &session,
        &names.keyspace,
        total as i64,
        Duration::from_secs(150),
    )
    .await;
    let rows = count_rows(&session, &names.keyspace).await;
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut second, Duration::from_secs(60)).await;
    assert_eq!(rows, total as i64, "row count equals distinct ids produced");
    assert!(status.success(), "second worker exit: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_commits_and_exits_zero() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_term");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let total = 20_000;
    testkit::kafka::produce(&names.topic, &payloads(0..total)).await;
    let definitions = definition_file(&names);
    let session = testkit::cassandra::session().await;

    let port = free_port();
    let mut worker = spawn_worker_on(&definitions, "worker.log", port);
    wait_for_at_least(&session, &names.keyspace, 2_000, Duration::from_secs(90)).await;
    let health = http_request(port, "GET", "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = http_request(port, "GET", "/metrics").await;
    assert!(
        metrics.contains("# TYPE updraft_stream_records_written_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("updraft_stream_records_consumed_total{stream=\"users_created\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("updraft_stream_assigned_partitions{stream=\"users_created\"} 1"),
        "{metrics}"
    );
    // SIGTERM mid-stream: the worker stops taking records, finishes those in flight, commits.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut worker, Duration::from_secs(60)).await;
    assert!(status.success(), "exit status: {status:?}");

    let offset = testkit::kafka::committed_offset(&names.group, &names.topic, 0)
        .expect("a committed offset");
    let rows = count_rows(&session, &names.keyspace).await;
    // Every record before the committed offset is written, and nothing after it was taken.
    assert_eq!(rows, offset, "committed offset {offset} vs rows {rows}");
    assert!(offset > 0 && offset <= total as i64);
    eprintln!("SIGTERM after {offset} of {total} records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_named_by_the_definition_point_the_worker_at_its_clusters() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_conn");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let total = 200;
    testkit::kafka::produce(&names.topic, &payloads(0..total)).await;
    let (kafka_id, cassandra_id) = (
        format!("{}_kafka", names.topic),
        format!("{}_db", names.topic),
    );
    let definitions = definition_file(&names);
    let text = std::fs::read_to_string(&definitions)
        .expect("definition")
        .replace(
            &format!("  group: {}\n", names.group),
            &format!("  group: {}\n  conn_id: {kafka_id}\n", names.group),
        )
        .replace(
            &format!("  keyspace: {}\n", names.keyspace),
            &format!(
                "  keyspace: {}\n  conn_id: {cassandra_id}\n",
                names.keyspace
            ),
        );
    assert!(
        text.contains(&kafka_id) && text.contains(&cassandra_id),
        "{text}"
    );
    std::fs::write(&definitions, text).expect("write definition");
    let session = testkit::cassandra::session().await;

    // The flags point nowhere: only the connections lead to the clusters.
    let kafka_uri = format!("kafka://{}", testkit::kafka_bootstrap_servers());
    let cassandra_json = serde_json::json!({
        "conn_type": "cassandra",
        "host": testkit::cassandra_contact_points(),
    })
    .to_string();
    let mut worker = spawn_worker_with(&definitions, "conn.log", 0, |command| {
        command
            .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .env("CASSANDRA_CONTACT_POINTS", "127.0.0.1:1")
            .env(
                updraft_secrets::Connection::env_var_name(&kafka_id),
                &kafka_uri,
            )
            .env(
                updraft_secrets::Connection::env_var_name(&cassandra_id),
                &cassandra_json,
            )
    });
    wait_for_at_least(
        &session,
        &names.keyspace,
        total as i64,
        Duration::from_secs(90),
    )
    .await;
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut worker, Duration::from_secs(60)).await;
    assert!(status.success(), "exit status: {status:?}");

    // A connection defined nowhere: exit 2, the message naming it and where to define it.
    let mut missing = spawn_worker_with(&definitions, "missing.log", 0, |command| {
        command.env_remove("DATABASE_URL")
    });
    let status = wait_exit(&mut missing, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "{status:?}");
    let log = std::fs::read_to_string(definitions.with_file_name("missing.log")).expect("log");
    assert!(
        log.contains(&format!("connection `{kafka_id}` is not defined"))
            && log.contains(&updraft_secrets::Connection::env_var_name(&kafka_id)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_out_to_three_tables_survives_kill_9_with_every_key_in_each() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_fan");
    testkit::kafka::create_topic(&names.topic, 2).await;
    let total = 10_000;
    testkit::kafka::produce(&names.topic, &payloads(0..total)).await;
    let definitions = definition_file(&names);
    std::fs::write(&definitions, fan_out_yaml(&names)).expect("write definition");
    let session = testkit::cassandra::session().await;

    kill_9_after(&definitions, &session, &names.keyspace, 2_000, total).await;

    // Every record is in every table exactly once: as many rows as distinct keys produced.
    let mut second = spawn_worker(&definitions, "second.log");
    for table in ["created_users", "users_by_email", "users_by_username"] {
        let table = format!("{}.{table}", names.keyspace);
        wait_for_table(&session, &table, total as i64, Duration::from_secs(150)).await;
    }
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut second, Duration::from_secs(60)).await;
    assert!(status.success(), "second worker exit: {status:?}");
    let email = "user7@example.com";
    let (id, username): (uuid::Uuid, String) = session
        .query_unpaged(
            format!(
                "SELECT id, username FROM {}.users_by_username WHERE username = 'user7'",
                names.keyspace
            ),
            (),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row()
        .expect("user7's row");
    assert_eq!(username, "user7");
    let (by_email,): (uuid::Uuid,) = session
        .query_unpaged(
            format!(
                "SELECT id FROM {}.users_by_email WHERE email = ?",
                names.keyspace
            ),
            (email,),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row()
        .expect("user7's row by email");
    assert_eq!(by_email, id, "both tables hold the same record's id");
}
