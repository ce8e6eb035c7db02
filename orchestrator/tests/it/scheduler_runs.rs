//! End-to-end runs on PostgreSQL: chains with XCom and logs, retries, trigger rules, clearing.

use std::time::Duration;

use serde_json::{Map, json};
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::advance::start_queued_runs;
use updraft_orchestrator::engine::clear::{ClearRequest, clear_task_instances, mark_task};
use updraft_orchestrator::engine::trigger::{TriggerError, TriggerRequest, trigger_run};
use updraft_orchestrator::store::{DagCache, channels, runs, task_instances, xcom};

use crate::scheduler_support::{config, env, log_lines};

const CHAIN: &str = r#"
dag_id: chain
schedule: null
is_paused_upon_creation: false
params:
  who: world
tasks:
  - id: one
    operator: shell
    command: "echo hello {{ params.who }}; echo second line"
  - id: two
    operator: shell
    upstream: [one]
    command: "echo got {{ xcom('one').last_line }}"
  - id: three
    operator: shell
    upstream: [two]
    command: "echo end {{ xcom('two').last_line }}"
"#;

#[tokio::test]
async fn a_chain_runs_with_xcom_and_logs_per_try() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_chain").await;
    env.write_dag("chain", CHAIN).await;
    env.start_scheduler(config());
    let mut conf = Map::new();
    conf.insert("who".into(), json!("updraft"));
    let run = trigger_run(
        &env.pool,
        "chain",
        TriggerRequest {
            conf,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(run.run_id.starts_with("manual__"));
    let seen = env
        .wait_for_runs(
            "the run to succeed",
            &[run.id],
            Duration::from_secs(30),
            |runs| runs.count(RunState::Success) == 1,
        )
        .await;
    let outputs = xcom::return_values(&env.pool, run.id).await.unwrap();
    assert_eq!(outputs["three"]["last_line"], json!("end got second line"));
    let mut lines: Vec<(String, i32, String)> = Vec::new();
    for ti in &seen.task_instances {
        for (try_number, line) in log_lines(&env.pool, ti).await {
            lines.push((ti.task_id.clone(), try_number, line.line));
        }
    }
    assert!(
        lines.contains(&("one".into(), 1, "hello updraft".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("one".into(), 1, "second line".into())),
        "{lines:?}"
    );
    let two = seen.task_instances.iter().find(|ti| ti.task_id == "two");
    let rendered = two.and_then(|ti| ti.rendered_config.as_ref());
    // An XCom value in a command is one shell word (quoted), as the shell received it.
    assert_eq!(
        rendered.map(|config| &config["command"]),
        Some(&json!("echo got 'second line'"))
    );
    // Clear `two` with downstream: both run again with try 2, `one` keeps try 1.
    let request = ClearRequest {
        dag_id: "chain",
        run_id: Some(&run.run_id),
        task_ids: &["two".into()],
        include_upstream: false,
        include_downstream: true,
        only_failed: false,
        dry_run: false,
        reset_dag_runs: true,
    };
    let cleared = clear_task_instances(&env.pool, &request).await.unwrap();
    assert_eq!(cleared.len(), 2);
    env.wait_for_runs(
        "one at try 1, two and three at try 2, all successful",
        &[run.id],
        Duration::from_secs(30),
        |runs| {
            runs.tis(|ti| {
                ti.state == TaskState::Success
                    && match ti.task_id.as_str() {
                        "one" => ti.try_number == 1,
                        "two" | "three" => ti.try_number == 2,
                        _ => false,
                    }
            }) == 3
        },
    )
    .await;
    env.wait_for_runs(
        "the run to succeed again",
        &[run.id],
        Duration::from_secs(10),
        |runs| runs.count(RunState::Success) == 1,
    )
    .await;
    assert_eq!(env.runs().await.len(), 1);
    env.stop().await;
}

#[tokio::test]
async fn a_task_failing_twice_then_succeeding_shows_three_tries() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_retry").await;
    let marker = env.folder.join("attempts");
    let yaml = format!(
        r#"
dag_id: flaky
schedule: null
is_paused_upon_creation: false
tasks:
  - id: flaky
    operator: shell
    retries: 3
    retry_delay: 1s
    command: "echo x >> {m}; test $(wc -l < {m}) -ge 3"
"#,
        m = marker.display()
    );
    env.write_dag("flaky", &yaml).await;
    env.start_scheduler(config());
    let run = trigger_run(&env.pool, "flaky", TriggerRequest::default())
        .await
        .unwrap();
    let seen = env
        .wait_for_runs(
            "the run to succeed",
            &[run.id],
            Duration::from_secs(30),
            |runs| runs.count(RunState::Success) == 1,
        )
        .await;
    let [ti] = seen.task_instances.as_slice() else {
        panic!("one task instance: {seen:?}");
    };
    assert_eq!(ti.try_number, 3);
    // The two failed tries are kept for the run's Gantt chart, with their times.
    let earlier = task_instances::earlier_tries(&env.pool, "flaky", &run.run_id)
        .await
        .unwrap();
    let kept: Vec<(i32, TaskState)> = earlier.iter().map(|t| (t.try_number, t.state)).collect();
    assert_eq!(
        kept,
        [(1, TaskState::UpForRetry), (2, TaskState::UpForRetry)]
    );
    assert!(
        earlier
            .iter()
            .all(|t| t.start_date.is_some() && t.end_date >= t.start_date),
        "{earlier:?}"
    );
    let lines = log_lines(&env.pool, ti).await;
    let mut tries: Vec<i32> = lines.iter().map(|(try_number, _)| *try_number).collect();
    tries.dedup();
    assert_eq!(tries, vec![1, 2], "the failing tries log their error");
    // Three executions, spaced by at least the retry delay.
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 3);
    let (Some(queued_at), Some(start_date), Some(end_date)) =
        (ti.queued_at, ti.start_date, ti.end_date)
    else {
        panic!("queued, started and ended: {ti:?}");
    };
    let span = (end_date - queued_at).as_seconds_f64();
    assert!(span < 60.0);
    let first_line = lines.iter().map(|(_, line)| line.logged_at).min();
    let first_start = (start_date - first_line.expect("a logged line")).as_seconds_f64();
    assert!(
        first_start >= 1.9,
        "two retry delays of 1 s elapsed before the third try: {first_start}"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_failure_yields_upstream_failed_and_all_done_cleanup_still_runs() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_rules").await;
    env.write_dag(
        "rules",
        r#"
dag_id: rules
schedule: null
is_paused_upon_creation: false
tasks:
  - id: ok
    operator: empty
  - id: boom
    operator: shell
    command: "exit 3"
  - id: after_boom
    operator: empty
    upstream: [boom, ok]
  - id: after_after
    operator: empty
    upstream: [after_boom]
  - id: one_failed
    operator: empty
    upstream: [boom, ok]
    trigger_rule: one_failed
  - id: cleanup
    operator: empty
    upstream: [after_after]
    trigger_rule: all_done
"#,
    )
    .await;
    env.start_scheduler(config());
    let seen = env.trigger_and_finish("rules").await;
    let states = seen.task_states();
    let expected = [
        ("after_after", TaskState::UpstreamFailed),
        ("after_boom", TaskState::UpstreamFailed),
        ("boom", TaskState::Failed),
        ("cleanup", TaskState::Success),
        ("ok", TaskState::Success),
        ("one_failed", TaskState::Success),
    ];
    assert_eq!(states, expected);
    // Leaves are cleanup (success) and one_failed (success): the run succeeds, as in Airflow.
    assert_eq!(seen.states, vec![RunState::Success]);
    env.stop().await;
}

/// A task that fails (`boom`, no retries), and one after it.
fn boom_then_after(dag_id: &str) -> String {
    format!(
        r#"
dag_id: {dag_id}
schedule: null
is_paused_upon_creation: false
tasks:
  - id: boom
    operator: shell
    command: "exit 3"
  - id: after
    operator: empty
    upstream: [boom]
"#
    )
}

#[tokio::test]
async fn the_decision_that_ends_a_run_is_applied() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_last_decision").await;
    env.write_dag("ends", &boom_then_after("ends")).await;
    env.start_scheduler(config());
    let seen = env.trigger_and_finish("ends").await;
    // `after` is decided upstream_failed in the pass that ends the run: that decision is stored.
    let states = seen.task_states();
    assert_eq!(
        states,
        [
            ("after", TaskState::UpstreamFailed),
            ("boom", TaskState::Failed)
        ]
    );
    assert_eq!(seen.states, vec![RunState::Failed]);
    env.stop().await;
}

