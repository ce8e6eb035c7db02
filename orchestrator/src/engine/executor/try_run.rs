//! One claimed try: gather the template inputs, render once and execute (`execute::run_try`),
//! end the try (`ends.rs`, which may claim the next queued try for a leaf's slot) and hand off
//! downstream (`advance::after_try`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use updraft_operators::{DagRunStatus, DagRuns, NewDagRun, TaskServices, XComSink};
use updraft_secrets::Masker;

use super::Executor;
use super::logs::DbLogSink;
use crate::dag::params::resolve_params;
use crate::dag::{Dag, RetryPolicy, Task, TaskState};
use crate::engine::advance::{EndedTry, after_try, decided_with_end};
use crate::engine::decide::inputs_of_downstream;
use crate::engine::execute::{TryError, run_try};
use crate::engine::render::TemplateInputs;
use crate::engine::trigger::{TriggerRequest, trigger_run};
use crate::metrics;
use crate::store::runs::{self, DagRunRow};
use crate::store::task_instances::{ClaimedTry, DecidedDownstream, TryEnd};
use crate::store::{StoreError, channels, connections, notify, variables, xcom};

/// Airflow's retry delay: `retry_delay`, doubled per try with exponential backoff, capped by
/// `max_retry_delay`. `try_number` is the try that just failed (1-based).
pub fn retry_delay(policy: &RetryPolicy, try_number: u32) -> Duration {
    let delay = if policy.exponential_backoff {
        let factor = 2u32.saturating_pow(try_number.saturating_sub(1).min(30));
        policy.retry_delay.saturating_mul(factor)
    } else {
        policy.retry_delay
    };
    policy.max_retry_delay.map_or(delay, |max| delay.min(max))
}

enum Outcome {
    Success(Value),
    Failure(String),
    /// Cancelled because the row is no longer ours, or released at shutdown.
    Stopped,
}

/// What a try produced: its outcome, the config the operator received, and its task.
struct Tried {
    outcome: Outcome,
    rendered: Option<Value>,
    dag: Option<Arc<Dag>>,
}

