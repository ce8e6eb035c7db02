//! Several `updraft scheduler` processes on one database: no double execution, and a process
//! killed with SIGKILL leaves nothing stuck (another one takes its tries over).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use testkit::TestDatabase;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::logs;
use updraft_orchestrator::store::task_instances::TaskInstanceRow;

use crate::common::{Runs, wait_for_runs};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scheduler(url: &str, folder: &Path, reaper_ms: u64) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["scheduler", "--no-processor", "--parallelism", "16"])
        .env("DATABASE_URL", url)
        .env("UPDRAFT_DAGS_FOLDER", folder)
        .env("UPDRAFT_REAPER_THRESHOLD_MS", reaper_ms.to_string())
        .env("UPDRAFT_POLL_INTERVAL_MS", "500")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the updraft binary starts");
    Process(child)
}

async fn setup(prefix: &str, yaml: &str) -> (PgPool, TestDatabase, PathBuf) {
    let database = TestDatabase::create(prefix).await;
    let pool = PgPool::connect(database.url()).await.unwrap();
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .unwrap();
    let folder = std::env::temp_dir().join(testkit::unique_name(prefix));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("dag.yaml"), yaml).unwrap();
    let registry = Arc::new(updraft_operators::builtin_registry());
    DagProcessor::new(pool.clone(), folder.clone(), registry)
        .sync_once()
        .await
        .unwrap();
    (pool, database, folder)
}

/// Triggers `runs` runs of the DAG; returns their ids.
async fn trigger_many(pool: &PgPool, dag_id: &str, runs: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for index in 0..runs {
        let request = TriggerRequest {
            run_id: Some(format!("run_{index:03}")),
            logical_date: Some(
                chrono::DateTime::from_timestamp(1_700_000_000 + index as i64 * 60, 0).unwrap(),
            ),
            ..Default::default()
        };
        ids.push(trigger_run(pool, dag_id, request).await.unwrap().id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn two_scheduler_processes_execute_every_try_exactly_once() {
    if !testkit::require_postgres() {
        return;
    }
    let journal = std::env::temp_dir().join(testkit::unique_name("journal"));
    let mut yaml = String::from(
        "dag_id: many\nschedule: null\nis_paused_upon_creation: false\nmax_active_runs: 50\n\
         max_active_tasks: 64\ntasks:\n",
    );
    for task in 0..10 {
        let upstream = if task >= 5 {
            format!("\n    upstream: [t{}]", task - 5)
        } else {
            String::new()
        };
        yaml.push_str(&format!(
            "  - id: t{task}\n    operator: shell{upstream}\n    command: \"echo {{{{ run_id }}}} {{{{ task_id }}}} {{{{ try_number }}}} >> {}\"\n",
            journal.display()
        ));
    }
    let (pool, database, folder) = setup("proc_two", &yaml).await;
    let _a = scheduler(database.url(), &folder, 30_000);
    let _b = scheduler(database.url(), &folder, 30_000);
    let ids = trigger_many(&pool, "many", 50).await;
    let seen = wait_for_runs(
        &pool,
        "the 50 runs to succeed",
        &ids,
        Duration::from_secs(240),
        |runs| runs.count(RunState::Success) == 50,
    )
    .await;
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 500, "every try ran once");
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), 500, "no try ran twice");
    assert_eq!(
        seen.tis(|ti| ti.state == TaskState::Success && ti.try_number == 1),
        500
    );
    // Both processes took part.
    let owners: BTreeSet<&str> = seen
        .task_instances
        .iter()
        .filter_map(|ti| ti.owner.as_deref())
        .collect();
    assert_eq!(
        owners.len(),
        2,
        "both schedulers executed tasks: {owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_scheduler_leaves_nothing_stuck() {
    if !testkit::require_postgres() {
        return;
    }
    let yaml = "dag_id: slow\nschedule: null\nis_paused_upon_creation: false\nmax_active_runs: 10\n\
        max_active_tasks: 32\ndefault_args:\n  retries: 1\n  retry_delay: 1s\ntasks:\n\
        \x20 - id: first\n    operator: shell\n    command: \"sleep 2\"\n\
        \x20 - id: second\n    operator: shell\n    upstream: [first]\n    command: \"echo done\"\n";
    let (pool, database, folder) = setup("proc_kill", yaml).await;
    let mut victim = scheduler(database.url(), &folder, 1_500);
    let ids = trigger_many(&pool, "slow", 5).await;
    let running = |ti: &TaskInstanceRow| ti.state == TaskState::Running;
    wait_for_runs(
        &pool,
        "five tries running",
        &ids,
        Duration::from_secs(30),
        |runs| runs.tis(running) == 5,
    )
    .await;
    // SIGKILL: no chance to release anything.
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    assert_eq!(Runs::read(&pool, &ids).await.tis(running), 5);
    let _rescuer = scheduler(database.url(), &folder, 1_500);
    let seen = wait_for_runs(
        &pool,
        "the 5 runs to succeed",
        &ids,
        Duration::from_secs(60),
        |runs| runs.count(RunState::Success) == 5,
    )
    .await;
    assert_eq!(seen.tis(|ti| !ti.state.is_finished()), 0, "{seen:?}");
    // The interrupted tries were retried: try 2 of `first`, by the second process.
    assert_eq!(
        seen.tis(|ti| ti.task_id == "first" && ti.try_number == 2),
        5
    );
    let mut abandoned = 0;
    for ti in &seen.task_instances {
        for try_number in 1..=ti.try_number {
            let lines = logs::lines(&pool, ti.id, try_number, 0, i64::MAX)
                .await
                .unwrap();
            abandoned += lines
                .iter()
                .filter(|line| line.line.starts_with("try abandoned"))
                .count();
        }
    }
    assert_eq!(abandoned, 5);
}
