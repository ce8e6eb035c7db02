//! SIGTERM: `updraft scheduler` stops claiming, lets running tries finish within the grace
//! period, releases the rest for retry (without using up a retry), and exits cleanly.

use std::time::Duration;

use crate::common::{Runs, Scheduler, setup, trigger_until_running};
use sqlx::PgPool;
use updraft_orchestrator::dag::TaskState;

fn dag(seconds: u32) -> String {
    format!(
        "dag_id: slow\nschedule: null\nis_paused_upon_creation: false\ntasks:\n  \
         - id: work\n    operator: shell\n    command: sleep {seconds}\n"
    )
}

/// The state, try number and max tries of the run's task `work`.
async fn task_state(pool: &PgPool, run: i64) -> Option<(TaskState, i32, i32)> {
    let seen = Runs::read(pool, &[run]).await;
    let work = seen.ti("work")?;
    Some((work.state, work.try_number, work.max_tries))
}

/// Sends SIGTERM and waits for the process to exit.
async fn terminate_and_wait(
    scheduler: &mut Scheduler,
    limit: Duration,
) -> std::process::ExitStatus {
    let pid = i32::try_from(scheduler.0.id()).expect("pid");
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    testkit::eventually("the scheduler to exit after SIGTERM", limit, async || {
        scheduler.0.try_wait().expect("wait")
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_try_finishes_within_the_grace_period() {
    let Some((pool, database, folder)) = setup("stop_grace", "slow.yaml", &dag(2)).await else {
        return;
    };
    let grace = [("UPDRAFT_GRACE_PERIOD_MS", "30000")];
    let mut scheduler = Scheduler::start(database.url(), folder.path(), &grace, None);
    let run = trigger_until_running(&pool, "slow", "work").await;

    let status = terminate_and_wait(&mut scheduler, Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        task_state(&pool, run).await,
        Some((TaskState::Success, 1, 0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_try_longer_than_the_grace_period_is_released_for_retry() {
    let Some((pool, database, folder)) = setup("stop_release", "slow.yaml", &dag(60)).await else {
        return;
    };
    let grace = [("UPDRAFT_GRACE_PERIOD_MS", "500")];
    let mut scheduler = Scheduler::start(database.url(), folder.path(), &grace, None);
    let run = trigger_until_running(&pool, "slow", "work").await;

    let status = terminate_and_wait(&mut scheduler, Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}");
    // Released, not failed, and the stop did not use up a retry (the DAG has none).
    let (state, try_number, max_tries) = task_state(&pool, run).await.expect("task instance");
    assert_eq!(state, TaskState::UpForRetry);
    assert!(
        try_number <= max_tries,
        "try {try_number} of max {max_tries}: no retry left"
    );
}
