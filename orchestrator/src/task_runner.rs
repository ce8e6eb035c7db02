//! Runs one task try: render its templates, then execute its operator under its timeout.
//! Shared by the executor and `updraft dags test`.
// INTERFACE STUB: the DAG-language engineer replaces the body; signatures are agreed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use updraft_operators::{LogSink, OperatorError, Registry};

use crate::dag::Task;

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

/// Renders the task's config (all but the operator's deferred fields).
pub fn render_config(task: &Task, registry: &Registry, inputs: &TemplateInputs) -> Result<Value, TryError> {
    let _ = (registry, inputs);
    Ok(task.config.clone())
}

/// Renders and executes one try; the output becomes the task's XCom.
pub async fn run_try(
    task: &Task,
    registry: &Registry,
    inputs: &TemplateInputs,
    log: Arc<dyn LogSink>,
    cancel: CancellationToken,
) -> Result<Value, TryError> {
    let _ = (log, cancel);
    let operator = registry.get(&task.operator).ok_or_else(|| TryError::UnknownOperator(task.operator.clone()))?;
    let _ = (operator, render_config(task, registry, inputs)?);
    Err(TryError::Cancelled)
}
