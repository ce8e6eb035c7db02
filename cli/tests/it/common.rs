//! Shared by the process tests: a database of their own with one DAG file loaded, and an
//! `updraft scheduler` child process that is killed when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use testkit::TestDatabase;
use updraft_orchestrator::processor::DagProcessor;

/// The child process, and the file its output goes to (if any).
pub struct Scheduler(pub Child, Option<PathBuf>);

impl Drop for Scheduler {
    /// Kills the process; when the test is failing, shows the last lines of its log.
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(log) = self.1.as_ref().filter(|_| std::thread::panicking()) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!("--- last lines of {} ---\n{tail}", log.display());
        }
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
        Scheduler(
            command.spawn().expect("start updraft scheduler"),
            log.map(Path::to_path_buf),
        )
    }

    pub fn assert_alive(&mut self, when: &str) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("updraft scheduler exited ({status}) {when}");
        }
    }
}

/// A migrated database of the test's own (dropped with the guard) with `yaml` loaded from a
/// temporary DAGs folder.
pub async fn setup(
    prefix: &str,
    file: &str,
    yaml: &str,
) -> Option<(PgPool, TestDatabase, tempfile::TempDir)> {
    if !testkit::require_postgres() {
        return None;
    }
    let database = TestDatabase::create(prefix).await;
    let pool = PgPool::connect(database.url()).await.expect("connect");
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
    Some((pool, database, folder))
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
) {
    testkit::eventually(what, limit, async || {
        let got = scalar(pool, sql).await;
        if got.as_deref() == Some(want) {
            Ok(())
        } else {
            Err(got)
        }
    })
    .await;
}
