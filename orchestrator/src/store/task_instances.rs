//! Task instances: creation for a run, and Airflow's "Clear".

use std::collections::{BTreeSet, HashMap};

use sqlx::PgPool;

use super::state::TaskState;
use super::{DagCache, StoreError, channels, notify};
use crate::dag::Dag;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClearedTask {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
}

/// Creates the run's task instances (state `none`) from its pinned DAG version.
/// Existing rows are kept (a cleared run restarts with its history).
pub(crate) async fn create_for_run<'e, E>(
    executor: E,
    dag: &Dag,
    dag_run_id: i64,
    dag_id: &str,
    run_id: &str,
) -> Result<u64, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let task_ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    let operators: Vec<&str> = dag.tasks.iter().map(|t| t.operator.as_str()).collect();
    let max_tries: Vec<i32> = dag
        .tasks
        .iter()
        .map(|t| i32::try_from(t.retry.retries).unwrap_or(i32::MAX))
        .collect();
    let result = sqlx::query(
        "INSERT INTO task_instance (dag_run_id, dag_id, run_id, task_id, operator, max_tries) \
         SELECT $1, $2, $3, t.task_id, t.operator, t.max_tries \
         FROM unnest($4::text[], $5::text[], $6::int[]) AS t(task_id, operator, max_tries) \
         ON CONFLICT (dag_run_id, task_id) DO NOTHING",
    )
    .bind(dag_run_id)
    .bind(dag_id)
    .bind(run_id)
    .bind(&task_ids)
    .bind(&operators)
    .bind(&max_tries)
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

/// Every task downstream of `roots` (transitively), roots included.
pub fn with_downstream(dag: &Dag, roots: &[String]) -> BTreeSet<String> {
    let mut selected: BTreeSet<String> = roots.iter().cloned().collect();
    let mut frontier: Vec<String> = roots.to_vec();
    while let Some(task_id) = frontier.pop() {
        for down in dag.downstream(&task_id) {
            if selected.insert(down.to_string()) {
                frontier.push(down.to_string());
            }
        }
    }
    selected
}

/// Airflow's "Clear": the selected task instances go back to `none` so they run again with a
/// new try number (and `max_tries` raised so their retries are available again); their runs
/// go back to `queued`. `run_id: None` clears in every run of the DAG. A running try loses its
/// claim and is cancelled by its executor at the next heartbeat.
pub async fn clear_task_instances(
    pool: &PgPool,
    dag_id: &str,
    run_id: Option<&str>,
    task_ids: &[String],
    include_downstream: bool,
    only_failed: bool,
    dry_run: bool,
) -> Result<Vec<ClearedTask>, StoreError> {
    let cache = DagCache::new();
    let mut tx = pool.begin().await?;
    // Lock the runs first: schedulers lock a run before deciding its tasks.
    let runs: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT id, run_id, dag_version_id FROM dag_run \
         WHERE dag_id = $1 AND ($2::text IS NULL OR run_id = $2) ORDER BY id FOR UPDATE",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_all(&mut *tx)
    .await?;
    if runs.is_empty() && run_id.is_some() {
        return Err(StoreError::NotFound(format!(
            "run {dag_id}/{}",
            run_id.unwrap_or_default()
        )));
    }
    let to_none = TaskState::sources_of(TaskState::None);
    let states: Vec<&str> = if only_failed {
        vec![
            TaskState::Failed.as_str(),
            TaskState::UpstreamFailed.as_str(),
        ]
    } else {
        to_none.clone()
    };
    let mut cleared = Vec::new();
    let mut touched_runs = Vec::new();
    for (dag_run_id, run_id, version_id) in runs {
        let dag = cache.get(&mut *tx, version_id).await?;
        let selected: Vec<String> = if include_downstream {
            with_downstream(&dag, task_ids).into_iter().collect()
        } else {
            task_ids.to_vec()
        };
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, task_id FROM task_instance \
             WHERE dag_run_id = $1 AND task_id = ANY($2) AND state = ANY($3) ORDER BY id",
        )
        .bind(dag_run_id)
        .bind(&selected)
        .bind(&states)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
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
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        let task_retries: Vec<i32> = rows
            .iter()
            .map(|(_, task_id)| retries.get(task_id.as_str()).copied().unwrap_or(0))
            .collect();
        for (_, task_id) in &rows {
            cleared.push(ClearedTask {
                dag_id: dag_id.to_string(),
                run_id: run_id.clone(),
                task_id: task_id.clone(),
            });
        }
        if dry_run {
            continue;
        }
        sqlx::query(
            "UPDATE task_instance t SET state = 'none', owner = NULL, heartbeat_at = NULL, \
             next_retry_at = NULL, queued_at = NULL, end_date = NULL, duration = NULL, \
             max_tries = t.try_number + c.retries, updated_at = now() \
             FROM unnest($1::bigint[], $2::int[]) AS c(id, retries) \
             WHERE t.id = c.id AND t.state = ANY($3)",
        )
        .bind(&ids)
        .bind(&task_retries)
        .bind(&to_none)
        .execute(&mut *tx)
        .await?;
        touched_runs.push(dag_run_id);
    }
    if !touched_runs.is_empty() {
        sqlx::query(
            "UPDATE dag_run SET state = 'queued', end_date = NULL, updated_at = now() \
             WHERE id = ANY($1) AND state <> 'queued'",
        )
        .bind(&touched_runs)
        .execute(&mut *tx)
        .await?;
        notify(&mut *tx, channels::RUNS, dag_id).await?;
    }
    tx.commit().await?;
    Ok(cleared)
}