/// Airflow's "mark success/failed" of one task instance: a failure marked success lets the
/// tasks it had failed run (their finished run is queued again); a waiting task marked failed
/// fails its running run's downstream tasks, and the run.
#[tokio::test]
async fn marking_one_task_instance_moves_its_run_on() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_mark_task").await;
    env.write_dag("marked", &boom_then_after("marked")).await;
    env.write_dag(
        "waiting",
        r#"
dag_id: waiting
schedule: null
is_paused_upon_creation: false
tasks:
  - id: slow
    operator: shell
    command: "sleep 30"
  - id: next
    operator: empty
    upstream: [slow]
"#,
    )
    .await;
    env.start_scheduler(config());
    let run = trigger_run(&env.pool, "marked", TriggerRequest::default())
        .await
        .unwrap();
    env.wait_for_runs(
        "the run to fail",
        &[run.id],
        Duration::from_secs(30),
        |runs| runs.count(RunState::Failed) == 1,
    )
    .await;
    let from = mark_task(&env.pool, "marked", &run.run_id, "boom", TaskState::Success)
        .await
        .unwrap();
    assert_eq!(from, TaskState::Failed);
    let seen = env
        .wait_for_runs(
            "the run to succeed after the mark",
            &[run.id],
            Duration::from_secs(30),
            |runs| runs.count(RunState::Success) == 1,
        )
        .await;
    let states: Vec<(&str, TaskState, i32)> = seen
        .task_instances
        .iter()
        .map(|ti| (ti.task_id.as_str(), ti.state, ti.try_number))
        .collect();
    assert!(
        states.contains(&("boom", TaskState::Success, 1)),
        "{states:?}"
    );
    assert!(
        states.contains(&("after", TaskState::Success, 1)),
        "{states:?}"
    );

    let run = trigger_run(&env.pool, "waiting", TriggerRequest::default())
        .await
        .unwrap();
    env.wait_for_runs(
        "slow to start",
        &[run.id],
        Duration::from_secs(30),
        |runs| runs.tis(|ti| ti.task_id == "slow" && ti.state == TaskState::Running) == 1,
    )
    .await;
    mark_task(&env.pool, "waiting", &run.run_id, "slow", TaskState::Failed)
        .await
        .unwrap();
    let seen = env
        .wait_for_runs(
            "the run to fail after the mark",
            &[run.id],
            Duration::from_secs(30),
            |runs| runs.count(RunState::Failed) == 1,
        )
        .await;
    let next = seen.task_instances.iter().find(|ti| ti.task_id == "next");
    assert_eq!(next.map(|ti| ti.state), Some(TaskState::UpstreamFailed));
    let unknown = mark_task(
        &env.pool,
        "waiting",
        &run.run_id,
        "nope",
        TaskState::Success,
    )
    .await;
    assert!(unknown.is_err(), "an unknown task is refused");
    env.stop().await;
}

