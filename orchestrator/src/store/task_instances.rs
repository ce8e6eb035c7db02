//! `task_instance` rows: creation for a run, decisions applied, queueing within
//! `max_active_tasks`, claims, heartbeats, the end of a try, the reaper, Airflow's clear and
//! mark. The web's read-models of task instances are in `views.rs`.
//!
//! Every statement that changes task states declares its [`Transition`] in [`TRANSITIONS`];
//! a test checks each against the one transition table (`dag::state::allowed`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::{channels, notify};
use crate::dag::{Dag, RunState, TaskState, Transition};

mod views;
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

/// Every state change the store writes, by the function that writes it.
pub const TRANSITIONS: &[(&str, Transition)] = &[
    (
        "apply_decisions: run",
        Transition {
            from: &[NoneState],
            via: &[],
            to: Scheduled,
        },
    ),
    (
        "apply_decisions: queue",
        Transition {
            from: &[NoneState],
            via: &[Scheduled],
            to: Queued,
        },
    ),
    (
        "apply_decisions: claim",
        Transition {
            from: &[NoneState],
            via: &[Scheduled, Queued],
            to: Running,
        },
    ),
    (
        "apply_decisions: skip",
        Transition {
            from: &[NoneState],
            via: &[],
            to: Skipped,
        },
    ),
    (
        "apply_decisions: upstream failed",
        Transition {
            from: &[NoneState],
            via: &[],
            to: UpstreamFailed,
        },
    ),
    (
        "queue_waiting",
        Transition {
            from: &[Scheduled],
            via: &[],
            to: Queued,
        },
    ),
    (
        "claim",
        Transition {
            from: &[Queued],
            via: &[],
            to: Running,
        },
    ),
    (
        "end_try: success",
        Transition {
            from: &[Running],
            via: &[],
            to: Success,
        },
    ),
    (
        "end_try: failed",
        Transition {
            from: &[Running],
            via: &[],
            to: Failed,
        },
    ),
    (
        "end_try: retry",
        Transition {
            from: &[Running],
            via: &[],
            to: UpForRetry,
        },
    ),
    (
        "release",
        Transition {
            from: &[Running],
            via: &[],
            to: UpForRetry,
        },
    ),
    (
        "reap_stale: retry",
        Transition {
            from: &[Running],
            via: &[],
            to: UpForRetry,
        },
    ),
    (
        "reap_stale: failed",
        Transition {
            from: &[Running],
            via: &[],
            to: Failed,
        },
    ),
    (
        "promote_due_retries",
        Transition {
            from: &[UpForRetry],
            via: &[],
            to: Scheduled,
        },
    ),
    (
        "reset_for_clear",
        Transition {
            from: ANY_STATE_BUT_NONE,
            via: &[],
            to: NoneState,
        },
    ),
    (
        "mark_run: success",
        Transition {
            from: UNFINISHED,
            via: &[],
            to: Success,
        },
    ),
    (
        "mark_run: failed",
        Transition {
            from: &[Running],
            via: &[],
            to: Failed,
        },
    ),
    (
        "mark_run: skipped",
        Transition {
            from: &[NoneState, Scheduled, Queued, UpForRetry],
            via: &[],
            to: Skipped,
        },
    ),
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

/// Creates the run's task instances (state `none`) from its pinned DAG version. Existing rows
/// are kept (a cleared run restarts with its history).
pub async fn create_for_run(
    conn: &mut PgConnection,
    dag: &Dag,
    dag_run_id: i64,
    run_id: &str,
) -> Result<u64, sqlx::Error> {
    let task_ids: Vec<String> = dag.tasks.iter().map(|t| t.task_id.clone()).collect();
    let operators: Vec<String> = dag.tasks.iter().map(|t| t.operator.clone()).collect();
    let max_tries: Vec<i32> = dag
        .tasks
        .iter()
        .map(|t| i32::try_from(t.retry.retries).unwrap_or(i32::MAX))
        .collect();
    let result = sqlx::query!(
        "INSERT INTO task_instance (dag_run_id, dag_id, run_id, task_id, operator, max_tries)
         SELECT $1, $2, $3, t.task_id, t.operator, t.max_tries
           FROM unnest($4::text[], $5::text[], $6::int[]) AS t(task_id, operator, max_tries)
         ON CONFLICT (dag_run_id, task_id) DO NOTHING",
        dag_run_id,
        dag.dag_id,
        run_id,
        &task_ids,
        &operators,
        &max_tries,
    )
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
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

/// Decisions for a run's `none` task instances, to apply together.
#[derive(Debug, Default, Clone)]
pub struct Decisions {
    pub ids: Vec<i64>,
    /// `scheduled`, `queued`, `running` (claimed by `owner`), `skipped` or `upstream_failed`.
    pub states: Vec<TaskState>,
}

impl Decisions {
    pub fn push(&mut self, id: i64, state: TaskState) {
        self.ids.push(id);
        self.states.push(state);
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A task instance a decision changed.
#[derive(Debug, Clone)]
pub struct Decided {
    pub id: i64,
    pub task_id: String,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
}

/// Applies decisions taken from the run's states at `clear_number`, unless the run has stopped
/// running or been cleared or marked since (it then applies nothing), and only to task
/// instances still `none`. A task decided `running` is claimed by `owner` in the same write.
/// Returns the task instances changed.
pub async fn apply_decisions<'e, E>(
    executor: E,
    dag_run_id: i64,
    clear_number: i32,
    owner: &str,
    decisions: &Decisions,
) -> Result<Vec<Decided>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let finished: Vec<bool> = decisions.states.iter().map(|s| s.is_finished()).collect();
    // KEY SHARE waits only for a clear or a mark (FOR UPDATE), not for other tries' ends.
    sqlx::query_as!(
        Decided,
        r#"WITH run AS (
               SELECT r.id FROM dag_run r
                WHERE r.id = $1 AND r.state = 'running' AND r.clear_number = $2
                  FOR KEY SHARE)
           UPDATE task_instance t SET state = d.state, updated_at = now(), duration = NULL,
                  next_retry_at = NULL,
                  end_date = CASE WHEN d.finished THEN now() END,
                  queued_at = CASE WHEN d.state IN ('queued', 'running') THEN now()
                                   ELSE t.queued_at END,
                  owner = CASE WHEN d.state = 'running' THEN $3 ELSE t.owner END,
                  heartbeat_at = CASE WHEN d.state = 'running' THEN now() ELSE t.heartbeat_at END,
                  start_date = CASE WHEN d.state = 'running' THEN now() ELSE t.start_date END,
                  try_number = t.try_number + CASE WHEN d.state = 'running' THEN 1 ELSE 0 END
             FROM run, unnest($4::bigint[], $5::text[], $6::bool[]) AS d(id, state, finished)
            WHERE t.id = d.id AND t.state = 'none'
        RETURNING t.id, t.task_id, t.state AS "state: TaskState", t.try_number, t.max_tries"#,
        dag_run_id,
        clear_number,
        owner,
        &decisions.ids,
        &decisions.states as _,
        &finished,
    )
    .fetch_all(executor)
    .await
}

/// Takes the DAG's queueing lock for the caller's transaction: queueing within
/// `max_active_tasks` happens one process at a time per DAG, and every statement after the
/// lock reads what the previous holder committed. Take it before any run lock.
pub async fn lock_queue(conn: &mut PgConnection, dag_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext('updraft_queue:' || $1::text))",
        dag_id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// What [`queue_waiting_locked`] found and did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Admitted {
    /// Free `max_active_tasks` slots before queueing.
    pub free: i64,
    /// Waiting task instances queued into them.
    pub queued: i64,
}

