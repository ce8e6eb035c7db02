//! A plugin's operator: the config checked against the plugin's JSON Schema, then
//! `<command> run <operator>` with `{"config", "context"}` on stdin and JSON lines on stdout
//! (`log`, `xcom`, `result`); stderr goes to the log; the exit code decides.

use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use schemars::Schema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::manifest::Manifest;
use super::spec::OperatorSpec;
use crate::fields::excerpt;
use crate::process::{
    Line, ProcessGroup, Stream, describe_exit, drain, read_output, withhold_updraft_settings,
};
use crate::{OperatorError, OperatorKind, TaskContext};

/// The longest protocol line (a `result` or `xcom` value included).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Longer stderr lines are split.
const MAX_STDERR_LINE_BYTES: usize = 64 * 1024;

/// One operator of a plugin, as the registry holds it.
pub struct PluginOperator {
    name: String,
    /// `plugin@version`, in messages.
    plugin: String,
    program: PathBuf,
    args: Vec<String>,
    folder: PathBuf,
    schema: Value,
    validator: jsonschema::Validator,
    deferred: Vec<String>,
    secret: Vec<String>,
}

impl PluginOperator {
    /// Name, schema and field lists, for noticing a changed `spec`.
    pub(super) fn fingerprint(&self) -> String {
        format!(
            "{} {} {} {:?} {:?}",
            self.name, self.plugin, self.schema, self.deferred, self.secret
        )
    }

    pub fn new(manifest: &Manifest, name: &str, spec: OperatorSpec) -> Result<Self, String> {
        let validator = jsonschema::validator_for(&spec.config_schema)
            .map_err(|error| format!("operator `{name}`: {error}"))?;
        Ok(PluginOperator {
            name: name.to_string(),
            plugin: format!("{}@{}", manifest.name, manifest.version),
            program: manifest.program.clone(),
            args: manifest.args.clone(),
            folder: manifest.folder.clone(),
            schema: spec.config_schema,
            validator,
            deferred: spec.deferred,
            secret: spec.secret,
        })
    }

    /// What is wrong with `config`; with `templates_pending`, a string that is still a template
    /// is not held against the schema (it is checked again once rendered).
    fn problems(&self, config: &Value, templates_pending: bool) -> Vec<String> {
        self.validator
            .iter_errors(config)
            .filter(|error| {
                let pending = matches!(error.instance().as_ref(), Value::String(text)
                    if text.contains("{{") || text.contains("{%"));
                !(templates_pending && pending)
            })
            .map(|error| match error.instance_path().to_string() {
                path if path.is_empty() => error.to_string(),
                path => format!("at `{path}`: {error}"),
            })
            .collect()
    }

    fn label(&self) -> String {
        format!("plugin `{}` operator `{}`", self.plugin, self.name)
    }
}

/// One line of the protocol on the plugin's stdout.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Message {
    Log {
        #[serde(default = "info")]
        level: String,
        message: String,
    },
    Xcom {
        key: String,
        value: Value,
    },
    Result {
        value: Value,
    },
}

fn info() -> String {
    "info".into()
}

/// Every connection the config names (`conn_id`, `*_conn_id`), secrets included: the plugin
/// gets them in its context, and the masker learns them.
fn connections(config: &Value, ctx: &TaskContext) -> Result<Map<String, Value>, OperatorError> {
    let mut found = Map::new();
    let Value::Object(fields) = config else {
        return Ok(found);
    };
    for (field, value) in fields {
        if !(field == "conn_id" || field.ends_with("_conn_id")) {
            continue;
        }
        let Value::String(conn_id) = value else {
            continue;
        };
        let connection = ctx.connection(conn_id).map_err(OperatorError::Config)?;
        let extra = connection
            .extra_dejson()
            .map_err(|error| OperatorError::Config(error.to_string()))?;
        found.insert(
            conn_id.clone(),
            json!({
                "conn_type": connection.conn_type,
                "host": connection.host,
                "port": connection.port,
                "login": connection.login,
                "password": connection.password,
                "schema": connection.schema,
                "extra": extra,
            }),
        );
    }
    Ok(found)
}

#[async_trait]
impl OperatorKind for PluginOperator {
    fn name(&self) -> &str {
        &self.name
    }

    fn deferred_fields(&self) -> Vec<&str> {
        self.deferred.iter().map(String::as_str).collect()
    }

    fn shell_fields(&self) -> Vec<&str> {
        Vec::new()
    }

    fn secret_fields(&self) -> Vec<&str> {
        self.secret.iter().map(String::as_str).collect()
    }

    fn config_schema(&self) -> Schema {
        Schema::try_from(self.schema.clone()).unwrap_or_default()
    }

