//! `dag_run` rows: creation (scheduled, manual, backfill), starting within `max_active_runs`,
//! the locks under which a run's tasks are decided, ends, marks and clears; and the run
//! read-models of the web (a filtered, ordered page; the latest runs of DAGs; counts by state).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{PgConnection, PgPool};

use super::Page;
use crate::dag::{RunState, RunType, TaskState};

/// A run as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DagRunRow {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub state: RunState,
    pub conf: Value,
    pub note: Option<String>,
    pub dag_version_id: i64,
    pub queued_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// The last change of the row (Airflow's `last_scheduling_decision`).
    pub updated_at: DateTime<Utc>,
}

/// A new run row, always `queued`: the scheduler starts it when `max_active_runs` allows.
pub struct NewRun<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub data_interval: (DateTime<Utc>, DateTime<Utc>),
    pub conf: &'a Map<String, Value>,
    pub note: Option<&'a str>,
    pub dag_version_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum InsertRunError {
    #[error("a run with run_id `{0}` already exists")]
    DuplicateRunId(String),
    #[error("a run with logical date {0} already exists")]
    DuplicateLogicalDate(DateTime<Utc>),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Inserts a run and announces it on `updraft_runs` (payload: the DAG id) in the same
/// statement, so the schedulers hear of it once it is committed; a taken run id or logical date
/// (unique constraints) is a typed error.
pub async fn insert_announced<'e, E>(
    executor: E,
    run: &NewRun<'_>,
) -> Result<DagRunRow, InsertRunError>
where
    E: sqlx::PgExecutor<'e>,
{
    let result = sqlx::query_as!(
        DagRunRow,
        r#"WITH run AS (
               INSERT INTO dag_run (dag_id, run_id, run_type, logical_date, data_interval_start,
                                    data_interval_end, state, conf, note, dag_version_id)
               VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9)
               RETURNING *)
           SELECT id AS "id!", dag_id AS "dag_id!", run_id AS "run_id!",
                  run_type AS "run_type!: RunType", logical_date AS "logical_date!",
                  data_interval_start AS "data_interval_start!",
                  data_interval_end AS "data_interval_end!", state AS "state!: RunState",
                  conf AS "conf!", note, dag_version_id AS "dag_version_id!",
                  queued_at AS "queued_at!", start_date, end_date, updated_at AS "updated_at!"
             FROM run, pg_notify($10, run.dag_id)"#,
        run.dag_id,
        run.run_id,
        run.run_type as _,
        run.logical_date,
        run.data_interval.0,
        run.data_interval.1,
        Value::Object(run.conf.clone()),
        run.note,
        run.dag_version_id,
        super::channels::RUNS,
    )
    .fetch_one(executor)
    .await;
    match result {
        Ok(row) => Ok(row),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            let on_date = error
                .constraint()
                .is_some_and(|constraint| constraint.contains("logical_date"));
            Err(if on_date {
                InsertRunError::DuplicateLogicalDate(run.logical_date)
            } else {
                InsertRunError::DuplicateRunId(run.run_id.to_string())
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Inserts a scheduled run unless its logical date is taken (another scheduler created it, or
/// a manual run holds that date); whether it was inserted.
pub async fn insert_scheduled(
    conn: &mut PgConnection,
    run: &NewRun<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO dag_run (dag_id, run_id, run_type, logical_date, data_interval_start,
                              data_interval_end, state, dag_version_id)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7) ON CONFLICT DO NOTHING",
        run.dag_id,
        run.run_id,
        run.run_type as _,
        run.logical_date,
        run.data_interval.0,
        run.data_interval.1,
        run.dag_version_id,
    )
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

pub async fn get(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
) -> Result<Option<DagRunRow>, sqlx::Error> {
    sqlx::query_as!(
        DagRunRow,
        r#"SELECT id, dag_id, run_id, run_type AS "run_type: RunType", logical_date,
                  data_interval_start, data_interval_end, state AS "state: RunState", conf, note,
                  dag_version_id, queued_at, start_date, end_date, updated_at
             FROM dag_run WHERE dag_id = $1 AND run_id = $2"#,
        dag_id,
        run_id,
    )
    .fetch_optional(pool)
    .await
}

/// The states of the given runs (by id), for waiting on them.
pub async fn states(pool: &PgPool, ids: &[i64]) -> Result<Vec<RunState>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT state AS "state: RunState" FROM dag_run WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(pool)
    .await
}

/// The data interval of the DAG's latest scheduled run.
pub async fn last_scheduled_interval(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT data_interval_start, data_interval_end FROM dag_run
          WHERE dag_id = $1 AND run_type = 'scheduled' ORDER BY logical_date DESC LIMIT 1",
        dag_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| (row.data_interval_start, row.data_interval_end)))
}

