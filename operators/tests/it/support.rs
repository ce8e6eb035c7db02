//! Test doubles for the context: a log that captures lines and a tiny renderer.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use updraft_operators::{
    LogSink, NoDagRuns, OperatorError, Renderer, TaskContext, TaskIdentity, XComSink,
    builtin_registry,
};

/// Keeps every log line, in order.
#[derive(Default)]
pub struct CaptureLog {
    lines: Mutex<Vec<String>>,
}

impl CaptureLog {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl LogSink for CaptureLog {
    fn write_line(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_string());
    }
}

/// Keeps every XCom entry pushed, in order.
#[derive(Default)]
pub struct CaptureXCom {
    entries: Mutex<Vec<(String, Value)>>,
}

impl CaptureXCom {
    pub fn entries(&self) -> Vec<(String, Value)> {
        self.entries.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl XComSink for CaptureXCom {
    async fn push(&self, key: &str, value: Value) -> Result<(), String> {
        self.entries.lock().unwrap().push((key.to_string(), value));
        Ok(())
    }
}

/// Resolves `{{ name.path }}` against the locals (minijinja lives in the orchestrator). A string
/// that is exactly one expression yields the native value; otherwise values are spliced as text.
pub struct PathRenderer;

impl Renderer for PathRenderer {
    fn render(&self, template: &Value, locals: &Map<String, Value>) -> Result<Value, String> {
        match template {
            Value::String(text) => render_text(text, locals),
            Value::Array(items) => items.iter().map(|item| self.render(item, locals)).collect(),
            Value::Object(fields) => fields
                .iter()
                .map(|(name, value)| Ok((name.clone(), self.render(value, locals)?)))
                .collect::<Result<Map<_, _>, String>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }
}

fn lookup(path: &str, locals: &Map<String, Value>) -> Result<Value, String> {
    let mut parts = path.trim().split('.');
    let first = parts.next().unwrap_or_default();
    let mut value = locals
        .get(first)
        .ok_or_else(|| format!("`{first}` is undefined"))?;
    for part in parts {
        value = value
            .get(part)
            .ok_or_else(|| format!("`{path}` is undefined"))?;
    }
    Ok(value.clone())
}

fn render_text(text: &str, locals: &Map<String, Value>) -> Result<Value, String> {
    let trimmed = text.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|rest| rest.strip_suffix("}}"))
        && !inner.contains("{{")
    {
        return lookup(inner, locals);
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or("unclosed `{{`")? + start;
        match lookup(&rest[start + 2..end], locals)? {
            Value::String(inner) => out.push_str(&inner),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

pub struct Harness {
    pub log: Arc<CaptureLog>,
    pub xcom: Arc<CaptureXCom>,
    pub ctx: TaskContext,
}

pub fn harness(task_id: &str) -> Harness {
    let log = Arc::new(CaptureLog::default());
    let xcom = Arc::new(CaptureXCom::default());
    let ctx = TaskContext {
        identity: TaskIdentity {
            dag_id: "operators_test".into(),
            run_id: "manual__test".into(),
            task_id: task_id.into(),
            try_number: 1,
            logical_date: "2024-01-01T00:00:00+00:00".into(),
            data_interval_start: "2024-01-01T00:00:00+00:00".into(),
            data_interval_end: "2024-01-02T00:00:00+00:00".into(),
            params: Map::new(),
        },
        log: log.clone(),
        xcom: xcom.clone(),
        dag_runs: Arc::new(NoDagRuns {
            reason: "operator tests have no run store".into(),
        }),
        cancel: CancellationToken::new(),
        renderer: Arc::new(PathRenderer),
    };
    Harness { log, xcom, ctx }
}

/// Runs an operator through the registry, as the orchestrator does (validate, then execute).
pub async fn run(operator: &str, config: Value, ctx: &TaskContext) -> Result<Value, OperatorError> {
    let registry = builtin_registry();
    let kind = registry.get(operator).unwrap();
    kind.validate(&config).map_err(OperatorError::Config)?;
    kind.execute(config, ctx).await
}

/// Renders nothing; gives the connections it holds, as the orchestrator's renderer does.
pub struct WithConnections(pub Vec<updraft_secrets::Connection>);

impl updraft_operators::Renderer for WithConnections {
    fn render(
        &self,
        template: &Value,
        _: &serde_json::Map<String, Value>,
    ) -> Result<Value, String> {
        Ok(template.clone())
    }

    fn connection(&self, conn_id: &str) -> Result<updraft_secrets::Connection, String> {
        self.0
            .iter()
            .find(|connection| connection.conn_id == conn_id)
            .cloned()
            .ok_or_else(|| format!("connection `{conn_id}` is not defined"))
    }
}
