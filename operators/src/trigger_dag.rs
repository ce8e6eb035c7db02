//! `trigger_dag`: creates a run of another DAG with a conf (Airflow's TriggerDagRunOperator)
//! and optionally waits until that run ends in one of `allowed_states` or `failed_states`.

use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fields::{DurationValue, Templated};
use crate::{DagRunStatus, NewDagRun, Operator, OperatorError, TaskContext};

const RUN_STATES: [&str; 4] = ["queued", "running", "success", "failed"];

#[derive(Debug, Default)]
pub struct TriggerDagOperator;

/// `trigger_dag`'s fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDagConfig {
    /// The DAG to run.
    pub trigger_dag_id: String,
    /// The new run's id. Default `manual__<logical date>`. A retry of this task that finds a
    /// run with this id already there (made by an earlier try) waits for it instead.
    #[serde(default)]
    pub trigger_run_id: Option<String>,
    /// The new run's logical date (RFC 3339). Default now.
    #[serde(default)]
    pub logical_date: Option<String>,
    /// The new run's conf (an object, or a template that renders to one); checked against the
    /// triggered DAG's params.
    #[serde(default)]
    pub conf: Option<Value>,
    /// A note on the new run.
    #[serde(default)]
    pub note: Option<String>,
    /// Wait until the run ends in one of `allowed_states` (success) or `failed_states`
    /// (failure). Default false: done once the run is created.
    #[serde(default)]
    pub wait_for_completion: bool,
    /// Run states that make this task succeed while waiting. Default `[success]`.
    #[serde(default = "default_allowed_states")]
    pub allowed_states: Vec<String>,
    /// Run states that make this task fail while waiting. Default `[failed]`.
    #[serde(default = "default_failed_states")]
    pub failed_states: Vec<String>,
    /// How often the run's state is read while waiting. Default 1s.
    #[serde(default = "default_poke_interval")]
    #[schemars(default = "default_poke_interval_text")]
    pub poke_interval: Templated<DurationValue>,
}

fn default_allowed_states() -> Vec<String> {
    vec!["success".into()]
}

fn default_failed_states() -> Vec<String> {
    vec!["failed".into()]
}

fn default_poke_interval() -> Templated<DurationValue> {
    Templated::Value(DurationValue(Duration::from_secs(1)))
}

fn default_poke_interval_text() -> &'static str {
    "1s"
}

#[async_trait]
impl Operator for TriggerDagOperator {
    const NAME: &'static str = "trigger_dag";
    type Config = TriggerDagConfig;

    fn check(config: &TriggerDagConfig) -> Result<(), String> {
        if config.trigger_dag_id.trim().is_empty() {
            return Err("`trigger_dag_id` is empty".into());
        }
        for (field, states) in [
            ("allowed_states", &config.allowed_states),
            ("failed_states", &config.failed_states),
        ] {
            if let Some(state) = states.iter().find(|s| !RUN_STATES.contains(&s.as_str())) {
                return Err(format!(
                    "`{field}`: `{state}` is not a run state ({})",
                    RUN_STATES.join(", ")
                ));
            }
        }
        if let Some(state) = config
            .allowed_states
            .iter()
            .find(|state| config.failed_states.contains(state))
        {
            return Err(format!(
                "`{state}` is in both `allowed_states` and `failed_states`"
            ));
        }
        match &config.conf {
            None | Some(Value::Object(_) | Value::String(_)) => Ok(()),
            Some(other) => Err(format!("`conf` must be an object, found {other}")),
        }
    }

    async fn execute(
        &self,
        config: TriggerDagConfig,
        ctx: &TaskContext,
    ) -> Result<Value, OperatorError> {
        let poke_interval = config.poke_interval.resolve("poke_interval")?.0;
        let conf = match config.conf {
            None => Default::default(),
            Some(Value::Object(conf)) => conf,
            Some(other) => {
                return Err(OperatorError::Config(format!(
                    "`conf` must render to an object, found {other}"
                )));
            }
        };
        let dag_id = config.trigger_dag_id.as_str();
        let earlier = match (&config.trigger_run_id, ctx.identity.try_number > 1) {
            (Some(run_id), true) => ctx
                .dag_runs
                .status(dag_id, run_id)
                .await
                .map_err(OperatorError::Failed)?,
            _ => None,
        };
        let mut run = match earlier {
            Some(run) => {
                ctx.log(format!(
                    "run `{}` of DAG `{dag_id}` exists already (an earlier try made it)",
                    run.run_id
                ));
                run
            }
            None => {
                let request = NewDagRun {
                    run_id: config.trigger_run_id.clone(),
                    logical_date: config.logical_date.clone(),
                    conf,
                    note: config.note.clone(),
                };
                let run = ctx
                    .dag_runs
                    .trigger(dag_id, request)
                    .await
                    .map_err(OperatorError::Failed)?;
                ctx.log(format!("triggered run `{}` of DAG `{dag_id}`", run.run_id));
                run
            }
        };
        if config.wait_for_completion {
            loop {
                if config.allowed_states.contains(&run.state) {
                    break;
                }
                if config.failed_states.contains(&run.state) {
                    return Err(OperatorError::Failed(format!(
                        "run `{}` of DAG `{dag_id}` ended `{}` (failed_states: {})",
                        run.run_id,
                        run.state,
                        config.failed_states.join(", ")
                    )));
                }
                tokio::select! {
                    biased;
                    () = ctx.cancel.cancelled() => return Err(OperatorError::Cancelled),
                    () = tokio::time::sleep(poke_interval) => {}
                }
                let now = ctx
                    .dag_runs
                    .status(dag_id, &run.run_id)
                    .await
                    .map_err(OperatorError::Failed)?;
                run = now.ok_or_else(|| {
                    OperatorError::Failed(format!(
                        "run `{}` of DAG `{dag_id}` was deleted while waiting for it",
                        run.run_id
                    ))
                })?;
            }
            ctx.log(format!("run `{}` of DAG `{dag_id}` is `{}`", run.run_id, run.state));
        }
        Ok(output(dag_id, &run))
    }
}

fn output(dag_id: &str, run: &DagRunStatus) -> Value {
    json!({
        "trigger_dag_id": dag_id,
        "trigger_run_id": run.run_id,
        "logical_date": run.logical_date,
        "state": run.state,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(config: Value) -> Result<(), String> {
        let config: TriggerDagConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        TriggerDagOperator::check(&config)
    }

    #[test]
    fn states_must_be_run_states_and_not_both_allowed_and_failed() {
        assert!(check(json!({"trigger_dag_id": "b"})).is_ok());
        let error = check(json!({"trigger_dag_id": "b", "allowed_states": ["done"]})).unwrap_err();
        assert!(error.contains("`done` is not a run state"), "{error}");
        let error = check(json!({"trigger_dag_id": "b", "failed_states": ["success"]})).unwrap_err();
        assert!(error.contains("in both"), "{error}");
        let error = check(json!({"trigger_dag_id": "b", "conf": [1]})).unwrap_err();
        assert!(error.contains("must be an object"), "{error}");
    }
}
