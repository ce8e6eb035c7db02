//! Shared by the process tests: a database of their own with one DAG file loaded, an
//! `updraft scheduler` child process that is killed when the test ends, and waiting on runs and
//! their task instances (read through the store).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use testkit::TestDatabase;
use updraft_orchestrator::dag::RunState;
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::runs;
use updraft_orchestrator::store::task_instances::{self, TaskInstanceRow};

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

/// Runs as the store reads them, for waiting on them.
pub struct Runs {
    /// Their states, in no particular order.
    pub states: Vec<RunState>,
    /// Their task instances, by id.
    pub task_instances: Vec<TaskInstanceRow>,
}

impl Runs {
    pub async fn read(pool: &PgPool, ids: &[i64]) -> Runs {
        Runs {
            states: runs::states(pool, ids).await.expect("run states"),
            task_instances: task_instances::of_runs(pool, ids)
                .await
                .expect("task instances"),
        }
    }

    /// How many of the runs are in `state`.
    pub fn count(&self, state: RunState) -> usize {
        self.states.iter().filter(|seen| **seen == state).count()
    }

    /// How many task instances `which` selects.
    pub fn tis(&self, which: impl Fn(&TaskInstanceRow) -> bool) -> usize {
        self.task_instances.iter().filter(|ti| which(ti)).count()
    }

    /// The task instance of `task_id` (the runs waited on have one each).
    pub fn ti(&self, task_id: &str) -> Option<&TaskInstanceRow> {
        self.task_instances.iter().find(|ti| ti.task_id == task_id)
    }
}

/// The states, and each task instance as (run, task, state, try).
impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tis: Vec<_> = self
            .task_instances
            .iter()
            .map(|ti| (&ti.run_id, &ti.task_id, ti.state, ti.try_number))
            .collect();
        write!(f, "runs {:?}, task instances {tis:?}", self.states)
    }
}

/// Waits until `done` holds for the runs `ids` and their task instances, and returns what it
/// saw; on timeout the failure names `what` and shows the runs' states and every task instance.
pub async fn wait_for_runs(
    pool: &PgPool,
    what: &str,
    ids: &[i64],
    limit: Duration,
    done: impl Fn(&Runs) -> bool,
) -> Runs {
    testkit::eventually(what, limit, async || {
        let seen = Runs::read(pool, ids).await;
        if done(&seen) { Ok(seen) } else { Err(seen) }
    })
    .await
}