/// A run that has just started.
#[derive(Debug, Clone)]
pub struct StartedRun {
    pub id: i64,
    pub run_id: String,
    pub dag_version_id: i64,
}

/// Starts the DAG's oldest queued runs, up to `max_active_runs` running at once. The caller
/// holds the DAG row's lock.
pub async fn start_queued(
    conn: &mut PgConnection,
    dag_id: &str,
    max_active_runs: i32,
) -> Result<Vec<StartedRun>, sqlx::Error> {
    sqlx::query_as!(
        StartedRun,
        "UPDATE dag_run SET state = 'running', start_date = coalesce(start_date, now()),
                updated_at = now()
          WHERE id IN (
            SELECT id FROM dag_run WHERE dag_id = $1 AND state = 'queued'
             ORDER BY logical_date
             LIMIT greatest(0, $2 - (SELECT count(*) FROM dag_run
                                      WHERE dag_id = $1 AND state = 'running')))
          RETURNING id, run_id, dag_version_id",
        dag_id,
        i64::from(max_active_runs),
    )
    .fetch_all(conn)
    .await
}

/// A run locked while its tasks are decided from scratch.
#[derive(Debug, Clone)]
pub struct LockedRun {
    pub dag_id: String,
    pub run_id: String,
    pub state: RunState,
    pub clear_number: i32,
    pub dag_version_id: i64,
    /// The DAG's current limits.
    pub max_active_tasks: i32,
    pub max_active_runs: i32,
}

/// What a run's queueing depends on, read without a lock.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub dag_version_id: i64,
    pub max_active_tasks: i32,
    pub max_active_runs: i32,
}

/// The limits a run's queueing obeys (whether the DAG's queueing lock is needed at all).
pub async fn limits(pool: &PgPool, id: i64) -> Result<Option<RunLimits>, sqlx::Error> {
    sqlx::query_as!(
        RunLimits,
        "SELECT r.dag_version_id, d.max_active_tasks, d.max_active_runs
           FROM dag_run r JOIN dag d ON d.dag_id = r.dag_id WHERE r.id = $1",
        id
    )
    .fetch_optional(pool)
    .await
}

