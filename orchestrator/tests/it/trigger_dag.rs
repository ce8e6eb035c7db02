//! `trigger_dag` run by the scheduler: it creates a run of another DAG with a conf, waits for
//! it, and fails when that run ends in a failed state; `dags test` refuses it with the reason.

use std::time::Duration;

use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};

use crate::scheduler_support::{Runs, config, env, log_lines};

const PARENT: &str = r#"
dag_id: parent
schedule: null
is_paused_upon_creation: false
params:
  fail: false
tasks:
  - id: kick
    operator: trigger_dag
    trigger_dag_id: child
    trigger_run_id: "from_parent__{{ run_id }}"
    conf:
      greeting: "hello from {{ dag_id }}"
      fail: "{{ params.fail }}"
    wait_for_completion: true
    poke_interval: 50ms
  - id: after
    operator: shell
    command: echo "child {{ xcom('kick').trigger_run_id }} is {{ xcom('kick').state }}"
    upstream: [kick]
"#;

const CHILD: &str = r#"
dag_id: child
schedule: null
is_paused_upon_creation: false
params:
  greeting: nobody
  fail: false
tasks:
  - id: greet
    operator: shell
    command: echo "greeting={{ params.greeting }}"{% if params.fail %}; exit 1{% endif %}
"#;

#[tokio::test]
async fn trigger_dag_runs_another_dag_with_a_conf_and_waits_for_its_end() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("trigger_dag").await;
    env.write_dag("parent", PARENT).await;
    env.write_dag("child", CHILD).await;
    env.start_scheduler(config());

    let seen = env.trigger_and_finish("parent").await;
    let kick = seen
        .task_instances
        .iter()
        .find(|ti| ti.task_id == "kick")
        .unwrap();
    assert_eq!(
        seen.states,
        vec![RunState::Success],
        "{seen:?}\n{:?}",
        log_lines(&env.pool, kick).await
    );
    let runs = env.runs().await;
    let child = runs
        .iter()
        .find(|run| run.dag_id == "child")
        .expect("the child run was created");
    let parent = runs.iter().find(|run| run.dag_id == "parent").unwrap();
    assert_eq!(child.run_id, format!("from_parent__{}", parent.run_id));
    assert_eq!(child.state, RunState::Success);
    assert_eq!(child.conf["greeting"], "hello from parent");
    let after = seen
        .task_instances
        .iter()
        .find(|ti| ti.task_id == "after")
        .unwrap();
    let lines: Vec<String> = log_lines(&env.pool, after)
        .await
        .into_iter()
        .map(|(_, line)| line.line)
        .collect();
    let expected = format!("child from_parent__{} is success", parent.run_id);
    assert!(lines.iter().any(|line| line == &expected), "{lines:?}");

    // A child run that fails fails the waiting task, which says so.
    let failing = trigger_run(
        &env.pool,
        "parent",
        TriggerRequest {
            conf: serde_json::json!({"fail": true})
                .as_object()
                .unwrap()
                .clone(),
            ..TriggerRequest::default()
        },
    )
    .await
    .unwrap();
    let seen: Runs = env
        .wait_for_runs(
            "the failing parent to end",
            &[failing.id],
            Duration::from_secs(30),
            |runs| runs.states.iter().all(|state| state.is_finished()),
        )
        .await;
    assert_eq!(seen.states, vec![RunState::Failed], "{seen:?}");
    let kick = seen
        .task_instances
        .iter()
        .find(|ti| ti.task_id == "kick")
        .unwrap();
    assert_eq!(kick.state, TaskState::Failed);
    let lines: Vec<String> = log_lines(&env.pool, kick)
        .await
        .into_iter()
        .map(|(_, line)| line.line)
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("of DAG `child` ended `failed` (failed_states: failed)")),
        "{lines:?}"
    );
    env.stop().await;
}
