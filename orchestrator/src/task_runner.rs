//! Runs one task try: render its templates, then execute its operator under its timeout.
//! Shared by the executor and `updraft dags test`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use updraft_operators::{LogSink, OperatorError, Registry, TaskContext, TaskIdentity};

use crate::dag::parse::type_matches;
use crate::dag::template::{TemplateRenderer, TemplateScope};
use crate::dag::{Dag, Task};

/// Everything templates can see (Airflow's names), gathered before the try starts.
#[derive(Debug, Clone, Default)]
pub struct TemplateInputs {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: u32,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    /// `params` with the run's conf applied and defaults filled.
    pub params: Map<String, Value>,
    pub conf: Map<String, Value>,
    /// Outputs of tasks of the same run, by task id (`xcom('task_id')`).
    pub xcom: BTreeMap<String, Value>,
    /// Variables from the database; `UPDRAFT_VAR_<NAME>` env vars take precedence.
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error("unknown operator `{0}`")]
    UnknownOperator(String),
    #[error("template error in {field}: {message}")]
    Template { field: String, message: String },
    #[error(transparent)]
    Operator(#[from] OperatorError),
    #[error("execution_timeout of {0:?} exceeded")]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
}

impl TemplateInputs {
    /// The names templates see: `ds`, `ts`, `params`, ... (functions are added by the renderer).
    pub fn scope(&self) -> TemplateScope {
        let mut names = Map::new();
        names.insert(
            "ds".into(),
            json!(self.logical_date.format("%Y-%m-%d").to_string()),
        );
        names.insert(
            "ds_nodash".into(),
            json!(self.logical_date.format("%Y%m%d").to_string()),
        );
        names.insert("ts".into(), json!(self.logical_date.to_rfc3339()));
        names.insert("logical_date".into(), json!(self.logical_date.to_rfc3339()));
        names.insert(
            "data_interval_start".into(),
            json!(self.data_interval_start.to_rfc3339()),
        );
        names.insert(
            "data_interval_end".into(),
            json!(self.data_interval_end.to_rfc3339()),
        );
        names.insert("run_id".into(), json!(self.run_id));
        names.insert("dag_id".into(), json!(self.dag_id));
        names.insert("task_id".into(), json!(self.task_id));
        names.insert("try_number".into(), json!(self.try_number));
        names.insert("params".into(), Value::Object(self.params.clone()));
        names.insert("conf".into(), Value::Object(self.conf.clone()));
        TemplateScope {
            names,
            xcom: self.xcom.clone(),
            variables: self.variables.clone(),
        }
    }
}

/// A run's `params`: each param's default, overridden by the conf value of the same name
/// (Airflow's `dag_run_conf_overrides_params`); a conf value of the wrong type is an error.
pub fn resolve_params(dag: &Dag, conf: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut params = Map::new();
    for (name, param) in &dag.params {
        let value = match conf.get(name) {
            Some(value) if type_matches(param.kind, value) => value.clone(),
            Some(value) => {
                return Err(format!(
                    "conf `{name}` = {value} does not match param type {:?}",
                    param.kind
                ));
            }
            None => param.default.clone().unwrap_or(Value::Null),
        };
        params.insert(name.clone(), value);
    }
    Ok(params)
}

/// Renders the task's config (all but the operator's deferred fields).
pub fn render_config(
    task: &Task,
    registry: &Registry,
    inputs: &TemplateInputs,
) -> Result<Value, TryError> {
    let operator = registry
        .get(&task.operator)
        .ok_or_else(|| TryError::UnknownOperator(task.operator.clone()))?;
    let renderer = TemplateRenderer::new(inputs.scope());
    render_with(&renderer, task, operator.deferred_fields())
}

fn render_with(
    renderer: &TemplateRenderer,
    task: &Task,
    deferred: &[&str],
) -> Result<Value, TryError> {
    let Value::Object(fields) = &task.config else {
        return Ok(task.config.clone());
    };
    let none = Map::new();
    let mut rendered = Map::with_capacity(fields.len());
    for (field, value) in fields {
        let value = if deferred.contains(&field.as_str()) {
            value.clone()
        } else {
            renderer
                .render_value(value, &none)
                .map_err(|message| TryError::Template {
                    field: format!("`{field}`"),
                    message,
                })?
        };
        rendered.insert(field.clone(), value);
    }
    Ok(Value::Object(rendered))
}

