//! A real `stream-worker` for the Streams pages' tests (the binary `cargo build -p
//! stream-worker` leaves in `target/debug`), on the seed's definition pointed at a test topic.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::server::{free_port, workspace};

/// A `stream-worker` process, killed when the test ends.
pub struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the worker on the seed's definition pointed at `topic` and a keyspace of the same
/// name; its API on the returned port.
pub fn start_worker(topic: &str, dir: &std::path::Path) -> (Worker, u16) {
    let binary = workspace().join("target/debug/stream-worker");
    assert!(
        binary.exists(),
        "{} is missing: cargo build -p stream-worker",
        binary.display()
    );
    let definition = std::fs::read_to_string(workspace().join("streams/users_created.yaml"))
        .expect("the seed definition")
        .replace("topic: users_created", &format!("topic: {topic}"))
        .replace("group: updraft-stream-worker", &format!("group: {topic}_g"))
        .replace("keyspace: spark_streaming", &format!("keyspace: {topic}"))
        .replace("users_created.dlq", &format!("{topic}.dlq"));
    let file = dir.join("users_created.yaml");
    std::fs::write(&file, definition).expect("write the definition");
    let port = free_port();
    let child = Command::new(binary)
        .arg("--definitions")
        .arg(&file)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .envs(testkit::service_env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stream-worker");
    (Worker(child), port)
}

pub fn record(i: usize) -> Vec<u8> {
    serde_json::json!({
        "id": format!("00000000-0000-4000-8000-{i:012}"), "first_name": format!("First{i}"),
        "last_name": "Last", "email": format!("user{i}@example.com"), "username": format!("user{i}"),
    })
    .to_string()
    .into_bytes()
}

/// Waits until the worker's API says its stream wrote `written` rows and refused `refused`.
pub async fn wait_until_written(api: &str, written: u64, refused: u64) {
    let what = format!("the worker to write {written} rows and refuse {refused}");
    testkit::eventually(&what, Duration::from_secs(90), async || {
        let streams: serde_json::Value = reqwest::get(format!("{api}/api/streams"))
            .await
            .map_err(|error| error.to_string())?
            .json()
            .await
            .map_err(|error| error.to_string())?;
        let stream = &streams[0];
        if stream["written"] == written && stream["dead_lettered"] == refused {
            Ok(())
        } else {
            Err(stream.to_string())
        }
    })
    .await;
}
