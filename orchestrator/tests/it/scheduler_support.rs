//! Shared set-up of the scheduler integration tests: a database of their own, a DAGs folder, the
//! processor, in-process schedulers, and waiting on database conditions with a deadline.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sqlx::PgPool;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;
use updraft_orchestrator::engine::{Scheduler, SchedulerConfig};
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::MIGRATOR;

pub struct Env {
    pub pool: PgPool,
    pub folder: PathBuf,
    pub processor: DagProcessor,
    pub schedulers: Vec<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// Dropped last (fields drop in order), after the pool.
    _database: TestDatabase,
}

pub async fn env(prefix: &str) -> Env {
    let database = TestDatabase::create(prefix).await;
    let pool = updraft_orchestrator::store::connect(database.url(), 20)
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let folder = std::env::temp_dir().join(testkit::unique_name(prefix));
    std::fs::create_dir_all(&folder).unwrap();
    let registry = Arc::new(updraft_operators::builtin_registry());
    let processor = DagProcessor::new(pool.clone(), folder.clone(), registry);
    Env {
        pool,
        folder,
        processor,
        schedulers: Vec::new(),
        _database: database,
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
    }
}

impl Env {
    /// Writes `dags/<name>.yaml` and loads the folder into the database.
    pub async fn write_dag(&self, name: &str, yaml: &str) {
        std::fs::write(self.folder.join(format!("{name}.yaml")), yaml).unwrap();
        self.processor.sync_once().await.unwrap();
    }

    pub fn start_scheduler(&mut self, config: SchedulerConfig) {
        let cancel = CancellationToken::new();
        let registry = Arc::new(updraft_operators::builtin_registry());
        let scheduler = Scheduler::new(self.pool.clone(), registry, config);
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

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until `sql` (returning one bigint) equals `want`; on timeout the failure shows the
    /// last value, and every task instance is printed.
    pub async fn wait_for(&self, sql: &str, want: i64, timeout: Duration) {
        let what = format!("`{sql}` = {want}");
        let waited = AssertUnwindSafe(testkit::eventually(&what, timeout, async || {
            let got = self.scalar_i64(sql).await;
            if got == want { Ok(()) } else { Err(got) }
        }))
        .catch_unwind()
        .await;
        if let Err(panic) = waited {
            let states: Vec<(String, String, String, i32)> = sqlx::query_as(
                "SELECT run_id, task_id, state, try_number FROM task_instance ORDER BY id",
            )
            .fetch_all(&self.pool)
            .await
            .unwrap_or_default();
            eprintln!("task instances: {states:?}");
            std::panic::resume_unwind(panic);
        }
    }
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
