//! Failures of the run engine's own bookkeeping: a try this process owns in the store but no
//! longer holds (its claim or its end was lost to an error) is released for retry while the
//! process lives, instead of staying `running` forever (the reaper takes only the tries of
//! processes whose heartbeat stopped).

use std::time::Duration;

use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::advance::start_queued_runs;
use updraft_orchestrator::engine::executor::register;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::{DagCache, task_instances};

use crate::scheduler_support::{config, env};

const ONE_TASK: &str = r#"
dag_id: one_task
schedule: null
is_paused_upon_creation: false
tasks:
  - id: only
    operator: empty
"#;

#[tokio::test]
async fn a_try_its_live_process_no_longer_holds_is_released_and_runs_again() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("abandoned").await;
    env.write_dag("one_task", ONE_TASK).await;
    let run = trigger_run(&env.pool, "one_task", TriggerRequest::default())
        .await
        .unwrap();
    start_queued_runs(&env.pool, &DagCache::new(), "one_task")
        .await
        .unwrap();
    // The process is known and alive, and owns the try, but nothing in it runs the try: as
    // after a claim whose answer was lost.
    let mut config = config();
    config.reaper_threshold = Duration::from_millis(600);
    register(&env.pool, &config.owner).await.unwrap();
    let claimed = task_instances::claim(&env.pool, &config.owner, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    env.start_scheduler(config);

    let runs = env
        .wait_for_runs(
            "the abandoned try to be released and run again",
            &[run.id],
            Duration::from_secs(30),
            |runs| runs.states.iter().all(|state| state.is_finished()),
        )
        .await;
    assert_eq!(runs.states, [RunState::Success]);
    let only = &runs.task_instances[0];
    assert_eq!(only.state, TaskState::Success);
    // The released try is not counted against the task's retries (it has none): its
    // allowance grew by one.
    assert_eq!((only.try_number, only.max_tries), (2, 1), "{only:?}");
    env.stop().await;
}
