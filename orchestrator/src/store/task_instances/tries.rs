//! Tries: claims, the ends of tries, the tries a process owns, releases, the reaper, due
//! retries.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::{Decided, TaskStateRow};
use crate::dag::{Dag, RunState, TaskState};
use crate::store::dags::to_i32;

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

/// Claims up to `limit` queued task instances for `owner`: by priority weight (Airflow's: a
/// task with more below it first), then oldest run first (a running run's next task does not
/// wait behind a newer run's wide fan-out). One statement; the pick is a
/// materialised CTE so it runs exactly once (an `IN (subquery LIMIT n)` may be evaluated again
/// by the planner and claim more than `n` rows).
pub async fn claim(
    executor: impl sqlx::PgExecutor<'_>,
    owner: &str,
    limit: i64,
) -> Result<Vec<ClaimedTry>, sqlx::Error> {
    sqlx::query_as!(
        ClaimedTry,
        // Rows and runs by their keys (an array, a lateral lookup): a generic plan for an
        // unknown LIMIT may otherwise join by scanning every task instance.
        r#"WITH picked AS MATERIALIZED (
               SELECT id FROM task_instance WHERE state = 'queued'
                ORDER BY priority_weight DESC, dag_run_id, id
                LIMIT $2 FOR UPDATE SKIP LOCKED),
           claimed AS (
               UPDATE task_instance t SET state = 'running', owner = $1, heartbeat_at = now(),
                      try_number = t.try_number + 1, start_date = now(), end_date = NULL,
                      duration = NULL, next_retry_at = NULL, updated_at = now()
                -- Picked rows are locked and were `queued` when locked: no state check here,
                -- which would plan a scan of the whole queue.
                WHERE t.id = ANY (ARRAY(SELECT id FROM picked))
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
    .fetch_all(executor)
    .await
}

/// The end of a try.
#[derive(Debug, Clone)]
pub struct TryEnd {
    pub task_instance_id: i64,
    /// `success`, `failed` or `up_for_retry`.
    pub state: TaskState,
    /// The config the operator received (templates rendered).
    pub rendered_config: Option<Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The operator's output, stored as the `return_value` XCom.
    pub output: Option<Value>,
    /// The tasks of the run whose states the caller needs back.
    pub read_back: Vec<String>,
    /// Downstream tasks decided by this end alone, claimed in the same statement.
    pub decided_downstream: Option<DecidedDownstream>,
}

/// Downstream tasks whose only upstream task is the one ending: their decision depends on this
/// end alone, so the end claims them for the owner in the same statement (no hand-off round
/// trip). Applied only to tasks still `none`, while the run is running, and while the DAG's
/// limits are still those the decision assumed (it was taken for a DAG whose
/// `max_active_tasks` cannot bind).
#[derive(Debug, Clone, Default)]
pub struct DecidedDownstream {
    pub task_ids: Vec<String>,
    pub max_active_tasks: i32,
    pub max_active_runs: i32,
}

impl DecidedDownstream {
    /// `task_ids` of a run of `dag` (its limits as the decision assumed them).
    pub fn new(dag: &Dag, task_ids: &[&str]) -> Self {
        DecidedDownstream {
            task_ids: task_ids.iter().map(|task_id| task_id.to_string()).collect(),
            max_active_tasks: to_i32(dag.max_active_tasks),
            max_active_runs: to_i32(dag.max_active_runs),
        }
    }
}

/// What the end of a try found, read in the same statement.
#[derive(Debug, Clone)]
pub struct TryEnded {
    pub task_instance_id: i64,
    pub dag_run_id: i64,
    pub dag_id: String,
    /// The run as this statement's snapshot saw it.
    pub run_state: RunState,
    pub clear_number: i32,
    pub unfinished_seen: i32,
    /// The run's unfinished count after this statement's ends, read under the run row's lock:
    /// every end committed before them is counted. `None` when they finished nothing, or the
    /// run stopped running meanwhile.
    pub unfinished_now: Option<i32>,
    /// How many tries of this run the statement finished.
    pub ended_in_run: i32,
    /// This end left the run without unfinished tasks (one end per run says so): its caller
    /// ends the run.
    pub closes_run: bool,
    pub max_active_tasks: i32,
    pub max_active_runs: i32,
    /// The `read_back` tasks as the snapshot saw them (tries ended by the statement still
    /// `running`).
    pub rows: Vec<TaskStateRow>,
    /// The `decided_downstream` tasks the statement claimed.
    pub decided_downstream: Vec<Decided>,
}

impl TryEnded {
    /// Whether an end of another try of the run, not made by this statement, committed after
    /// its snapshot: then `rows` may be stale.
    pub fn missed_an_end(&self) -> bool {
        self.unfinished_now
            .is_some_and(|now| now + self.ended_in_run != self.unfinished_seen)
    }
}

/// Stores the ends of tries, each only if its row is still `owner`'s, their outputs as XCom,
/// and lowers each run's unfinished count by the tries that finished a task. One statement for
/// many ends: the ends of one run's tries then cost the run row one update. Returns one entry
/// per end, in order; `None`: the row is no longer ours.
pub async fn end_tries(
    executor: impl sqlx::PgExecutor<'_>,
    owner: &str,
    ends: &[TryEnd],
) -> Result<Vec<Option<TryEnded>>, sqlx::Error> {
    Ok(end_tries_and_claim(executor, owner, ends, 0).await?.ended)
}

/// What [`end_tries_and_claim`] stored and claimed.
#[derive(Debug, Default)]
pub struct EndsAndClaims {
    /// One entry per end, in order; `None`: the row is no longer ours.
    pub ended: Vec<Option<TryEnded>>,
    /// Queued task instances claimed for `owner`, as [`claim`] picks them.
    pub claimed: Vec<ClaimedTry>,
}

/// [`end_tries`], and in the same statement [`claim`] of up to `claim_limit` queued task
/// instances for `owner`: the slots the ends free are filled without another round trip.
pub async fn end_tries_and_claim(
    executor: impl sqlx::PgExecutor<'_>,
    owner: &str,
    ends: &[TryEnd],
    claim_limit: i64,
) -> Result<EndsAndClaims, sqlx::Error> {
    let ids: Vec<i64> = ends.iter().map(|end| end.task_instance_id).collect();
    let states: Vec<TaskState> = ends.iter().map(|end| end.state).collect();
    let rendered: Vec<Option<Value>> = ends.iter().map(|e| e.rendered_config.clone()).collect();
    let retries: Vec<Option<DateTime<Utc>>> = ends.iter().map(|end| end.next_retry_at).collect();
    let outputs: Vec<Option<Value>> = ends.iter().map(|end| end.output.clone()).collect();
    let finishes: Vec<bool> = ends.iter().map(|end| end.state.is_finished()).collect();
    let (read_ids, read_tasks): (Vec<i64>, Vec<String>) = ends
        .iter()
        .flat_map(|end| {
            end.read_back
                .iter()
                .map(|task_id| (end.task_instance_id, task_id.clone()))
        })
        .unzip();
    let mut ahead = DownstreamColumns::default();
    for end in ends {
        if let Some(decided) = &end.decided_downstream {
            for task_id in &decided.task_ids {
                ahead.ended_ids.push(end.task_instance_id);
                ahead.task_ids.push(task_id.clone());
                ahead.max_active_tasks.push(decided.max_active_tasks);
                ahead.max_active_runs.push(decided.max_active_runs);
            }
        }
    }
    let rows = sqlx::query!(
        // Each row's values by its position in the arrays: a join with the arrays unnested
        // is planned (generically) as a nested loop that rescans them once per row.
        r#"WITH ended AS (
               UPDATE task_instance t
                  SET state = ($3::text[])[array_position($2::bigint[], t.id)], end_date = now(),
                      duration = extract(epoch FROM now() - t.start_date),
                      rendered_config = ($4::jsonb[])[array_position($2, t.id)],
                      next_retry_at = ($5::timestamptz[])[array_position($2, t.id)],
                      updated_at = now()
                WHERE t.id = ANY ($2) AND t.owner = $1 AND t.state = 'running'
            RETURNING t.id, t.dag_run_id, t.dag_id,
                      ($7::bool[])[array_position($2, t.id)] AS finishes,
                      ($6::jsonb[])[array_position($2, t.id)] AS output),
           output AS (
               INSERT INTO xcom (task_instance_id, key, value)
               SELECT id, 'return_value', output FROM ended WHERE output IS NOT NULL
               ON CONFLICT (task_instance_id, key) DO UPDATE SET value = EXCLUDED.value),
           finished AS (
               SELECT dag_run_id, (count(*) FILTER (WHERE finishes))::int AS n
                 FROM ended GROUP BY dag_run_id),
           locked AS (
               -- Runs by key, locked in key order: batches of two processes never wait for
               -- each other in a cycle, and no plan scans every open run.
               SELECT r.id, r.state FROM dag_run r
                WHERE r.id = ANY (ARRAY(SELECT dag_run_id FROM finished WHERE n > 0))
                ORDER BY r.id FOR NO KEY UPDATE),
           counted AS (
               UPDATE dag_run r
                  SET unfinished_tasks = r.unfinished_tasks
                                         - CASE WHEN r.state = 'running' THEN f.n ELSE 0 END
                 FROM locked l, finished f
                WHERE r.id = l.id AND f.dag_run_id = l.id
            RETURNING r.id, CASE WHEN r.state = 'running' THEN r.unfinished_tasks END AS unfinished),
           ahead AS (
               UPDATE task_instance t SET state = 'running', owner = $1, heartbeat_at = now(),
                      queued_at = now(), start_date = now(), try_number = t.try_number + 1,
                      end_date = NULL, duration = NULL, next_retry_at = NULL, updated_at = now()
                 FROM unnest($10::bigint[], $11::text[], $12::int[], $13::int[])
                          AS a(ended_id, task_id, max_active_tasks, max_active_runs)
                 JOIN ended e ON e.id = a.ended_id
                 JOIN locked l ON l.id = e.dag_run_id
                 JOIN dag d ON d.dag_id = e.dag_id
                WHERE l.state = 'running' AND d.max_active_tasks = a.max_active_tasks
                  AND d.max_active_runs = a.max_active_runs
                  AND t.dag_run_id = e.dag_run_id AND t.task_id = a.task_id AND t.state = 'none'
            RETURNING a.ended_id, t.id, t.task_id, t.state, t.try_number, t.max_tries),
           extra AS (
               SELECT rb.ended_id, t.id, t.task_id, t.state, NULL::int AS try_number,
                      NULL::int AS max_tries, false AS decided
                 FROM unnest($8::bigint[], $9::text[]) AS rb(ended_id, task_id)
                 JOIN ended e ON e.id = rb.ended_id
                 JOIN task_instance t ON t.dag_run_id = e.dag_run_id AND t.task_id = rb.task_id
               UNION ALL
               SELECT ended_id, id, task_id, state, try_number, max_tries, true FROM ahead),
           -- Each run read once (a busy run row is slow to find: its versions are many).
           seen AS MATERIALIZED (
               SELECT r.id, r.state, r.clear_number, r.unfinished_tasks FROM dag_run r
                WHERE r.id = ANY (ARRAY(SELECT dag_run_id FROM finished))),
           -- The claim of `claim` (queued rows: none of them is ended or claimed ahead above).
           picked AS MATERIALIZED (
               SELECT id FROM task_instance WHERE state = 'queued'
                ORDER BY priority_weight DESC, dag_run_id, id
                LIMIT $14 FOR UPDATE SKIP LOCKED),
           claimed AS (
               UPDATE task_instance t SET state = 'running', owner = $1, heartbeat_at = now(),
                      try_number = t.try_number + 1, start_date = now(), end_date = NULL,
                      duration = NULL, next_retry_at = NULL, updated_at = now()
                WHERE t.id = ANY (ARRAY(SELECT id FROM picked))
            RETURNING t.id, t.dag_run_id, t.dag_id, t.run_id, t.task_id, t.try_number,
                      t.max_tries)
           -- One row per end, per run, per task read back or claimed ahead, per claim, put
           -- together in Rust: joins of these CTEs (each estimated at one row) are planned as
           -- nested loops that rescan one once per row of the other.
           SELECT 'end' AS "kind!", e.id AS "id?", e.dag_run_id AS "dag_run_id?",
                  e.dag_id AS "dag_id?", NULL::text AS "run_state?: RunState",
                  NULL::int AS "clear_number?", NULL::int AS "unfinished_seen?",
                  NULL::int AS "unfinished_now?", NULL::int AS "ended_in_run?",
                  d.max_active_tasks AS "max_active_tasks?", d.max_active_runs AS "max_active_runs?",
                  NULL::bigint AS "ti_id?", NULL::text AS "ti_task_id?",
                  NULL::text AS "ti_state?: TaskState", NULL::int AS "ti_try_number?",
                  NULL::int AS "ti_max_tries?", NULL::bool AS "ti_decided?",
                  NULL::bigint AS "claimed_id?", NULL::text AS "claimed_run_id?",
                  NULL::timestamptz AS "logical_date?", NULL::timestamptz AS "data_interval_start?",
                  NULL::timestamptz AS "data_interval_end?", NULL::jsonb AS "conf?",
                  NULL::bigint AS "dag_version_id?"
             FROM ended e
             JOIN dag d ON d.dag_id = e.dag_id
           UNION ALL
           SELECT 'run', NULL, r.id, NULL, r.state, r.clear_number, r.unfinished_tasks,
                  c.unfinished, f.n, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                  NULL, NULL, NULL, NULL, NULL
             FROM seen r
             JOIN finished f ON f.dag_run_id = r.id
             LEFT JOIN counted c ON c.id = r.id
           UNION ALL
           SELECT 'task', x.ended_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                  x.id, x.task_id, x.state, x.try_number, x.max_tries, x.decided, NULL, NULL, NULL,
                  NULL, NULL, NULL, NULL
             FROM extra x
           UNION ALL
           SELECT 'claim', NULL, c.dag_run_id, c.dag_id, NULL, NULL, NULL, NULL, NULL, NULL,
                  NULL, NULL, c.task_id, NULL, c.try_number, c.max_tries, NULL,
                  c.id, c.run_id, r.logical_date, r.data_interval_start, r.data_interval_end,
                  r.conf, r.dag_version_id
             FROM claimed c
            CROSS JOIN LATERAL (SELECT * FROM dag_run WHERE id = c.dag_run_id OFFSET 0) r"#,
        owner,
        &ids,
        &states as _,
        &rendered as _,
        &retries as _,
        &outputs as _,
        &finishes,
        &read_ids,
        &read_tasks,
        &ahead.ended_ids,
        &ahead.task_ids,
        &ahead.max_active_tasks,
        &ahead.max_active_runs,
        claim_limit,
    )
    .fetch_all(executor)
    .await?;
    let mut found: Vec<(i64, i64, String, i32, i32)> = Vec::new();
    let mut seen_runs: HashMap<i64, SeenRun> = HashMap::new();
    let mut seen_tasks: HashMap<i64, Vec<SeenTask>> = HashMap::new();
    let mut claimed = Vec::new();
    for row in rows {
        match row.kind.as_str() {
            "end" => {
                if let (Some(id), Some(dag_run_id), Some(dag_id), Some(tasks), Some(runs)) = (
                    row.id,
                    row.dag_run_id,
                    row.dag_id,
                    row.max_active_tasks,
                    row.max_active_runs,
                ) {
                    found.push((id, dag_run_id, dag_id, tasks, runs));
                }
            }
            "run" => {
                if let (
                    Some(dag_run_id),
                    Some(state),
                    Some(clear_number),
                    Some(unfinished_seen),
                    Some(ended_in_run),
                ) = (
                    row.dag_run_id,
                    row.run_state,
                    row.clear_number,
                    row.unfinished_seen,
                    row.ended_in_run,
                ) {
                    let run = SeenRun {
                        state,
                        clear_number,
                        unfinished_seen,
                        unfinished_now: row.unfinished_now,
                        ended_in_run,
                    };
                    seen_runs.insert(dag_run_id, run);
                }
            }
            "task" => {
                if let (Some(ended_id), Some(id), Some(task_id), Some(state)) =
                    (row.id, row.ti_id, row.ti_task_id, row.ti_state)
                {
                    let claimed = match (row.ti_decided, row.ti_try_number, row.ti_max_tries) {
                        (Some(true), Some(try_number), Some(max_tries)) => {
                            Some((try_number, max_tries))
                        }
                        _ => None,
                    };
                    seen_tasks.entry(ended_id).or_default().push(SeenTask {
                        id,
                        task_id,
                        state,
                        claimed,
                    });
                }
            }
            "claim" => {
                let claim = (
                    row.claimed_id,
                    row.dag_run_id,
                    row.dag_id,
                    row.claimed_run_id,
                    row.ti_task_id,
                    row.ti_try_number,
                    row.ti_max_tries,
                    row.logical_date,
                    row.data_interval_start,
                    row.data_interval_end,
                    row.conf,
                    row.dag_version_id,
                );
                if let (
                    Some(id),
                    Some(dag_run_id),
                    Some(dag_id),
                    Some(run_id),
                    Some(task_id),
                    Some(try_number),
                    Some(max_tries),
                    Some(logical_date),
                    Some(data_interval_start),
                    Some(data_interval_end),
                    Some(conf),
                    Some(dag_version_id),
                ) = claim
                {
                    claimed.push(ClaimedTry {
                        id,
                        dag_run_id,
                        dag_id,
                        run_id,
                        task_id,
                        try_number,
                        max_tries,
                        logical_date,
                        data_interval_start,
                        data_interval_end,
                        conf,
                        dag_version_id,
                    });
                }
            }
            _ => {}
        }
    }
    let mut by_id: HashMap<i64, TryEnded> = HashMap::new();
    for (id, dag_run_id, dag_id, max_active_tasks, max_active_runs) in found {
        let Some(run) = seen_runs.get(&dag_run_id) else {
            continue;
        };
        let mut ended = TryEnded {
            task_instance_id: id,
            dag_run_id,
            dag_id,
            run_state: run.state,
            clear_number: run.clear_number,
            unfinished_seen: run.unfinished_seen,
            unfinished_now: run.unfinished_now,
            ended_in_run: run.ended_in_run,
            closes_run: false,
            max_active_tasks,
            max_active_runs,
            rows: Vec::new(),
            decided_downstream: Vec::new(),
        };
        for task in seen_tasks.remove(&id).unwrap_or_default() {
            match task.claimed {
                Some((try_number, max_tries)) => ended.decided_downstream.push(Decided {
                    id: task.id,
                    dag_run_id,
                    task_id: task.task_id,
                    state: task.state,
                    try_number,
                    max_tries,
                }),
                None => ended.rows.push(TaskStateRow {
                    id: task.id,
                    task_id: task.task_id,
                    state: task.state,
                }),
            }
        }
        by_id.insert(id, ended);
    }
    // Of the ends that emptied a run, the last one (by id) closes it.
    let mut closers: HashMap<i64, i64> = HashMap::new();
    for (end, ended) in ends
        .iter()
        .filter_map(|end| Some((end, by_id.get(&end.task_instance_id)?)))
    {
        if end.state.is_finished() && ended.unfinished_now == Some(0) {
            let closer = closers
                .entry(ended.dag_run_id)
                .or_insert(ended.task_instance_id);
            *closer = (*closer).max(ended.task_instance_id);
        }
    }
    for closer in closers.values() {
        if let Some(ended) = by_id.get_mut(closer) {
            ended.closes_run = true;
        }
    }
    Ok(EndsAndClaims {
        ended: ids.iter().map(|id| by_id.remove(id)).collect(),
        claimed,
    })
}

