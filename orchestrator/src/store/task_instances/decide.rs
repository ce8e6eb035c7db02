//! Decisions applied to a run's task instances, and queueing within `max_active_tasks`.

use sqlx::{PgConnection, PgPool};

use crate::dag::TaskState;
use crate::store::{channels, notify};

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
    pub dag_run_id: i64,
    pub task_id: String,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
}

/// One run's decisions, taken from its states at `clear_number`.
#[derive(Debug, Clone)]
pub struct RunDecisions {
    pub dag_run_id: i64,
    pub clear_number: i32,
    pub decisions: Decisions,
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
    let run = RunDecisions {
        dag_run_id,
        clear_number,
        decisions: decisions.clone(),
    };
    apply_decisions_of_runs(executor, owner, std::slice::from_ref(&run)).await
}

/// `apply_decisions` for several runs in one statement (the executor batches hand-offs).
pub async fn apply_decisions_of_runs<'e, E>(
    executor: E,
    owner: &str,
    runs: &[RunDecisions],
) -> Result<Vec<Decided>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    // Rows in key order: two processes' batches never wait for each other in a cycle.
    let mut rows: Vec<(i64, i64, i32, TaskState)> = runs
        .iter()
        .flat_map(|run| {
            let decisions = &run.decisions;
            decisions
                .ids
                .iter()
                .zip(&decisions.states)
                .map(|(&id, &state)| (id, run.dag_run_id, run.clear_number, state))
        })
        .collect();
    rows.sort_by_key(|row| row.0);
    let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
    let run_ids: Vec<i64> = rows.iter().map(|row| row.1).collect();
    let clear_numbers: Vec<i32> = rows.iter().map(|row| row.2).collect();
    let states: Vec<TaskState> = rows.iter().map(|row| row.3).collect();
    let finished: Vec<bool> = states.iter().map(|s| s.is_finished()).collect();
    sqlx::query_as!(
        Decided,
        // The runs by their keys alone, locked (KEY SHARE waits only for a clear or a mark,
        // FOR UPDATE, not for other tries' ends) in key order; their state and clear number are
        // checked on the rows as locked (the latest), so no plan scans every open run.
        r#"WITH runs AS (
               SELECT r.id, r.state, r.clear_number FROM dag_run r
                WHERE r.id = ANY (ARRAY(SELECT DISTINCT unnest($1::bigint[])))
                ORDER BY r.id FOR KEY SHARE)
           UPDATE task_instance t SET state = d.state, updated_at = now(), duration = NULL,
                  next_retry_at = NULL,
                  end_date = CASE WHEN d.finished THEN now() END,
                  queued_at = CASE WHEN d.state IN ('queued', 'running') THEN now()
                                   ELSE t.queued_at END,
                  owner = CASE WHEN d.state = 'running' THEN $3 ELSE t.owner END,
                  heartbeat_at = CASE WHEN d.state = 'running' THEN now() ELSE t.heartbeat_at END,
                  start_date = CASE WHEN d.state = 'running' THEN now() ELSE t.start_date END,
                  try_number = t.try_number + CASE WHEN d.state = 'running' THEN 1 ELSE 0 END
             FROM unnest($1::bigint[], $2::int[], $4::bigint[], $5::text[], $6::bool[])
                      AS d(run_id, clear_number, id, state, finished)
             JOIN runs ON runs.id = d.run_id
            -- `t.id = ANY`: the rows by their keys, whatever the plan makes of the join.
            WHERE runs.state = 'running' AND runs.clear_number = d.clear_number
              AND t.id = ANY ($4) AND t.id = d.id AND t.dag_run_id = d.run_id
              AND t.state = 'none'
        RETURNING t.id, t.dag_run_id, t.task_id, t.state AS "state: TaskState", t.try_number,
                  t.max_tries"#,
        &run_ids,
        &clear_numbers,
        owner,
        &ids,
        &states as _,
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

/// Those of `dag_ids` with task instances waiting for a `max_active_tasks` slot.
pub async fn waiting_among(pool: &PgPool, dag_ids: &[String]) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT DISTINCT dag_id FROM task_instance WHERE state = 'scheduled' AND dag_id = ANY($1)",
        dag_ids
    )
    .fetch_all(pool)
    .await
}

/// DAGs with task instances waiting for a slot.
pub async fn dags_with_waiting(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT DISTINCT dag_id FROM task_instance WHERE state = 'scheduled'")
        .fetch_all(pool)
        .await
}
