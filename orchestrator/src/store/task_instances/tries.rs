//! Tries: claims, heartbeats, the end of a try, releases, the reaper, due retries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::TaskStateRow;
use crate::dag::{RunState, TaskState};

/// A try claimed by this process, with its run's columns.
#[derive(Debug, Clone)]
pub struct ClaimedTry {
    pub id: i64,
    pub dag_run_id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub max_tries: i32,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: Value,
    pub dag_version_id: i64,
}

/// Claims up to `limit` queued task instances for `owner`, oldest run first (a running run's
/// next task does not wait behind a newer run's wide fan-out). One statement; the pick is a
/// materialised CTE so it runs exactly once (an `IN (subquery LIMIT n)` may be evaluated again
/// by the planner and claim more than `n` rows).
pub async fn claim(pool: &PgPool, owner: &str, limit: i64) -> Result<Vec<ClaimedTry>, sqlx::Error> {
    sqlx::query_as!(
        ClaimedTry,
        // Rows and runs by their keys (an array, a lateral lookup): a generic plan for an
        // unknown LIMIT may otherwise join by scanning every task instance.
        r#"WITH picked AS MATERIALIZED (
               SELECT id FROM task_instance WHERE state = 'queued' ORDER BY dag_run_id, id
                LIMIT $2 FOR UPDATE SKIP LOCKED),
           claimed AS (
               UPDATE task_instance t SET state = 'running', owner = $1, heartbeat_at = now(),
                      try_number = t.try_number + 1, start_date = now(), end_date = NULL,
                      duration = NULL, next_retry_at = NULL, updated_at = now()
                WHERE t.id = ANY (ARRAY(SELECT id FROM picked)) AND t.state = 'queued'
            RETURNING t.id, t.dag_run_id, t.dag_id, t.run_id, t.task_id, t.try_number,
                      t.max_tries)
           SELECT c.id AS "id!", c.dag_run_id AS "dag_run_id!", c.dag_id AS "dag_id!",
                  c.run_id AS "run_id!", c.task_id AS "task_id!", c.try_number AS "try_number!",
                  c.max_tries AS "max_tries!", r.logical_date, r.data_interval_start,
                  r.data_interval_end, r.conf, r.dag_version_id
             FROM claimed c
            CROSS JOIN LATERAL (SELECT * FROM dag_run WHERE id = c.dag_run_id OFFSET 0) r"#,
        owner,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The end of a try.
#[derive(Debug, Clone)]
pub struct TryEnd<'a> {
    pub task_instance_id: i64,
    pub owner: &'a str,
    /// `success`, `failed` or `up_for_retry`.
    pub state: TaskState,
    /// The config the operator received (templates rendered).
    pub rendered_config: Option<&'a Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The operator's output, stored as the `return_value` XCom.
    pub output: Option<&'a Value>,
    /// The tasks of the run whose states the caller needs back.
    pub read_back: &'a [String],
}

/// What the end of a try found, read in the same statement.
#[derive(Debug, Clone)]
pub struct TryEnded {
    pub dag_run_id: i64,
    /// The run as this statement's snapshot saw it.
    pub run_state: RunState,
    pub clear_number: i32,
    pub unfinished_seen: i32,
    /// The run's unfinished count after this end, read under the run row's lock: every end
    /// committed before this one is counted. `None` when the end finished nothing, or the run
    /// stopped running meanwhile.
    pub unfinished_now: Option<i32>,
    pub max_active_tasks: i32,
    pub max_active_runs: i32,
    /// The `read_back` tasks as the snapshot saw them (the ended task still `running`).
    pub rows: Vec<TaskStateRow>,
}

impl TryEnded {
    /// Whether an end of another task of the run committed after this statement's snapshot:
    /// then `rows` may be stale.
    pub fn missed_an_end(&self) -> bool {
        self.unfinished_now
            .is_some_and(|now| now + 1 != self.unfinished_seen)
    }
}

