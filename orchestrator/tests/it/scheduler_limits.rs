//! max_active_tasks holds exactly with two schedulers handing off to each other's downstream
//! tasks (the executor queues and claims downstream tasks itself after a try ends).

use std::time::Duration;

use testkit::Deadline;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::task_instances::TaskInstanceRow;

use crate::scheduler_support::{Runs, config, env};

/// Fan-out and chains: every try ending may make several tasks ready at once.
const LIMITED: &str = r#"
dag_id: limited
schedule: null
is_paused_upon_creation: false
max_active_runs: 10
max_active_tasks: 3
tasks:
  - id: start
    operator: shell
    command: "sleep 0.2"
  - id: a
    operator: shell
    upstream: [start]
    command: "sleep 0.2"
  - id: b
    operator: shell
    upstream: [start]
    command: "sleep 0.2"
  - id: c
    operator: shell
    upstream: [start]
    command: "sleep 0.2"
  - id: d
    operator: shell
    upstream: [a]
    command: "sleep 0.2"
  - id: e
    operator: shell
    upstream: [b, c]
    command: "sleep 0.2"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_active_tasks_holds_with_two_schedulers() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_limit").await;
    env.write_dag("limited", LIMITED).await;
    env.start_scheduler(config());
    env.start_scheduler(config());
    let mut ids = Vec::new();
    for index in 0..5 {
        let request = TriggerRequest {
            run_id: Some(format!("r{index}")),
            ..Default::default()
        };
        ids.push(trigger_run(&env.pool, "limited", request).await.unwrap().id);
    }
    // Every run of the database is one of these: the limit is checked over all of them.
    assert_eq!(env.runs().await.len(), 5);
    let active = |ti: &TaskInstanceRow| {
        ti.dag_id == "limited" && matches!(ti.state, TaskState::Queued | TaskState::Running)
    };
    let mut highest = 0;
    // Sampled every 10 ms: tries last 200 ms, so an excess would stay visible for several polls.
    let every_10_ms =
        Deadline::within(Duration::from_secs(120)).polling_every(Duration::from_millis(10));
    testkit::eventually("the five runs to succeed", every_10_ms, async || {
        let seen = Runs::read(&env.pool, &ids).await;
        if seen.count(RunState::Success) >= 5 {
            return true;
        }
        let now = seen.tis(active);
        assert!(
            now <= 3,
            "{now} task instances active; max_active_tasks is 3"
        );
        highest = highest.max(now);
        false
    })
    .await;
    assert_eq!(highest, 3, "the limit was reached, so it was tested");
    let seen = Runs::read(&env.pool, &ids).await;
    assert_eq!(
        seen.tis(|ti| ti.state == TaskState::Success && ti.try_number == 1),
        30
    );
    env.stop().await;
}
