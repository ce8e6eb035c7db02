//! One scheduling step for one run, one DAG: the units the event loop and the executor call.
//!
//! Each is a short transaction. Runs are locked (`FOR UPDATE`) while their tasks are decided,
//! DAGs while runs are created or started, so any number of processes can call these at once.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::Utc;
use sqlx::PgPool;

use super::timetable::{LastRun, next_run};
use super::trigger_rules::{Decision, UpstreamCounts, evaluate};
use crate::dag::Dag;
use crate::store::runs::RunType;
use crate::store::task_instances::create_for_run;
use crate::store::{DagCache, RunState, StoreError, TaskState, channels, notify};

/// What `schedule_run` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunStep {
    /// Task instances that became `scheduled` (to be queued).
    pub scheduled: usize,
    /// The run ended with this state.
    pub finished: Option<RunState>,
}

/// The decisions for one run, from its task instances' states.
#[derive(Debug, Default)]
pub(crate) struct Decided {
    /// Task instances leaving `none`, and their new states.
    pub ids: Vec<i64>,
    pub states: Vec<&'static str>,
    /// How many of them became `scheduled`.
    pub scheduled: usize,
    /// The run's end state, when every task is finished.
    pub finished: Option<RunState>,
}

/// Trigger rules over `(id, task_id, state)` rows, in topological order so `skipped` and
/// `upstream_failed` propagate in one pass; the run ends when all its tasks are finished:
/// failed if a leaf task failed or was upstream_failed, else success.
pub(crate) fn decide_run(dag: &Dag, rows: &[(i64, String, String)]) -> Decided {
    let mut states: HashMap<&str, (i64, TaskState)> = HashMap::with_capacity(rows.len());
    for (id, task_id, state) in rows {
        let state = TaskState::from_str(state).unwrap_or(TaskState::Removed);
        states.insert(task_id.as_str(), (*id, state));
    }
    let mut decided = Decided::default();
    // Only `none` tasks are decided: skip the topological sort when there are none.
    if states.values().any(|(_, state)| *state == TaskState::None) {
        for task_id in dag.topological_order() {
            let Some(task) = dag.task(task_id) else {
                continue;
            };
            let Some(&(id, TaskState::None)) = states.get(task_id) else {
                continue;
            };
            let mut counts = UpstreamCounts::default();
            for up in &task.upstream {
                counts.add(states.get(up.as_str()).map_or(TaskState::Removed, |s| s.1));
            }
            let decision = evaluate(task.trigger_rule, counts);
            if let Some(state) = decision.state() {
                if decision == Decision::Run {
                    decided.scheduled += 1;
                }
                states.insert(task_id, (id, state));
                decided.ids.push(id);
                decided.states.push(state.as_str());
            }
        }
    }
    if states.values().all(|(_, state)| state.is_finished()) {
        let leaf_failed = dag.tasks.iter().any(|task| {
            dag.downstream(&task.task_id).is_empty()
                && matches!(
                    states.get(task.task_id.as_str()).map(|s| s.1),
                    Some(TaskState::Failed | TaskState::UpstreamFailed)
                )
        });
        decided.finished = Some(if leaf_failed {
            RunState::Failed
        } else {
            RunState::Success
        });
    }
    decided
}