/// Locks a run (`FOR UPDATE`): hand-offs, clears and marks of it wait until the caller commits.
pub async fn lock(conn: &mut PgConnection, id: i64) -> Result<Option<LockedRun>, sqlx::Error> {
    sqlx::query_as!(
        LockedRun,
        r#"SELECT r.dag_id, r.run_id, r.state AS "state: RunState", r.clear_number,
                  r.dag_version_id, d.max_active_tasks, d.max_active_runs
             FROM dag_run r JOIN dag d ON d.dag_id = r.dag_id
            WHERE r.id = $1 FOR UPDATE OF r"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Stores how many of a locked run's task instances are unfinished.
pub async fn set_unfinished(
    conn: &mut PgConnection,
    id: i64,
    unfinished: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE dag_run SET unfinished_tasks = $2 WHERE id = $1",
        id,
        unfinished
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Ends a running run in `state` unless a clear or a mark came first (they raise its
/// `clear_number`), and announces the end on `updraft_runs` (payload: the DAG id) in the same
/// statement. Returns the run's `run_id` if this ended it.
pub async fn finish_announced<'e, E>(
    executor: E,
    id: i64,
    state: RunState,
    clear_number: i32,
) -> Result<Option<String>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar!(
        r#"WITH ended AS (
               UPDATE dag_run SET state = $2, end_date = now(), updated_at = now(),
                      unfinished_tasks = 0
                WHERE id = $1 AND state = 'running' AND clear_number = $3
            RETURNING dag_id, run_id)
           SELECT run_id AS "run_id!" FROM ended, pg_notify($4, ended.dag_id)"#,
        id,
        state as _,
        clear_number,
        super::channels::RUNS,
    )
    .fetch_optional(executor)
    .await
}

/// Locks a run by its ids for a user's mark: its row id and state.
pub async fn lock_by_run_id(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
) -> Result<Option<(i64, RunState)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, state AS "state: RunState" FROM dag_run
            WHERE dag_id = $1 AND run_id = $2 FOR UPDATE"#,
        dag_id,
        run_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| (row.id, row.state)))
}

/// Sets a locked run's state (a user's mark): a finished state ends it, `queued` reopens it.
pub async fn set_state(
    conn: &mut PgConnection,
    id: i64,
    state: RunState,
) -> Result<DagRunRow, sqlx::Error> {
    sqlx::query_as!(
        DagRunRow,
        r#"UPDATE dag_run SET state = $2, updated_at = now(), clear_number = clear_number + 1,
                  end_date = CASE WHEN $3 THEN now() END
            WHERE id = $1
        RETURNING id, dag_id, run_id, run_type AS "run_type: RunType", logical_date,
                  data_interval_start, data_interval_end, state AS "state: RunState", conf, note,
                  dag_version_id, queued_at, start_date, end_date, updated_at"#,
        id,
        state as _,
        state.is_finished(),
    )
    .fetch_one(conn)
    .await
}

/// A run locked for a clear.
#[derive(Debug, Clone)]
pub struct RunToClear {
    pub id: i64,
    pub run_id: String,
    pub state: RunState,
    pub dag_version_id: i64,
}

/// Locks the DAG's runs (one, or all when `run_id` is `None`) in id order, as schedulers lock a
/// run before deciding its tasks.
pub async fn lock_for_clear(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: Option<&str>,
) -> Result<Vec<RunToClear>, sqlx::Error> {
    sqlx::query_as!(
        RunToClear,
        r#"SELECT id, run_id, state AS "state: RunState", dag_version_id FROM dag_run
            WHERE dag_id = $1 AND ($2::text IS NULL OR run_id = $2) ORDER BY id FOR UPDATE"#,
        dag_id,
        run_id,
    )
    .fetch_all(conn)
    .await
}

/// After a clear: decisions taken before it are void (`clear_number`), and with `requeue` the
/// runs go back to `queued` so the scheduler runs the cleared tasks (Airflow's
/// `reset_dag_runs`).
pub async fn mark_cleared(
    conn: &mut PgConnection,
    ids: &[i64],
    requeue: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE dag_run SET clear_number = clear_number + 1, updated_at = now(),
                state = CASE WHEN $2 THEN 'queued' ELSE state END,
                end_date = CASE WHEN $2 THEN NULL ELSE end_date END
          WHERE id = ANY($1)",
        ids,
        requeue,
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// DAGs with runs waiting to start.
pub async fn dags_with_queued_runs(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT DISTINCT dag_id FROM dag_run WHERE state = 'queued'")
        .fetch_all(pool)
        .await
}

/// Whether the DAG has runs waiting to start (read without a lock).
pub async fn has_queued(pool: &PgPool, dag_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM dag_run WHERE dag_id = $1 AND state = 'queued')
               AS "queued!""#,
        dag_id
    )
    .fetch_one(pool)
    .await
}

