use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use updraft_secrets::Connection;

/// Who is running: the names an operator puts in its messages and metadata.
#[derive(Debug, Clone, Default)]
pub struct TaskIdentity {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: u32,
    /// The run's logical date and data interval, RFC 3339.
    pub logical_date: String,
    pub data_interval_start: String,
    pub data_interval_end: String,
    /// The run's params: the DAG's defaults with the run's conf applied.
    pub params: Map<String, Value>,
}

/// Where a try's log lines go (the task log in the database, or stdout for `dags test`).
pub trait LogSink: Send + Sync {
    fn write_line(&self, line: &str);
}

/// Prints lines to stdout, prefixed with the task id.
pub struct StdoutLog {
    pub prefix: String,
}

impl LogSink for StdoutLog {
    fn write_line(&self, line: &str) {
        println!("{}{line}", self.prefix);
    }
}

/// Renders templates for fields an operator renders itself ([`crate::Operator::DEFERRED_FIELDS`]).
///
/// `locals` are extra names in scope (e.g. `item`). A string that is exactly one `{{ expr }}`
/// renders to the expression's native JSON value; other strings render to strings; arrays and
/// objects render element by element.
pub trait Renderer: Send + Sync {
    fn render(&self, template: &Value, locals: &Map<String, Value>) -> Result<Value, String>;

    /// The connection `conn_id` as templates see it (`conn.<id>`: the environment first, then
    /// the store); its secrets are masked in what the try leaves behind from then on.
    fn connection(&self, conn_id: &str) -> Result<Connection, String> {
        Err(format!(
            "connection `{conn_id}`: no connections are available here"
        ))
    }
}

/// Where a try's XCom entries besides its return value go (a plugin's `xcom` lines).
#[async_trait]
pub trait XComSink: Send + Sync {
    /// Stores `value` under `key` for this try; `return_value` is the result's and refused.
    async fn push(&self, key: &str, value: Value) -> Result<(), String>;
}

/// Writes XCom entries to the try's log instead of storing them (`dags test`, tests).
pub struct LoggedXCom {
    pub log: Arc<dyn LogSink>,
}

#[async_trait]
impl XComSink for LoggedXCom {
    async fn push(&self, key: &str, value: Value) -> Result<(), String> {
        self.log.write_line(&format!("xcom `{key}` = {value}"));
        Ok(())
    }
}

/// A run of another DAG to create (`trigger_dag`).
#[derive(Debug, Clone, Default)]
pub struct NewDagRun {
    /// Default: the run store's own (`manual__<logical date>`).
    pub run_id: Option<String>,
    /// RFC 3339; default now.
    pub logical_date: Option<String>,
    pub conf: Map<String, Value>,
    pub note: Option<String>,
}

/// A run as `trigger_dag` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DagRunStatus {
    pub run_id: String,
    pub logical_date: String,
    /// queued, running, success or failed.
    pub state: String,
}

/// The runs of other DAGs a task may create and watch (the run store, seen from a try).
#[async_trait]
pub trait DagRuns: Send + Sync {
    /// Creates a queued run of `dag_id`.
    async fn trigger(&self, dag_id: &str, run: NewDagRun) -> Result<DagRunStatus, String>;
    /// The run as it is now; `None` when there is no such run.
    async fn status(&self, dag_id: &str, run_id: &str) -> Result<Option<DagRunStatus>, String>;
}

/// Where there is no run store (`dags test`, tests): creating a run is refused with `reason`.
pub struct NoDagRuns {
    pub reason: String,
}

#[async_trait]
impl DagRuns for NoDagRuns {
    async fn trigger(&self, dag_id: &str, _run: NewDagRun) -> Result<DagRunStatus, String> {
        Err(format!("cannot trigger DAG `{dag_id}`: {}", self.reason))
    }

    async fn status(&self, _dag_id: &str, _run_id: &str) -> Result<Option<DagRunStatus>, String> {
        Err(self.reason.clone())
    }
}

/// What a try may reach besides its config and log: where its XCom entries go, and the runs
/// of other DAGs.
#[derive(Clone)]
pub struct TaskServices {
    pub xcom: Arc<dyn XComSink>,
    pub dag_runs: Arc<dyn DagRuns>,
}

/// What an operator gets besides its config.
#[derive(Clone)]
pub struct TaskContext {
    pub identity: TaskIdentity,
    pub log: Arc<dyn LogSink>,
    pub xcom: Arc<dyn XComSink>,
    pub dag_runs: Arc<dyn DagRuns>,
    pub cancel: CancellationToken,
    pub renderer: Arc<dyn Renderer>,
}

impl TaskContext {
    /// Writes one line to the try's log.
    pub fn log(&self, line: impl AsRef<str>) {
        self.log.write_line(line.as_ref());
    }

    /// A connection named by the config's `conn_id` ([`Renderer::connection`]).
    pub fn connection(&self, conn_id: &str) -> Result<Connection, String> {
        self.renderer.connection(conn_id)
    }
}