/// Decides the `none` task instances of a running run (trigger rules, in topological order so
/// `skipped`/`upstream_failed` propagate in one pass) and ends the run when all its tasks are
/// finished: failed if a leaf task failed or was upstream_failed, else success.
pub async fn schedule_run(
    pool: &PgPool,
    cache: &DagCache,
    dag_run_id: i64,
) -> Result<RunStep, StoreError> {
    let mut tx = pool.begin().await?;
    let run: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT dag_id, state, dag_version_id FROM dag_run WHERE id = $1 FOR UPDATE",
    )
    .bind(dag_run_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((dag_id, run_state, version_id)) = run else {
        return Ok(RunStep::default());
    };
    if run_state != RunState::Running.as_str() {
        return Ok(RunStep::default());
    }
    let dag = cache.get(&mut *tx, version_id).await?;
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, task_id, state FROM task_instance WHERE dag_run_id = $1")
            .bind(dag_run_id)
            .fetch_all(&mut *tx)
            .await?;
    let decided = decide_run(&dag, &rows);
    if !decided.ids.is_empty() {
        sqlx::query(
            "UPDATE task_instance t SET state = d.state, updated_at = now(), \
             end_date = CASE WHEN d.state = 'scheduled' THEN NULL ELSE now() END \
             FROM unnest($1::bigint[], $2::text[]) AS d(id, state) \
             WHERE t.id = d.id AND t.state = 'none'",
        )
        .bind(&decided.ids)
        .bind(&decided.states)
        .execute(&mut *tx)
        .await?;
    }
    let finished = decided.finished;
    if let Some(state) = finished {
        sqlx::query(
            "UPDATE dag_run SET state = $2, end_date = now(), updated_at = now() \
             WHERE id = $1 AND state = 'running'",
        )
        .bind(dag_run_id)
        .bind(state.as_str())
        .execute(&mut *tx)
        .await?;
        // Other processes may start the DAG's next queued run.
        notify(&mut *tx, channels::RUNS, &dag_id).await?;
    }
    tx.commit().await?;
    if let Some(state) = finished {
        tracing::info!(dag_id, dag_run_id, state = %state, "run finished");
    }
    Ok(RunStep {
        scheduled: decided.scheduled,
        finished,
    })
}

/// Moves the DAG's `scheduled` task instances to `queued` within `max_active_tasks`
/// (in SQL: `updraft_queue_tasks`, serialised per DAG); returns how many.
pub async fn queue_tasks(pool: &PgPool, dag_id: &str) -> Result<i32, StoreError> {
    Ok(sqlx::query_scalar("SELECT updraft_queue_tasks($1)")
        .bind(dag_id)
        .fetch_one(pool)
        .await?)
}