/// A run the sweep looks at.
#[derive(Debug, Clone)]
pub struct RunRef {
    pub id: i64,
    pub dag_id: String,
}

/// Running runs with nothing in flight: a hand-off was lost (a process died between a try's
/// end and its downstream decision), or the run is over and not ended yet.
pub async fn stalled(pool: &PgPool) -> Result<Vec<RunRef>, sqlx::Error> {
    let in_flight: Vec<TaskState> = TaskState::ALL
        .into_iter()
        .filter(|state| state.is_in_flight())
        .collect();
    sqlx::query_as!(
        RunRef,
        "SELECT r.id, r.dag_id FROM dag_run r WHERE r.state = 'running' AND NOT EXISTS (
           SELECT 1 FROM task_instance t WHERE t.dag_run_id = r.id AND t.state = ANY($1))",
        &in_flight as _,
    )
    .fetch_all(pool)
    .await
}

/// Which runs a listing shows; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct RunFilter<'a> {
    pub dag_id: Option<&'a str>,
    pub states: Option<&'a [RunState]>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
    pub start_date_gte: Option<DateTime<Utc>>,
    pub start_date_lte: Option<DateTime<Utc>>,
}

/// The orders a run listing can have. Date orders break ties by row id in the same direction,
/// and put runs not started (or not ended) first ascending, last descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    LogicalDate,
    LogicalDateDesc,
    StartDate,
    StartDateDesc,
    EndDate,
    EndDateDesc,
    RunId,
    RunIdDesc,
    Id,
    IdDesc,
}

/// One static statement per order (an ORDER BY cannot be a parameter without losing the
/// indexes that serve it, such as `dag_run_recent` for a DAG's newest runs).
macro_rules! run_page {
    ($pool:expr, $filter:expr, $limit:expr, $offset:expr, $order:literal) => {
        sqlx::query_as!(
            DagRunRow,
            r#"SELECT id, dag_id, run_id, run_type AS "run_type: RunType", logical_date,
                      data_interval_start, data_interval_end, state AS "state: RunState", conf,
                      note, dag_version_id, queued_at, start_date, end_date, updated_at
                 FROM dag_run r
                WHERE ($1::text IS NULL OR r.dag_id = $1)
                  AND ($2::text[] IS NULL OR r.state = ANY($2))
                  AND ($3::timestamptz IS NULL OR r.logical_date >= $3)
                  AND ($4::timestamptz IS NULL OR r.logical_date <= $4)
                  AND ($5::timestamptz IS NULL OR r.start_date >= $5)
                  AND ($6::timestamptz IS NULL OR r.start_date <= $6)
                ORDER BY "#
                + $order
                + " LIMIT $7 OFFSET $8",
            $filter.dag_id,
            $filter.states as _,
            $filter.logical_date_gte,
            $filter.logical_date_lte,
            $filter.start_date_gte,
            $filter.start_date_lte,
            $limit,
            $offset,
        )
        .fetch_all($pool)
        .await?
    };
}

