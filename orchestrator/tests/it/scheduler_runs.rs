//! End-to-end runs on PostgreSQL: chains with XCom and logs, retries, trigger rules, clearing.

use std::time::Duration;

use serde_json::{Map, json};
use updraft_orchestrator::engine::clear::{ClearRequest, clear_task_instances};
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};

use crate::scheduler_support::{config, env};

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
    env.wait_for(
        &format!(
            "SELECT count(*) FROM dag_run WHERE id = {} AND state = 'success'",
            run.id
        ),
        1,
        Duration::from_secs(30),
    )
    .await;
    let xcom: serde_json::Value = sqlx::query_scalar(
        "SELECT x.value FROM xcom x JOIN task_instance t ON t.id = x.task_instance_id \
         WHERE t.task_id = 'three'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(xcom["last_line"], json!("end got second line"));
    let lines: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT t.task_id, l.try_number, l.line FROM task_log l \
         JOIN task_instance t ON t.id = l.task_instance_id ORDER BY l.id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(
        lines.contains(&("one".into(), 1, "hello updraft".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("one".into(), 1, "second line".into())),
        "{lines:?}"
    );
    let rendered: serde_json::Value =
        sqlx::query_scalar("SELECT rendered_config FROM task_instance WHERE task_id = 'two'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(rendered["command"], json!("echo got second line"));
    // Clear `two` with downstream: both run again with try 2, `one` keeps try 1.
    let request = ClearRequest {
        dag_id: "chain",
        run_id: Some(&run.run_id),
        task_ids: &["two".into()],
        include_downstream: true,
        only_failed: false,
        dry_run: false,
        reset_dag_runs: true,
    };
    let cleared = clear_task_instances(&env.pool, &request).await.unwrap();
    assert_eq!(cleared.len(), 2);
    env.wait_for(
        "SELECT count(*) FROM task_instance WHERE state = 'success' AND \
         ((task_id = 'one' AND try_number = 1) OR (task_id IN ('two', 'three') AND try_number = 2))",
        3,
        Duration::from_secs(30),
    )
    .await;
    env.wait_for(
        "SELECT count(*) FROM dag_run WHERE state = 'success'",
        1,
        Duration::from_secs(10),
    )
    .await;
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
    trigger_run(&env.pool, "flaky", TriggerRequest::default())
        .await
        .unwrap();
    env.wait_for(
        "SELECT count(*) FROM dag_run WHERE state = 'success'",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        env.scalar_i64("SELECT try_number::bigint FROM task_instance")
            .await,
        3
    );
    let tries: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT try_number FROM task_log ORDER BY try_number")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(tries, vec![1, 2], "the failing tries log their error");
    // Three executions, spaced by at least the retry delay.
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 3);
    let span: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM end_date - queued_at)::float8 FROM task_instance",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(span < 60.0);
    let first_start: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM (SELECT start_date FROM task_instance) - (SELECT min(logged_at) FROM task_log))::float8",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
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
    trigger_run(&env.pool, "rules", TriggerRequest::default())
        .await
        .unwrap();
    env.wait_for(
        "SELECT count(*) FROM dag_run WHERE state IN ('success', 'failed')",
        1,
        Duration::from_secs(30),
    )
    .await;
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT task_id, state FROM task_instance ORDER BY task_id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let expected = [
        ("after_after", "upstream_failed"),
        ("after_boom", "upstream_failed"),
        ("boom", "failed"),
        ("cleanup", "success"),
        ("ok", "success"),
        ("one_failed", "success"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(states, expected);
    // Leaves are cleanup (success) and one_failed (success): the run succeeds, as in Airflow.
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM dag_run WHERE state = 'success'")
            .await,
        1
    );
    env.stop().await;
}
