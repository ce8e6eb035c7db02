//! Trigger: the `dag_run` rows. Manual runs (REST, UI, CLI) and backfills are created here on
//! request; scheduled runs when their interval has ended (Airflow's timetable, in
//! `dag::timetable`). Every run starts `queued`, pinned to the DAG's latest version.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;

use crate::dag::params::{ParamError, resolve_params};
use crate::dag::timetable::{
    LastRun, interval_starting_at, manual_interval, next_run, ticks_between,
};
use crate::dag::{Dag, RunType};
use crate::store::dags::NextDagRun;
use crate::store::runs::{DagRunRow, InsertRunError, NewRun};
use crate::store::{DagCache, StoreError, dags, runs, versions};

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
    InvalidConf(#[from] ParamError),
    #[error("invalid conf: {0}")]
    ConfNumberOutOfRange(String),
    #[error(
        "run_id `{0}`: 1 to 250 of the characters A-Z a-z 0-9 _ . ~ : + - (Airflow's allowed_run_id_pattern)"
    )]
    InvalidRunId(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InsertRunError> for TriggerError {
    fn from(error: InsertRunError) -> Self {
        match error {
            InsertRunError::DuplicateRunId(id) => TriggerError::DuplicateRunId(id),
            InsertRunError::DuplicateLogicalDate(date) => TriggerError::DuplicateLogicalDate(date),
            InsertRunError::Database(error) => TriggerError::Store(error.into()),
        }
    }
}

impl From<sqlx::Error> for TriggerError {
    fn from(error: sqlx::Error) -> Self {
        TriggerError::Store(error.into())
    }
}

/// Airflow's `allowed_run_id_pattern` (`^[A-Za-z0-9_.~:+-]+$`), at most 250 characters: run
/// ids appear in URLs, file names and logs.
pub fn is_allowed_run_id(run_id: &str) -> bool {
    (1..=250).contains(&run_id.len())
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.~:+-".contains(c))
}

/// Numbers beyond ±1e300 are refused: PostgreSQL keeps them exactly and gives them back as
/// long integers that no reader of the run can parse as a double.
const LARGEST_CONF_NUMBER: f64 = 1e300;

fn check_conf_numbers(path: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float) if float.abs() < LARGEST_CONF_NUMBER => Ok(()),
            _ => Err(format!("`{path}` = {number} is beyond ±1e300")),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| check_conf_numbers(&format!("{path}[{index}]"), item)),
        Value::Object(entries) => entries
            .iter()
            .try_for_each(|(key, item)| check_conf_numbers(&format!("{path}.{key}"), item)),
        _ => Ok(()),
    }
}

/// Creates a manual run (queued) pinned to the DAG's latest version, and wakes the schedulers.
/// Paused DAGs accept triggers; their runs start once unpaused (as Airflow).
pub async fn trigger_run(
    pool: &PgPool,
    dag_id: &str,
    request: TriggerRequest,
) -> Result<DagRunRow, TriggerError> {
    let cache = DagCache::new();
    let (version_id, dag) = versions::latest(pool, &cache, dag_id)
        .await?
        .ok_or_else(|| TriggerError::UnknownDag(dag_id.to_string()))?;
    create(pool, &dag, version_id, request, RunType::Manual).await
}

