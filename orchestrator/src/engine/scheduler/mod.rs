//! The scheduler: creates runs, decides which task instances are ready, and starts runs within
//! `max_active_runs`. Event-driven: a `PgListener` on the [`channels`] wakes the loop, which
//! handles only the DAGs named by the events; a slow periodic sweep is the safety net (and
//! promotes due retries, reaps dead processes' tries, creates due scheduled runs).
//!
//! The executor this scheduler starts (`engine::executor`) hands off downstream tasks itself
//! right after a try ends (`advance::after_try`), so task-to-task latency does not wait for
//! this loop. Both call into `engine::advance`; neither calls the other back.

mod sweep;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use updraft_operators::SharedRegistry;
use updraft_secrets::Cipher;

use super::advance::advance_dag;
use super::executor::{Executor, ExecutorConfig, register};
use crate::metrics;
use crate::store::{DagCache, StoreError, channels, task_instances};

pub use sweep::{promote_due_retries, reap_stale};

/// Scheduler settings; `from_env` reads the `UPDRAFT_*` variables.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This process's id (`hostname:pid:random`), the owner of its claims.
    pub owner: String,
    pub parallelism: usize,
    /// The safety-net sweep period.
    pub poll_interval: Duration,
    /// The tries of a process whose heartbeat is older than this are handed to retry.
    pub reaper_threshold: Duration,
    pub grace_period: Duration,
    /// Whether this process runs tasks (false: schedule only).
    pub execute: bool,
    /// `UPDRAFT_SECRET_KEY`: decrypts the variables templates read.
    pub cipher: Cipher,
}