impl Admitted {
    /// Slots still free after queueing.
    pub fn left(&self) -> i64 {
        (self.free - self.queued).max(0)
    }
}

/// Under [`lock_queue`]: queues the DAG's waiting (`scheduled`) task instances, oldest first,
/// into its free `max_active_tasks` slots. Counting a busy DAG's queued and running task
/// instances is costly; when its open runs hold no more unfinished tasks than the limit, none
/// can exceed it and the count is skipped.
pub async fn queue_waiting_locked(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<Admitted, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH limits AS (SELECT max_active_tasks AS max FROM dag WHERE dag_id = $1),
                free AS (
                  SELECT greatest(0, CASE
                    WHEN (SELECT coalesce(sum(unfinished_tasks), 0) FROM dag_run
                           WHERE dag_id = $1 AND state IN ('queued', 'running')) <= limits.max
                    THEN limits.max
                    ELSE limits.max - (SELECT count(*) FROM task_instance
                                        WHERE dag_id = $1 AND state IN ('queued', 'running'))
                  END) AS slots FROM limits),
                queued AS (
                  UPDATE task_instance SET state = 'queued', queued_at = now(), updated_at = now()
                   WHERE id IN (SELECT id FROM task_instance WHERE dag_id = $1 AND state = 'scheduled'
                                 ORDER BY id LIMIT (SELECT slots FROM free))
               RETURNING id)
           SELECT (SELECT slots FROM free) AS "free!", (SELECT count(*) FROM queued) AS "queued!""#,
        dag_id,
    )
    .fetch_one(conn)
    .await?;
    Ok(Admitted {
        free: row.free,
        queued: row.queued,
    })
}

/// Moves a DAG's `scheduled` task instances to `queued`, oldest first: all of them, or when its
/// `max_active_tasks` may bind (`bounded`), as many as it leaves room for. Returns how many were
/// queued (and wakes the executors when any were).
pub async fn queue_waiting(pool: &PgPool, dag_id: &str, bounded: bool) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let queued = if bounded {
        lock_queue(&mut tx, dag_id).await?;
        queue_waiting_locked(&mut tx, dag_id).await?.queued
    } else {
        let queued = sqlx::query!(
            "UPDATE task_instance SET state = 'queued', queued_at = now(), updated_at = now()
              WHERE dag_id = $1 AND state = 'scheduled'",
            dag_id
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        i64::try_from(queued).unwrap_or(i64::MAX)
    };
    if queued > 0 {
        notify(&mut *tx, channels::QUEUED, dag_id).await?;
    }
    tx.commit().await?;
    Ok(queued)
}

