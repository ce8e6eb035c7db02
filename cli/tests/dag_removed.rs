//! A DAG whose file disappears while it runs: the run finishes on its pinned version, and the
//! DAG is deactivated (no new runs).

mod common;

use std::time::Duration;

use common::{Scheduler, scalar, setup, wait_until};
use updraft_orchestrator::store::runs::{TriggerRequest, trigger_run};

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
    let Some((pool, url, folder)) = setup("dag_removed", "vanishing.yaml", DAG).await else {
        return;
    };
    let log = folder.path().join("scheduler.log");
    let mut scheduler = Scheduler::start(&url, folder.path(), &[], Some(&log));
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
    wait_until(
        "the first task to run",
        Duration::from_secs(30),
        Some(&log),
        || async {
            scalar(
                &pool,
                "SELECT state FROM task_instance WHERE task_id = 'first'",
            )
            .await
            .as_deref()
                == Some("running")
        },
    )
    .await;

    std::fs::remove_file(folder.path().join("vanishing.yaml")).expect("delete the DAG file");
    wait_until(
        "the DAG to be deactivated",
        Duration::from_secs(10),
        Some(&log),
        || async {
            scalar(
                &pool,
                "SELECT is_active::text FROM dag WHERE dag_id = 'vanishing'",
            )
            .await
            .as_deref()
                == Some("false")
        },
    )
    .await;
    wait_until(
        "the run to succeed",
        Duration::from_secs(30),
        Some(&log),
        || async {
            scalar(&pool, "SELECT state FROM dag_run WHERE run_id = 'r1'")
                .await
                .as_deref()
                == Some("success")
        },
    )
    .await;
    scheduler.assert_alive("after its DAG disappeared");
}
