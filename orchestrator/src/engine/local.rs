//! `updraft dags test`: a run of one DAG in this process, without scheduler or database. It is
//! the engine's run path with an in-memory state store: the run is identified and given its
//! data interval as a manual trigger would (`trigger::run_identity`),
//! tasks are decided by the scheduler's [`decide_run`] and rendered and executed by the
//! executor's [`run_try`]; tasks run one at a time, one try each, in dependency order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use updraft_operators::{LogSink, LoggedXCom, NoDagRuns, Registry, TaskServices};
use updraft_secrets::Masker;

use super::decide::decide_run;
use super::execute::run_try;
use super::render::TemplateInputs;
use super::trigger::run_identity;
use crate::dag::params::{ParamError, resolve_params};
use crate::dag::secret_lookup::Stored;
use crate::dag::{Dag, RunType, TaskState};

#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalTaskResult {
    pub task_id: String,
    /// `success`, `failed`, `upstream_failed` or `skipped`.
    pub state: TaskState,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    pub output: Option<Value>,
    pub error: Option<String>,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalRun {
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub tasks: Vec<LocalTaskResult>,
}

impl LocalRun {
    pub fn succeeded(&self) -> bool {
        self.tasks
            .iter()
            .all(|task| matches!(task.state, TaskState::Success | TaskState::Skipped))
    }
}

/// Gives the log sink of a task, by task id.
pub type LogFor = Box<dyn Fn(&str) -> Arc<dyn LogSink> + Send + Sync>;

pub struct LocalRunOptions {
    pub conf: Map<String, Value>,
    pub logical_date: DateTime<Utc>,
    /// Variables as the store would give them (`UPDRAFT_VAR_*` env vars still win).
    pub variables: BTreeMap<String, Stored<String>>,
    /// Connections as the store would give them (`UPDRAFT_CONN_*` env vars still win).
    pub connections: BTreeMap<String, Stored<updraft_secrets::Connection>>,
    /// Where each task's log lines go, by task id.
    pub log_for: LogFor,
    /// Called when a task finishes (to print progress as it happens).
    pub on_task_done: Box<dyn Fn(&LocalTaskResult) + Send + Sync>,
}

impl LocalRunOptions {
    /// Logs to stdout prefixed with `[task_id] `, nothing printed on completion, logical date now.
    pub fn new(conf: Map<String, Value>) -> LocalRunOptions {
        LocalRunOptions {
            conf,
            logical_date: Utc::now().trunc_subsecs(0),
            variables: BTreeMap::new(),
            connections: BTreeMap::new(),
            log_for: Box::new(|task_id| {
                Arc::new(updraft_operators::StdoutLog {
                    prefix: format!("[{task_id}] "),
                })
            }),
            on_task_done: Box::new(|_| {}),
        }
    }
}

/// Runs every task once; `Err` only for a conf that does not fit the DAG's params.
pub async fn run_locally(
    dag: &Dag,
    registry: &Registry,
    options: LocalRunOptions,
    cancel: CancellationToken,
) -> Result<LocalRun, ParamError> {
    let params = resolve_params(dag, &options.conf)?;
    let logical_date = options.logical_date;
    let (run_id, (data_interval_start, data_interval_end)) =
        run_identity(dag, RunType::Manual, logical_date);
    let mut states: HashMap<&str, TaskState> = dag
        .tasks
        .iter()
        .map(|task| (task.task_id.as_str(), TaskState::None))
        .collect();
    let mut xcom: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = Vec::with_capacity(dag.tasks.len());
    loop {
        let decisions = decide_run(dag, &states);
        if decisions.tasks.is_empty() {
            break;
        }
        for (task_id, state) in decisions.tasks {
            states.insert(task_id, state);
            if state.is_finished() {
                let result = LocalTaskResult {
                    task_id: task_id.to_string(),
                    state,
                    duration: Duration::ZERO,
                    output: None,
                    error: None,
                };
                (options.on_task_done)(&result);
                results.push(result);
                continue;
            }
            let Some(task) = dag.task(task_id) else {
                continue;
            };
            let masker = Arc::new(Masker::new());
            let inputs = TemplateInputs {
                dag_id: dag.dag_id.clone(),
                run_id: run_id.clone(),
                task_id: task_id.to_string(),
                try_number: 1,
                logical_date,
                data_interval_start,
                data_interval_end,
                params: params.clone(),
                conf: options.conf.clone(),
                xcom: xcom.clone(),
                variables: options.variables.clone(),
                connections: options.connections.clone(),
                masker: Arc::clone(&masker),
            };
            let started = Instant::now();
            let sink = Arc::new(MaskedLog {
                inner: (options.log_for)(task_id),
                masker: Arc::clone(&masker),
            });
            let services = TaskServices {
                xcom: Arc::new(LoggedXCom { log: sink.clone() }),
                dag_runs: Arc::new(NoDagRuns {
                    reason:
                        "`dags test` runs one DAG without the run store; trigger it in a scheduler"
                            .into(),
                }),
            };
            let (outcome, _) =
                run_try(task, registry, &inputs, sink, services, cancel.clone()).await;
            let result = match outcome {
                Ok(output) => {
                    xcom.insert(task_id.to_string(), output.clone());
                    LocalTaskResult {
                        task_id: task_id.to_string(),
                        state: TaskState::Success,
                        duration: started.elapsed(),
                        output: Some(output),
                        error: None,
                    }
                }
                Err(error) => LocalTaskResult {
                    task_id: task_id.to_string(),
                    state: TaskState::Failed,
                    duration: started.elapsed(),
                    output: None,
                    error: Some(masker.mask(&error.to_string())),
                },
            };
            states.insert(task_id, result.state);
            (options.on_task_done)(&result);
            results.push(result);
        }
    }
    Ok(LocalRun {
        run_id,
        logical_date,
        data_interval_start,
        data_interval_end,
        tasks: results,
    })
}

/// A task's log with the secrets its templates revealed masked, as the executor stores it.
struct MaskedLog {
    inner: Arc<dyn LogSink>,
    masker: Arc<Masker>,
}

impl LogSink for MaskedLog {
    fn write_line(&self, line: &str) {
        self.inner.write_line(&self.masker.mask(line));
    }
}
