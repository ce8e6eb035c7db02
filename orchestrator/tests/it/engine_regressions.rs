//! Bugs the run engine once had, each held by a test: `dags test` and a triggered run disagreed
//! on the data interval; the stored rendered config was rendered a second time, apart from what
//! the operator got; and a clear could not leave a finished run finished (`reset_dag_runs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use updraft_orchestrator::dag::{RunState, TaskState, load_file};
use updraft_orchestrator::engine::clear::{ClearRequest, clear_task_instances};
use updraft_orchestrator::engine::local::{LocalRunOptions, run_locally};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::runs::DagRunRow;
use updraft_orchestrator::store::{runs, task_instances, xcom};

use crate::scheduler_support::{Env, config, env};

/// Waits until the run has finished; returns it.
async fn finished(env: &Env, run: &DagRunRow) -> DagRunRow {
    testkit::eventually(
        &format!("run {} to finish", run.run_id),
        Duration::from_secs(30),
        async || {
            let now = runs::get(&env.pool, &run.dag_id, &run.run_id)
                .await
                .unwrap()
                .expect("the run exists");
            if now.state.is_finished() {
                Ok(now)
            } else {
                Err(now.state)
            }
        },
    )
    .await
}

/// A daily DAG whose task prints what templates see of its run.
const ECHO: &str = r#"
dag_id: echo_run
schedule: "@daily"
start_date: 2024-01-01
catchup: false
is_paused_upon_creation: true
tasks:
  - id: echo
    operator: shell
    command: "echo '{{ run_id }}|{{ ds }}|{{ logical_date }}|{{ data_interval_start }}|{{ data_interval_end }}'"
"#;

#[tokio::test]
async fn dags_test_and_a_triggered_run_see_the_same_run() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("same_run").await;
    env.write_dag("echo_run", ECHO).await;
    // Between two daily ticks: the data interval is the day that ended before it.
    let logical_date: DateTime<Utc> = "2024-03-05T10:30:00Z".parse().unwrap();

    let path = env.folder.join("echo_run.yaml");
    let source = std::fs::read_to_string(&path).unwrap();
    let registry = updraft_operators::builtin_registry();
    let loaded = load_file(&path, &source, &registry).unwrap();
    let mut options = LocalRunOptions::new(Map::new());
    options.logical_date = logical_date;
    options.log_for = Box::new(|_| Arc::new(Quiet));
    let local = run_locally(&loaded.dag, &registry, options, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(local.tasks[0].state, TaskState::Success, "{local:?}");
    let tested = local.tasks[0].output.clone().unwrap()["last_line"].clone();

    env.start_scheduler(config());
    let request = TriggerRequest {
        logical_date: Some(logical_date),
        ..Default::default()
    };
    let run = trigger_run(&env.pool, "echo_run", request).await.unwrap();
    // A paused DAG's manual run waits, as in Airflow; unpause to let it run.
    updraft_orchestrator::store::dags::set_paused(&env.pool, "echo_run", false)
        .await
        .unwrap();
    assert_eq!(finished(&env, &run).await.state, RunState::Success);
    let outputs = xcom::return_values(&env.pool, run.id).await.unwrap();
    let triggered = outputs["echo"]["last_line"].clone();

    assert_eq!(tested, triggered, "dags test and a triggered run differ");
    assert_eq!(
        triggered,
        Value::from(
            "manual__2024-03-05T10:30:00+00:00|2024-03-05|2024-03-05T10:30:00+00:00|\
             2024-03-04T00:00:00+00:00|2024-03-05T00:00:00+00:00"
        )
    );
    env.stop().await;
}

struct Quiet;

impl updraft_operators::LogSink for Quiet {
    fn write_line(&self, _line: &str) {}
}

use std::sync::Arc;

const UUID: &str = r#"
dag_id: fresh_values
schedule: null
is_paused_upon_creation: false
tasks:
  - id: echo
    operator: shell
    command: "echo {{ uuid4() }} {{ now() }}"
"#;

#[tokio::test]
async fn the_stored_rendered_config_is_what_the_operator_received() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("render_once").await;
    env.write_dag("fresh_values", UUID).await;
    env.start_scheduler(config());
    let run = trigger_run(&env.pool, "fresh_values", TriggerRequest::default())
        .await
        .unwrap();
    assert_eq!(finished(&env, &run).await.state, RunState::Success);
    let rows = task_instances::of_runs(&env.pool, &[run.id]).await.unwrap();
    let stored = rows[0].rendered_config.clone().expect("a rendered config");
    let printed =
        xcom::return_values(&env.pool, run.id).await.unwrap()["echo"]["last_line"].clone();
    // Rendered once: the command shown to users printed exactly what the operator printed.
    assert_eq!(
        stored["command"]
            .as_str()
            .map(|c| c.trim_start_matches("echo ")),
        printed.as_str(),
        "stored {stored} vs printed {printed}"
    );
    env.stop().await;
}

const ONE_TASK: &str = r#"
dag_id: once_more
schedule: null
is_paused_upon_creation: false
tasks:
  - id: only
    operator: empty
"#;

#[tokio::test]
async fn a_clear_without_reset_dag_runs_leaves_a_finished_run_finished() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("reset_runs").await;
    env.write_dag("once_more", ONE_TASK).await;
    env.start_scheduler(config());
    let run = trigger_run(&env.pool, "once_more", TriggerRequest::default())
        .await
        .unwrap();
    assert_eq!(finished(&env, &run).await.state, RunState::Success);
    let only = ["only".to_string()];
    let mut request = ClearRequest {
        dag_id: "once_more",
        run_id: Some(&run.run_id),
        task_ids: &only,
        include_upstream: false,
        include_downstream: false,
        only_failed: false,
        dry_run: false,
        reset_dag_runs: false,
    };

    // Airflow's reset_dag_runs=false: the task waits in `none`, the run keeps its state.
    let cleared = clear_task_instances(&env.pool, &request).await.unwrap();
    assert_eq!(cleared.len(), 1);
    let after = runs::get(&env.pool, "once_more", &run.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.state, RunState::Success);
    let rows = task_instances::of_runs(&env.pool, &[run.id]).await.unwrap();
    assert_eq!((rows[0].state, rows[0].try_number), (TaskState::None, 1));

    // With it, the run is queued again and the task runs a second time.
    request.reset_dag_runs = true;
    let cleared = clear_task_instances(&env.pool, &request).await.unwrap();
    assert_eq!(cleared.len(), 1);
    let again = testkit::eventually(
        "the cleared task to run again",
        Duration::from_secs(30),
        async || {
            let rows = task_instances::of_runs(&env.pool, &[run.id]).await.unwrap();
            let row = &rows[0];
            if row.state == TaskState::Success && row.try_number == 2 {
                Ok(row.clone())
            } else {
                Err((row.state, row.try_number))
            }
        },
    )
    .await;
    assert_eq!(
        again.max_tries, 1,
        "the clear made the retries available again"
    );
    assert_eq!(finished(&env, &run).await.state, RunState::Success);
    env.stop().await;
}