/// A page of runs in `order`, and how many match `filter`.
pub async fn page(
    pool: &PgPool,
    filter: &RunFilter<'_>,
    order: RunOrder,
    limit: i64,
    offset: i64,
) -> Result<Page<DagRunRow>, sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM dag_run r
            WHERE ($1::text IS NULL OR r.dag_id = $1)
              AND ($2::text[] IS NULL OR r.state = ANY($2))
              AND ($3::timestamptz IS NULL OR r.logical_date >= $3)
              AND ($4::timestamptz IS NULL OR r.logical_date <= $4)
              AND ($5::timestamptz IS NULL OR r.start_date >= $5)
              AND ($6::timestamptz IS NULL OR r.start_date <= $6)"#,
        filter.dag_id,
        filter.states as _,
        filter.logical_date_gte,
        filter.logical_date_lte,
        filter.start_date_gte,
        filter.start_date_lte,
    )
    .fetch_one(pool)
    .await?;
    let (f, l, o) = (filter, limit, offset);
    let rows = match order {
        RunOrder::LogicalDate => run_page!(pool, f, l, o, "r.logical_date ASC, r.id"),
        RunOrder::LogicalDateDesc => run_page!(pool, f, l, o, "r.logical_date DESC, r.id DESC"),
        RunOrder::StartDate => run_page!(pool, f, l, o, "r.start_date ASC NULLS FIRST, r.id"),
        RunOrder::StartDateDesc => {
            run_page!(pool, f, l, o, "r.start_date DESC NULLS LAST, r.id DESC")
        }
        RunOrder::EndDate => run_page!(pool, f, l, o, "r.end_date ASC NULLS FIRST, r.id"),
        RunOrder::EndDateDesc => run_page!(pool, f, l, o, "r.end_date DESC NULLS LAST, r.id DESC"),
        RunOrder::RunId => run_page!(pool, f, l, o, "r.run_id ASC"),
        RunOrder::RunIdDesc => run_page!(pool, f, l, o, "r.run_id DESC"),
        RunOrder::Id => run_page!(pool, f, l, o, "r.id ASC"),
        RunOrder::IdDesc => run_page!(pool, f, l, o, "r.id DESC"),
    };
    Ok(Page { rows, total })
}

/// A run as the DAG list and grid show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentRun {
    pub dag_id: String,
    pub run_id: String,
    pub state: RunState,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

/// The DAG's latest `limit` runs with a logical date before `before` (all when `None`), newest
/// first (index `dag_run_recent`).
pub async fn recent(
    pool: &PgPool,
    dag_id: &str,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<RecentRun>, sqlx::Error> {
    sqlx::query_as!(
        RecentRun,
        r#"SELECT dag_id, run_id, state AS "state: RunState", run_type AS "run_type: RunType",
                  logical_date, start_date, end_date
             FROM dag_run
            WHERE dag_id = $1 AND ($2::timestamptz IS NULL OR logical_date < $2)
            ORDER BY logical_date DESC LIMIT $3"#,
        dag_id,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// How a DAG's runs of one day (by logical date, UTC) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayOfRuns {
    pub day: chrono::NaiveDate,
    pub success: i64,
    pub failed: i64,
    pub unfinished: i64,
}

/// The DAG's runs per day since `since` (index `dag_run_recent`), for its calendar.
pub async fn by_day(
    pool: &PgPool,
    dag_id: &str,
    since: DateTime<Utc>,
) -> Result<Vec<DayOfRuns>, sqlx::Error> {
    sqlx::query_as!(
        DayOfRuns,
        r#"SELECT (logical_date AT TIME ZONE 'UTC')::date AS "day!",
                  count(*) FILTER (WHERE state = 'success') AS "success!",
                  count(*) FILTER (WHERE state = 'failed') AS "failed!",
                  count(*) FILTER (WHERE state IN ('queued', 'running')) AS "unfinished!"
             FROM dag_run
            WHERE dag_id = $1 AND logical_date >= $2
            GROUP BY 1 ORDER BY 1"#,
        dag_id,
        since,
    )
    .fetch_all(pool)
    .await
}

/// A run as the live view sends it when it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChange {
    pub dag_id: String,
    pub run_id: String,
    pub state: RunState,
    pub logical_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// The runs of `dag_ids` unfinished or changed after `since` (indexes `dag_run_unfinished`,
/// `dag_run_recent`).
pub async fn changed_since(
    pool: &PgPool,
    dag_ids: &[String],
    since: DateTime<Utc>,
) -> Result<Vec<RunChange>, sqlx::Error> {
    sqlx::query_as!(
        RunChange,
        r#"SELECT dag_id, run_id, state AS "state: RunState", logical_date, start_date, end_date,
                  updated_at
             FROM dag_run
            WHERE dag_id = ANY($1) AND (state IN ('queued', 'running') OR updated_at > $2)"#,
        dag_ids,
        since,
    )
    .fetch_all(pool)
    .await
}

/// The database's clock (a watcher's reads are relative to it, not to this host's).
pub async fn database_now(pool: &PgPool) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT clock_timestamp() AS "now!""#)
        .fetch_one(pool)
        .await
}

/// The latest `per_dag` runs of each of the DAGs, newest first per DAG, in one statement
/// (index `dag_run_recent` per DAG).
pub async fn recent_of_dags(
    pool: &PgPool,
    dag_ids: &[String],
    per_dag: i64,
) -> Result<Vec<RecentRun>, sqlx::Error> {
    sqlx::query_as!(
        RecentRun,
        r#"SELECT r.dag_id AS "dag_id!", r.run_id AS "run_id!", r.state AS "state!: RunState",
                  r.run_type AS "run_type!: RunType", r.logical_date AS "logical_date!",
                  r.start_date, r.end_date
             FROM unnest($1::text[]) AS ids(dag_id)
             CROSS JOIN LATERAL (SELECT dag_id, run_id, state, run_type, logical_date,
                                        start_date, end_date FROM dag_run
                                  WHERE dag_id = ids.dag_id
                                  ORDER BY logical_date DESC LIMIT $2) r"#,
        dag_ids,
        per_dag,
    )
    .fetch_all(pool)
    .await
}

/// The logical dates of the DAG's runs among `run_ids`, by run id.
pub async fn logical_dates(
    pool: &PgPool,
    dag_id: &str,
    run_ids: &[String],
) -> Result<HashMap<String, DateTime<Utc>>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT run_id, logical_date FROM dag_run WHERE dag_id = $1 AND run_id = ANY($2)",
        dag_id,
        run_ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.run_id, row.logical_date))
        .collect())
}

