//! Airflow's "Clear" of task instances, and "mark run success/failed/queued": the user's ways
//! to change a run's states. Both lock the runs they touch and raise the runs'
//! `clear_number`, so no decision taken before them is applied after.

use std::collections::{BTreeSet, HashMap};

use sqlx::PgPool;

use super::advance::decide_run_fully;
use crate::dag::{Dag, RunState, TaskState, state::run_allowed};
use crate::store::runs::DagRunRow;
use crate::store::{DagCache, StoreError, channels, notify, runs, task_instances};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClearedTask {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
}

/// What to clear.
#[derive(Debug, Clone)]
pub struct ClearRequest<'a> {
    pub dag_id: &'a str,
    /// `None`: in every run of the DAG.
    pub run_id: Option<&'a str>,
    pub task_ids: &'a [String],
    /// Also every task upstream of `task_ids`.
    pub include_upstream: bool,
    /// Also every task downstream of `task_ids`.
    pub include_downstream: bool,
    /// Only `failed` and `upstream_failed` task instances.
    pub only_failed: bool,
    /// Report what would be cleared, change nothing.
    pub dry_run: bool,
    /// Airflow's `reset_dag_runs`: the runs go back to `queued` so the scheduler runs the
    /// cleared tasks. Without it a finished run keeps its state (its cleared tasks wait in
    /// `none` until the run is queued again) and a running one decides them again.
    pub reset_dag_runs: bool,
}

/// `roots` with every task upstream (`upstream`) and downstream (`downstream`) of them,
/// transitively.
pub fn with_relatives(
    dag: &Dag,
    roots: &[String],
    upstream: bool,
    downstream: bool,
) -> BTreeSet<String> {
    let mut selected: BTreeSet<String> = roots.iter().cloned().collect();
    if upstream {
        selected.extend(reachable(roots, |task_id| {
            dag.task(task_id)
                .map(|task| task.upstream.iter().map(String::as_str).collect())
                .unwrap_or_default()
        }));
    }
    if downstream {
        selected.extend(reachable(roots, |task_id| dag.downstream(task_id)));
    }
    selected
}

/// Every task reached from `roots` by following `next`, roots included.
fn reachable<'d>(roots: &[String], next: impl Fn(&str) -> Vec<&'d str>) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = roots.iter().cloned().collect();
    let mut frontier: Vec<String> = roots.to_vec();
    while let Some(task_id) = frontier.pop() {
        for relative in next(&task_id) {
            if seen.insert(relative.to_string()) {
                frontier.push(relative.to_string());
            }
        }
    }
    seen
}

/// Airflow's "Clear": the selected task instances go back to `none` so they run again with a
/// new try number (and `max_tries` raised so their retries are available again). A running try
/// loses its claim and is cancelled by its executor at the next heartbeat.
pub async fn clear_task_instances(
    pool: &PgPool,
    request: &ClearRequest<'_>,
) -> Result<Vec<ClearedTask>, StoreError> {
    let cache = DagCache::new();
    let mut tx = pool.begin().await?;
    let locked = runs::lock_for_clear(&mut tx, request.dag_id, request.run_id).await?;
    if let (true, Some(run_id)) = (locked.is_empty(), request.run_id) {
        return Err(StoreError::NotFound(format!(
            "run {}/{run_id}",
            request.dag_id
        )));
    }
    // As Airflow: a task already back in `none` is selected too (so a second clear with
    // reset_dag_runs still queues its run), and left as it is.
    let states = if request.only_failed {
        vec![TaskState::Failed, TaskState::UpstreamFailed]
    } else {
        TaskState::ALL.to_vec()
    };
    let mut cleared = Vec::new();
    let mut touched = Vec::new();
    for run in &locked {
        let dag = cache.get(&mut *tx, run.dag_version_id).await?;
        let selected: Vec<String> = with_relatives(
            &dag,
            request.task_ids,
            request.include_upstream,
            request.include_downstream,
        )
        .into_iter()
        .collect();
        let rows = task_instances::clearable(&mut tx, run.id, &selected, &states).await?;
        if rows.is_empty() {
            continue;
        }
        cleared.extend(rows.iter().map(|row| ClearedTask {
            dag_id: request.dag_id.to_string(),
            run_id: run.run_id.clone(),
            task_id: row.task_id.clone(),
        }));
        if request.dry_run {
            continue;
        }
        let retries: HashMap<&str, i32> = dag
            .tasks
            .iter()
            .map(|t| {
                (
                    t.task_id.as_str(),
                    i32::try_from(t.retry.retries).unwrap_or(i32::MAX),
                )
            })
            .collect();
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let task_retries: Vec<i32> = rows
            .iter()
            .map(|row| retries.get(row.task_id.as_str()).copied().unwrap_or(0))
            .collect();
        task_instances::reset_for_clear(&mut tx, &ids, &task_retries).await?;
        touched.push(run);
    }
    if !touched.is_empty() {
        let ids: Vec<i64> = touched.iter().map(|run| run.id).collect();
        runs::mark_cleared(&mut tx, &ids, request.reset_dag_runs).await?;
        notify(&mut *tx, channels::RUNS, request.dag_id).await?;
    }
    tx.commit().await?;
    if !request.reset_dag_runs {
        // A running run decides its cleared tasks again (and recounts what is unfinished).
        for run in touched.iter().filter(|run| run.state == RunState::Running) {
            decide_run_fully(pool, &cache, request.dag_id, run.id).await?;
        }
    }
    Ok(cleared)
}

