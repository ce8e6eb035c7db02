//! The executor: claims queued task instances (`store::task_instances::claim`, one
//! `UPDATE ... FOR UPDATE SKIP LOCKED` statement), runs each try (`try_run.rs`) without holding
//! a transaction, and ends only tries it still owns, handing off downstream at once; the end of
//! a leaf try claims the next queued one for its slot in the same statement (`ends.rs`).
//! Heartbeats keep claims alive; SIGTERM stops claiming, waits a grace period, then releases
//! the remaining tries for retry.

mod ends;
pub mod logs;
mod try_run;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use updraft_operators::SharedRegistry;

use crate::engine::advance::Applier;
use crate::engine::state_feed::StateFeed;
use crate::store::DagCache;
use crate::store::processes;
use crate::store::task_instances::{self, ClaimedTry};

pub use try_run::retry_delay;

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// This process's id, written to `task_instance.owner`.
    pub owner: String,
    /// Tries running at once in this process (`UPDRAFT_PARALLELISM`).
    pub parallelism: usize,
    /// How often this process's heartbeat is refreshed.
    pub heartbeat_interval: Duration,
    /// Without a heartbeat stored for this long, the process stops its tries (fencing): other
    /// processes take them once its heartbeat is older than the reaper threshold, so this is
    /// shorter than that threshold.
    pub fence_after: Duration,
    /// Claim even without a wake-up this often.
    pub poll_interval: Duration,
    /// After SIGTERM, how long running tries may take before they are released.
    pub grace_period: Duration,
    /// Decrypts the variables templates read.
    pub cipher: updraft_secrets::Cipher,
}

/// A try this process runs.
struct RunningTry {
    cancel: CancellationToken,
    /// The heartbeats issued before it was registered (its claim had committed by then).
    registered_after: u64,
}

pub struct Executor {
    pool: PgPool,
    cache: Arc<DagCache>,
    registry: SharedRegistry,
    config: ExecutorConfig,
    /// Wakes the claim loop (local completions, NOTIFY on `updraft_queued`).
    wake: Arc<Notify>,
    permits: Arc<Semaphore>,
    logs: mpsc::UnboundedSender<logs::LogMessage>,
    ender: ends::Ender,
    applier: Applier,
    /// Announces the DAGs whose tries were claimed or ended to the UI.
    states: StateFeed,
    /// Each running try, by task instance id.
    running: Mutex<HashMap<i64, RunningTry>>,
    /// Heartbeats issued so far: a try registered after a heartbeat was issued may be missing
    /// from its answer without being lost.
    heartbeats: AtomicU64,
    /// Cancelled when the grace period is over: running tries stop and are released.
    release: CancellationToken,
    /// Cancelled when the process stops claiming (hand-offs claim nothing either).
    stopping: CancellationToken,
    /// When the last heartbeat that was stored was sent.
    last_beat: Mutex<Instant>,
    /// Cut off from the database longer than `fence_after`: no try runs until a heartbeat is
    /// stored again.
    fenced: AtomicBool,
}

impl Executor {
    pub fn new(
        pool: PgPool,
        cache: Arc<DagCache>,
        registry: SharedRegistry,
        config: ExecutorConfig,
        wake: Arc<Notify>,
    ) -> Arc<Executor> {
        let logs = logs::start_writer(pool.clone());
        let release = CancellationToken::new();
        let stopping = CancellationToken::new();
        let ender = ends::Ender::start(
            pool.clone(),
            config.owner.clone(),
            release.clone(),
            stopping.clone(),
        );
        let applier = Applier::start(pool.clone(), config.owner.clone());
        let states = StateFeed::start(pool.clone());
        let permits = Arc::new(Semaphore::new(config.parallelism.max(1)));
        Arc::new(Executor {
            pool,
            cache,
            registry,
            config,
            wake,
            permits,
            logs,
            ender,
            applier,
            states,
            running: Mutex::new(HashMap::new()),
            heartbeats: AtomicU64::new(0),
            release,
            stopping,
            last_beat: Mutex::new(Instant::now()),
            fenced: AtomicBool::new(false),
        })
    }

    /// Claims and runs tries until `cancel`, then stops gracefully.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let heartbeat = tokio::spawn(Arc::clone(&self).heartbeat_loop(cancel.clone()));
        let fence = tokio::spawn(Arc::clone(&self).fence_loop());
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
            if self.fenced.load(Ordering::SeqCst) {
                drop(permits);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                }
                continue;
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
            match task_instances::claim(&self.pool, &self.config.owner, available as i64).await {
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
        fence.abort();
    }