impl SchedulerConfig {
    pub fn new_owner() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}:{}:{}", std::process::id(), &random[..8])
    }

    /// Defaults: parallelism 32, sweep 5 s, reaper 30 s, grace 30 s.
    pub fn from_env() -> SchedulerConfig {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.trim().parse::<u64>().ok())
                .unwrap_or(default)
        };
        SchedulerConfig {
            owner: Self::new_owner(),
            parallelism: number("UPDRAFT_PARALLELISM", 32).max(1) as usize,
            poll_interval: Duration::from_millis(number("UPDRAFT_POLL_INTERVAL_MS", 5000).max(10)),
            reaper_threshold: Duration::from_millis(
                number("UPDRAFT_REAPER_THRESHOLD_MS", 30_000).max(100),
            ),
            grace_period: Duration::from_millis(number("UPDRAFT_GRACE_PERIOD_MS", 30_000)),
            execute: true,
            cipher: Cipher::from_env().unwrap_or_else(|error| {
                // The binaries check the key before they start; here it only cannot decrypt.
                tracing::error!(%error, "no usable secret key");
                Cipher::none()
            }),
        }
    }

    fn heartbeat_interval(&self) -> Duration {
        (self.reaper_threshold / 3).max(Duration::from_millis(50))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SchedulerError {
    fn from(error: sqlx::Error) -> Self {
        SchedulerError::Store(error.into())
    }
}

pub struct Scheduler {
    pool: PgPool,
    cache: Arc<DagCache>,
    registry: SharedRegistry,
    config: SchedulerConfig,
}

impl Scheduler {
    /// A scheduler on `pool`'s database; its statements go through a pool of their own
    /// (`store::engine_pool`).
    /// `registry` may be replaced while it runs (the plugins folder changed): each try takes
    /// the current one.
    pub fn new(
        pool: PgPool,
        registry: impl Into<SharedRegistry>,
        config: SchedulerConfig,
    ) -> Scheduler {
        Scheduler {
            pool: crate::store::engine_pool(&pool),
            cache: Arc::new(DagCache::new()),
            registry: registry.into(),
            config,
        }
    }

    pub fn owner(&self) -> &str {
        &self.config.owner
    }

    /// One full sweep: retries, reaper, due runs, queued runs, stalled runs, queuing.
    pub async fn tick(&self) -> Result<(), SchedulerError> {
        sweep::sweep(&self.pool, &self.cache, &self.config).await
    }

    /// Runs until `cancel`; database outages are retried with backoff, never fatal.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), SchedulerError> {
        // Known before the first claim: another process's reaper takes the tries of processes
        // it does not know.
        let mut backoff = Duration::from_millis(200);
        while let Err(error) = register(&self.pool, &self.config.owner).await {
            tracing::warn!(%error, retry_in = ?backoff, "cannot register this process");
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        let wake_executor = Arc::new(Notify::new());
        let executor_cancel = cancel.child_token();
        let executor = self.config.execute.then(|| {
            let executor = Executor::new(
                self.pool.clone(),
                Arc::clone(&self.cache),
                self.registry.clone(),
                ExecutorConfig {
                    owner: self.config.owner.clone(),
                    parallelism: self.config.parallelism,
                    heartbeat_interval: self.config.heartbeat_interval(),
                    // Two beats missed: still a third of the threshold before others reap.
                    fence_after: self.config.reaper_threshold * 2 / 3,
                    poll_interval: self.config.poll_interval.min(Duration::from_secs(1)),
                    grace_period: self.config.grace_period,
                    cipher: self.config.cipher.clone(),
                },
                Arc::clone(&wake_executor),
            );
            tokio::spawn(executor.run(executor_cancel.clone()))
        });
        let (events, mut receiver) = mpsc::unbounded_channel::<(String, String)>();
        let listener = tokio::spawn(listen(
            self.pool.clone(),
            events,
            Arc::clone(&wake_executor),
            cancel.clone(),
        ));
        let mut backoff = Duration::from_millis(200);
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_sweep {
                let started = std::time::Instant::now();
                match sweep::sweep(&self.pool, &self.cache, &self.config).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(200);
                        let until = sweep::next_deadline(&self.pool, self.config.poll_interval)
                            .await
                            .unwrap_or(self.config.poll_interval);
                        next_sweep = tokio::time::Instant::now() + until;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff, "scheduler sweep failed");
                        next_sweep = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
                metrics::SCHEDULER_LOOP.observe(started.elapsed());
            }
            let first = tokio::select! {
                _ = cancel.cancelled() => break,
                event = receiver.recv() => event,
                _ = tokio::time::sleep_until(next_sweep) => continue,
            };
            let Some(first) = first else { break };
            // Handle every event already waiting, each DAG once.
            let mut runs_changed = BTreeSet::new();
            let mut dags_changed = BTreeSet::new();
            let mut retries = BTreeSet::new();
            let mut slots_freed = BTreeSet::new();
            let mut reconnected = false;
            let mut next = Some(first);
            while let Some((channel, payload)) = next.take() {
                match channel.as_str() {
                    "" => reconnected = true,
                    channels::RUNS => {
                        runs_changed.insert(payload);
                    }
                    channels::DAGS => {
                        dags_changed.insert(payload);
                    }
                    channels::TASKS => {
                        retries.insert(payload);
                    }
                    channels::SLOTS => {
                        slots_freed.insert(payload);
                    }
                    _ => {}
                }
                next = receiver.try_recv().ok();
            }
            // A DAG changed (unpause, new schedule) or a try will retry: the next due time may
            // have moved, so sweep soon.
            let due_time_moved = !dags_changed.is_empty() || !retries.is_empty();
            let mut dags: BTreeSet<(String, bool)> = BTreeSet::new();
            for dag_id in runs_changed.iter().chain(&slots_freed) {
                dags.insert((dag_id.clone(), dags_changed.contains(dag_id)));
            }
            for dag_id in &dags_changed {
                dags.insert((dag_id.clone(), true));
            }
            if reconnected {
                next_sweep = tokio::time::Instant::now();
            }
            let started = std::time::Instant::now();
            let mut started_runs = 0;
            for (dag_id, create_runs) in &dags {
                let advanced = async {
                    let started =
                        advance_dag(&self.pool, &self.cache, dag_id, *create_runs).await?;
                    if slots_freed.contains(dag_id) {
                        // Slots freed while tasks wait for them.
                        task_instances::queue_waiting(&self.pool, dag_id, true).await?;
                    }
                    Ok::<_, StoreError>(started)
                };
                match advanced.await {
                    Ok(started) => started_runs += started,
                    Err(error) => {
                        tracing::warn!(%error, dag_id, "cannot advance DAG; the sweep will retry");
                        next_sweep = next_sweep.min(tokio::time::Instant::now() + backoff);
                    }
                }
            }
            if due_time_moved {
                next_sweep =
                    next_sweep.min(tokio::time::Instant::now() + Duration::from_millis(50));
            }
            if !dags.is_empty() {
                metrics::SCHEDULER_LOOP.observe(started.elapsed());
            }
            if started_runs > 0 {
                wake_executor.notify_one();
            }
        }
        listener.abort();
        executor_cancel.cancel();
        if let Some(executor) = executor {
            let _ = executor.await;
        }
        sweep::unregister_process(&self.pool, &self.config.owner)
            .await
            .ok();
        Ok(())
    }
}

/// Forwards notifications to the loop (and `updraft_queued` to the executor); reconnects with
/// backoff. An empty channel name tells the loop to sweep after a reconnect.
async fn listen(
    pool: PgPool,
    events: mpsc::UnboundedSender<(String, String)>,
    wake_executor: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        let mut listener = match crate::store::listen(&pool, &channels::ENGINE).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "cannot LISTEN");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        let _ = events.send((String::new(), String::new()));
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if notification.channel() == channels::QUEUED {
                        wake_executor.notify_one();
                    }
                    let event = (
                        notification.channel().to_string(),
                        notification.payload().to_string(),
                    );
                    if events.send(event).is_err() {
                        return;
                    }
                }
                // The connection was lost (notifications may be missed): sweep once back.
                Ok(None) => {
                    let _ = events.send((String::new(), String::new()));
                }
                Err(error) => {
                    tracing::warn!(%error, "listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}
