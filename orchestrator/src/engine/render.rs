//! Render: everything templates can see (Airflow's names) and the task's config rendered once
//! per try. The rendered config is both what the operator receives and what is stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use updraft_operators::Registry;

use crate::dag::Task;
use crate::dag::secret_lookup::Stored;
use crate::dag::template::{TemplateRenderer, TemplateScope};

/// Everything templates can see, gathered before the try starts.
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
    pub variables: BTreeMap<String, Stored<String>>,
    /// Connections from the database; `UPDRAFT_CONN_<ID>` env vars take precedence.
    pub connections: BTreeMap<String, Stored<updraft_secrets::Connection>>,
    /// Collects the secrets the templates reveal, to mask them in what the try leaves behind.
    pub masker: Arc<updraft_secrets::Masker>,
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
            connections: self.connections.clone(),
            masker: Arc::clone(&self.masker),
        }
    }
}

/// Why a config could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown operator `{0}`")]
    UnknownOperator(String),
    #[error("template error in {field}: {message}")]
    Template { field: String, message: String },
}

/// A task's config with its templates rendered (all but the operator's deferred fields, which
/// the operator renders per item with `renderer`).
pub struct Rendered {
    pub config: Value,
    pub renderer: Arc<TemplateRenderer>,
}

/// Renders the task's config once; the result is what the operator receives.
pub fn render(
    task: &Task,
    registry: &Registry,
    inputs: &TemplateInputs,
) -> Result<Rendered, RenderError> {
    let operator = registry
        .get(&task.operator)
        .ok_or_else(|| RenderError::UnknownOperator(task.operator.clone()))?;
    let renderer = Arc::new(TemplateRenderer::new(inputs.scope()));
    let deferred = operator.deferred_fields();
    let shell = operator.shell_fields();
    let secret = operator.secret_fields();
    let Value::Object(fields) = &task.config else {
        return Ok(Rendered {
            config: task.config.clone(),
            renderer,
        });
    };
    let none = Map::new();
    let mut config = Map::with_capacity(fields.len());
    for (field, value) in fields {
        let template_error = |message| RenderError::Template {
            field: format!("`{field}`"),
            message,
        };
        let value = match value {
            _ if deferred.contains(&field.as_str()) => value.clone(),
            Value::String(text) if shell.contains(&field.as_str()) => renderer
                .render_shell_str(text, &none)
                .map_err(template_error)?,
            _ => renderer
                .render_value(value, &none)
                .map_err(template_error)?,
        };
        if secret.contains(&field.as_str()) {
            inputs.masker.add_all_strings(&value);
        }
        config.insert(field.clone(), value);
    }
    Ok(Rendered {
        config: Value::Object(config),
        renderer,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dag::{RetryPolicy, TriggerRule};

    pub(crate) fn task(operator: &str, config: Value, timeout: Option<Duration>) -> Task {
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

    pub(crate) fn inputs() -> TemplateInputs {
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

    #[test]
    fn config_renders_except_deferred_fields() {
        let registry = updraft_operators::builtin_registry();
        let config = json!({
            "topic": "{{ params.topic }}-{{ ds_nodash }}",
            "for_each": "{{ xcom('fetch').body.results }}",
            "value": {"n": "{{ item }}"},
        });
        let rendered = render(&task("kafka_publish", config, None), &registry, &inputs()).unwrap();
        assert_eq!(
            rendered.config,
            json!({"topic": "users-20230903", "for_each": [1, 2], "value": {"n": "{{ item }}"}})
        );
    }

    #[test]
    fn a_template_error_names_the_field() {
        let registry = updraft_operators::builtin_registry();
        let error = render(
            &task("shell", json!({"command": "echo {{ nope }}"}), None),
            &registry,
            &inputs(),
        )
        .err()
        .unwrap();
        assert!(
            matches!(&error, RenderError::Template { field, .. } if field == "`command`"),
            "{error}"
        );
        assert!(error.to_string().contains("undefined"), "{error}");
    }
}