/// Starts the DAG's oldest queued runs within `max_active_runs` (not while paused): creates
/// their task instances from the pinned version. Returns the started runs' ids.
pub async fn start_queued_runs(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
) -> Result<Vec<i64>, StoreError> {
    let mut tx = pool.begin().await?;
    let dag: Option<(bool, i32)> =
        sqlx::query_as("SELECT is_paused, max_active_runs FROM dag WHERE dag_id = $1 FOR UPDATE")
            .bind(dag_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((false, max_active_runs)) = dag else {
        return Ok(Vec::new());
    };
    let started: Vec<(i64, String, i64)> = sqlx::query_as(
        "UPDATE dag_run SET state = 'running', start_date = coalesce(start_date, now()), \
         updated_at = now() WHERE id IN ( \
           SELECT id FROM dag_run WHERE dag_id = $1 AND state = 'queued' \
           ORDER BY logical_date LIMIT greatest(0, $2 - \
             (SELECT count(*) FROM dag_run WHERE dag_id = $1 AND state = 'running'))) \
         RETURNING id, run_id, dag_version_id",
    )
    .bind(dag_id)
    .bind(i64::from(max_active_runs))
    .fetch_all(&mut *tx)
    .await?;
    for (dag_run_id, run_id, version_id) in &started {
        let dag = cache.get(&mut *tx, *version_id).await?;
        create_for_run(&mut *tx, &dag, *dag_run_id, dag_id, run_id).await?;
    }
    tx.commit().await?;
    if !started.is_empty() {
        tracing::debug!(dag_id, runs = started.len(), "runs started");
    }
    Ok(started.into_iter().map(|(id, _, _)| id).collect())
}

/// Creates the DAG's due scheduled runs (every missed interval with catchup, bounded by
/// `end_date`) and stores the next one in `dag.next_dagrun*`. Two schedulers cannot create
/// the same run: the DAG row is locked and `(dag_id, logical_date)` is unique.
/// Returns how many runs were created.
pub async fn create_due_runs(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
) -> Result<usize, StoreError> {
    const MAX_PER_PASS: usize = 1000;
    let mut tx = pool.begin().await?;
    let row: Option<(bool, bool, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT is_active, is_paused, latest_version_id, next_dagrun_checked_version \
         FROM dag WHERE dag_id = $1 FOR UPDATE",
    )
    .bind(dag_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((true, false, Some(version_id), checked)) = row else {
        return Ok(0);
    };
    let dag = cache.get(&mut *tx, version_id).await?;
    let last: Option<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT data_interval_start, data_interval_end FROM dag_run \
         WHERE dag_id = $1 AND run_type = 'scheduled' ORDER BY logical_date DESC LIMIT 1",
    )
    .bind(dag_id)
    .fetch_optional(&mut *tx)
    .await?;
    let now = Utc::now();
    let mut last = last.map(|(interval_start, interval_end)| LastRun {
        interval_start,
        interval_end,
    });
    let mut created = 0;
    let mut next = next_run(&dag, last, now);
    while let Some(due) = next.filter(|n| n.create_after <= now) {
        if created >= MAX_PER_PASS {
            break;
        }
        let run_id = RunType::Scheduled.run_id(due.logical_date);
        // ON CONFLICT: another scheduler created it, or a manual run holds that logical date.
        let inserted = sqlx::query(
            "INSERT INTO dag_run (dag_id, run_id, run_type, logical_date, data_interval_start, \
             data_interval_end, state, dag_version_id) \
             VALUES ($1, $2, 'scheduled', $3, $4, $5, 'queued', $6) ON CONFLICT DO NOTHING",
        )
        .bind(dag_id)
        .bind(&run_id)
        .bind(due.logical_date)
        .bind(due.interval_start)
        .bind(due.interval_end)
        .bind(version_id)
        .execute(&mut *tx)
        .await?;
        created += inserted.rows_affected() as usize;
        last = Some(LastRun {
            interval_start: due.interval_start,
            interval_end: due.interval_end,
        });
        next = next_run(&dag, last, now);
    }
    if created == 0 && checked == Some(version_id) && next.is_some_and(|n| n.create_after > now) {
        tx.commit().await?;
        return Ok(0);
    }
    sqlx::query(
        "UPDATE dag SET next_dagrun = $2, next_dagrun_interval_start = $3, \
         next_dagrun_interval_end = $4, next_dagrun_create_after = $5, \
         next_dagrun_checked_version = $6 WHERE dag_id = $1",
    )
    .bind(dag_id)
    .bind(next.map(|n| n.logical_date))
    .bind(next.map(|n| n.interval_start))
    .bind(next.map(|n| n.interval_end))
    .bind(next.map(|n| n.create_after))
    .bind(version_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if created > 0 {
        tracing::info!(dag_id, created, "scheduled runs created");
    }
    Ok(created)
}

/// After a task of a run ended: decide the run's next tasks, queue them, and when the run
/// ended start the DAG's next queued runs. Returns how many task instances were queued.
pub async fn advance_run(
    pool: &PgPool,
    cache: &DagCache,
    dag_run_id: i64,
    dag_id: &str,
) -> Result<i32, StoreError> {
    let step = schedule_run(pool, cache, dag_run_id).await?;
    if step.finished.is_some() {
        return advance_dag(pool, cache, dag_id, false).await;
    }
    // Even with nothing newly scheduled here, the ended task freed a max_active_tasks slot.
    queue_tasks(pool, dag_id).await
}

/// Everything a DAG may need after an event: due scheduled runs (when `create_runs`), queued
/// runs started, their first tasks decided and queued. Returns how many were queued.
pub async fn advance_dag(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
    create_runs: bool,
) -> Result<i32, StoreError> {
    if create_runs {
        create_due_runs(pool, cache, dag_id).await?;
    }
    for dag_run_id in start_queued_runs(pool, cache, dag_id).await? {
        schedule_run(pool, cache, dag_run_id).await?;
    }
    queue_tasks(pool, dag_id).await
}