/// Creates `backfill` runs for every scheduled interval starting in `[start, end]` (logical
/// dates already taken are skipped), pinned to the latest version; schedulers run them.
pub async fn create_backfill(
    pool: &PgPool,
    dag_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<DagRunRow>, TriggerError> {
    let cache = DagCache::new();
    let (version_id, dag) = versions::latest(pool, &cache, dag_id)
        .await?
        .ok_or_else(|| TriggerError::UnknownDag(dag_id.to_string()))?;
    let mut created = Vec::new();
    for logical_date in ticks_between(&dag, start, end) {
        let request = TriggerRequest {
            logical_date: Some(logical_date),
            ..TriggerRequest::default()
        };
        match create(pool, &dag, version_id, request, RunType::Backfill).await {
            Ok(run) => created.push(run),
            Err(TriggerError::DuplicateLogicalDate(_) | TriggerError::DuplicateRunId(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(created)
}

/// A manual or backfill run's id and data interval: Airflow's, and what `dags test` uses.
pub fn run_identity(
    dag: &Dag,
    run_type: RunType,
    logical_date: DateTime<Utc>,
) -> (String, (DateTime<Utc>, DateTime<Utc>)) {
    let interval = match run_type {
        RunType::Backfill => interval_starting_at(dag, logical_date),
        RunType::Manual | RunType::Scheduled => manual_interval(dag, logical_date),
    };
    (run_type.run_id(logical_date), interval)
}

async fn create(
    pool: &PgPool,
    dag: &Dag,
    version_id: i64,
    request: TriggerRequest,
    run_type: RunType,
) -> Result<DagRunRow, TriggerError> {
    if let Some(run_id) = &request.run_id
        && !is_allowed_run_id(run_id)
    {
        return Err(TriggerError::InvalidRunId(run_id.clone()));
    }
    check_conf_numbers("conf", &Value::Object(request.conf.clone()))
        .map_err(TriggerError::ConfNumberOutOfRange)?;
    resolve_params(dag, &request.conf)?;
    // PostgreSQL keeps microseconds: round now so the run id matches the stored date.
    let logical_date = request
        .logical_date
        .unwrap_or_else(|| Utc::now().trunc_subsecs(6));
    let (default_run_id, data_interval) = run_identity(dag, run_type, logical_date);
    let run_id = request
        .run_id
        .filter(|id| !id.trim().is_empty())
        .unwrap_or(default_run_id);
    let run = runs::insert_announced(
        pool,
        &NewRun {
            dag_id: &dag.dag_id,
            run_id: &run_id,
            run_type,
            logical_date,
            data_interval,
            conf: &request.conf,
            note: request.note.as_deref(),
            dag_version_id: version_id,
        },
    )
    .await?;
    tracing::info!(dag_id = %dag.dag_id, run_id = %run.run_id, "run triggered");
    Ok(run)
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
    let Some(row) = dags::lock_for_scheduling(&mut tx, dag_id).await? else {
        return Ok(0);
    };
    let (true, false, Some(version_id)) = (row.is_active, row.is_paused, row.latest_version_id)
    else {
        return Ok(0);
    };
    let dag = cache.get(&mut *tx, version_id).await?;
    let mut last = runs::last_scheduled_interval(&mut tx, dag_id).await?.map(
        |(interval_start, interval_end)| LastRun {
            interval_start,
            interval_end,
        },
    );
    let now = Utc::now();
    let mut created = 0;
    let mut next = next_run(&dag, last, now);
    while let Some(due) = next.filter(|n| n.create_after <= now) {
        if created >= MAX_PER_PASS {
            break;
        }
        let run_id = RunType::Scheduled.run_id(due.logical_date);
        let new_run = NewRun {
            dag_id,
            run_id: &run_id,
            run_type: RunType::Scheduled,
            logical_date: due.logical_date,
            data_interval: (due.interval_start, due.interval_end),
            conf: &Map::new(),
            note: None,
            dag_version_id: version_id,
        };
        if runs::insert_scheduled(&mut tx, &new_run).await? {
            created += 1;
        }
        last = Some(LastRun {
            interval_start: due.interval_start,
            interval_end: due.interval_end,
        });
        next = next_run(&dag, last, now);
    }
    let up_to_date = created == 0
        && row.next_dagrun_checked_version == Some(version_id)
        && next.is_some_and(|n| n.create_after > now);
    if !up_to_date {
        let next = NextDagRun {
            logical_date: next.map(|n| n.logical_date),
            interval_start: next.map(|n| n.interval_start),
            interval_end: next.map(|n| n.interval_end),
            create_after: next.map(|n| n.create_after),
        };
        dags::set_next_run(&mut tx, dag_id, next, version_id).await?;
    }
    tx.commit().await?;
    if created > 0 {
        tracing::info!(dag_id, created, "scheduled runs created");
    }
    Ok(created)
}
