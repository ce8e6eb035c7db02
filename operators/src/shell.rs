//! `shell`: runs a bash command or script in its own process group. Output lines stream into
//! the task log as they come; a non-zero exit fails the try; on timeout or cancellation the whole
//! group gets SIGTERM, then SIGKILL after a grace period. The group dies with the worker process,
//! even when that is killed with SIGKILL (see `ProcessGroup`).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

use crate::fields::{DurationValue, Templated, Text, excerpt};
use crate::{Operator, OperatorError, TaskContext};

/// Time between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for output after the shell exits (background children may hold the pipes).
const DRAIN_WAIT: Duration = Duration::from_secs(2);
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

/// Whether a variable of the worker's environment is Updraft's own (withheld from tasks).
fn is_updraft_setting(name: &str) -> bool {
    name == "DATABASE_URL" || name.starts_with("UPDRAFT_")
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
        let (lines_tx, mut lines) = mpsc::channel::<(Stream, String)>(256);
        let mut readers = JoinSet::new();
        if let Some(stdout) = child.stdout.take() {
            readers.spawn(forward_lines(
                BufReader::new(stdout),
                Stream::Out,
                lines_tx.clone(),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.spawn(forward_lines(BufReader::new(stderr), Stream::Err, lines_tx));
        }

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
                Some((stream, line)) = lines.recv() => last.record(ctx, stream, line),
                status = child.wait() => break status.map_err(|error| {
                    OperatorError::Failed(format!("waiting for {label}: {error}"))
                })?,
            }
        };

        // The shell is gone; take the output still buffered, but do not wait on background
        // processes that keep the pipes open.
        if !drain(&mut lines, &mut last, ctx).await {
            ctx.log("processes started by the command still hold its output: killing them");
            group.signal(libc::SIGKILL);
            drain(&mut lines, &mut last, ctx).await;
        }
        readers.abort_all();
        // A task's processes do not outlive it (use `setsid` to start a daemon on purpose).
        group.signal(libc::SIGKILL);
        group.disarm();

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
        // Updraft's own settings and secrets (its database, passwords, keys, variables) are
        // never a task's: a DAG passes what a task needs through `env`.
        for (name, _) in std::env::vars_os() {
            if is_updraft_setting(&name.to_string_lossy()) {
                command.env_remove(&name);
            }
        }
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

#[derive(Debug, Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// The last non-empty line of each stream, for the output and the error message.
#[derive(Default)]
struct LastLines {
    stdout: Option<String>,
    stderr: Option<String>,
}

impl LastLines {
    fn record(&mut self, ctx: &TaskContext, stream: Stream, line: String) {
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

/// Receives lines until both streams end (true) or `DRAIN_WAIT` passes (false).
async fn drain(
    lines: &mut mpsc::Receiver<(Stream, String)>,
    last: &mut LastLines,
    ctx: &TaskContext,
) -> bool {
    let until = Instant::now() + DRAIN_WAIT;
    loop {
        match timeout(
            until.saturating_duration_since(Instant::now()),
            lines.recv(),
        )
        .await
        {
            Ok(Some((stream, line))) => last.record(ctx, stream, line),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Sends each line of `reader` (lossy UTF-8, without its line ending) until end of file.
async fn forward_lines<R: AsyncBufRead + Unpin>(
    mut reader: R,
    stream: Stream,
    sink: mpsc::Sender<(Stream, String)>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if sink.send((stream, text)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Like `read_until(b'\n')`, but stops at `MAX_LINE_BYTES`. Returns the bytes read.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let room = MAX_LINE_BYTES - line.len();
        let (taken, done) = match available.iter().take(room).position(|byte| *byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => {
                let taken = available.len().min(room);
                (taken, line.len() + taken >= MAX_LINE_BYTES)
            }
        };
        line.extend_from_slice(&available[..taken]);
        reader.consume(taken);
        total += taken;
        if done {
            return Ok(total);
        }
    }
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// The leader of a task's process group: a shell that ignores the polite signals and blocks
/// reading a pipe only this process writes to. When this process ends in any way, SIGKILL
/// included, the kernel closes the pipe and the watchdog kills the group: a retry started
/// elsewhere never overlaps processes of the old try. (`PR_SET_PDEATHSIG` would not do: it fires
/// when the spawning *thread* exits, and tokio's blocking threads come and go.)
const WATCHDOG: &str = "trap '' HUP INT TERM; read -r _; kill -9 0";

/// The task's process group, led by the watchdog; SIGKILLed on drop unless disarmed, so a try
/// dropped from outside (the orchestrator's timeout) leaves no processes behind.
struct ProcessGroup {
    pgid: i32,
    armed: bool,
    /// Holds the write end of the watchdog's pipe (its stdin) open while the try runs.
    _watchdog: Child,
}

impl ProcessGroup {
    fn start() -> std::io::Result<Self> {
        // The pipe's write end is close-on-exec, so the task's processes do not hold it.
        let watchdog = Command::new("/bin/sh")
            .args(["-c", WATCHDOG])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pgid = watchdog
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| std::io::Error::other("the watchdog has no pid"))?;
        Ok(ProcessGroup {
            pgid,
            armed: true,
            _watchdog: watchdog,
        })
    }

    fn signal(&self, signal: i32) {
        if self.armed && self.pgid > 0 {
            // SAFETY: kill(2) takes plain integers; a negative pid addresses the process group.
            unsafe {
                libc::kill(-self.pgid, signal);
            }
        }
    }

    /// SIGTERM, wait up to `KILL_GRACE` for the shell to exit, then SIGKILL.
    async fn terminate(&self, child: &mut Child) {
        self.signal(libc::SIGTERM);
        if timeout(KILL_GRACE, child.wait()).await.is_err() {
            self.signal(libc::SIGKILL);
            let _ = child.wait().await;
        }
        // Stragglers in the group that ignored SIGTERM, and the watchdog.
        self.signal(libc::SIGKILL);
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updrafts_own_settings_are_told_apart() {
        for name in ["DATABASE_URL", "UPDRAFT_ADMIN_PASSWORD", "UPDRAFT_VAR_API_KEY"] {
            assert!(is_updraft_setting(name), "{name}");
        }
        for name in ["PATH", "HOME", "KAFKA_BOOTSTRAP_SERVERS"] {
            assert!(!is_updraft_setting(name), "{name}");
        }
    }

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

    #[tokio::test]
    async fn long_lines_are_split_at_the_cap() {
        let mut data = vec![b'x'; MAX_LINE_BYTES + 10];
        data.extend_from_slice(b"\nend\n");
        let mut reader = BufReader::new(&data[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line_capped(&mut reader, &mut line).await.unwrap(),
            MAX_LINE_BYTES
        );
        line.clear();
        assert_eq!(read_line_capped(&mut reader, &mut line).await.unwrap(), 11);
        line.clear();
        read_line_capped(&mut reader, &mut line).await.unwrap();
        assert_eq!(line, b"end\n");
    }
}
