//! The executor: claims queued task instances (one `UPDATE ... FOR UPDATE SKIP LOCKED`
//! statement), runs each try with `task_runner::run_try` without holding a transaction, and
//! completes only rows it still owns. Heartbeats keep claims alive; SIGTERM stops claiming,
//! waits a grace period, then releases the remaining tries for retry.

pub mod logs;
mod try_run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use updraft_operators::Registry;

use crate::store::DagCache;

pub use try_run::retry_delay;

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// This process's id, written to `task_instance.owner`.
    pub owner: String,
    /// Tries running at once in this process (`UPDRAFT_PARALLELISM`).
    pub parallelism: usize,
    /// How often running claims are refreshed.
    pub heartbeat_interval: Duration,
    /// Claim even without a wake-up this often.
    pub poll_interval: Duration,
    /// After SIGTERM, how long running tries may take before they are released.
    pub grace_period: Duration,
}

/// A claimed task instance and its run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub dag_run_id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub max_tries: i32,
    pub logical_date: chrono::DateTime<chrono::Utc>,
    pub data_interval_start: chrono::DateTime<chrono::Utc>,
    pub data_interval_end: chrono::DateTime<chrono::Utc>,
    pub conf: serde_json::Value,
    pub dag_version_id: i64,
}

/// The claim: one statement, as short as possible; the run's columns come with it.
/// The pick is a materialised CTE so it runs exactly once: an `IN (subquery LIMIT n)` may be
/// re-evaluated by the planner and claim more than `n` rows.
/// Oldest run first (then oldest task): a running run's next task does not wait behind a newer
/// run's wide fan-out.
pub const CLAIM_SQL: &str = "WITH picked AS MATERIALIZED ( \
      SELECT id FROM task_instance WHERE state = 'queued' ORDER BY dag_run_id, id \
      LIMIT $2 FOR UPDATE SKIP LOCKED) \
    UPDATE task_instance t SET state = 'running', owner = $1, \
    heartbeat_at = now(), try_number = t.try_number + 1, start_date = now(), end_date = NULL, \
    duration = NULL, next_retry_at = NULL, updated_at = now() \
    FROM picked p, dag_run r \
    WHERE t.id = p.id AND r.id = t.dag_run_id AND t.state = 'queued' \
    RETURNING t.id, t.dag_run_id, t.dag_id, t.run_id, t.task_id, t.try_number, t.max_tries, \
      r.logical_date, r.data_interval_start, r.data_interval_end, r.conf, r.dag_version_id";

pub async fn claim(pool: &PgPool, owner: &str, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as::<_, Claimed>(CLAIM_SQL)
        .bind(owner)
        .bind(limit)
        .fetch_all(pool)
        .await
}

pub struct Executor {
    pool: PgPool,
    cache: Arc<DagCache>,
    registry: Arc<Registry>,
    config: ExecutorConfig,
    /// Wakes the claim loop (local completions, NOTIFY on `updraft_queued`).
    wake: Arc<Notify>,
    permits: Arc<Semaphore>,
    logs: mpsc::UnboundedSender<logs::LogMessage>,
    /// Cancellation of each running try, by task instance id.
    running: Mutex<HashMap<i64, CancellationToken>>,
    /// Cancelled when the grace period is over: running tries stop and are released.
    release: CancellationToken,
    /// Cancelled when the process stops claiming (hand-offs claim nothing either).
    stopping: CancellationToken,
}

impl Executor {
    pub fn new(
        pool: PgPool,
        cache: Arc<DagCache>,
        registry: Arc<Registry>,
        config: ExecutorConfig,
        wake: Arc<Notify>,
    ) -> Arc<Executor> {
        let logs = logs::start_writer(pool.clone());
        let permits = Arc::new(Semaphore::new(config.parallelism.max(1)));
        Arc::new(Executor {
            pool,
            cache,
            registry,
            config,
            wake,
            permits,
            logs,
            running: Mutex::new(HashMap::new()),
            release: CancellationToken::new(),
            stopping: CancellationToken::new(),
        })
    }

