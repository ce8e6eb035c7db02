//! One claimed try: gather template inputs, run, store output and state, hand off downstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::logs::DbLogSink;
use super::{Claimed, Executor};
use crate::dag::{Dag, RetryPolicy, Task};
use crate::metrics;
use crate::scheduler::decide::advance_dag;
use crate::scheduler::handoff::{advance_after_try, end_try};
use crate::store::{StoreError, TaskState};
use crate::task_runner::{TemplateInputs, TryError, render_config, resolve_params, run_try};

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

impl Executor {
    pub(super) async fn run_claimed(
        self: &Arc<Self>,
        claimed: Claimed,
        permit: OwnedSemaphorePermit,
    ) {
        let token = CancellationToken::new();
        if let Ok(mut running) = self.running.lock() {
            running.insert(claimed.id, token.clone());
        }
        metrics::TASKS_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let span = tracing::info_span!("try", dag_id = %claimed.dag_id, run_id = %claimed.run_id,
            task_id = %claimed.task_id, try_number = claimed.try_number);
        let sink = DbLogSink::new(claimed.id, claimed.try_number, self.logs.clone());
        let (outcome, rendered, task) =
            self.execute(&claimed, &sink, &token).instrument(span).await;
        if let Ok(mut running) = self.running.lock() {
            running.remove(&claimed.id);
        }
        if let Outcome::Failure(message) = &outcome {
            updraft_operators::LogSink::write_line(&*sink, &format!("ERROR: {message}"));
        }
        sink.flush().await;
        let completed = self
            .complete(&claimed, outcome, rendered, task.as_ref(), permit)
            .await;
        if let Err(error) = completed {
            // The row stays running; the reaper hands it to retry once our heartbeat stops.
            tracing::error!(%error, task_instance_id = claimed.id, "cannot complete try");
        }
        metrics::TASKS_FINISHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn execute(
        &self,
        claimed: &Claimed,
        sink: &Arc<DbLogSink>,
        token: &CancellationToken,
    ) -> (Outcome, Option<Value>, Option<Task>) {
        let dag: Arc<Dag> = match self.cache.get(&self.pool, claimed.dag_version_id).await {
            Ok(dag) => dag,
            Err(error) => return (Outcome::Failure(error.to_string()), None, None),
        };
        let Some(task) = dag.task(&claimed.task_id).cloned() else {
            let message = format!("task `{}` is not in the run's DAG version", claimed.task_id);
            return (Outcome::Failure(message), None, None);
        };
        let inputs = match self.inputs(claimed, &dag, &task).await {
            Ok(inputs) => inputs,
            Err(message) => return (Outcome::Failure(message), None, Some(task)),
        };
        let rendered = render_config(&task, &self.registry, &inputs).ok();
        // A stop of the process (after the grace period) or a lost claim cancels the try.
        let cancel = token.clone();
        let release = self.release.clone();
        let watcher = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                release.cancelled().await;
                cancel.cancel();
            }
        });
        let result = run_try(&task, &self.registry, &inputs, sink.clone(), cancel).await;
        watcher.abort();
        let outcome = match result {
            Ok(value) => Outcome::Success(value),
            Err(TryError::Cancelled) => Outcome::Stopped,
            Err(error) => Outcome::Failure(error.to_string()),
        };
        (outcome, rendered, Some(task))
    }

    /// Template inputs; XCom and variables are read only when the config mentions them.
    async fn inputs(
        &self,
        claimed: &Claimed,
        dag: &Dag,
        task: &Task,
    ) -> Result<TemplateInputs, String> {
        let conf: Map<String, Value> = match &claimed.conf {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        let params = resolve_params(dag, &conf)?;
        let config_text = task.config.to_string();
        let mut xcom = BTreeMap::new();
        if config_text.contains("xcom") {
            let rows: Vec<(String, Value)> = sqlx::query_as(
                "SELECT t.task_id, x.value FROM xcom x \
                 JOIN task_instance t ON t.id = x.task_instance_id \
                 WHERE t.dag_run_id = $1 AND x.key = 'return_value'",
            )
            .bind(claimed.dag_run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| format!("cannot read XCom: {error}"))?;
            xcom.extend(rows);
        }
        let mut variables = BTreeMap::new();
        if config_text.contains("var") {
            let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, val FROM variable")
                .fetch_all(&self.pool)
                .await
                .map_err(|error| format!("cannot read variables: {error}"))?;
            variables.extend(rows);
        }
        if claimed.try_number > 1 {
            // A new try starts without the previous try's output (as Airflow).
            sqlx::query("DELETE FROM xcom WHERE task_instance_id = $1")
                .bind(claimed.id)
                .execute(&self.pool)
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
        })
    }

    /// Stores the try's end (only if the row is still ours) and hands off downstream at once:
    /// the run's next tasks are decided, queued and, within free slots (`permit`, this try's,
    /// plus any idle ones), claimed and started here without a claim pass or NOTIFY.
    async fn complete(
        self: &Arc<Self>,
        claimed: &Claimed,
        outcome: Outcome,
        rendered: Option<Value>,
        task: Option<&Task>,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), StoreError> {
        let ended = Instant::now();
        let try_number = u32::try_from(claimed.try_number).unwrap_or(0);
        let (state, output, next_retry) = match outcome {
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
        let output = (!output.is_null()).then_some(output);
        // The end is retried through a database outage (the row guard makes a repeat
        // harmless): failing here would leave the row running, heartbeated, forever.
        let mut delay = Duration::from_millis(100);
        let rows = loop {
            let attempt = end_try(
                &self.pool,
                claimed.id,
                &self.config.owner,
                state,
                rendered.clone(),
                next_retry,
                output.clone(),
            )
            .await;
            match attempt {
                Err(StoreError::Database(error)) if is_transient(&error) => {
                    if self.release.is_cancelled() {
                        return Err(StoreError::Database(error));
                    }
                    tracing::warn!(%error, task_instance_id = claimed.id, retry_in = ?delay,
                        "cannot store the try's end; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => break other?,
            }
        };
        let Some(rows) = rows else {
            tracing::info!(
                task_instance_id = claimed.id,
                "try ended but the row is no longer ours"
            );
            return Ok(());
        };
        if state == TaskState::UpForRetry {
            // updraft_end_try woke the schedulers; one promotes the retry when it is due.
            return Ok(());
        }
        let dag = self.cache.get(&self.pool, claimed.dag_version_id).await?;
        // Slots for the tasks this end may make ready: ours, plus idle ones (never waited for).
        let mut permits = Vec::new();
        if !self.stopping.is_cancelled() {
            permits.push(permit);
            let wanted = dag.downstream(&claimed.task_id).len();
            while permits.len() < wanted {
                match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(extra) => permits.push(extra),
                    Err(_) => break,
                }
            }
        } else {
            drop(permit);
        }
        let claim = i32::try_from(permits.len()).unwrap_or(i32::MAX);
        let advanced = advance_after_try(
            &self.pool,
            &dag,
            claimed.dag_run_id,
            rows,
            &self.config.owner,
            claim,
        )
        .await?;
        metrics::HANDOFF.observe(ended.elapsed());
        for ((id, task_id, try_number, max_tries), permit) in
            advanced.claimed.into_iter().zip(permits.drain(..))
        {
            let next = Claimed {
                id,
                task_id,
                try_number,
                max_tries,
                ..claimed.clone()
            };
            self.spawn_try(next, permit);
        }
        // Slots not used here go back before the DAG's next runs are started and claimed.
        drop(permits);
        if advanced.finished.is_some() {
            // The run ended: the DAG's next queued runs may start.
            if advance_dag(&self.pool, &self.cache, &claimed.dag_id, false).await? > 0 {
                self.wake.notify_one();
            }
        }
        Ok(())
    }
}

/// Connection-level failures (the database or the network away), not errors in the SQL.
fn is_transient(error: &sqlx::Error) -> bool {
    !matches!(
        error,
        sqlx::Error::Database(_) | sqlx::Error::RowNotFound | sqlx::Error::ColumnDecode { .. }
    )
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