impl Executor {
    pub(super) async fn run_claimed(
        self: &Arc<Self>,
        claimed: ClaimedTry,
        permit: OwnedSemaphorePermit,
    ) {
        let token = self.hold(claimed.id);
        self.states.mark(&claimed.dag_id);
        metrics::TASKS_STARTED.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("try", dag_id = %claimed.dag_id, run_id = %claimed.run_id,
            task_id = %claimed.task_id, try_number = claimed.try_number);
        let masker = Arc::new(Masker::new());
        let sink = DbLogSink::new(
            claimed.id,
            claimed.try_number,
            self.logs.clone(),
            Arc::clone(&masker),
        );
        let tried = self
            .execute(&claimed, &sink, &masker, &token)
            .instrument(span)
            .await;
        if let Outcome::Failure(message) = &tried.outcome {
            updraft_operators::LogSink::write_line(&*sink, &format!("ERROR: {message}"));
        }
        sink.flush().await;
        if let Err(error) = self.complete(&claimed, tried, permit).await {
            // The row stays running, no longer held: the heartbeat loop releases it for retry.
            tracing::error!(%error, task_instance_id = claimed.id, "cannot complete try");
        }
        // Held until its end is stored: a try whose row is running but held by no one here
        // is abandoned.
        self.let_go(claimed.id);
        metrics::TASKS_FINISHED.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs the try; what it leaves behind (its stored config, its error) has the secrets its
    /// templates revealed masked (`masker`); the operator gets them as they are.
    async fn execute(
        &self,
        claimed: &ClaimedTry,
        sink: &Arc<DbLogSink>,
        masker: &Arc<Masker>,
        token: &CancellationToken,
    ) -> Tried {
        let failed = |message: String, dag: Option<Arc<Dag>>| Tried {
            outcome: Outcome::Failure(message),
            rendered: None,
            dag,
        };
        let dag: Arc<Dag> = match self.cache.get(&self.pool, claimed.dag_version_id).await {
            Ok(dag) => dag,
            Err(error) => return failed(error.to_string(), None),
        };
        let Some(task) = dag.task(&claimed.task_id) else {
            let message = format!("task `{}` is not in the run's DAG version", claimed.task_id);
            return failed(message, Some(dag));
        };
        let inputs = match self.inputs(claimed, &dag, task, masker).await {
            Ok(inputs) => inputs,
            Err(message) => return failed(message, Some(dag.clone())),
        };
        // A stop of the process (after the grace period: the token is a child of `release`)
        // or a lost claim cancels the try.
        let cancel = token.clone();
        let services = TaskServices {
            xcom: Arc::new(StoredXCom {
                pool: self.pool.clone(),
                task_instance_id: claimed.id,
            }),
            dag_runs: Arc::new(StoredDagRuns {
                pool: self.pool.clone(),
            }),
        };
        let (result, rendered) = run_try(
            task,
            &self.registry.current(),
            &inputs,
            sink.clone(),
            services,
            cancel,
        )
        .await;
        let outcome = match result {
            Ok(value) => Outcome::Success(value),
            Err(TryError::Cancelled) => Outcome::Stopped,
            Err(error) => Outcome::Failure(masker.mask(&error.to_string())),
        };
        Tried {
            outcome,
            rendered: rendered.map(|config| masker.mask_json(&config)),
            dag: Some(dag),
        }
    }

    /// Template inputs; XCom and variables are read only when the config mentions them.
    async fn inputs(
        &self,
        claimed: &ClaimedTry,
        dag: &Dag,
        task: &Task,
        masker: &Arc<Masker>,
    ) -> Result<TemplateInputs, String> {
        let conf: Map<String, Value> = match &claimed.conf {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        let params = resolve_params(dag, &conf).map_err(|error| error.to_string())?;
        let config_text = task.config.to_string();
        let xcom = if config_text.contains("xcom") {
            xcom::return_values(&self.pool, claimed.dag_run_id)
                .await
                .map_err(|error| format!("cannot read XCom: {error}"))?
        } else {
            Default::default()
        };
        let variables = if config_text.contains("var") {
            variables::for_templates(&self.pool, &self.config.cipher)
                .await
                .map_err(|error| format!("cannot read variables: {error}"))?
        } else {
            Default::default()
        };
        let connections = if config_text.contains("conn") {
            connections::for_templates(&self.pool, &self.config.cipher)
                .await
                .map_err(|error| format!("cannot read connections: {error}"))?
        } else {
            Default::default()
        };
        if claimed.try_number > 1 {
            xcom::clear_for_new_try(&self.pool, claimed.id)
                .await
                .map_err(|error| format!("cannot clear XCom: {error}"))?;
        }
        Ok(TemplateInputs {
            dag_id: claimed.dag_id.clone(),
            run_id: claimed.run_id.clone(),
            task_id: claimed.task_id.clone(),
            try_number: u32::try_from(claimed.try_number).unwrap_or(0),
            logical_date: claimed.logical_date,
            data_interval_start: claimed.data_interval_start,
            data_interval_end: claimed.data_interval_end,
            params,
            conf,
            xcom,
            variables,
            connections,
            masker: Arc::clone(masker),
        })
    }

    /// Ends the try (only if the row is still ours) and hands off downstream at once: the run's
    /// next tasks are decided, queued and, within free slots (`permit`, this try's, plus any
    /// idle ones), claimed and started here without a claim pass or NOTIFY.
    async fn complete(
        self: &Arc<Self>,
        claimed: &ClaimedTry,
        tried: Tried,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), StoreError> {
        let ended_at = Instant::now();
        let task = tried
            .dag
            .as_ref()
            .and_then(|dag| dag.task(&claimed.task_id));
        let try_number = u32::try_from(claimed.try_number).unwrap_or(0);
        let (state, output, next_retry_at) = match tried.outcome {
            Outcome::Success(value) => (TaskState::Success, value, None),
            Outcome::Failure(_) if claimed.try_number <= claimed.max_tries => {
                let delay = task.map_or(Duration::ZERO, |t| retry_delay(&t.retry, try_number));
                let at = chrono::Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                (TaskState::UpForRetry, Value::Null, Some(at))
            }
            Outcome::Failure(_) => (TaskState::Failed, Value::Null, None),
            Outcome::Stopped => {
                if self.release.is_cancelled() {
                    self.release_one(claimed.id).await;
                }
                return Ok(());
            }
        };
        // Slots for the tasks this end may make ready: ours, plus idle ones (never waited for).
        let wanted = tried
            .dag
            .as_ref()
            .map_or(0, |dag| dag.downstream(&claimed.task_id).len());
        // Ours is held until the end is stored: a stopping executor waits for every slot.
        let mut permits = vec![permit];
        let stopping = self.stopping.is_cancelled();
        if !stopping {
            self.take_idle_permits(&mut permits, wanted);
        }
        // Downstream tasks this end alone decides are claimed with it when a slot is free for
        // each (none is while stopping); otherwise they are read back and decided after it.
        let decided_downstream = tried.dag.as_ref().filter(|_| !stopping).and_then(|dag| {
            decided_with_end(dag, &claimed.task_id, state)
                .filter(|tasks| tasks.len() <= permits.len())
                .map(|tasks| DecidedDownstream::new(dag, &tasks))
        });
        let read_back = match &tried.dag {
            Some(dag) if state.is_finished() && decided_downstream.is_none() => {
                inputs_of_downstream(dag, &claimed.task_id)
            }
            _ => Vec::new(),
        };
        let decided_with_end = decided_downstream.is_some();
        let end = TryEnd {
            task_instance_id: claimed.id,
            state,
            rendered_config: tried.rendered,
            next_retry_at,
            output: (!output.is_null()).then_some(output),
            read_back,
            decided_downstream,
        };
        let dag_tasks = tried.dag.as_ref().map_or(0, |dag| dag.tasks.len());
        // A leaf's slot serves no hand-off: its end claims the next queued try for it.
        let refill = wanted == 0 && !stopping && !self.fenced.load(Ordering::SeqCst);
        let stored = self
            .ender
            .end(end, &claimed.task_id, dag_tasks, refill)
            .await?;
        if let Some(next) = stored.next {
            self.start_claimed(next, permits.pop());
        }
        let Some(ended) = stored.ended else {
            tracing::info!(
                task_instance_id = claimed.id,
                "try ended but the row is no longer ours"
            );
            return Ok(());
        };
        self.states.mark(&claimed.dag_id);
        if state == TaskState::UpForRetry {
            // A scheduler promotes the retry when it is due.
            notify(&self.pool, channels::TASKS, &claimed.dag_id).await?;
        }
        let Some(dag) = tried.dag else {
            return Ok(());
        };
        if self.stopping.is_cancelled() {
            // Claims nothing: the downstream tasks are queued for the other processes.
            permits.clear();
        } else if !decided_with_end {
            // Slots freed while the end was stored serve its downstream tasks first.
            self.take_idle_permits(&mut permits, wanted);
        }
        let end = EndedTry {
            dag: &dag,
            task_id: &claimed.task_id,
            state,
            ended,
            decided_with_end,
        };
        let advanced = after_try(
            &self.pool,
            &self.cache,
            &self.applier,
            end,
            &self.config.owner,
            permits.len(),
        )
        .await?;
        // The hand-off decided the downstream tasks.
        self.states.mark(&claimed.dag_id);
        if wanted > 0 {
            metrics::HANDOFF.observe(ended_at.elapsed());
        }
        for next in advanced.claimed {
            let next = ClaimedTry {
                id: next.id,
                task_id: next.task_id,
                try_number: next.try_number,
                max_tries: next.max_tries,
                ..claimed.clone()
            };
            self.start_claimed(next, permits.pop());
        }
        Ok(())
    }

    /// Runs a try claimed for this process in `permit`'s slot, or, claimed beyond our slots,
    /// when a slot frees: never dropped.
    fn start_claimed(self: &Arc<Self>, next: ClaimedTry, permit: Option<OwnedSemaphorePermit>) {
        match permit {
            Some(permit) => self.spawn_try(next, permit),
            None => {
                self.hold(next.id);
                let executor = Arc::clone(self);
                tokio::spawn(async move {
                    if let Ok(permit) = Arc::clone(&executor.permits).acquire_owned().await {
                        executor.spawn_try(next, permit);
                    }
                });
            }
        }
    }

    /// Adds idle slots to `permits` (never waiting for one) until it holds `wanted`.
    fn take_idle_permits(&self, permits: &mut Vec<OwnedSemaphorePermit>, wanted: usize) {
        while permits.len() < wanted {
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(extra) => permits.push(extra),
                Err(_) => break,
            }
        }
    }
}

/// A try's XCom entries besides its return value, stored as they come (a plugin's `xcom`
/// lines); the next try of the task starts without them.
struct StoredXCom {
    pool: PgPool,
    task_instance_id: i64,
}

#[async_trait::async_trait]
impl XComSink for StoredXCom {
    async fn push(&self, key: &str, value: Value) -> Result<(), String> {
        xcom::push(&self.pool, self.task_instance_id, key, &value)
            .await
            .map_err(|error| format!("cannot store XCom `{key}`: {error}"))
    }
}

/// Runs of other DAGs, created and read in the run store (`trigger_dag`).
pub(crate) struct StoredDagRuns {
    pub(crate) pool: PgPool,
}

#[async_trait::async_trait]
impl DagRuns for StoredDagRuns {
    async fn trigger(&self, dag_id: &str, run: NewDagRun) -> Result<DagRunStatus, String> {
        let logical_date = run
            .logical_date
            .map(|text| {
                DateTime::parse_from_rfc3339(text.trim())
                    .map(|date| date.with_timezone(&Utc))
                    .map_err(|error| format!("`logical_date` `{text}`: {error}"))
            })
            .transpose()?;
        let request = TriggerRequest {
            run_id: run.run_id,
            logical_date,
            conf: run.conf,
            note: run.note,
        };
        let row = trigger_run(&self.pool, dag_id, request)
            .await
            .map_err(|error| format!("cannot trigger DAG `{dag_id}`: {error}"))?;
        Ok(run_status(&row))
    }

    async fn status(&self, dag_id: &str, run_id: &str) -> Result<Option<DagRunStatus>, String> {
        let row = runs::get(&self.pool, dag_id, run_id)
            .await
            .map_err(|error| format!("cannot read run `{run_id}` of DAG `{dag_id}`: {error}"))?;
        Ok(row.as_ref().map(run_status))
    }
}

fn run_status(row: &DagRunRow) -> DagRunStatus {
    DagRunStatus {
        run_id: row.run_id.clone(),
        logical_date: row.logical_date.to_rfc3339(),
        state: row.state.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_back_off_and_cap() {
        let mut policy = RetryPolicy {
            retries: 5,
            retry_delay: Duration::from_secs(10),
            exponential_backoff: false,
            max_retry_delay: None,
        };
        assert_eq!(retry_delay(&policy, 3), Duration::from_secs(10));
        policy.exponential_backoff = true;
        assert_eq!(retry_delay(&policy, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(&policy, 3), Duration::from_secs(40));
        policy.max_retry_delay = Some(Duration::from_secs(25));
        assert_eq!(retry_delay(&policy, 3), Duration::from_secs(25));
    }
}
