//! `shell`: runs a bash command or script in its own process group. Output lines stream into
//! the task log as they come; a non-zero exit fails the try; on timeout or cancellation the whole
//! group gets SIGTERM, then SIGKILL after a grace period. The group dies with the worker process,
//! even when that is killed with SIGKILL (see `ProcessGroup`).

use std::collections::BTreeMap;
use std::process::Stdio;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::time::{Instant, sleep_until};

use crate::fields::{DurationValue, Templated, Text, excerpt};
use crate::process::{
    Line, ProcessGroup, Stream, describe_exit, drain, read_output, withhold_updraft_settings,
};
use crate::{Operator, OperatorError, TaskContext};

/// Longer output lines are split, so a binary blob cannot exhaust memory.
const MAX_LINE_BYTES: usize = 64 * 1024;
const STDERR_PREFIX: &str = "[stderr] ";

#[derive(Debug, Default)]
pub struct ShellOperator;

/// `shell`'s fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    /// A command line, run with `bash -c`. Exactly one of `command` and `script`.
    #[serde(default)]
    pub command: Option<String>,
    /// A multi-line script, run with `bash -e -o pipefail -c`: the first failing line fails it.
    #[serde(default)]
    pub script: Option<String>,
    /// Extra environment variables (values may be numbers or booleans).
    #[serde(default)]
    pub env: BTreeMap<String, Text>,
    /// Whether the worker's environment is passed on (default true), without Updraft's own
    /// settings (`DATABASE_URL`, `UPDRAFT_*`). With false, only `env` and the `UPDRAFT_*`
    /// identity variables are set.
    #[serde(default = "default_true")]
    pub inherit_env: bool,
    /// Working directory; default the worker's.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Kill the command after this long. Default: no limit (the task's `execution_timeout` applies).
    #[serde(default)]
    pub timeout: Option<Templated<DurationValue>>,
}

fn default_true() -> bool {
    true
}

#[async_trait]
impl Operator for ShellOperator {
    const NAME: &'static str = "shell";
    const SHELL_FIELDS: &'static [&'static str] = &["command", "script"];
    type Config = ShellConfig;

    fn check(config: &ShellConfig) -> Result<(), String> {
        match (&config.command, &config.script) {
            (Some(_), Some(_)) => Err("give either `command` or `script`, not both".into()),
            (None, None) => Err("give `command` or `script`".into()),
            (Some(text), None) | (None, Some(text)) if text.trim().is_empty() => {
                Err("the command is empty".into())
            }
            _ => Ok(()),
        }
    }

    async fn execute(
        &self,
        mut config: ShellConfig,
        ctx: &TaskContext,
    ) -> Result<Value, OperatorError> {
        let time_limit = config
            .timeout
            .take()
            .map(|limit| limit.resolve("timeout"))
            .transpose()?
            .map(|limit| limit.0);
        let (mut command, label) = build_command(config, ctx).await?;
        let group = ProcessGroup::start().map_err(|error| {
            OperatorError::Failed(format!("cannot start a process group for {label}: {error}"))
        })?;
        let mut child = command
            .process_group(group.pgid)
            .spawn()
            .map_err(|error| OperatorError::Failed(format!("cannot start {label}: {error}")))?;
        let (mut lines, mut readers) = read_output(&mut child, MAX_LINE_BYTES, MAX_LINE_BYTES);

        let mut last = LastLines::default();
        let deadline = time_limit.map(|limit| Instant::now() + limit);
        let status = loop {
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    ctx.log(format!("cancelled: stopping {label}"));
                    group.terminate(&mut child).await;
                    return Err(OperatorError::Cancelled);
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let limit = time_limit.unwrap_or_default();
                    ctx.log(format!("timeout of {limit:?} reached: stopping {label}"));
                    group.terminate(&mut child).await;
                    return Err(OperatorError::Failed(format!("{label} timed out after {limit:?} and was killed")));
                }
                Some(line) = lines.recv() => last.record(ctx, line),
                status = child.wait() => break status.map_err(|error| {
                    OperatorError::Failed(format!("waiting for {label}: {error}"))
                })?,
            }
        };

        // The shell is gone; take the output still buffered, but do not wait on background
        // processes that keep the pipes open.
        if !drain(&mut lines, |line| last.record(ctx, line)).await {
            ctx.log("processes started by the command still hold its output: killing them");
            group.signal(libc::SIGKILL);
            drain(&mut lines, |line| last.record(ctx, line)).await;
        }
        readers.abort_all();
        // A task's processes do not outlive it (use `setsid` to start a daemon on purpose).
        group.finish();

        let exit_code = status.code();
        if exit_code == Some(0) {
            return Ok(json!({ "exit_code": 0, "last_line": last.stdout }));
        }
        let cause = describe_exit(status);
        Err(OperatorError::Failed(match last.stderr {
            Some(line) => format!("{label} {cause}; last stderr line: {line}"),
            None => format!("{label} {cause}"),
        }))
    }
}