/// A run of a batch of ends, as [`end_tries_and_claim`] read it.
struct SeenRun {
    state: RunState,
    clear_number: i32,
    unfinished_seen: i32,
    unfinished_now: Option<i32>,
    ended_in_run: i32,
}

/// A task read back or claimed ahead for an end; `claimed`: the claimed try's
/// `(try_number, max_tries)`.
struct SeenTask {
    id: i64,
    task_id: String,
    state: TaskState,
    claimed: Option<(i32, i32)>,
}

/// [`DecidedDownstream`] of a batch of ends, as columns.
#[derive(Default)]
struct DownstreamColumns {
    ended_ids: Vec<i64>,
    task_ids: Vec<String>,
    max_active_tasks: Vec<i32>,
    max_active_runs: Vec<i32>,
}

/// The tries `owner` runs, as the store has them (a try missing from the list is no longer
/// ours: cleared, marked or reaped).
pub async fn owned(pool: &PgPool, owner: &str) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM task_instance
          WHERE owner = $1 AND state = 'running' AND heartbeat_at IS NOT NULL",
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

/// Tries of a process whose heartbeat is older than `threshold` (or that is gone from
/// `scheduler_process`) belong to a dead process: they go to `up_for_retry` (due now: the
/// failure was not the task's) or to `failed` without retries left, with a log line saying
/// so. A failed one lowers its run's unfinished count.
pub async fn reap_stale(pool: &PgPool, threshold: Duration) -> Result<Vec<Reaped>, sqlx::Error> {
    sqlx::query_as!(
        Reaped,
        r#"WITH reaped AS (
               UPDATE task_instance SET
                      state = CASE WHEN try_number <= max_tries THEN 'up_for_retry' ELSE 'failed' END,
                      next_retry_at = now(), end_date = now(),
                      duration = extract(epoch FROM now() - start_date), updated_at = now()
                WHERE state = 'running' AND heartbeat_at IS NOT NULL
                  AND NOT EXISTS (
                      SELECT 1 FROM scheduler_process p
                       WHERE p.id = task_instance.owner
                         AND p.heartbeat_at >= now() - make_interval(secs => $1))
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

/// `up_for_retry` tries whose delay is over become `scheduled` again, the try that failed kept
/// in `task_try`; returns their DAGs.
pub async fn promote_due_retries(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH due AS (
               UPDATE task_instance SET state = 'scheduled', updated_at = now()
                WHERE state = 'up_for_retry' AND next_retry_at <= now()
            RETURNING id, dag_id, try_number, queued_at, start_date, end_date, owner),
           kept AS (
               INSERT INTO task_try (task_instance_id, try_number, state, queued_at, start_date,
                                     end_date, owner)
               SELECT id, try_number, 'up_for_retry', queued_at, start_date, end_date, owner
                 FROM due WHERE try_number > 0
               ON CONFLICT DO NOTHING)
           SELECT dag_id AS "dag_id!" FROM due"#
    )
    .fetch_all(pool)
    .await
}
