//! One claimed try: gather template inputs, run, store output and state, hand off downstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::logs::DbLogSink;
use super::{Claimed, Executor};
use crate::dag::{Dag, RetryPolicy, Task};
use crate::metrics;
use crate::scheduler::decide::advance_run;
use crate::store::{StoreError, TaskState, channels, notify};
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
    pub(super) async fn run_claimed(self: &Arc<Self>, claimed: Claimed) {
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
        if let Err(error) = self.complete(&claimed, outcome, rendered, task.as_ref()).await {
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

    /// Stores the try's end (only if the row is still ours) and hands off downstream at once.
    async fn complete(
        &self,
        claimed: &Claimed,
        outcome: Outcome,
        rendered: Option<Value>,
        task: Option<&Task>,
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
        let done: Option<i64> = sqlx::query_scalar(
            "WITH done AS ( \
               UPDATE task_instance SET state = $3, end_date = now(), \
                 duration = extract(epoch FROM now() - start_date), rendered_config = $4, \
                 next_retry_at = $5, updated_at = now() \
               WHERE id = $1 AND owner = $2 AND state = 'running' RETURNING id, dag_run_id), \
             out AS ( \
               INSERT INTO xcom (task_instance_id, key, value) \
               SELECT id, 'return_value', $6 FROM done WHERE $6::jsonb IS NOT NULL \
               ON CONFLICT (task_instance_id, key) DO UPDATE SET value = EXCLUDED.value) \
             SELECT dag_run_id FROM done",
        )
        .bind(claimed.id)
        .bind(&self.config.owner)
        .bind(state.as_str())
        .bind(rendered)
        .bind(next_retry)
        .bind((!output.is_null()).then_some(output))
        .fetch_optional(&self.pool)
        .await?;
        let Some(dag_run_id) = done else {
            tracing::info!(task_instance_id = claimed.id, "try ended but the row is no longer ours");
            return Ok(());
        };
        if state == TaskState::UpForRetry {
            // Wake the schedulers so one of them promotes the retry when it is due.
            notify(&self.pool, channels::TASKS, &claimed.dag_id).await?;
            return Ok(());
        }
        let queued = advance_run(&self.pool, &self.cache, dag_run_id, &claimed.dag_id).await?;
        metrics::HANDOFF.observe(ended.elapsed());
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(())
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