/// How many runs are in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStateCount {
    pub state: RunState,
    pub count: i64,
}

/// Runs by state (states without runs left out), in the states' text order.
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<RunStateCount>, sqlx::Error> {
    sqlx::query_as!(
        RunStateCount,
        r#"SELECT state AS "state: RunState", count(*) AS "count!" FROM dag_run
            GROUP BY state ORDER BY state"#
    )
    .fetch_all(pool)
    .await
}

/// What the Browse → DAG runs page filters on; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct BrowseFilter {
    pub dag_id: Option<String>,
    pub state: Option<RunState>,
    pub run_type: Option<RunType>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
}

/// Runs of every DAG matching `filter`, newest logical date first, `limit` of them after the
/// keyset `before` (the `(logical_date, id)` of the last row of the previous page): each page
/// costs the same however deep it is.
pub async fn browse(
    pool: &PgPool,
    filter: &BrowseFilter,
    before: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<DagRunRow>, sqlx::Error> {
    let (before_date, before_id) = before.unzip();
    sqlx::query_as!(
        DagRunRow,
        r#"SELECT id, dag_id, run_id, run_type AS "run_type: RunType", logical_date,
                  data_interval_start, data_interval_end, state AS "state: RunState", conf,
                  note, dag_version_id, queued_at, start_date, end_date, updated_at
             FROM dag_run r
            WHERE ($1::text IS NULL OR r.dag_id = $1)
              AND ($2::text IS NULL OR r.state = $2)
              AND ($3::text IS NULL OR r.run_type = $3)
              AND ($4::timestamptz IS NULL OR r.logical_date >= $4)
              AND ($5::timestamptz IS NULL OR r.logical_date <= $5)
              AND ($6::timestamptz IS NULL OR (r.logical_date, r.id) < ($6, $7))
            ORDER BY r.logical_date DESC, r.id DESC
            LIMIT $8"#,
        filter.dag_id,
        filter.state.map(RunState::as_str),
        filter.run_type.map(RunType::as_str),
        filter.logical_date_gte,
        filter.logical_date_lte,
        before_date,
        before_id,
        limit,
    )
    .fetch_all(pool)
    .await
}
