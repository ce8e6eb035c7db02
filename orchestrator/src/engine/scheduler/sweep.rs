//! The periodic sweep: the safety net behind NOTIFY, plus the time-driven work (due retries,
//! due scheduled runs, the reaper of dead processes' tries).

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::PgPool;

use super::SchedulerConfig;
use crate::dag::TaskState;
use crate::engine::advance::{advance_dag, decide_run_fully};
use crate::engine::trigger::create_due_runs;
use crate::store::{DagCache, StoreError, dags, processes, runs, task_instances};

pub(super) async fn sweep(
    pool: &PgPool,
    cache: &DagCache,
    config: &SchedulerConfig,
) -> Result<(), super::SchedulerError> {
    heartbeat_process(pool, &config.owner, config.reaper_threshold).await?;
    reap_stale(pool, cache, config.reaper_threshold).await?;
    promote_due_retries(pool).await?;
    // Due scheduled runs (and DAGs whose next run must be computed again).
    for dag_id in dags::due_for_scheduling(pool).await? {
        create_due_runs(pool, cache, &dag_id).await?;
    }
    // Queued runs waiting to start.
    for dag_id in runs::dags_with_queued_runs(pool).await? {
        advance_dag(pool, cache, &dag_id, false).await?;
    }
    // Tasks waiting for a max_active_tasks slot.
    for dag_id in task_instances::dags_with_waiting(pool).await? {
        task_instances::queue_waiting(pool, &dag_id, true).await?;
    }
    // Running runs with nothing in flight: a hand-off was lost (a process died between a try's
    // end and its downstream decision) or the run is over.
    for run in runs::stalled(pool).await? {
        if decide_run_fully(pool, cache, &run.dag_id, run.id)
            .await?
            .is_some()
        {
            advance_dag(pool, cache, &run.dag_id, false).await?;
        }
    }
    Ok(())
}

/// `up_for_retry` tries whose delay is over become `scheduled` again, then queued (within
/// `max_active_tasks`). Returns how many.
pub async fn promote_due_retries(pool: &PgPool) -> Result<usize, StoreError> {
    let dags = task_instances::promote_due_retries(pool).await?;
    let count = dags.len();
    let dags: BTreeSet<String> = dags.into_iter().collect();
    for dag_id in &dags {
        task_instances::queue_waiting(pool, dag_id, true).await?;
    }
    Ok(count)
}

/// Tries of processes whose heartbeat is older than `threshold` belong to dead processes: they
/// go to `up_for_retry` (due now: the failure was not the task's) or `failed` without retries
/// left; a failed one's run is decided again.
pub async fn reap_stale(
    pool: &PgPool,
    cache: &DagCache,
    threshold: Duration,
) -> Result<usize, StoreError> {
    let reaped = task_instances::reap_stale(pool, threshold).await?;
    for try_ in &reaped {
        tracing::warn!(task_instance_id = try_.id, dag_id = %try_.dag_id, state = %try_.state,
            owner = ?try_.owner, "reaped a try whose process stopped heartbeating");
    }
    let failed_runs: BTreeSet<(i64, &str)> = reaped
        .iter()
        .filter(|try_| try_.state == TaskState::Failed)
        .map(|try_| (try_.dag_run_id, try_.dag_id.as_str()))
        .collect();
    for (dag_run_id, dag_id) in failed_runs {
        if decide_run_fully(pool, cache, dag_id, dag_run_id)
            .await?
            .is_some()
        {
            advance_dag(pool, cache, dag_id, false).await?;
        }
    }
    Ok(reaped.len())
}

/// How long until the next time-driven event (a retry or a scheduled run), at most `max`.
pub(super) async fn next_deadline(pool: &PgPool, max: Duration) -> Result<Duration, StoreError> {
    Ok(match dags::seconds_to_next_event(pool).await? {
        Some(seconds) if seconds <= 0.0 => Duration::from_millis(10),
        Some(seconds) => Duration::from_secs_f64(seconds).min(max) + Duration::from_millis(5),
        None => max,
    })
}

/// Refreshes this process's row and forgets processes silent for ten reaper thresholds.
async fn heartbeat_process(
    pool: &PgPool,
    owner: &str,
    threshold: Duration,
) -> Result<(), sqlx::Error> {
    crate::engine::executor::register(pool, owner).await?;
    processes::forget_silent(pool, threshold * 10).await
}

pub(super) async fn unregister_process(pool: &PgPool, owner: &str) -> Result<(), sqlx::Error> {
    processes::unregister(pool, owner).await
}
