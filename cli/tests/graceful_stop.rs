//! SIGTERM: `updraft scheduler` stops claiming, lets running tries finish within the grace
//! period, releases the rest for retry (without using up a retry), and exits cleanly.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use updraft_orchestrator::processor::DagProcessor;
use updraft_orchestrator::store::runs::{TriggerRequest, trigger_run};

fn dag(seconds: u32) -> String {
    format!(
        "dag_id: slow\nschedule: null\nis_paused_upon_creation: false\ntasks:\n  \
         - id: work\n    operator: shell\n    command: sleep {seconds}\n"
    )
}

struct Scheduler(Child);

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn setup(prefix: &str, seconds: u32) -> Option<(PgPool, String, tempfile::TempDir)> {
    if !testkit::require_postgres() {
        return None;
    }
    let url = testkit::fresh_database(prefix).await;
    let pool = PgPool::connect(&url).await.expect("connect");
    updraft_orchestrator::store::MIGRATOR.run(&pool).await.expect("migrate");
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("slow.yaml"), dag(seconds)).expect("write DAG");
    let registry = Arc::new(updraft_operators::builtin_registry());
    DagProcessor::new(pool.clone(), folder.path().to_path_buf(), registry)
        .sync_once()
        .await
        .expect("load DAG");
    Some((pool, url, folder))
}

fn start(url: &str, folder: &std::path::Path, grace_ms: u64) -> Scheduler {
    Scheduler(
        Command::new(env!("CARGO_BIN_EXE_updraft"))
            .args(["scheduler", "--no-processor"])
            .env("DATABASE_URL", url)
            .env("UPDRAFT_DAGS_FOLDER", folder)
            .env("UPDRAFT_GRACE_PERIOD_MS", grace_ms.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start updraft scheduler"),
    )
}

async fn task_state(pool: &PgPool) -> Option<(String, i32, i32)> {
    sqlx::query_as("SELECT state, try_number, max_tries FROM task_instance WHERE task_id = 'work'")
        .fetch_optional(pool)
        .await
        .expect("query")
}

async fn wait_running(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while task_state(pool).await.map(|(state, ..)| state) != Some("running".into()) {
        assert!(Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn terminate_and_wait(scheduler: &mut Scheduler, limit: Duration) -> std::process::ExitStatus {
    let pid = i32::try_from(scheduler.0.id()).expect("pid");
    // SAFETY: kill(2) with a pid we spawned and still own.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = scheduler.0.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "still running {limit:?} after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_try_finishes_within_the_grace_period() {
    let Some((pool, url, folder)) = setup("stop_grace", 2).await else { return };
    let mut scheduler = start(&url, folder.path(), 30_000);
    trigger_run(&pool, "slow", TriggerRequest { run_id: Some("r1".into()), ..Default::default() })
        .await
        .expect("trigger");
    wait_running(&pool).await;

    let status = terminate_and_wait(&mut scheduler, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    assert_eq!(task_state(&pool).await, Some(("success".into(), 1, 0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_try_longer_than_the_grace_period_is_released_for_retry() {
    let Some((pool, url, folder)) = setup("stop_release", 60).await else { return };
    let mut scheduler = start(&url, folder.path(), 500);
    trigger_run(&pool, "slow", TriggerRequest { run_id: Some("r1".into()), ..Default::default() })
        .await
        .expect("trigger");
    wait_running(&pool).await;

    let status = terminate_and_wait(&mut scheduler, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    // Released, not failed, and the stop did not use up a retry (the DAG has none).
    let (state, try_number, max_tries) = task_state(&pool).await.expect("task instance");
    assert_eq!(state, "up_for_retry");
    assert!(try_number <= max_tries, "try {try_number} of max {max_tries}: no retry left");
}