/// The command to spawn and a short label for messages.
async fn build_command(
    config: ShellConfig,
    ctx: &TaskContext,
) -> Result<(Command, String), OperatorError> {
    let mut command = Command::new("bash");
    let text = match (config.command, config.script) {
        (Some(line), _) => {
            command.arg("-c").arg(&line);
            line
        }
        (None, Some(script)) => {
            command.args(["-e", "-o", "pipefail", "-c"]).arg(&script);
            script
        }
        (None, None) => return Err(OperatorError::Config("give `command` or `script`".into())),
    };
    let first_line = text.trim().lines().next().unwrap_or_default();
    let label = format!("`{}`", excerpt(first_line, 80));

    if config.inherit_env {
        withhold_updraft_settings(&mut command);
    } else {
        command.env_clear();
    }
    let identity = &ctx.identity;
    command
        .env("UPDRAFT_DAG_ID", &identity.dag_id)
        .env("UPDRAFT_RUN_ID", &identity.run_id)
        .env("UPDRAFT_TASK_ID", &identity.task_id)
        .env("UPDRAFT_TRY_NUMBER", identity.try_number.to_string());
    for (name, Text(value)) in config.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(OperatorError::Config(format!(
                "env: `{name}` is not a valid variable name"
            )));
        }
        command.env(name, value);
    }
    if let Some(cwd) = config.cwd {
        let is_dir = tokio::fs::metadata(&cwd)
            .await
            .map(|meta| meta.is_dir())
            .unwrap_or(false);
        if !is_dir {
            return Err(OperatorError::Config(format!(
                "cwd `{cwd}` is not a directory"
            )));
        }
        command.current_dir(cwd);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok((command, label))
}

/// The last non-empty line of each stream, for the output and the error message.
#[derive(Default)]
struct LastLines {
    stdout: Option<String>,
    stderr: Option<String>,
}

impl LastLines {
    fn record(&mut self, ctx: &TaskContext, Line { stream, text: line, .. }: Line) {
        match stream {
            Stream::Out => ctx.log(&line),
            Stream::Err => ctx.log(format!("{STDERR_PREFIX}{line}")),
        }
        if line.trim().is_empty() {
            return;
        }
        match stream {
            Stream::Out => self.stdout = Some(line),
            Stream::Err => self.stderr = Some(line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_of_command_and_script() {
        let parse = |config: Value| {
            let config: ShellConfig = serde_json::from_value(config).unwrap();
            ShellOperator::check(&config)
        };
        assert!(parse(json!({"command": "true"})).is_ok());
        assert!(parse(json!({"script": "true\ntrue"})).is_ok());
        assert!(
            parse(json!({"command": "a", "script": "b"}))
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            parse(json!({}))
                .unwrap_err()
                .contains("give `command` or `script`")
        );
        assert!(
            parse(json!({"command": "  "}))
                .unwrap_err()
                .contains("empty")
        );
    }
}
