//! Scheduled runs on PostgreSQL: catchup, pause/unpause, max_active_runs, versions pinned to runs.

use std::time::Duration;

use chrono::{Days, Utc};
use updraft_orchestrator::engine::Scheduler;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::dags::set_paused;

use crate::scheduler_support::{config, env};

/// run_id, logical date, interval start, interval end.
type RunDates = (
    String,
    chrono::DateTime<Utc>,
    chrono::DateTime<Utc>,
    chrono::DateTime<Utc>,
);

fn daily(dag_id: &str, catchup: bool, days_ago: u64) -> String {
    let start = Utc::now().date_naive() - Days::new(days_ago);
    format!(
        "dag_id: {dag_id}\nschedule: \"@daily\"\nstart_date: {start}\ncatchup: {catchup}\n\
         max_active_runs: 16\ntasks:\n  - id: t\n    operator: empty\n"
    )
}

#[tokio::test]
async fn catchup_creates_every_missed_interval_and_pause_controls_creation() {
    if !testkit::require_postgres() {
        return;
    }
    let env = env("sched_catchup").await;
    env.write_dag("a", &daily("caught_up", true, 5)).await;
    env.write_dag("b", &daily("latest_only", false, 5)).await;
    let registry = std::sync::Arc::new(updraft_operators::builtin_registry());
    let scheduler = Scheduler::new(env.pool.clone(), registry, config());
    // New DAGs start paused: no runs.
    scheduler.tick().await.unwrap();
    assert_eq!(env.scalar_i64("SELECT count(*) FROM dag_run").await, 0);
    assert!(set_paused(&env.pool, "caught_up", false).await.unwrap());
    assert!(set_paused(&env.pool, "latest_only", false).await.unwrap());
    assert!(!set_paused(&env.pool, "nope", false).await.unwrap());
    scheduler.tick().await.unwrap();
    let runs: Vec<RunDates> = sqlx::query_as(
        "SELECT run_id, logical_date, data_interval_start, data_interval_end FROM dag_run \
             WHERE dag_id = 'caught_up' ORDER BY logical_date",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(runs.len(), 5, "{runs:?}");
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    for (index, (run_id, logical, start, end)) in runs.iter().enumerate() {
        let expected = midnight - chrono::Duration::days(5 - index as i64);
        assert_eq!(*logical, expected);
        assert_eq!(start, logical);
        assert_eq!(*end, expected + chrono::Duration::days(1));
        assert_eq!(run_id, &format!("scheduled__{}", expected.to_rfc3339()));
    }
    let latest: Vec<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT logical_date FROM dag_run WHERE dag_id = 'latest_only'")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(latest, vec![midnight - chrono::Duration::days(1)]);
    // The next run is tomorrow's creation; a second pass creates nothing more.
    scheduler.tick().await.unwrap();
    assert_eq!(env.scalar_i64("SELECT count(*) FROM dag_run").await, 6);
    let next: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT next_dagrun_create_after FROM dag WHERE dag_id = 'caught_up'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(next, Some(midnight + chrono::Duration::days(1)));
    // Runs of a paused DAG wait (even manual ones); unpausing starts them.
    assert!(set_paused(&env.pool, "latest_only", true).await.unwrap());
    let manual = trigger_run(&env.pool, "latest_only", TriggerRequest::default())
        .await
        .unwrap();
    scheduler.tick().await.unwrap();
    let state: String = sqlx::query_scalar("SELECT state FROM dag_run WHERE id = $1")
        .bind(manual.id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(state, "queued");
    assert!(set_paused(&env.pool, "latest_only", false).await.unwrap());
    scheduler.tick().await.unwrap();
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT count(*) FROM dag_run WHERE id = {} AND state = 'running'",
            manual.id
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn max_active_runs_keeps_extra_runs_queued_and_edits_do_not_touch_runs_in_flight() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("sched_versions").await;
    let gate = env.folder.join("gate");
    let dag = |version: &str, extra: &str| {
        format!(
            r#"
dag_id: pinned
schedule: null
max_active_runs: 1
is_paused_upon_creation: false
tasks:
  - id: wait
    operator: shell
    command: "while [ ! -f {gate} ]; do sleep 0.05; done"
  - id: say
    operator: shell
    upstream: [wait]
    command: "echo {version}"
{extra}"#,
            gate = gate.display()
        )
    };
    env.write_dag("pinned", &dag("v1", "")).await;
    env.start_scheduler(config());
    let first = trigger_run(&env.pool, "pinned", TriggerRequest::default())
        .await
        .unwrap();
    let second = trigger_run(
        &env.pool,
        "pinned",
        TriggerRequest {
            run_id: Some("second".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    env.wait_for(
        "SELECT count(*) FROM task_instance WHERE task_id = 'wait' AND state = 'running'",
        1,
        Duration::from_secs(20),
    )
    .await;
    // One run at a time: the second waits queued.
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM dag_run WHERE state = 'queued'")
            .await,
        1
    );
    // Edit the DAG while the first run is in flight: a new task and a new message.
    env.write_dag(
        "pinned",
        &dag(
            "v2",
            "  - id: added\n    operator: empty\n    upstream: [say]\n",
        ),
    )
    .await;
    std::fs::write(&gate, "open").unwrap();
    env.wait_for(
        "SELECT count(*) FROM dag_run WHERE state = 'success'",
        2,
        Duration::from_secs(30),
    )
    .await;
    let tasks = |run_id: i64| {
        let pool = env.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT t.task_id || ':' || coalesce(string_agg(l.line, ','), '') FROM task_instance t \
                 LEFT JOIN task_log l ON l.task_instance_id = t.id WHERE t.dag_run_id = $1 \
                 GROUP BY t.id ORDER BY t.id",
            )
            .bind(run_id)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(tasks(first.id).await, vec!["wait:", "say:v1"]);
    // The second run was created before the edit: it is pinned to v1 as well.
    assert_eq!(tasks(second.id).await, vec!["wait:", "say:v1"]);
    let third = trigger_run(&env.pool, "pinned", TriggerRequest::default())
        .await
        .unwrap();
    env.wait_for(
        &format!(
            "SELECT count(*) FROM dag_run WHERE id = {} AND state = 'success'",
            third.id
        ),
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(tasks(third.id).await, vec!["wait:", "say:v2", "added:"]);
    assert_ne!(third.dag_version_id, first.dag_version_id);
    env.stop().await;
}

#[tokio::test]
async fn trigger_errors_are_typed() {
    if !testkit::require_postgres() {
        return;
    }
    use updraft_orchestrator::engine::trigger::TriggerError;
    let env = env("sched_trigger").await;
    env.write_dag(
        "p",
        "dag_id: p\nschedule: null\nparams:\n  n:\n    default: 1\n    type: integer\ntasks:\n  - id: t\n    operator: empty\n",
    )
    .await;
    let unknown = trigger_run(&env.pool, "missing", TriggerRequest::default()).await;
    assert!(
        matches!(unknown, Err(TriggerError::UnknownDag(_))),
        "{unknown:?}"
    );
    let mut conf = serde_json::Map::new();
    conf.insert("n".into(), serde_json::json!("three"));
    let bad = trigger_run(
        &env.pool,
        "p",
        TriggerRequest {
            conf,
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(bad, Err(TriggerError::InvalidConf(_))), "{bad:?}");
    let request = TriggerRequest {
        run_id: Some("same".into()),
        ..Default::default()
    };
    trigger_run(&env.pool, "p", request.clone()).await.unwrap();
    let duplicate = trigger_run(&env.pool, "p", request).await;
    assert!(
        matches!(duplicate, Err(TriggerError::DuplicateRunId(_))),
        "{duplicate:?}"
    );
    let date = Utc::now() - chrono::Duration::hours(1);
    let date = chrono::SubsecRound::trunc_subsecs(date, 6);
    trigger_run(
        &env.pool,
        "p",
        TriggerRequest {
            logical_date: Some(date),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let again = trigger_run(
        &env.pool,
        "p",
        TriggerRequest {
            logical_date: Some(date),
            run_id: Some("other".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(again, Err(TriggerError::DuplicateLogicalDate(_))),
        "{again:?}"
    );
}
