//! DAG runs: manual triggers, "mark success/failed", and run rows for the scheduler.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;

use super::state::{TaskState, run_allowed};
use super::{DagCache, StoreError, channels, notify};
use crate::scheduler::timetable::manual_interval;
use crate::task_runner::resolve_params;

pub use super::state::RunState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunType {
    Scheduled,
    Manual,
    Backfill,
}

impl RunType {
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
        }
    }

    /// Airflow's run id: `<type>__<logical date, RFC 3339>`.
    pub fn run_id(self, logical_date: DateTime<Utc>) -> String {
        format!("{}__{}", self.as_str(), logical_date.to_rfc3339())
    }
}

#[derive(Debug, Clone, Default)]
pub struct TriggerRequest {
    /// Default `manual__<logical_date RFC 3339>`.
    pub run_id: Option<String>,
    /// Default now.
    pub logical_date: Option<DateTime<Utc>>,
    /// Validated against the DAG's params (types); stored as given.
    pub conf: Map<String, Value>,
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("DAG `{0}` not found")]
    UnknownDag(String),
    #[error("a run with run_id `{0}` already exists")]
    DuplicateRunId(String),
    #[error("a run with logical date {0} already exists")]
    DuplicateLogicalDate(DateTime<Utc>),
    #[error("invalid conf: {0}")]
    InvalidConf(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<StoreError> for TriggerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => TriggerError::Database(error),
            // A DAG whose stored version cannot be read cannot be triggered.
            other => TriggerError::UnknownDag(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct DagRunRecord {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_type: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub state: String,
    pub conf: Value,
    pub note: Option<String>,
    pub dag_version_id: i64,
    pub queued_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

pub(crate) const RUN_COLUMNS: &str = "id, dag_id, run_id, run_type, logical_date, \
    data_interval_start, data_interval_end, state, conf, note, dag_version_id, queued_at, \
    start_date, end_date";

/// A new run row, always `queued`: the scheduler starts it when `max_active_runs` allows.
pub struct NewRun<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub interval: (DateTime<Utc>, DateTime<Utc>),
    pub conf: &'a Map<String, Value>,
    pub note: Option<&'a str>,
    pub dag_version_id: i64,
}

/// Inserts a run; `Ok(None)` when the run id or logical date is taken (unique constraints).
pub(crate) async fn insert_run<'e, E>(
    executor: E,
    run: &NewRun<'_>,
) -> Result<Result<DagRunRecord, TriggerError>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let sql = format!(
        "INSERT INTO dag_run (dag_id, run_id, run_type, logical_date, data_interval_start, \
         data_interval_end, state, conf, note, dag_version_id) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9) RETURNING {RUN_COLUMNS}"
    );
    let result = sqlx::query_as::<_, DagRunRecord>(sqlx::AssertSqlSafe(sql))
        .bind(run.dag_id)
        .bind(run.run_id)
        .bind(run.run_type.as_str())
        .bind(run.logical_date)
        .bind(run.interval.0)
        .bind(run.interval.1)
        .bind(Value::Object(run.conf.clone()))
        .bind(run.note)
        .bind(run.dag_version_id)
        .fetch_one(executor)
        .await;
    match result {
        Ok(record) => Ok(Ok(record)),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            let on_date = error
                .constraint()
                .is_some_and(|c| c.contains("logical_date"));
            Ok(Err(if on_date {
                TriggerError::DuplicateLogicalDate(run.logical_date)
            } else {
                TriggerError::DuplicateRunId(run.run_id.to_string())
            }))
        }
        Err(error) => Err(error),
    }
}

/// Creates a manual run (queued) pinned to the DAG's latest version, and wakes the schedulers.
/// Paused DAGs accept triggers; their runs start once unpaused (as Airflow).
pub async fn trigger_run(
    pool: &PgPool,
    dag_id: &str,
    request: TriggerRequest,
) -> Result<DagRunRecord, TriggerError> {
    trigger_with_type(pool, dag_id, request, RunType::Manual).await
}