    /// Claims and runs tries until `cancel`, then stops gracefully.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let heartbeat = tokio::spawn(Arc::clone(&self).heartbeat_loop(cancel.clone()));
        let stopping = self.stopping.clone();
        let stop_forwarder = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                cancel.cancelled().await;
                stopping.cancel();
            }
        });
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            // Take the free slots first, so a claim never exceeds them.
            let mut permits = Vec::new();
            while let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
                permits.push(permit);
            }
            if permits.is_empty() {
                // Wait for a free slot (a permit returns when a try ends).
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    permit = self.permits.acquire() => drop(permit),
                }
                continue;
            }
            let available = permits.len();
            match claim(&self.pool, &self.config.owner, available as i64).await {
                Ok(claimed) => {
                    backoff = Duration::from_millis(100);
                    let full = claimed.len() == available;
                    for (item, permit) in claimed.into_iter().zip(permits.drain(..)) {
                        self.spawn_try(item, permit);
                    }
                    drop(permits);
                    if full {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "claim failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        self.stopping.cancel();
        stop_forwarder.abort();
        self.shutdown().await;
        heartbeat.abort();
    }

    /// Runs a claimed try on its own task; `permit` is its parallelism slot.
    fn spawn_try(self: &Arc<Self>, item: Claimed, permit: OwnedSemaphorePermit) {
        let executor = Arc::clone(self);
        tokio::spawn(async move { executor.run_claimed(item, permit).await });
    }

    /// Stop: wait for running tries up to the grace period, then release the rest.
    async fn shutdown(&self) {
        let all = u32::try_from(self.config.parallelism.max(1)).unwrap_or(u32::MAX);
        let waited =
            tokio::time::timeout(self.config.grace_period, self.permits.acquire_many(all)).await;
        if let Ok(Ok(permits)) = waited {
            drop(permits);
            return;
        }
        let remaining = self.running.lock().map(|r| r.len()).unwrap_or(0);
        tracing::warn!(
            remaining,
            "grace period over; releasing running tries for retry"
        );
        self.release.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.permits.acquire_many(all)).await;
    }

    /// Hands a try back for retry without counting it (max_tries + 1): the stop was ours.
    async fn release_one(&self, task_instance_id: i64) {
        let result = sqlx::query(
            "UPDATE task_instance SET state = 'up_for_retry', next_retry_at = now(), \
             max_tries = max_tries + 1, end_date = now(), updated_at = now() \
             WHERE id = $1 AND owner = $2 AND state = 'running' RETURNING dag_id",
        )
        .bind(task_instance_id)
        .bind(&self.config.owner)
        .execute(&self.pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, task_instance_id, "cannot release try; the reaper will");
        }
    }

    /// Refreshes `heartbeat_at` of every try this process runs; a try whose row is no longer
    /// ours (cleared, marked, reaped) is cancelled.
    async fn heartbeat_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.heartbeat_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let alive: Result<Vec<i64>, sqlx::Error> = sqlx::query_scalar(
                "UPDATE task_instance SET heartbeat_at = now() \
                 WHERE owner = $1 AND state = 'running' RETURNING id",
            )
            .bind(&self.config.owner)
            .fetch_all(&self.pool)
            .await;
            match alive {
                Ok(alive) => {
                    let lost: Vec<CancellationToken> = match self.running.lock() {
                        Ok(running) => running
                            .iter()
                            .filter(|(id, _)| !alive.contains(id))
                            .map(|(_, token)| token.clone())
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    for token in lost {
                        token.cancel();
                    }
                }
                Err(error) => tracing::warn!(%error, "heartbeat failed"),
            }
            if cancel.is_cancelled() && self.running.lock().map(|r| r.is_empty()).unwrap_or(true) {
                break;
            }
        }
    }
}