    fn validate(&self, config: &Value) -> Result<(), String> {
        match self.problems(config, true).as_slice() {
            [] => Ok(()),
            problems => Err(problems.join("; ")),
        }
    }

    async fn execute(&self, config: Value, ctx: &TaskContext) -> Result<Value, OperatorError> {
        if let problems @ [_, ..] = self.problems(&config, false).as_slice() {
            return Err(OperatorError::Config(problems.join("; ")));
        }
        let label = self.label();
        let identity = &ctx.identity;
        let request = json!({
            "config": config,
            "context": {
                "dag_id": identity.dag_id,
                "run_id": identity.run_id,
                "task_id": identity.task_id,
                "try_number": identity.try_number,
                "logical_date": identity.logical_date,
                "data_interval_start": identity.data_interval_start,
                "data_interval_end": identity.data_interval_end,
                "params": identity.params,
                "connections": connections(&config, ctx)?,
            },
        });
        let group = ProcessGroup::start().map_err(|error| {
            OperatorError::Failed(format!("cannot start a process group for {label}: {error}"))
        })?;
        let mut command = Command::new(&self.program);
        withhold_updraft_settings(&mut command);
        let mut child = command
            .args(&self.args)
            .args(["run", &self.name])
            .current_dir(&self.folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(group.pgid)
            .spawn()
            .map_err(|error| {
                OperatorError::Failed(format!(
                    "cannot start {label} (`{}`): {error}",
                    self.program.display()
                ))
            })?;
        let (mut lines, mut tasks) =
            read_output(&mut child, MAX_MESSAGE_BYTES, MAX_STDERR_LINE_BYTES);
        if let Some(mut stdin) = child.stdin.take() {
            let body = format!("{request}\n");
            // A plugin that does not read its input must not block the try: write aside.
            tasks.spawn(async move {
                let _ = stdin.write_all(body.as_bytes()).await;
            });
        }

        let mut reader = Reader::new(ctx);
        let status = loop {
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    ctx.log(format!("cancelled: stopping {label}"));
                    group.terminate(&mut child).await;
                    return Err(OperatorError::Cancelled);
                }
                Some(line) = lines.recv() => {
                    if let Err(message) = reader.take(line).await {
                        group.terminate(&mut child).await;
                        return Err(OperatorError::Failed(format!("{label}: {message}")));
                    }
                }
                status = child.wait() => break status.map_err(|error| {
                    OperatorError::Failed(format!("waiting for {label}: {error}"))
                })?,
            }
        };
        let mut pending = Vec::new();
        drain(&mut lines, |line| pending.push(line)).await;
        tasks.abort_all();
        group.finish();
        for line in pending {
            reader
                .take(line)
                .await
                .map_err(|message| OperatorError::Failed(format!("{label}: {message}")))?;
        }
        if !status.success() {
            let cause = describe_exit(status);
            return Err(OperatorError::Failed(match reader.last_stderr {
                Some(line) => format!("{label} {cause}; last stderr line: {line}"),
                None => format!("{label} {cause}"),
            }));
        }
        Ok(reader.result.unwrap_or(Value::Null))
    }
}

/// Reads the protocol's lines as they come.
struct Reader<'a> {
    ctx: &'a TaskContext,
    result: Option<Value>,
    last_stderr: Option<String>,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a TaskContext) -> Self {
        Reader {
            ctx,
            result: None,
            last_stderr: None,
        }
    }

    async fn take(&mut self, line: Line) -> Result<(), String> {
        if line.stream == Stream::Err {
            self.ctx.log(format!("[stderr] {}", line.text));
            if !line.text.trim().is_empty() {
                self.last_stderr = Some(line.text);
            }
            return Ok(());
        }
        if line.cut {
            return Err(format!(
                "printed a line longer than {MAX_MESSAGE_BYTES} bytes on stdout"
            ));
        }
        if line.text.trim().is_empty() {
            return Ok(());
        }
        let message: Message = serde_json::from_str(&line.text).map_err(|error| {
            format!(
                "printed a line on stdout that is not a protocol message ({error}): {}",
                excerpt(&line.text, 200)
            )
        })?;
        match message {
            Message::Log { level, message } if level == "info" => self.ctx.log(message),
            Message::Log { level, message } => self.ctx.log(format!("[{level}] {message}")),
            Message::Xcom { key, .. } if key == "return_value" => {
                return Err(
                    "an `xcom` line may not use the key `return_value`: print a `result` line"
                        .into(),
                );
            }
            Message::Xcom { key, value } => self.ctx.xcom.push(&key, value).await?,
            Message::Result { value } => {
                if self.result.replace(value).is_some() {
                    return Err("printed more than one `result` line".into());
                }
            }
        }
        Ok(())
    }
}