/// A trigger stores its run and tells the schedulers in one statement: the notification on
/// `updraft_runs` names the DAG once the run is readable, and a refused trigger (a taken run
/// id) sends none.
#[tokio::test]
async fn a_trigger_announces_its_run_only_when_stored() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("sched_trigger_announce").await;
    env.write_dag(
        "announced",
        "dag_id: announced\nschedule: null\ntasks:\n  - id: only\n    operator: empty\n",
    )
    .await;
    let mut listener = updraft_orchestrator::store::listen(&env.pool, &[channels::RUNS])
        .await
        .unwrap();
    let request = || TriggerRequest {
        run_id: Some("once".into()),
        ..TriggerRequest::default()
    };
    let run = trigger_run(&env.pool, "announced", request())
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    assert_eq!(heard.payload(), "announced");
    let stored = runs::get(&env.pool, "announced", "once")
        .await
        .unwrap()
        .expect("the announced run is stored");
    assert_eq!((stored.id, stored.state), (run.id, RunState::Queued));

    let refused = trigger_run(&env.pool, "announced", request()).await;
    assert!(
        matches!(refused, Err(TriggerError::DuplicateRunId(ref id)) if id == "once"),
        "{refused:?}"
    );
    // A notification sent after the refusal arrives after any the refusal sent.
    updraft_orchestrator::store::notify(&env.pool, channels::RUNS, "marker")
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("the marker within 10 s")
        .unwrap();
    assert_eq!(
        next.payload(),
        "marker",
        "the refused trigger sent a notification"
    );
}