pub(crate) async fn trigger_with_type(
    pool: &PgPool,
    dag_id: &str,
    request: TriggerRequest,
    run_type: RunType,
) -> Result<DagRunRecord, TriggerError> {
    let cache = DagCache::new();
    let (version_id, dag) = super::versions::latest(pool, &cache, dag_id)
        .await?
        .ok_or_else(|| TriggerError::UnknownDag(dag_id.to_string()))?;
    resolve_params(&dag, &request.conf).map_err(TriggerError::InvalidConf)?;
    // PostgreSQL keeps microseconds: round now so the run id matches the stored date.
    let logical_date = request
        .logical_date
        .unwrap_or_else(|| Utc::now().trunc_subsecs(6));
    let run_id = request
        .run_id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .unwrap_or_else(|| run_type.run_id(logical_date));
    let interval = match run_type {
        RunType::Manual => manual_interval(&dag, logical_date),
        // Backfill runs cover the schedule's interval starting at the logical date.
        _ => crate::scheduler::timetable::interval_starting_at(&dag, logical_date),
    };
    let mut tx = pool.begin().await?;
    let record = insert_run(
        &mut *tx,
        &NewRun {
            dag_id,
            run_id: &run_id,
            run_type,
            logical_date,
            interval,
            conf: &request.conf,
            note: request.note.as_deref(),
            dag_version_id: version_id,
        },
    )
    .await??;
    notify(&mut *tx, channels::RUNS, dag_id).await?;
    tx.commit().await?;
    tracing::info!(dag_id, run_id = %record.run_id, "run triggered");
    Ok(record)
}

pub async fn get_run(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
) -> Result<Option<DagRunRecord>, StoreError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM dag_run WHERE dag_id = $1 AND run_id = $2");
    Ok(sqlx::query_as::<_, DagRunRecord>(sqlx::AssertSqlSafe(sql))
        .bind(dag_id)
        .bind(run_id)
        .fetch_optional(pool)
        .await?)
}

/// Airflow's "mark success/failed/queued": success sets every unfinished task to success;
/// failed sets running tries to failed and other unfinished tasks to skipped; queued only
/// changes the run. `Ok(None)` when the run does not exist.
pub async fn set_run_state(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    state: RunState,
) -> Result<Option<DagRunRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    let current: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, state FROM dag_run WHERE dag_id = $1 AND run_id = $2 FOR UPDATE",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, current)) = current else {
        return Ok(None);
    };
    let from: RunState = current.parse().map_err(|_| StoreError::InvalidTransition {
        what: format!("run {dag_id}/{run_id}"),
        from: current.clone(),
        to: state.to_string(),
    })?;
    if from != state && !run_allowed(from, state) {
        return Err(StoreError::InvalidTransition {
            what: format!("run {dag_id}/{run_id}"),
            from: current,
            to: state.to_string(),
        });
    }
    let unfinished: Vec<&str> = TaskState::ALL
        .into_iter()
        .filter(|s| !s.is_finished())
        .map(TaskState::as_str)
        .collect();
    match state {
        RunState::Success => {
            sqlx::query(
                "UPDATE task_instance SET state = 'success', end_date = now(), owner = NULL, \
                 updated_at = now() WHERE dag_run_id = $1 AND state = ANY($2)",
            )
            .bind(id)
            .bind(&unfinished)
            .execute(&mut *tx)
            .await?;
        }
        RunState::Failed => {
            sqlx::query(
                "UPDATE task_instance SET state = CASE WHEN state = 'running' THEN 'failed' \
                 ELSE 'skipped' END, end_date = now(), owner = NULL, updated_at = now() \
                 WHERE dag_run_id = $1 AND state = ANY($2)",
            )
            .bind(id)
            .bind(&unfinished)
            .execute(&mut *tx)
            .await?;
        }
        RunState::Queued | RunState::Running => {}
    }
    let end = if state.is_finished() { "now()" } else { "NULL" };
    let sql = format!(
        "UPDATE dag_run SET state = $2, end_date = {end}, updated_at = now() WHERE id = $1 \
         RETURNING {RUN_COLUMNS}"
    );
    let record = sqlx::query_as::<_, DagRunRecord>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(state.as_str())
        .fetch_one(&mut *tx)
        .await?;
    notify(&mut *tx, channels::RUNS, dag_id).await?;
    tx.commit().await?;
    Ok(Some(record))
}

/// Creates `backfill` runs for every scheduled interval starting in `[start, end]` (logical
/// dates already taken are skipped), pinned to the latest version; schedulers run them.
pub async fn create_backfill(
    pool: &PgPool,
    dag_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<DagRunRecord>, TriggerError> {
    let cache = DagCache::new();
    let (_, dag) = super::versions::latest(pool, &cache, dag_id)
        .await?
        .ok_or_else(|| TriggerError::UnknownDag(dag_id.to_string()))?;
    let mut created = Vec::new();
    for logical_date in crate::scheduler::timetable::ticks_between(&dag, start, end) {
        let request = TriggerRequest {
            logical_date: Some(logical_date),
            ..TriggerRequest::default()
        };
        match trigger_with_type(pool, dag_id, request, RunType::Backfill).await {
            Ok(record) => created.push(record),
            Err(TriggerError::DuplicateLogicalDate(_) | TriggerError::DuplicateRunId(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(created)
}
