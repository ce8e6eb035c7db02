//! The periodic sweep: the safety net behind NOTIFY, plus the time-driven work (due retries,
//! due scheduled runs, the reaper of dead processes' tries).

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::PgPool;

use super::SchedulerConfig;
use super::decide::{advance_dag, advance_run, create_due_runs, queue_tasks};
use crate::store::{DagCache, StoreError};

pub(super) async fn sweep(
    pool: &PgPool,
    cache: &DagCache,
    config: &SchedulerConfig,
) -> Result<(), super::SchedulerError> {
    heartbeat_process(pool, &config.owner, config.reaper_threshold).await?;
    reap_stale(pool, cache, config.reaper_threshold).await?;
    promote_due_retries(pool).await?;
    // Due scheduled runs (and DAGs whose next run must be computed again).
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT dag_id FROM dag WHERE is_active AND NOT is_paused AND latest_version_id IS NOT NULL \
         AND (next_dagrun_checked_version IS DISTINCT FROM latest_version_id \
              OR next_dagrun_create_after <= now())",
    )
    .fetch_all(pool)
    .await?;
    for dag_id in &due {
        create_due_runs(pool, cache, dag_id).await?;
    }
    // Queued runs waiting to start, and DAGs with scheduled tasks waiting for a slot.
    let waiting: BTreeSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT dag_id FROM dag_run WHERE state = 'queued' \
         UNION SELECT DISTINCT dag_id FROM task_instance WHERE state = 'scheduled'",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    for dag_id in &waiting {
        advance_dag(pool, cache, dag_id, false).await?;
    }
    // Running runs with nothing in flight: a hand-off was lost (process died between a try's
    // end and its downstream decision) or the run just ended.
    let stalled: Vec<(i64, String)> = sqlx::query_as(
        "SELECT r.id, r.dag_id FROM dag_run r WHERE r.state = 'running' AND NOT EXISTS ( \
           SELECT 1 FROM task_instance t WHERE t.dag_run_id = r.id \
           AND t.state IN ('scheduled', 'queued', 'running', 'up_for_retry'))",
    )
    .fetch_all(pool)
    .await?;
    for (dag_run_id, dag_id) in &stalled {
        advance_run(pool, cache, *dag_run_id, dag_id).await?;
    }
    Ok(())
}

/// `up_for_retry` tries whose delay is over become `scheduled` again, then queued.
pub async fn promote_due_retries(pool: &PgPool) -> Result<usize, StoreError> {
    let dags: Vec<String> = sqlx::query_scalar(
        "UPDATE task_instance SET state = 'scheduled', updated_at = now() \
         WHERE state = 'up_for_retry' AND next_retry_at <= now() RETURNING dag_id",
    )
    .fetch_all(pool)
    .await?;
    let count = dags.len();
    let dags: BTreeSet<String> = dags.into_iter().collect();
    for dag_id in &dags {
        queue_tasks(pool, dag_id).await?;
    }
    Ok(count)
}

/// Tries whose heartbeat is older than `threshold` belong to a dead process: they go to
/// `up_for_retry` (due now: the failure was not the task's) or `failed` without retries left.
pub async fn reap_stale(
    pool: &PgPool,
    cache: &DagCache,
    threshold: Duration,
) -> Result<usize, StoreError> {
    let reaped: Vec<(i64, i64, String, String, Option<String>)> = sqlx::query_as(
        "UPDATE task_instance SET \
           state = CASE WHEN try_number <= max_tries THEN 'up_for_retry' ELSE 'failed' END, \
           next_retry_at = now(), end_date = now(), \
           duration = extract(epoch FROM now() - start_date), updated_at = now() \
         WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => $1) \
         RETURNING id, dag_run_id, dag_id, state, owner",
    )
    .bind(threshold.as_secs_f64())
    .fetch_all(pool)
    .await?;
    for (id, dag_run_id, dag_id, state, owner) in &reaped {
        tracing::warn!(task_instance_id = id, dag_id, state, owner = ?owner,
            "reaped a try whose process stopped heartbeating");
        sqlx::query(
            "INSERT INTO task_log (task_instance_id, try_number, line) \
             SELECT id, try_number, 'try abandoned: its process stopped heartbeating' \
             FROM task_instance WHERE id = $1",
        )
        .bind(id)
        .execute(pool)
        .await?;
        if state == "failed" {
            advance_run(pool, cache, *dag_run_id, dag_id).await?;
        }
    }
    Ok(reaped.len())
}

/// How long until the next time-driven event (a retry or a scheduled run), at most `max`.
pub(super) async fn next_deadline(pool: &PgPool, max: Duration) -> Result<Duration, StoreError> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM least( \
           (SELECT min(next_retry_at) FROM task_instance WHERE state = 'up_for_retry'), \
           (SELECT min(next_dagrun_create_after) FROM dag WHERE is_active AND NOT is_paused)) \
           - now())::float8",
    )
    .fetch_one(pool)
    .await?;
    Ok(match seconds {
        Some(seconds) if seconds <= 0.0 => Duration::from_millis(10),
        Some(seconds) => Duration::from_secs_f64(seconds).min(max) + Duration::from_millis(5),
        None => max,
    })
}

pub(super) async fn register_process(pool: &PgPool, owner: &str) -> Result<(), sqlx::Error> {
    let host = owner.split(':').next().unwrap_or("localhost");
    sqlx::query(
        "INSERT INTO scheduler_process (id, hostname, pid) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(owner)
    .bind(host)
    .bind(std::process::id() as i32)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Refreshes this process's row and forgets processes silent for ten reaper thresholds.
async fn heartbeat_process(
    pool: &PgPool,
    owner: &str,
    threshold: Duration,
) -> Result<(), sqlx::Error> {
    register_process(pool, owner).await?;
    sqlx::query(
        "DELETE FROM scheduler_process WHERE heartbeat_at < now() - make_interval(secs => $1)",
    )
    .bind(threshold.as_secs_f64() * 10.0)
    .execute(pool)
    .await
    .map(|_| ())
}

pub(super) async fn unregister_process(pool: &PgPool, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM scheduler_process WHERE id = $1")
        .bind(owner)
        .execute(pool)
        .await
        .map(|_| ())
}
