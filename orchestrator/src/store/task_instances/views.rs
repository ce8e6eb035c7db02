//! The task-instance read-models of the web: with their run's logical date, a filtered page,
//! the DAG grid's cells, counts by state. Reads only.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::dag::TaskState;
use crate::store::Page;

/// A task instance as the UI and API show it, with its run's logical date.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInstanceView {
    pub id: i64,
    pub task_id: String,
    pub dag_id: String,
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
    /// The process that claimed the running (or last) try: `hostname:pid:random`.
    pub owner: Option<String>,
    pub operator: String,
    pub queued_at: Option<DateTime<Utc>>,
    pub rendered_config: Option<Value>,
    pub priority_weight: i32,
}

/// One task instance of a run, by the run's ids.
pub async fn get_view(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<Option<TaskInstanceView>, sqlx::Error> {
    sqlx::query_as!(
        TaskInstanceView,
        r#"SELECT ti.id, ti.task_id, ti.dag_id, ti.run_id, r.logical_date, ti.start_date,
                  ti.end_date, ti.duration, ti.state AS "state: TaskState", ti.try_number,
                  ti.max_tries, ti.owner, ti.operator, ti.queued_at, ti.rendered_config,
                  ti.priority_weight
             FROM task_instance ti JOIN dag_run r ON r.id = ti.dag_run_id
            WHERE r.dag_id = $1 AND r.run_id = $2 AND ti.task_id = $3"#,
        dag_id,
        run_id,
        task_id,
    )
    .fetch_optional(pool)
    .await
}

/// Every task instance of a run, by the run's ids, in creation order.
pub async fn views_of_run(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
) -> Result<Vec<TaskInstanceView>, sqlx::Error> {
    sqlx::query_as!(
        TaskInstanceView,
        r#"SELECT ti.id, ti.task_id, ti.dag_id, ti.run_id, r.logical_date, ti.start_date,
                  ti.end_date, ti.duration, ti.state AS "state: TaskState", ti.try_number,
                  ti.max_tries, ti.owner, ti.operator, ti.queued_at, ti.rendered_config,
                  ti.priority_weight
             FROM dag_run r JOIN task_instance ti ON ti.dag_run_id = r.id
            WHERE r.dag_id = $1 AND r.run_id = $2 ORDER BY ti.id"#,
        dag_id,
        run_id,
    )
    .fetch_all(pool)
    .await
}

/// Which task instances a listing shows; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct TaskInstanceFilter<'a> {
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub states: Option<&'a [TaskState]>,
}

/// A page of task instances in creation order, and how many match `filter`. A DAG or run
/// filter finds its runs first (dag_run's `(dag_id, run_id)`), then their task instances.
pub async fn page(
    pool: &PgPool,
    filter: &TaskInstanceFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<Page<TaskInstanceView>, sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM task_instance ti
            WHERE ($1::text IS NULL AND $2::text IS NULL
                   OR ti.dag_run_id = ANY (ARRAY(
                          SELECT id FROM dag_run
                           WHERE ($1::text IS NULL OR dag_id = $1)
                             AND ($2::text IS NULL OR run_id = $2))))
              AND ($3::text[] IS NULL OR ti.state = ANY($3))"#,
        filter.dag_id,
        filter.run_id,
        filter.states as _,
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query_as!(
        TaskInstanceView,
        r#"SELECT ti.id, ti.task_id, ti.dag_id, ti.run_id, r.logical_date, ti.start_date,
                  ti.end_date, ti.duration, ti.state AS "state: TaskState", ti.try_number,
                  ti.max_tries, ti.owner, ti.operator, ti.queued_at, ti.rendered_config,
                  ti.priority_weight
             FROM task_instance ti JOIN dag_run r ON r.id = ti.dag_run_id
            WHERE ($1::text IS NULL AND $2::text IS NULL
                   OR ti.dag_run_id = ANY (ARRAY(
                          SELECT id FROM dag_run
                           WHERE ($1::text IS NULL OR dag_id = $1)
                             AND ($2::text IS NULL OR run_id = $2))))
              AND ($3::text[] IS NULL OR ti.state = ANY($3))
            ORDER BY ti.id LIMIT $4 OFFSET $5"#,
        filter.dag_id,
        filter.run_id,
        filter.states as _,
        limit,
        offset,
    )
    .fetch_all(pool)
    .await?;
    Ok(Page { rows, total })
}

