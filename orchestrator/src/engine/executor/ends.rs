//! The ends of tries, stored in batches: tries that end while a batch is being written wait
//! for the next one, so under load one statement stores many ends (and one run row update
//! counts all of a run's), while a lone end is written at once.
//!
//! A try whose slot its own hand-off does not need gives the slot back with its end: the same
//! statement claims a queued task instance for it (the claim loop's pick), so under load a
//! slot goes from one try to the next in one round trip.
//!
//! A try's end frees a `max_active_tasks` slot. In a DAG where that limit may bind, tasks may
//! wait for the slot: after each batch, one statement asks which of its DAGs have waiting
//! tasks (read after the batch's commit, so a queuer that counted a freed slot as taken has
//! left its tasks visible), and the schedulers are woken to queue them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::dag::TaskState;
use crate::engine::advance::limit_may_bind;
use crate::engine::batch::Batcher;
use crate::store::task_instances::{
    self, ClaimedTry, EndsAndClaims, TaskStateRow, TryEnd, TryEnded,
};
use crate::store::{StoreError, channels, notify};

const MAX_BATCH: usize = 256;

struct Request {
    end: TryEnd,
    about: AboutEnd,
}

/// What the writer needs to know of an end beside what it stores.
struct AboutEnd {
    task_id: String,
    /// The DAG's task count (whether its max_active_tasks may bind).
    dag_tasks: usize,
    /// The try's slot is free for a queued task instance.
    refill: bool,
}

/// What the writer stored for one end.
#[derive(Debug)]
pub struct Stored {
    /// `None` when the try's row is no longer ours.
    pub ended: Option<TryEnded>,
    /// The queued task instance claimed for the slot the end gave back.
    pub next: Option<ClaimedTry>,
}

type Answer = Result<Stored, StoreError>;

/// Hands ends to the writer task of this process.
#[derive(Clone)]
pub struct Ender {
    batcher: Batcher<Request, Answer>,
}

impl Ender {
    /// Starts the writer; it ends when every `Ender` is dropped. `release` (the executor's
    /// shutdown after its grace period) stops retries through a database outage; once
    /// `stopping` (the executor no longer claims), ends claim nothing either.
    pub fn start(
        pool: PgPool,
        owner: String,
        release: CancellationToken,
        stopping: CancellationToken,
    ) -> Ender {
        let connection = Arc::new(Mutex::new(WriterConnection {
            pool: pool.clone(),
            held: None,
        }));
        let batcher = Batcher::start(MAX_BATCH, move |batch: Vec<Request>| {
            let (pool, owner) = (pool.clone(), owner.clone());
            let (release, stopping) = (release.clone(), stopping.clone());
            let connection = Arc::clone(&connection);
            async move {
                let mut connection = connection.lock().await;
                write(&mut connection, &pool, &owner, &release, &stopping, batch).await
            }
        });
        Ender { batcher }
    }

    /// Stores the end of the try of `task_id` (of a DAG of `dag_tasks` tasks). Other tries of
    /// the same run ended by the same statement appear in the result's rows with their new
    /// states. With `refill`, a queued task instance may be claimed for the try's slot.
    pub async fn end(&self, end: TryEnd, task_id: &str, dag_tasks: usize, refill: bool) -> Answer {
        let request = Request {
            end,
            about: AboutEnd {
                task_id: task_id.to_string(),
                dag_tasks,
                refill,
            },
        };
        self.batcher.submit(request).await.unwrap_or_else(|| {
            Err(StoreError::Shared(
                "the executor's end writer has stopped".into(),
            ))
        })
    }
}

/// The writer's own connection. Its statements follow one another on the path of every end,
/// and a connection taken from the pool for each would cost two more round trips (sqlx tests a
/// connection when it is taken and when it is given back). Given back after a failure (the
/// pool closes it if it is broken); the next attempt takes another.
struct WriterConnection {
    pool: PgPool,
    held: Option<PoolConnection<Postgres>>,
}

impl WriterConnection {
    async fn end_tries_and_claim(
        &mut self,
        owner: &str,
        ends: &[TryEnd],
        claim_limit: i64,
    ) -> Result<EndsAndClaims, sqlx::Error> {
        let connection = match &mut self.held {
            Some(connection) => connection,
            None => self.held.insert(self.pool.acquire().await?),
        };
        let stored =
            task_instances::end_tries_and_claim(&mut **connection, owner, ends, claim_limit).await;
        if stored.is_err() {
            self.held = None;
        }
        stored
    }
}

async fn write(
    connection: &mut WriterConnection,
    pool: &PgPool,
    owner: &str,
    release: &CancellationToken,
    stopping: &CancellationToken,
    batch: Vec<Request>,
) -> Vec<Answer> {
    // The ends are moved, not copied: this is the serial path of every try.
    let (ends, batch): (Vec<TryEnd>, Vec<AboutEnd>) = batch
        .into_iter()
        .map(|request| (request.end, request.about))
        .unzip();
    let refills = batch.iter().filter(|about| about.refill).count();
    let (stored, claimed) = store_batch(connection, owner, &ends, refills, release, stopping).await;
    let (ended, errors): (Vec<Option<TryEnded>>, Vec<Option<StoreError>>) = stored
        .into_iter()
        .map(|result| match result {
            Ok(ended) => (ended, None),
            Err(error) => (None, Some(error)),
        })
        .unzip();
    let freed = freed_slots(&batch, &ended);
    let ended = with_siblings(&ends, &batch, ended);
    if let Err(error) = wake_for_waiting(pool, &freed).await {
        // The sweep queues waiting tasks when the schedulers are not woken.
        tracing::warn!(%error, "cannot check for tasks waiting for a slot");
    }
    let mut claimed = claimed.into_iter();
    ended
        .into_iter()
        .zip(errors)
        .zip(&batch)
        .map(|((ended, error), about)| match error {
            Some(error) => Err(error),
            None => Ok(Stored {
                ended,
                next: about.refill.then(|| claimed.next()).flatten(),
            }),
        })
        .collect()
}