/// Whether the DAG has task instances waiting for a `max_active_tasks` slot.
pub async fn has_waiting(pool: &PgPool, dag_id: &str) -> Result<bool, sqlx::Error> {
    let waiting = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM task_instance WHERE dag_id = $1 AND state = 'scheduled')
               AS "waiting!""#,
        dag_id
    )
    .fetch_one(pool)
    .await?;
    Ok(waiting)
}

/// DAGs with task instances waiting for a slot.
pub async fn dags_with_waiting(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT DISTINCT dag_id FROM task_instance WHERE state = 'scheduled'")
        .fetch_all(pool)
        .await
}

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
        "WITH picked AS MATERIALIZED (
             SELECT id FROM task_instance WHERE state = 'queued' ORDER BY dag_run_id, id
              LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE task_instance t SET state = 'running', owner = $1, heartbeat_at = now(),
                try_number = t.try_number + 1, start_date = now(), end_date = NULL,
                duration = NULL, next_retry_at = NULL, updated_at = now()
           FROM picked p, dag_run r
          WHERE t.id = p.id AND r.id = t.dag_run_id AND t.state = 'queued'
      RETURNING t.id, t.dag_run_id, t.dag_id, t.run_id, t.task_id, t.try_number, t.max_tries,
                r.logical_date, r.data_interval_start, r.data_interval_end, r.conf,
                r.dag_version_id",
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
               UPDATE dag_run r SET unfinished_tasks = r.unfinished_tasks - 1
                 FROM ended e WHERE r.id = e.dag_run_id AND $7 AND r.state = 'running'
            RETURNING r.unfinished_tasks)
           SELECT e.dag_run_id AS "dag_run_id!", r.state AS "run_state!: RunState",
                  r.clear_number AS "clear_number!", r.unfinished_tasks AS "unfinished_seen!",
                  c.unfinished_tasks AS "unfinished_now?",
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
          WHERE owner = $1 AND state = 'running' RETURNING id",
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

/// A task instance a clear selects.
#[derive(Debug, Clone)]
pub struct Clearable {
    pub id: i64,
    pub task_id: String,
}

/// The task instances of a (locked) run among `task_ids` in one of `states`.
pub async fn clearable(
    conn: &mut PgConnection,
    dag_run_id: i64,
    task_ids: &[String],
    states: &[TaskState],
) -> Result<Vec<Clearable>, sqlx::Error> {
    sqlx::query_as!(
        Clearable,
        "SELECT id, task_id FROM task_instance
          WHERE dag_run_id = $1 AND task_id = ANY($2) AND state = ANY($3) ORDER BY id",
        dag_run_id,
        task_ids,
        states as _,
    )
    .fetch_all(conn)
    .await
}

/// Airflow's clear of task instances (by id): back to `none`, unclaimed, with `max_tries`
/// raised by each task's `retries` so their retries are available again.
pub async fn reset_for_clear(
    conn: &mut PgConnection,
    ids: &[i64],
    retries: &[i32],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE task_instance t SET state = 'none', owner = NULL, heartbeat_at = NULL,
                next_retry_at = NULL, queued_at = NULL, end_date = NULL, duration = NULL,
                max_tries = t.try_number + c.retries, updated_at = now()
           FROM unnest($1::bigint[], $2::int[]) AS c(id, retries)
          WHERE t.id = c.id AND t.state = ANY($3)",
        ids,
        retries,
        ANY_STATE_BUT_NONE as _,
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Airflow's "mark run success/failed" for the unfinished task instances of a (locked) run:
/// success makes them all `success`; failed makes running tries `failed` and the rest
/// `skipped`. A running try loses its claim and is cancelled at its next heartbeat.
pub async fn mark_unfinished(
    conn: &mut PgConnection,
    dag_run_id: i64,
    run_state: RunState,
) -> Result<(), sqlx::Error> {
    match run_state {
        RunState::Success => {
            sqlx::query!(
                "UPDATE task_instance SET state = 'success', end_date = now(), owner = NULL,
                        updated_at = now()
                  WHERE dag_run_id = $1 AND state = ANY($2)",
                dag_run_id,
                UNFINISHED as _,
            )
            .execute(conn)
            .await?;
        }
        RunState::Failed => {
            sqlx::query!(
                "UPDATE task_instance SET state = CASE WHEN state = 'running' THEN 'failed'
                                                      ELSE 'skipped' END,
                        end_date = now(), owner = NULL, updated_at = now()
                  WHERE dag_run_id = $1 AND state = ANY($2)",
                dag_run_id,
                UNFINISHED as _,
            )
            .execute(conn)
            .await?;
        }
        RunState::Queued | RunState::Running => {}
    }
    Ok(())
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
    }
}