/// The end that empties a run writes the run's end without holding the run's lock: the write
/// names the `clear_number` it saw, so a clear or a mark in between (which raises it) wins, and
/// the run stays as they left it.
#[tokio::test]
async fn a_run_end_written_after_a_clear_changes_nothing() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("sched_run_end_guard").await;
    env.write_dag(
        "guarded",
        "dag_id: guarded\nschedule: null\nis_paused_upon_creation: false\ntasks:\n  - id: only\n    operator: empty\n",
    )
    .await;
    let run = trigger_run(&env.pool, "guarded", TriggerRequest::default())
        .await
        .unwrap();
    let started = start_queued_runs(&env.pool, &DagCache::new(), "guarded")
        .await
        .unwrap();
    assert_eq!(started, vec![run.id]);
    let mut conn = env.pool.acquire().await.unwrap();
    let seen = runs::lock(&mut conn, run.id)
        .await
        .unwrap()
        .expect("the run");
    assert_eq!(seen.state, RunState::Running);
    let stale = seen.clear_number - 1;
    let ended = runs::finish_announced(&mut *conn, run.id, RunState::Success, stale)
        .await
        .unwrap();
    assert_eq!(ended, None, "a stale clear_number ended the run");
    let now = runs::get(&env.pool, "guarded", &run.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.state, RunState::Running);
    let ended = runs::finish_announced(&mut *conn, run.id, RunState::Success, seen.clear_number)
        .await
        .unwrap();
    assert_eq!(ended.as_deref(), Some(run.run_id.as_str()));
    let now = runs::get(&env.pool, "guarded", &run.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.state, RunState::Success);
}

#[tokio::test]
async fn ends_that_refill_their_slots_never_exceed_the_parallelism() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_refill").await;
    let mut yaml =
        "dag_id: wide\nschedule: null\nis_paused_upon_creation: false\ntasks:\n".to_string();
    for index in 0..24 {
        yaml.push_str(&format!(
            "  - id: leaf{index}\n    operator: shell\n    command: \"sleep 0.02\"\n"
        ));
    }
    env.write_dag("wide", &yaml).await;
    let mut config = config();
    config.parallelism = 3;
    env.start_scheduler(config);

    let run = env.trigger_and_finish("wide").await;
    env.stop().await;
    assert_eq!(run.states, [RunState::Success]);
    assert_eq!(run.task_instances.len(), 24);
    // Every try ran once, and at most 3 at a time: a try's end and the claim of the next one
    // for its slot share one transaction, so one's end_date is the other's start_date.
    let mut events = Vec::new();
    for ti in &run.task_instances {
        assert_eq!((ti.state, ti.try_number), (TaskState::Success, 1), "{ti:?}");
        events.push((ti.start_date.unwrap(), 1));
        events.push((ti.end_date.unwrap(), -1));
    }
    events.sort();
    let (mut running, mut most) = (0, 0);
    for (_, change) in events {
        running += change;
        most = most.max(running);
    }
    assert!(
        most <= 3,
        "{most} tries ran at once with a parallelism of 3"
    );
}