/// Renders and executes one try; the output becomes the task's XCom.
pub async fn run_try(
    task: &Task,
    registry: &Registry,
    inputs: &TemplateInputs,
    log: Arc<dyn LogSink>,
    cancel: CancellationToken,
) -> Result<Value, TryError> {
    let operator = registry
        .get(&task.operator)
        .ok_or_else(|| TryError::UnknownOperator(task.operator.clone()))?;
    let renderer = Arc::new(TemplateRenderer::new(inputs.scope()));
    let config = render_with(&renderer, task, operator.deferred_fields())?;
    // The operator sees a child token: a timeout cancels it without cancelling the caller's.
    let operator_cancel = cancel.child_token();
    let ctx = TaskContext {
        identity: TaskIdentity {
            dag_id: inputs.dag_id.clone(),
            run_id: inputs.run_id.clone(),
            task_id: task.task_id.clone(),
            try_number: inputs.try_number,
        },
        log,
        cancel: operator_cancel.clone(),
        renderer,
    };
    let execution = operator.execute(config, &ctx);
    let timed = async {
        match task.execution_timeout {
            Some(limit) => match tokio::time::timeout(limit, execution).await {
                Ok(result) => result.map_err(TryError::from),
                Err(_) => {
                    operator_cancel.cancel();
                    Err(TryError::Timeout(limit))
                }
            },
            None => execution.await.map_err(TryError::from),
        }
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TryError::Cancelled),
        result = timed => match result {
            Err(TryError::Operator(OperatorError::Cancelled)) => Err(TryError::Cancelled),
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{RetryPolicy, TriggerRule};

    fn task(operator: &str, config: Value, timeout: Option<Duration>) -> Task {
        Task {
            task_id: "t".into(),
            operator: operator.into(),
            upstream: Vec::new(),
            trigger_rule: TriggerRule::AllSuccess,
            owner: "me".into(),
            retry: RetryPolicy::default(),
            execution_timeout: timeout,
            config,
        }
    }

    fn inputs() -> TemplateInputs {
        let logical_date = "2023-09-03T10:00:00Z".parse().unwrap();
        let mut xcom = BTreeMap::new();
        xcom.insert("fetch".into(), json!({"body": {"results": [1, 2]}}));
        TemplateInputs {
            dag_id: "d".into(),
            run_id: "manual__1".into(),
            task_id: "t".into(),
            try_number: 1,
            logical_date,
            data_interval_start: logical_date,
            data_interval_end: logical_date,
            params: serde_json::from_value(json!({"topic": "users"})).unwrap(),
            xcom,
            ..TemplateInputs::default()
        }
    }

    struct Silent;
    impl LogSink for Silent {
        fn write_line(&self, _line: &str) {}
    }

    #[test]
    fn config_renders_except_deferred_fields() {
        let registry = updraft_operators::builtin_registry();
        let config = json!({
            "topic": "{{ params.topic }}-{{ ds_nodash }}",
            "for_each": "{{ xcom('fetch').body.results }}",
            "value": {"n": "{{ item }}"},
        });
        let rendered =
            render_config(&task("kafka_publish", config, None), &registry, &inputs()).unwrap();
        assert_eq!(
            rendered,
            json!({"topic": "users-20230903", "for_each": [1, 2], "value": {"n": "{{ item }}"}})
        );
    }

    #[test]
    fn a_template_error_names_the_field() {
        let registry = updraft_operators::builtin_registry();
        let error = render_config(
            &task("shell", json!({"command": "echo {{ nope }}"}), None),
            &registry,
            &inputs(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, TryError::Template { field, .. } if field == "`command`"),
            "{error}"
        );
        assert!(error.to_string().contains("undefined"), "{error}");
    }

    #[tokio::test]
    async fn a_failing_template_fails_the_try_without_running_the_operator() {
        let registry = updraft_operators::builtin_registry();
        let marker = std::env::temp_dir().join(format!("updraft-never-{}", std::process::id()));
        let command = format!("touch {} {{{{ missing }}}}", marker.display());
        let result = run_try(
            &task("shell", json!({"command": command}), None),
            &registry,
            &inputs(),
            Arc::new(Silent),
            CancellationToken::new(),
        )
        .await;
        assert!(
            matches!(result, Err(TryError::Template { .. })),
            "{result:?}"
        );
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn execution_timeout_and_cancellation_end_the_try() {
        let registry = updraft_operators::builtin_registry();
        let slow = task(
            "shell",
            json!({"command": "sleep 30"}),
            Some(Duration::from_millis(300)),
        );
        let started = std::time::Instant::now();
        let result = run_try(
            &slow,
            &registry,
            &inputs(),
            Arc::new(Silent),
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(result, Err(TryError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let cancel = CancellationToken::new();
        let no_limit = task("shell", json!({"command": "sleep 30"}), None);
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let result = run_try(&no_limit, &registry, &inputs(), Arc::new(Silent), cancel).await;
        assert!(matches!(result, Err(TryError::Cancelled)), "{result:?}");
    }

    #[tokio::test]
    async fn the_output_is_the_operators_xcom() {
        let registry = updraft_operators::builtin_registry();
        let result = run_try(
            &task("empty", json!({}), None),
            &registry,
            &inputs(),
            Arc::new(Silent),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(result.unwrap(), Value::Null);
    }
}
