//! Shared by the process tests: a database of their own with one DAG file loaded, an
//! `updraft scheduler` child process that is killed when the test ends, and waiting on runs and
//! their task instances (read through the store).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use sqlx::PgPool;
use testkit::TestDatabase;
use updraft_orchestrator::processor::DagProcessor;

use std::time::Duration;

use updraft_orchestrator::dag::TaskState;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};

pub use crate::runs::{Runs, wait_for_runs};

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
        Scheduler::start_role(&["scheduler"], url, folder, env, log)
    }

    /// `updraft ARGS...` (another role: `webserver`, `standalone`), set up as [`Scheduler::start`].
    pub fn start_role(
        args: &[&str],
        url: &str,
        folder: &Path,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Scheduler {
        let mut command = Command::new(env!("CARGO_BIN_EXE_updraft"));
        command
            .args(args)
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
            command.spawn().expect("start updraft"),
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

/// Triggers run `r1` of `dag_id` and waits until its task `task_id` is running; returns the
/// run's id.
pub async fn trigger_until_running(pool: &PgPool, dag_id: &str, task_id: &str) -> i64 {
    let request = TriggerRequest {
        run_id: Some("r1".into()),
        ..Default::default()
    };
    let run = trigger_run(pool, dag_id, request).await.expect("trigger");
    wait_for_runs(
        pool,
        &format!("{task_id} to run"),
        &[run.id],
        Duration::from_secs(30),
        |runs| {
            runs.ti(task_id)
                .is_some_and(|ti| ti.state == TaskState::Running)
        },
    )
    .await;
    run.id
}
