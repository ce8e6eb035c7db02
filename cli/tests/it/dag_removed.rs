//! A DAG whose file disappears while it runs: the run finishes on its pinned version, and the
//! DAG is deactivated (no new runs).

use std::time::Duration;

use crate::common::{Scheduler, setup, wait_for_value};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};

const DAG: &str = "\
dag_id: vanishing
schedule: null
is_paused_upon_creation: false
tasks:
  - id: first
    operator: shell
    command: sleep 1
  - id: second
    operator: shell
    command: echo still here
    upstream: [first]
";

#[tokio::test(flavor = "multi_thread")]
async fn a_run_outlives_the_deletion_of_its_dag_file() {
    let Some((pool, database, folder)) = setup("dag_removed", "vanishing.yaml", DAG).await else {
        return;
    };
    let log = folder.path().join("scheduler.log");
    let mut scheduler = Scheduler::start(database.url(), folder.path(), &[], Some(&log));
    trigger_run(
        &pool,
        "vanishing",
        TriggerRequest {
            run_id: Some("r1".into()),
            ..Default::default()
        },
    )
    .await
    .expect("trigger");
    wait_for_value(
        &pool,
        "the first task to run",
        "SELECT state FROM task_instance WHERE task_id = 'first'",
        "running",
        Duration::from_secs(30),
    )
    .await;

    std::fs::remove_file(folder.path().join("vanishing.yaml")).expect("delete the DAG file");
    wait_for_value(
        &pool,
        "the DAG to be deactivated",
        "SELECT is_active::text FROM dag WHERE dag_id = 'vanishing'",
        "false",
        Duration::from_secs(10),
    )
    .await;
    wait_for_value(
        &pool,
        "the run to succeed",
        "SELECT state FROM dag_run WHERE run_id = 'r1'",
        "success",
        Duration::from_secs(30),
    )
    .await;
    scheduler.assert_alive("after its DAG disappeared");
}
