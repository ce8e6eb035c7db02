//! The database going away: `updraft scheduler` retries with backoff and resumes by itself,
//! both when PostgreSQL is down at start-up and when it disappears while a task runs.

use std::time::Duration;

use crate::common::{Scheduler, setup, trigger_until_running, wait_for_runs};
use testkit::proxy::TcpProxy;
use updraft_orchestrator::dag::{RunState, TaskState};

const DAG: &str = "\
dag_id: outage
schedule: null
is_paused_upon_creation: false
default_args:
  retries: 3
  retry_delay: 1s
tasks:
  - id: first
    operator: shell
    command: sleep 2
  - id: second
    operator: shell
    command: echo done
    upstream: [first]
";

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_outlives_a_database_outage() {
    let Some((pool, database, folder)) = setup("outage", "outage.yaml", DAG).await else {
        return;
    };
    // The scheduler reaches PostgreSQL only through the proxy, which starts cut.
    let url = database.url();
    let server = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(host_port, _)| host_port.to_string())
        .expect("host:port in DATABASE_URL");
    let proxy = TcpProxy::start(&server).await;
    let proxied_url = url.replacen(&server, &proxy.addr.to_string(), 1);
    proxy.cut();
    let log = folder.path().join("scheduler.log");
    let settings = [
        ("UPDRAFT_REAPER_THRESHOLD_MS", "3000"),
        ("UPDRAFT_POLL_INTERVAL_MS", "500"),
    ];
    let mut scheduler = Scheduler::start(&proxied_url, folder.path(), &settings, Some(&log));

    testkit::eventually("a retry at start-up", Duration::from_secs(30), async || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("database not ready"))
    })
    .await;
    scheduler.assert_alive("while the database was down at start-up");
    proxy.restore();

    let run = trigger_until_running(&pool, "outage", "first").await;

    // The outage itself: longer than the running task, so its completion meets no database.
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(4)).await;
    scheduler.assert_alive("during the outage");
    proxy.restore();

    let seen = wait_for_runs(
        &pool,
        "the run to succeed",
        &[run],
        Duration::from_secs(60),
        |runs| runs.states == [RunState::Success],
    )
    .await;
    scheduler.assert_alive("after the outage");
    let stuck = seen.tis(|ti| {
        matches!(
            ti.state,
            TaskState::Queued | TaskState::Running | TaskState::UpForRetry
        )
    });
    assert_eq!(stuck, 0, "nothing is left unfinished: {seen:?}");
}
