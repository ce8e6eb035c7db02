//! `task_instance` rows: creation for a run and reads (here), decisions applied and queueing
//! within `max_active_tasks` (`decide.rs`), claims, heartbeats, the end of a try and the reaper
//! (`tries.rs`), Airflow's clear and mark (`clear.rs`), and the web's read-models (`views.rs`).
//!
//! Every statement that changes task states declares its [`Transition`] in [`TRANSITIONS`];
//! a test checks each against the one transition table (`dag::state::allowed`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::dag::{Dag, TaskState, Transition};

mod clear;
mod decide;
mod tries;
mod views;

pub use clear::*;
pub use decide::*;
pub use tries::*;
pub use views::*;

use TaskState::{
    Failed, None as NoneState, Queued, Running, Scheduled, Skipped, Success, UpForRetry,
    UpstreamFailed,
};

const ANY_STATE_BUT_NONE: &[TaskState] = &[
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    UpstreamFailed,
    Skipped,
    TaskState::Removed,
];
const UNFINISHED: &[TaskState] = &[NoneState, Scheduled, Queued, Running, UpForRetry];
/// What a user may mark `success` (any other state), and `failed`.
const MARK_SUCCESS_FROM: &[TaskState] = &[
    NoneState,
    Scheduled,
    Queued,
    Running,
    Failed,
    UpForRetry,
    UpstreamFailed,
    Skipped,
    TaskState::Removed,
];
const MARK_FAILED_FROM: &[TaskState] = &[
    NoneState,
    Scheduled,
    Queued,
    Running,
    Success,
    UpForRetry,
    UpstreamFailed,
    Skipped,
    TaskState::Removed,
];

/// Every state change the store writes, by the function that writes it.
#[rustfmt::skip]
pub const TRANSITIONS: &[(&str, Transition)] = &[
    ("create_for_run: wait", Transition::new(&[NoneState], &[], Scheduled)),
    ("create_for_run: queue", Transition::new(&[NoneState], &[Scheduled], Queued)),
    ("apply_decisions: run", Transition::new(&[NoneState], &[], Scheduled)),
    ("apply_decisions: queue", Transition::new(&[NoneState], &[Scheduled], Queued)),
    ("apply_decisions: claim", Transition::new(&[NoneState], &[Scheduled, Queued], Running)),
    ("apply_decisions: skip", Transition::new(&[NoneState], &[], Skipped)),
    ("apply_decisions: upstream failed", Transition::new(&[NoneState], &[], UpstreamFailed)),
    ("queue_waiting", Transition::new(&[Scheduled], &[], Queued)),
    ("claim", Transition::new(&[Queued], &[], Running)),
    ("end_tries_and_claim: claim", Transition::new(&[Queued], &[], Running)),
    ("end_tries: success", Transition::new(&[Running], &[], Success)),
    ("end_tries: failed", Transition::new(&[Running], &[], Failed)),
    ("end_tries: retry", Transition::new(&[Running], &[], UpForRetry)),
    ("release", Transition::new(&[Running], &[], UpForRetry)),
    ("reap_stale: retry", Transition::new(&[Running], &[], UpForRetry)),
    ("reap_stale: failed", Transition::new(&[Running], &[], Failed)),
    ("promote_due_retries", Transition::new(&[UpForRetry], &[], Scheduled)),
    ("reset_for_clear", Transition::new(ANY_STATE_BUT_NONE, &[], NoneState)),
    ("mark_unfinished: success", Transition::new(UNFINISHED, &[], Success)),
    ("mark_unfinished: failed", Transition::new(&[Running], &[], Failed)),
    ("mark_one: success", Transition::new(MARK_SUCCESS_FROM, &[], Success)),
    ("mark_one: failed", Transition::new(MARK_FAILED_FROM, &[], Failed)),
    ("mark_unfinished: skipped", Transition::new(&[NoneState, Scheduled, Queued, UpForRetry], &[], Skipped)),
];

/// One task instance's state, as decisions read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStateRow {
    pub id: i64,
    pub task_id: String,
    pub state: TaskState,
}

/// A task instance as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskInstanceRow {
    pub id: i64,
    pub dag_run_id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub operator: String,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
    pub owner: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub rendered_config: Option<Value>,
}

/// The task instances of the given runs, by id.
pub async fn of_runs(
    pool: &PgPool,
    dag_run_ids: &[i64],
) -> Result<Vec<TaskInstanceRow>, sqlx::Error> {
    sqlx::query_as!(
        TaskInstanceRow,
        r#"SELECT id, dag_run_id, dag_id, run_id, task_id, operator, state AS "state: TaskState",
                  try_number, max_tries, owner, queued_at, start_date, end_date, duration,
                  next_retry_at, rendered_config
             FROM task_instance WHERE dag_run_id = ANY($1) ORDER BY id"#,
        dag_run_ids
    )
    .fetch_all(pool)
    .await
}