/// Stores a batch and claims up to `refills` queued tries with it; when it fails for good,
/// each end alone (claiming nothing), so one end the database refuses (an output it cannot
/// store, say) fails only its own try.
async fn store_batch(
    connection: &mut WriterConnection,
    owner: &str,
    ends: &[TryEnd],
    refills: usize,
    release: &CancellationToken,
    stopping: &CancellationToken,
) -> (Vec<Result<Option<TryEnded>, StoreError>>, Vec<ClaimedTry>) {
    let error = match store_with_retries(connection, owner, ends, refills, release, stopping).await
    {
        Ok(stored) => return (stored.ended.into_iter().map(Ok).collect(), stored.claimed),
        Err(error) => error,
    };
    if ends.len() == 1 || release.is_cancelled() {
        let message = error.to_string();
        let failed = ends
            .iter()
            .map(|_| Err(StoreError::Shared(message.clone())))
            .collect();
        return (failed, Vec::new());
    }
    tracing::warn!(%error, tries = ends.len(), "storing the ends one by one");
    let mut results = Vec::with_capacity(ends.len());
    for end in ends {
        let one = std::slice::from_ref(end);
        let one = store_with_retries(connection, owner, one, 0, release, stopping).await;
        results.push(one.map(|mut one| one.ended.pop().flatten()));
    }
    (results, Vec::new())
}

/// Retried through a database outage (the row guard makes a repeat harmless, and a claim
/// whose answer was lost is released by the heartbeat loop): failing here would leave rows
/// running, owned by a live process, forever.
async fn store_with_retries(
    connection: &mut WriterConnection,
    owner: &str,
    ends: &[TryEnd],
    refills: usize,
    release: &CancellationToken,
    stopping: &CancellationToken,
) -> Result<EndsAndClaims, StoreError> {
    let mut delay = Duration::from_millis(100);
    loop {
        let claims = if stopping.is_cancelled() {
            0
        } else {
            refills as i64
        };
        match connection.end_tries_and_claim(owner, ends, claims).await {
            Ok(stored) => return Ok(stored),
            Err(error) => {
                let error = StoreError::from(error);
                if !error.is_transient() || release.is_cancelled() {
                    tracing::error!(%error, tries = ends.len(), "cannot store the ends of tries");
                    return Err(error);
                }
                tracing::warn!(%error, tries = ends.len(), retry_in = ?delay,
                    "cannot store the ends of tries; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The DAGs of the batch whose `max_active_tasks` may bind: their ended tries freed slots.
fn freed_slots(batch: &[AboutEnd], results: &[Option<TryEnded>]) -> Vec<String> {
    let mut dags: Vec<String> = batch
        .iter()
        .zip(results)
        .filter_map(|(about, result)| {
            let ended = result.as_ref()?;
            limit_may_bind(
                ended.max_active_tasks,
                ended.max_active_runs,
                about.dag_tasks,
            )
            .then(|| ended.dag_id.clone())
        })
        .collect();
    dags.sort_unstable();
    dags.dedup();
    dags
}

/// Wakes the schedulers for the DAGs among `dags` with tasks waiting for a slot.
async fn wake_for_waiting(pool: &PgPool, dags: &[String]) -> Result<(), StoreError> {
    if dags.is_empty() {
        return Ok(());
    }
    for dag_id in task_instances::waiting_among(pool, dags).await? {
        notify(pool, channels::SLOTS, &dag_id).await?;
    }
    Ok(())
}

/// Each result's view of its run also holds the other tries of that run this batch ended: the
/// statement's snapshot shows them still running.
fn with_siblings(
    ends: &[TryEnd],
    batch: &[AboutEnd],
    mut results: Vec<Option<TryEnded>>,
) -> Vec<Option<TryEnded>> {
    let mut by_run: HashMap<i64, Vec<(i64, &str, TaskState)>> = HashMap::new();
    for ((end, about), result) in ends.iter().zip(batch).zip(&results) {
        if let Some(ended) = result {
            by_run.entry(ended.dag_run_id).or_default().push((
                ended.task_instance_id,
                about.task_id.as_str(),
                end.state,
            ));
        }
    }
    for (end, ended) in ends.iter().zip(results.iter_mut()) {
        // Only a caller that reads its run's states back decides from them.
        let Some(ended) = ended.as_mut().filter(|_| !end.read_back.is_empty()) else {
            continue;
        };
        let Some(siblings) = by_run.get(&ended.dag_run_id) else {
            continue;
        };
        for &(id, task_id, state) in siblings {
            match ended.rows.iter_mut().find(|row| row.id == id) {
                Some(row) => row.state = state,
                None => ended.rows.push(TaskStateRow {
                    id,
                    task_id: task_id.to_string(),
                    state,
                }),
            }
        }
    }
    results
}
