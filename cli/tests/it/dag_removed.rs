//! A DAG whose file disappears while it runs: the run finishes on its pinned version, and the
//! DAG is deactivated (no new runs).

use std::time::Duration;

use crate::common::{Scheduler, setup, trigger_until_running, wait_for_runs};
use updraft_orchestrator::dag::RunState;
use updraft_orchestrator::store::dags;

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
    let run = trigger_until_running(&pool, "vanishing", "first").await;

    std::fs::remove_file(folder.path().join("vanishing.yaml")).expect("delete the DAG file");
    testkit::eventually(
        "the DAG to be deactivated",
        Duration::from_secs(10),
        async || {
            let dag = dags::get_view(&pool, "vanishing")
                .await
                .expect("read the DAG");
            let active = dag.map(|dag| dag.is_active);
            if active == Some(false) {
                Ok(())
            } else {
                Err(active)
            }
        },
    )
    .await;
    wait_for_runs(
        &pool,
        "the run to succeed",
        &[run],
        Duration::from_secs(30),
        |runs| runs.states == [RunState::Success],
    )
    .await;
    scheduler.assert_alive("after its DAG disappeared");
}