/// The distinct task ids of the DAG's task instances (of one run, or of all).
pub async fn task_ids(
    pool: &PgPool,
    dag_id: &str,
    run_id: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT DISTINCT task_id FROM task_instance
          WHERE dag_run_id = ANY (ARRAY(SELECT id FROM dag_run
                                         WHERE dag_id = $1 AND ($2::text IS NULL OR run_id = $2)))",
        dag_id,
        run_id,
    )
    .fetch_all(pool)
    .await
}

/// A cell of the DAG page's grid, and what the live view sends when it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct GridCell {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub state: TaskState,
    pub try_number: i32,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub updated_at: DateTime<Utc>,
}

/// The task instances of the DAG's runs among `run_ids`, in one statement.
pub async fn grid(
    pool: &PgPool,
    dag_id: &str,
    run_ids: &[String],
) -> Result<Vec<GridCell>, sqlx::Error> {
    sqlx::query_as!(
        GridCell,
        r#"SELECT ti.id, ti.dag_id, ti.run_id, ti.task_id, ti.state AS "state: TaskState",
                  ti.try_number, ti.queued_at, ti.start_date, ti.end_date, ti.duration,
                  ti.updated_at
             FROM dag_run r JOIN task_instance ti ON ti.dag_run_id = r.id
            WHERE r.dag_id = $1 AND r.run_id = ANY($2)"#,
        dag_id,
        run_ids,
    )
    .fetch_all(pool)
    .await
}

/// The task instances of `dag_ids` changed after `since`, found through their runs: those
/// unfinished or changed since then (a task instance's change touches its run, or the run is
/// running).
pub async fn changed_since(
    pool: &PgPool,
    dag_ids: &[String],
    since: DateTime<Utc>,
) -> Result<Vec<GridCell>, sqlx::Error> {
    sqlx::query_as!(
        GridCell,
        r#"SELECT ti.id, ti.dag_id, ti.run_id, ti.task_id, ti.state AS "state: TaskState",
                  ti.try_number, ti.queued_at, ti.start_date, ti.end_date, ti.duration,
                  ti.updated_at
             FROM dag_run r JOIN task_instance ti ON ti.dag_run_id = r.id
            WHERE r.dag_id = ANY($1)
              AND (r.state IN ('queued', 'running') OR r.updated_at > $2)
              AND ti.updated_at > $2"#,
        dag_ids,
        since,
    )
    .fetch_all(pool)
    .await
}

/// A try of a task instance, as the run's Gantt chart draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct TryView {
    pub task_id: String,
    pub try_number: i32,
    pub state: TaskState,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

/// The earlier tries of a run's task instances (`task_try`); their current tries are the task
/// instances themselves.
pub async fn earlier_tries(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
) -> Result<Vec<TryView>, sqlx::Error> {
    sqlx::query_as!(
        TryView,
        r#"SELECT ti.task_id, h.try_number, h.state AS "state: TaskState", h.queued_at,
                  h.start_date, h.end_date
             FROM dag_run r
             JOIN task_instance ti ON ti.dag_run_id = r.id
             JOIN task_try h ON h.task_instance_id = ti.id
            WHERE r.dag_id = $1 AND r.run_id = $2
            ORDER BY ti.id, h.try_number"#,
        dag_id,
        run_id,
    )
    .fetch_all(pool)
    .await
}

/// How many task instances are in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskStateCount {
    pub state: TaskState,
    pub count: i64,
}

/// Task instances by state (states without any left out), in the states' text order.
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<TaskStateCount>, sqlx::Error> {
    sqlx::query_as!(
        TaskStateCount,
        r#"SELECT state AS "state: TaskState", count(*) AS "count!" FROM task_instance
            GROUP BY state ORDER BY state"#
    )
    .fetch_all(pool)
    .await
}
