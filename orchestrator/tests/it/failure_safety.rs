//! Failures of the run engine's own bookkeeping: a try this process owns in the store but no
//! longer holds (its claim or its end was lost to an error) is released for retry while the
//! process lives, instead of staying `running` forever (the reaper takes only the tries of
//! processes whose heartbeat stopped); a process cut off from the database stops its tries
//! before other processes may take them (fencing), and they run again once.

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
    config.reaper_threshold = Duration::from_millis(1500);
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

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find(|line| line.starts_with("State:"))
            .is_some_and(|line| !line.contains('Z'))
    })
}

#[tokio::test]
async fn a_process_cut_off_from_the_database_stops_its_tries_before_others_may_take_them() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("fenced").await;
    let dir = std::env::temp_dir().join(testkit::unique_name("fenced"));
    std::fs::create_dir_all(&dir).unwrap();
    let (marker, pid_file) = (dir.join("started"), dir.join("pid"));
    // The first try runs for a minute; the retry finds the marker and succeeds at once.
    let yaml = format!(
        r#"
dag_id: long_task
schedule: null
is_paused_upon_creation: false
tasks:
  - id: sleeper
    operator: shell
    command: "if [ -f {marker} ]; then exit 0; fi; touch {marker}; echo $$ > {pid}.tmp; mv {pid}.tmp {pid}; exec sleep 60"
"#,
        marker = marker.display(),
        pid = pid_file.display(),
    );
    env.write_dag("long_task", &yaml).await;
    let mut config = config();
    config.reaper_threshold = Duration::from_millis(1500);
    env.start_scheduler(config);
    let run = trigger_run(&env.pool, "long_task", TriggerRequest::default())
        .await
        .unwrap();
    let pid: u32 = testkit::eventually(
        "the first try to start",
        Duration::from_secs(30),
        async || match std::fs::read_to_string(&pid_file) {
            Ok(text) => text
                .trim()
                .parse::<u32>()
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        },
    )
    .await;
    assert!(alive(pid));

    // Its process can no longer store a heartbeat: it must stop the try by itself (without
    // the database, and before another process's reaper would take the try).
    env.database().begin_outage().await;
    testkit::eventually(
        "the try to stop while the database is out of reach",
        Duration::from_secs(10),
        async || {
            if alive(pid) {
                Err("still running")
            } else {
                Ok(())
            }
        },
    )
    .await;
    env.database().end_outage().await;

    let runs = env
        .wait_for_runs(
            "the stopped try to run again",
            &[run.id],
            Duration::from_secs(30),
            |runs| runs.states.iter().all(|state| state.is_finished()),
        )
        .await;
    assert_eq!(runs.states, [RunState::Success]);
    let sleeper = &runs.task_instances[0];
    assert_eq!(
        (sleeper.state, sleeper.try_number),
        (TaskState::Success, 2),
        "{sleeper:?}"
    );
    env.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ends_are_stored_after_the_database_ended_the_end_writers_connection() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("writer_cut").await;
    env.write_dag("one_task", ONE_TASK).await;
    env.start_scheduler(config());
    let all_finished =
        |runs: &crate::scheduler_support::Runs| runs.states.iter().all(|state| state.is_finished());
    let first = trigger_run(&env.pool, "one_task", TriggerRequest::default())
        .await
        .unwrap();
    env.wait_for_runs(
        "the first run",
        &[first.id],
        Duration::from_secs(30),
        all_finished,
    )
    .await;

    // Every connection to the database ends, the one the end writer holds among them.
    env.database().begin_outage().await;
    env.database().end_outage().await;
    let second = trigger_run(&env.pool, "one_task", TriggerRequest::default())
        .await
        .unwrap();
    let runs = env
        .wait_for_runs(
            "the run after the cut",
            &[second.id],
            Duration::from_secs(30),
            all_finished,
        )
        .await;
    assert_eq!(runs.states, [RunState::Success]);
    let only = &runs.task_instances[0];
    // Its end was stored on a new connection, not given up and run again.
    assert_eq!(
        (only.state, only.try_number),
        (TaskState::Success, 1),
        "{only:?}"
    );
    env.stop().await;
}