/// Stores a try's end if the row is still `owner`'s, its output as XCom, and (when the try
/// finished the task) lowers the run's unfinished count. `None`: the row is no longer ours.
pub async fn end_try(pool: &PgPool, end: &TryEnd<'_>) -> Result<Option<TryEnded>, sqlx::Error> {
    let finishes = end.state.is_finished();
    let rows = sqlx::query!(
        r#"WITH ended AS (
               UPDATE task_instance t SET state = $3, end_date = now(),
                      duration = extract(epoch FROM now() - t.start_date), rendered_config = $4,
                      next_retry_at = $5, updated_at = now()
                WHERE t.id = $1 AND t.owner = $2 AND t.state = 'running'
            RETURNING t.id, t.dag_run_id, t.dag_id),
           output AS (
               INSERT INTO xcom (task_instance_id, key, value)
               SELECT id, 'return_value', $6 FROM ended WHERE $6::jsonb IS NOT NULL
               ON CONFLICT (task_instance_id, key) DO UPDATE SET value = EXCLUDED.value),
           counted AS (
               -- The run by its key alone (its state is read from the row locked), so no plan
               -- can scan every open run to find it.
               UPDATE dag_run r
                  SET unfinished_tasks = r.unfinished_tasks
                                         - CASE WHEN r.state = 'running' THEN 1 ELSE 0 END
                WHERE r.id = (SELECT dag_run_id FROM ended) AND $7
            RETURNING CASE WHEN r.state = 'running' THEN r.unfinished_tasks END AS unfinished)
           SELECT e.dag_run_id AS "dag_run_id!", r.state AS "run_state!: RunState",
                  r.clear_number AS "clear_number!", r.unfinished_tasks AS "unfinished_seen!",
                  c.unfinished AS "unfinished_now?",
                  d.max_active_tasks AS "max_active_tasks!", d.max_active_runs AS "max_active_runs!",
                  t.id AS "ti_id?", t.task_id AS "ti_task_id?", t.state AS "ti_state?: TaskState"
             FROM ended e JOIN dag_run r ON r.id = e.dag_run_id JOIN dag d ON d.dag_id = e.dag_id
             LEFT JOIN counted c ON TRUE
             LEFT JOIN task_instance t ON t.dag_run_id = e.dag_run_id AND t.task_id = ANY($8)"#,
        end.task_instance_id,
        end.owner,
        end.state as _,
        end.rendered_config,
        end.next_retry_at,
        end.output,
        finishes,
        end.read_back,
    )
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut ended = TryEnded {
        dag_run_id: first.dag_run_id,
        run_state: first.run_state,
        clear_number: first.clear_number,
        unfinished_seen: first.unfinished_seen,
        unfinished_now: first.unfinished_now,
        max_active_tasks: first.max_active_tasks,
        max_active_runs: first.max_active_runs,
        rows: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        if let (Some(id), Some(task_id), Some(state)) = (row.ti_id, row.ti_task_id, row.ti_state) {
            ended.rows.push(TaskStateRow { id, task_id, state });
        }
    }
    Ok(Some(ended))
}

/// Refreshes the heartbeat of every try `owner` runs; returns their ids (a try missing from
/// the list is no longer ours: cleared, marked or reaped).
pub async fn heartbeat(pool: &PgPool, owner: &str) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE task_instance SET heartbeat_at = now()
          WHERE owner = $1 AND state = 'running' AND heartbeat_at IS NOT NULL RETURNING id",
        owner
    )
    .fetch_all(pool)
    .await
}

/// Hands a try back for retry without counting it (`max_tries + 1`): the stop was the
/// process's, not the task's.
pub async fn release(pool: &PgPool, task_instance_id: i64, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE task_instance SET state = 'up_for_retry', next_retry_at = now(),
                max_tries = max_tries + 1, end_date = now(), updated_at = now()
          WHERE id = $1 AND owner = $2 AND state = 'running'",
        task_instance_id,
        owner,
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// A try taken from a process that stopped heartbeating.
#[derive(Debug, Clone)]
pub struct Reaped {
    pub id: i64,
    pub dag_run_id: i64,
    pub dag_id: String,
    pub state: TaskState,
    pub owner: Option<String>,
}

/// Tries whose heartbeat is older than `threshold` belong to a dead process: they go to
/// `up_for_retry` (due now: the failure was not the task's) or to `failed` without retries
/// left, with a log line saying so. A failed one lowers its run's unfinished count.
pub async fn reap_stale(pool: &PgPool, threshold: Duration) -> Result<Vec<Reaped>, sqlx::Error> {
    sqlx::query_as!(
        Reaped,
        r#"WITH reaped AS (
               UPDATE task_instance SET
                      state = CASE WHEN try_number <= max_tries THEN 'up_for_retry' ELSE 'failed' END,
                      next_retry_at = now(), end_date = now(),
                      duration = extract(epoch FROM now() - start_date), updated_at = now()
                WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
            RETURNING id, dag_run_id, dag_id, state, owner, try_number),
           logged AS (
               INSERT INTO task_log (task_instance_id, try_number, line)
               SELECT id, try_number, 'try abandoned: its process stopped heartbeating'
                 FROM reaped),
           counted AS (
               UPDATE dag_run r SET unfinished_tasks = r.unfinished_tasks - f.failed
                 FROM (SELECT dag_run_id, count(*) AS failed FROM reaped
                        WHERE state = 'failed' GROUP BY dag_run_id) f
                WHERE r.id = f.dag_run_id AND r.state = 'running')
           SELECT id, dag_run_id, dag_id, state AS "state: TaskState", owner FROM reaped"#,
        threshold.as_secs_f64(),
    )
    .fetch_all(pool)
    .await
}

/// `up_for_retry` tries whose delay is over become `scheduled` again; returns their DAGs.
pub async fn promote_due_retries(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE task_instance SET state = 'scheduled', updated_at = now()
          WHERE state = 'up_for_retry' AND next_retry_at <= now() RETURNING dag_id"
    )
    .fetch_all(pool)
    .await
}
