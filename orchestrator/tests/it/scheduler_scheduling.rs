//! Scheduled runs on PostgreSQL: catchup, pause/unpause, max_active_runs, versions pinned to runs.

use std::time::Duration;

use chrono::{Days, Utc};
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::Scheduler;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::dags::{self, set_paused};
use updraft_orchestrator::store::runs::{self, DagRunRow, RunFilter, RunOrder};
use updraft_orchestrator::store::task_instances;

use crate::scheduler_support::{config, env, log_lines};

/// The DAG's runs, by logical date.
async fn runs_of(pool: &sqlx::PgPool, dag_id: &str) -> Vec<DagRunRow> {
    let filter = RunFilter {
        dag_id: Some(dag_id),
        ..Default::default()
    };
    runs::page(pool, &filter, RunOrder::LogicalDate, i64::MAX, 0)
        .await
        .unwrap()
        .rows
}

/// A run's state, read fresh.
async fn state_of(pool: &sqlx::PgPool, run: &DagRunRow) -> RunState {
    let row = runs::get(pool, &run.dag_id, &run.run_id).await.unwrap();
    row.expect("the run exists").state
}

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
    assert_eq!(env.runs().await.len(), 0);
    assert!(set_paused(&env.pool, "caught_up", false).await.unwrap());
    assert!(set_paused(&env.pool, "latest_only", false).await.unwrap());
    assert!(!set_paused(&env.pool, "nope", false).await.unwrap());
    scheduler.tick().await.unwrap();
    let runs = runs_of(&env.pool, "caught_up").await;
    assert_eq!(runs.len(), 5, "{runs:?}");
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    for (index, run) in runs.iter().enumerate() {
        let expected = midnight - chrono::Duration::days(5 - index as i64);
        assert_eq!(run.logical_date, expected);
        assert_eq!(run.data_interval_start, run.logical_date);
        assert_eq!(run.data_interval_end, expected + chrono::Duration::days(1));
        assert_eq!(run.run_id, format!("scheduled__{}", expected.to_rfc3339()));
    }
    let latest: Vec<chrono::DateTime<Utc>> = runs_of(&env.pool, "latest_only")
        .await
        .iter()
        .map(|run| run.logical_date)
        .collect();
    assert_eq!(latest, vec![midnight - chrono::Duration::days(1)]);
    // The next run is tomorrow's creation; a second pass creates nothing more.
    scheduler.tick().await.unwrap();
    assert_eq!(env.runs().await.len(), 6);
    let caught_up = dags::get_view(&env.pool, "caught_up").await.unwrap();
    let next = caught_up.expect("the DAG exists").next_dagrun_create_after;
    assert_eq!(next, Some(midnight + chrono::Duration::days(1)));
    // Runs of a paused DAG wait (even manual ones); unpausing starts them.
    assert!(set_paused(&env.pool, "latest_only", true).await.unwrap());
    let manual = trigger_run(&env.pool, "latest_only", TriggerRequest::default())
        .await
        .unwrap();
    scheduler.tick().await.unwrap();
    assert_eq!(state_of(&env.pool, &manual).await, RunState::Queued);
    assert!(set_paused(&env.pool, "latest_only", false).await.unwrap());
    scheduler.tick().await.unwrap();
    assert_eq!(state_of(&env.pool, &manual).await, RunState::Running);
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
    let both = [first.id, second.id];
    env.wait_for_runs("`wait` to run", &both, Duration::from_secs(20), |runs| {
        runs.tis(|ti| ti.task_id == "wait" && ti.state == TaskState::Running) == 1
    })
    .await;
    // One run at a time: the second waits queued.
    let queued = env
        .runs()
        .await
        .iter()
        .filter(|run| run.state == RunState::Queued)
        .count();
    assert_eq!(queued, 1);
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
    env.wait_for_runs(
        "both runs to succeed",
        &both,
        Duration::from_secs(30),
        |runs| runs.count(RunState::Success) == 2,
    )
    .await;
    // Each task instance of the run as `task:its log lines`.
    let tasks = |run_id: i64| {
        let pool = env.pool.clone();
        async move {
            let mut tasks = Vec::new();
            for ti in task_instances::of_runs(&pool, &[run_id]).await.unwrap() {
                let lines: Vec<String> = log_lines(&pool, &ti)
                    .await
                    .into_iter()
                    .map(|(_, line)| line.line)
                    .collect();
                tasks.push(format!("{}:{}", ti.task_id, lines.join(",")));
            }
            tasks
        }
    };
    assert_eq!(tasks(first.id).await, vec!["wait:", "say:v1"]);
    // The second run was created before the edit: it is pinned to v1 as well.
    assert_eq!(tasks(second.id).await, vec!["wait:", "say:v1"]);
    let third = trigger_run(&env.pool, "pinned", TriggerRequest::default())
        .await
        .unwrap();
    env.wait_for_runs(
        "the third run to succeed",
        &[third.id],
        Duration::from_secs(30),
        |runs| runs.count(RunState::Success) == 1,
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
