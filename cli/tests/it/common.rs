//! Shared by the process tests: a fresh database with one DAG file loaded, and an
//! `updraft scheduler` child process that is killed when the test ends.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use updraft_orchestrator::processor::DagProcessor;

pub struct Scheduler(pub Child);

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Scheduler {
    /// `updraft scheduler` on `url` with the DAGs of `folder`; `env` adds or overrides settings;
    /// its output goes to `log` when given.
    pub fn start(url: &str, folder: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Scheduler {
        let mut command = Command::new(env!("CARGO_BIN_EXE_updraft"));
        command
            .arg("scheduler")
            .env("DATABASE_URL", url)
            .env("UPDRAFT_DAGS_FOLDER", folder)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("log file");
                command
                    .stdout(file.try_clone().expect("log file"))
                    .stderr(file);
            }
            None => {
                command.stdout(Stdio::null());
            }
        }
        Scheduler(command.spawn().expect("start updraft scheduler"))
    }

    pub fn assert_alive(&mut self, when: &str) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("updraft scheduler exited ({status}) {when}");
        }
    }
}

/// A fresh, migrated database with `yaml` loaded from a temporary DAGs folder.
pub async fn setup(
    prefix: &str,
    file: &str,
    yaml: &str,
) -> Option<(PgPool, String, tempfile::TempDir)> {
    if !testkit::require_postgres() {
        return None;
    }
    let url = testkit::fresh_database(prefix).await;
    let pool = PgPool::connect(&url).await.expect("connect");
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join(file), yaml).expect("write DAG");
    let registry = Arc::new(updraft_operators::builtin_registry());
    DagProcessor::new(pool.clone(), folder.path().to_path_buf(), registry)
        .sync_once()
        .await
        .expect("load DAG");
    Some((pool, url, folder))
}

/// The first column of the first row of `sql`, if any.
pub async fn scalar(pool: &PgPool, sql: &'static str) -> Option<String> {
    sqlx::query_scalar(sql)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

/// Waits until `sql` (one text value) reads `want`.
pub async fn wait_for_value(
    pool: &PgPool,
    what: &str,
    sql: &'static str,
    want: &str,
    limit: Duration,
    log: Option<&Path>,
) {
    wait_until(what, limit, log, || async {
        scalar(pool, sql).await.as_deref() == Some(want)
    })
    .await;
}

/// Polls `check` every 50 ms until it holds; on timeout, fails with `what` and the log's tail.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, log: Option<&Path>, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() >= deadline {
            let text = log
                .and_then(|path| std::fs::read_to_string(path).ok())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            panic!("gave up waiting for {what} after {limit:?}\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