/// Airflow's "mark success/failed/queued": success sets every unfinished task to success;
/// failed sets running tries to failed and other unfinished tasks to skipped; queued only
/// changes the run. `Ok(None)` when the run does not exist.
pub async fn mark_run(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    state: RunState,
) -> Result<Option<DagRunRow>, StoreError> {
    let mut tx = pool.begin().await?;
    let Some((id, from)) = runs::lock_by_run_id(&mut tx, dag_id, run_id).await? else {
        return Ok(None);
    };
    if from != state && !run_allowed(from, state) {
        return Err(StoreError::InvalidTransition {
            what: format!("run {dag_id}/{run_id}"),
            from: from.to_string(),
            to: state.to_string(),
        });
    }
    task_instances::mark_unfinished(&mut tx, id, state).await?;
    let run = runs::set_state(&mut tx, id, state).await?;
    notify(&mut *tx, channels::RUNS, dag_id).await?;
    tx.commit().await?;
    Ok(Some(run))
}

/// Airflow's "mark success/failed" of one task instance. In a running run the run is decided
/// again (downstream tasks go on, or the run ends). Marking a task `success` also clears the
/// `failed` and `upstream_failed` tasks downstream of it, queueing their run again, so they run
/// (as Airflow does). Returns the state the task had.
pub async fn mark_task(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    state: TaskState,
) -> Result<TaskState, StoreError> {
    if !matches!(state, TaskState::Success | TaskState::Failed) {
        return Err(StoreError::InvalidTransition {
            what: format!("task {dag_id}/{run_id}/{task_id}"),
            from: "any".into(),
            to: state.to_string(),
        });
    }
    let mut tx = pool.begin().await?;
    let Some((dag_run_id, run_state)) = runs::lock_by_run_id(&mut tx, dag_id, run_id).await? else {
        return Err(StoreError::NotFound(format!("run {dag_id}/{run_id}")));
    };
    let Some(from) = task_instances::mark_one(&mut tx, dag_run_id, task_id, state).await? else {
        return Err(StoreError::NotFound(format!(
            "task instance {dag_id}/{run_id}/{task_id}"
        )));
    };
    if from == state {
        return Ok(from);
    }
    // Decisions taken before the mark are not applied after it.
    runs::mark_cleared(&mut tx, &[dag_run_id], false).await?;
    notify(&mut *tx, channels::RUNS, dag_id).await?;
    tx.commit().await?;
    if state == TaskState::Success {
        let run = runs::get(pool, dag_id, run_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {dag_id}/{run_id}")))?;
        let dag = DagCache::new().get(pool, run.dag_version_id).await?;
        let downstream: Vec<String> = with_relatives(&dag, &[task_id.to_string()], false, true)
            .into_iter()
            .filter(|id| id != task_id)
            .collect();
        if !downstream.is_empty() {
            let request = ClearRequest {
                dag_id,
                run_id: Some(run_id),
                task_ids: &downstream,
                include_upstream: false,
                include_downstream: false,
                only_failed: true,
                dry_run: false,
                reset_dag_runs: run_state.is_finished(),
            };
            clear_task_instances(pool, &request).await?;
        }
    }
    if run_state == RunState::Running {
        decide_run_fully(pool, &DagCache::new(), dag_id, dag_run_id).await?;
    }
    Ok(from)
}
