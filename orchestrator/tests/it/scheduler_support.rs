//! Shared set-up of the scheduler integration tests: a database of their own, a DAGs folder, the
//! processor, in-process schedulers, and waiting on runs and their task instances (read through the
//! store) with a deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;
use updraft_operators::Registry;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::engine::{Scheduler, SchedulerConfig};
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::logs::{self, LogLine};
use updraft_orchestrator::store::runs::{DagRunRow, RunFilter, RunOrder};
use updraft_orchestrator::store::task_instances::TaskInstanceRow;
use updraft_orchestrator::store::{MIGRATOR, runs};

pub use crate::runs::Runs;

pub struct Env {
    pub pool: PgPool,
    pub folder: PathBuf,
    pub processor: DagProcessor,
    /// The operators the processor and the schedulers know.
    pub registry: Arc<Registry>,
    pub schedulers: Vec<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// Dropped last (fields drop in order), after the pool.
    database: TestDatabase,
}

pub async fn env(prefix: &str) -> Env {
    env_with(prefix, updraft_operators::builtin_registry()).await
}

/// An environment whose processor and schedulers know `registry`'s operators.
pub async fn env_with(prefix: &str, registry: Registry) -> Env {
    let database = TestDatabase::create(prefix).await;
    let pool = updraft_orchestrator::store::connect(database.url(), 20)
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let folder = std::env::temp_dir().join(testkit::unique_name(prefix));
    std::fs::create_dir_all(&folder).unwrap();
    let registry = Arc::new(registry);
    let processor = DagProcessor::new(pool.clone(), folder.clone(), registry.clone());
    Env {
        pool,
        folder,
        processor,
        registry,
        schedulers: Vec::new(),
        database,
    }
}

pub fn config() -> SchedulerConfig {
    SchedulerConfig {
        owner: SchedulerConfig::new_owner(),
        parallelism: 32,
        poll_interval: Duration::from_millis(500),
        reaper_threshold: Duration::from_secs(30),
        grace_period: Duration::from_secs(5),
        execute: true,
        cipher: updraft_secrets::Cipher::none(),
    }
}

impl Env {
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }

    /// Writes `dags/<name>.yaml` and loads the folder into the database.
    pub async fn write_dag(&self, name: &str, yaml: &str) {
        std::fs::write(self.folder.join(format!("{name}.yaml")), yaml).unwrap();
        self.processor.sync_once().await.unwrap();
    }

    pub fn start_scheduler(&mut self, config: SchedulerConfig) {
        let cancel = CancellationToken::new();
        let scheduler = Scheduler::new(self.pool.clone(), self.registry.clone(), config);
        let token = cancel.clone();
        let handle = tokio::spawn(async move {
            scheduler.run(token).await.unwrap();
        });
        self.schedulers.push((cancel, handle));
    }

    pub async fn stop(&mut self) {
        for (cancel, handle) in self.schedulers.drain(..) {
            cancel.cancel();
            let _ = handle.await;
        }
    }

    /// Every run of the database, by id.
    pub async fn runs(&self) -> Vec<DagRunRow> {
        let every = RunFilter::default();
        runs::page(&self.pool, &every, RunOrder::Id, i64::MAX, 0)
            .await
            .unwrap()
            .rows
    }

    /// Triggers a run of `dag_id` and waits until it has ended; returns it as it ended.
    pub async fn trigger_and_finish(&self, dag_id: &str) -> Runs {
        let run = trigger_run(&self.pool, dag_id, TriggerRequest::default())
            .await
            .unwrap();
        self.wait_for_runs(
            "the run to end",
            &[run.id],
            Duration::from_secs(30),
            |runs| !runs.states.is_empty() && runs.states.iter().all(|state| state.is_finished()),
        )
        .await
    }

    /// Waits until `done` holds for the runs `ids` and their task instances, and returns what
    /// it saw; on timeout the failure names `what` and shows the runs' states and every task
    /// instance.
    pub async fn wait_for_runs(
        &self,
        what: &str,
        ids: &[i64],
        timeout: Duration,
        done: impl Fn(&Runs) -> bool,
    ) -> Runs {
        crate::runs::wait_for_runs(&self.pool, what, ids, timeout, done).await
    }
}

/// Every log line of a task instance, with its try number, try by try.
pub async fn log_lines(pool: &PgPool, ti: &TaskInstanceRow) -> Vec<(i32, LogLine)> {
    let mut lines = Vec::new();
    for try_number in 1..=ti.try_number {
        let of_try = logs::lines(pool, ti.id, try_number, 0, i64::MAX)
            .await
            .unwrap();
        lines.extend(of_try.into_iter().map(|line| (try_number, line)));
    }
    lines
}

impl Drop for Env {
    /// A test that failed before `stop` leaves schedulers running: stop them before the database
    /// goes away under them.
    fn drop(&mut self) {
        for (cancel, _) in &self.schedulers {
            cancel.cancel();
        }
    }
}