    /// Runs a claimed try on its own task; `permit` is its parallelism slot.
    fn spawn_try(self: &Arc<Self>, item: ClaimedTry, permit: OwnedSemaphorePermit) {
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

    /// Registers a try this process holds (claimed: waiting for a slot, running, or being
    /// ended); returns its cancellation token, already cancelled while the process is fenced
    /// (the try does not start).
    fn hold(&self, task_instance_id: i64) -> CancellationToken {
        let registered_after = self.heartbeats.load(Ordering::SeqCst);
        let token = match self.running.lock() {
            Ok(mut running) => running
                .entry(task_instance_id)
                .or_insert_with(|| RunningTry {
                    // Released at the end of the grace period with every other try.
                    cancel: self.release.child_token(),
                    registered_after,
                })
                .cancel
                .clone(),
            Err(_) => self.release.child_token(),
        };
        if self.fenced.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }

    /// Fencing: when no heartbeat has been stored for `fence_after` (the database is out of
    /// reach, or too slow to answer), every try of this process stops, before any other
    /// process may take them; they stay `running` in the store and are retried once (released
    /// by this process when it reaches the database again, or reaped by another).
    async fn fence_loop(self: Arc<Self>) {
        let check = (self.config.fence_after / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(check).await;
            let silent = self
                .last_beat
                .lock()
                .map(|at| at.elapsed())
                .unwrap_or_default();
            let fence = silent >= self.config.fence_after;
            let was = self.fenced.swap(fence, Ordering::SeqCst);
            if fence && !was {
                let tokens: Vec<CancellationToken> = match self.running.lock() {
                    Ok(running) => running.values().map(|try_| try_.cancel.clone()).collect(),
                    Err(_) => Vec::new(),
                };
                tracing::error!(
                    tries = tokens.len(),
                    ?silent,
                    "no heartbeat stored for too long: stopping every try of this process"
                );
                for token in tokens {
                    token.cancel();
                }
            } else if was && !fence {
                tracing::info!("heartbeat stored again: running tries again");
            }
        }
    }

    fn let_go(&self, task_instance_id: i64) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&task_instance_id);
        }
    }

    /// Hands a try back for retry without counting it: the stop was ours.
    async fn release_one(&self, task_instance_id: i64) {
        let result =
            task_instances::release(&self.pool, task_instance_id, &self.config.owner).await;
        if let Err(error) = result {
            tracing::warn!(%error, task_instance_id, "cannot release try; the reaper will");
        }
    }

    /// Keeps this process alive in `scheduler_process` (the reaper of other processes takes the
    /// tries of a process whose heartbeat stopped); a try whose row is no longer ours (cleared,
    /// marked, reaped) is cancelled; a row of ours that no try here holds (its end or its claim
    /// was lost to an error), seen so at two checks in a row, is released for retry: the
    /// reaper would never take it while this process lives.
    async fn heartbeat_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut abandoned_before: HashSet<i64> = HashSet::new();
        let mut interval = tokio::time::interval(self.config.heartbeat_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let sent = Instant::now();
            let stored = match processes::beat(&self.pool, &self.config.owner).await {
                Ok(true) => true,
                // Forgotten after a long silence (a database outage): be known again.
                Ok(false) => match register(&self.pool, &self.config.owner).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(%error, "cannot register this process again");
                        false
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "heartbeat failed");
                    false
                }
            };
            if stored && let Ok(mut last_beat) = self.last_beat.lock() {
                // When it was sent: the database's clock stored it no earlier.
                *last_beat = sent;
            }
            // Tries registered from now on may have been claimed after this check's snapshot:
            // their absence from its answer proves nothing.
            let issued = self.heartbeats.fetch_add(1, Ordering::SeqCst) + 1;
            match task_instances::owned(&self.pool, &self.config.owner).await {
                Ok(alive) => {
                    let lost: Vec<CancellationToken> = match self.running.lock() {
                        Ok(running) => running
                            .iter()
                            .filter(|(id, try_)| {
                                try_.registered_after < issued && !alive.contains(id)
                            })
                            .map(|(_, try_)| try_.cancel.clone())
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    for token in lost {
                        token.cancel();
                    }
                    // Read after the answer: a try claimed after its snapshot is not in it, and
                    // one claimed before is held by the next check at the latest.
                    let abandoned: HashSet<i64> = match self.running.lock() {
                        Ok(running) => alive
                            .iter()
                            .filter(|id| !running.contains_key(id))
                            .copied()
                            .collect(),
                        Err(_) => HashSet::new(),
                    };
                    for &id in abandoned.intersection(&abandoned_before) {
                        tracing::warn!(
                            task_instance_id = id,
                            "a try of this process that nothing here holds: released for retry"
                        );
                        self.release_one(id).await;
                    }
                    abandoned_before = abandoned;
                }
                Err(error) => tracing::warn!(%error, "cannot check the tries this process owns"),
            }
            if cancel.is_cancelled() && self.running.lock().map(|r| r.is_empty()).unwrap_or(true) {
                break;
            }
        }
    }
}

/// Records this process in `scheduler_process` (its id is `hostname:pid:random`): claims are
/// taken only once it is known, so no reaper mistakes its tries for a dead process's.
pub async fn register(pool: &PgPool, owner: &str) -> Result<(), sqlx::Error> {
    let host = owner.split(':').next().unwrap_or("localhost");
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    processes::register(pool, owner, host, pid).await
}