/// Creates a starting run's task instances from its pinned DAG version, each in the state of
/// `states` (by position in `dag.tasks`): `none`, or the first decision of a run whose tasks
/// are all `none` (`scheduled`, `queued`). Existing rows are kept (a cleared run restarts with
/// its history). Sets the run's unfinished count to the rows created, and returns it: when it
/// is not every task of the DAG, the caller decides the run again from what is stored.
pub async fn create_for_run(
    conn: &mut PgConnection,
    dag: &Dag,
    dag_run_id: i64,
    run_id: &str,
    states: &[TaskState],
) -> Result<i64, sqlx::Error> {
    let task_ids: Vec<String> = dag.tasks.iter().map(|t| t.task_id.clone()).collect();
    let operators: Vec<String> = dag.tasks.iter().map(|t| t.operator.clone()).collect();
    let max_tries: Vec<i32> = dag
        .tasks
        .iter()
        .map(|t| i32::try_from(t.retry.retries).unwrap_or(i32::MAX))
        .collect();
    let weights = dag.priority_weights();
    sqlx::query_scalar!(
        r#"WITH created AS (
               INSERT INTO task_instance (dag_run_id, dag_id, run_id, task_id, operator, max_tries,
                                          priority_weight, state, queued_at)
               SELECT $1, $2, $3, t.task_id, t.operator, t.max_tries, t.weight, t.state,
                      CASE WHEN t.state = 'queued' THEN now() END
                 FROM unnest($4::text[], $5::text[], $6::int[], $7::int[], $8::text[])
                      AS t(task_id, operator, max_tries, weight, state)
               ON CONFLICT (dag_run_id, task_id) DO NOTHING
               RETURNING 1)
           UPDATE dag_run SET unfinished_tasks = (SELECT count(*) FROM created)
            WHERE id = $1
        RETURNING unfinished_tasks::bigint AS "created!""#,
        dag_run_id,
        dag.dag_id,
        run_id,
        &task_ids,
        &operators,
        &max_tries,
        &weights,
        states as _,
    )
    .fetch_one(conn)
    .await
}

/// Every task instance of a run, read fresh (call it after taking the run's lock).
pub async fn run_states(
    conn: &mut PgConnection,
    dag_run_id: i64,
) -> Result<Vec<TaskStateRow>, sqlx::Error> {
    sqlx::query_as!(
        TaskStateRow,
        r#"SELECT id, task_id, state AS "state: TaskState" FROM task_instance
            WHERE dag_run_id = $1 ORDER BY id"#,
        dag_run_id
    )
    .fetch_all(conn)
    .await
}

/// The given tasks of a run, read fresh.
pub async fn states_of(
    pool: &PgPool,
    dag_run_id: i64,
    task_ids: &[String],
) -> Result<Vec<TaskStateRow>, sqlx::Error> {
    sqlx::query_as!(
        TaskStateRow,
        r#"SELECT id, task_id, state AS "state: TaskState" FROM task_instance
            WHERE dag_run_id = $1 AND task_id = ANY($2)"#,
        dag_run_id,
        task_ids,
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_the_store_writes_is_allowed() {
        for (writer, transition) in TRANSITIONS {
            assert!(transition.is_allowed(), "{writer}: {transition:?}");
        }
    }

    #[test]
    fn the_unfinished_states_are_the_models() {
        assert_eq!(UNFINISHED, TaskState::unfinished().as_slice());
        let all_but_none: Vec<TaskState> = TaskState::sources_of(NoneState);
        assert_eq!(ANY_STATE_BUT_NONE, all_but_none.as_slice());
        assert_eq!(MARK_SUCCESS_FROM, TaskState::sources_of(Success).as_slice());
        assert_eq!(MARK_FAILED_FROM, TaskState::sources_of(Failed).as_slice());
    }
}

/// A task instance as Browse → Task instances lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowsedTaskInstance {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub operator: String,
    pub state: TaskState,
    pub try_number: i32,
    pub logical_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
}

/// What Browse → Task instances filters on; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct BrowseFilter {
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub state: Option<TaskState>,
    pub started_gte: Option<DateTime<Utc>>,
    pub started_lte: Option<DateTime<Utc>>,
}

/// Task instances of every DAG matching `filter`, newest first (by id), `limit` of them below
/// the keyset `before_id`: each page costs the same however deep it is.
pub async fn browse(
    pool: &PgPool,
    filter: &BrowseFilter,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<BrowsedTaskInstance>, sqlx::Error> {
    sqlx::query_as!(
        BrowsedTaskInstance,
        r#"SELECT ti.id, ti.dag_id, ti.run_id, ti.task_id, ti.operator,
                  ti.state AS "state: TaskState", ti.try_number, r.logical_date, ti.start_date,
                  ti.duration
             FROM task_instance ti JOIN dag_run r ON r.id = ti.dag_run_id
            WHERE ($1::text IS NULL OR ti.dag_id = $1)
              AND ($2::text IS NULL OR ti.task_id = $2)
              AND ($3::text IS NULL OR ti.state = $3)
              AND ($4::timestamptz IS NULL OR ti.start_date >= $4)
              AND ($5::timestamptz IS NULL OR ti.start_date <= $5)
              AND ($6::bigint IS NULL OR ti.id < $6)
            ORDER BY ti.id DESC
            LIMIT $7"#,
        filter.dag_id,
        filter.task_id,
        filter.state.map(TaskState::as_str),
        filter.started_gte,
        filter.started_lte,
        before_id,
        limit,
    )
    .fetch_all(pool)
    .await
}
