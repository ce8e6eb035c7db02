//! What operators that run a program share: the program's own process group (killed with the
//! worker, even by SIGKILL), its output read line by line with a cap on a line's length, and
//! an exit status told in words.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

/// Time between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for output after the program exits (background children may hold the pipes).
pub const DRAIN_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// One line of a program's output, without its line ending.
#[derive(Debug)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
    /// The line went on past the cap: this is its first part, the rest comes as further lines.
    pub cut: bool,
}

/// Sends each line of `reader` (lossy UTF-8, at most `cap` bytes a piece) until end of file.
pub async fn forward_lines<R: AsyncBufRead + Unpin>(
    mut reader: R,
    stream: Stream,
    cap: usize,
    sink: mpsc::Sender<Line>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line, cap).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let cut = line.last() != Some(&b'\n') && line.len() >= cap;
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if sink.send(Line { stream, text, cut }).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Like `read_until(b'\n')`, but stops at `cap` bytes. Returns the bytes read.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let room = cap - line.len();
        let (taken, done) = match available.iter().take(room).position(|byte| *byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => {
                let taken = available.len().min(room);
                (taken, line.len() + taken >= cap)
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

/// Reads the child's stdout and stderr, lines of at most `out_cap` and `err_cap` bytes, into
/// one channel; the readers stop when the channel is dropped or the tasks aborted.
pub fn read_output(
    child: &mut Child,
    out_cap: usize,
    err_cap: usize,
) -> (mpsc::Receiver<Line>, JoinSet<()>) {
    let (sink, lines) = mpsc::channel::<Line>(256);
    let mut readers = JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        let sink = sink.clone();
        readers.spawn(forward_lines(
            BufReader::new(stdout),
            Stream::Out,
            out_cap,
            sink,
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.spawn(forward_lines(
            BufReader::new(stderr),
            Stream::Err,
            err_cap,
            sink,
        ));
    }
    (lines, readers)
}

/// Receives lines until both streams end (true) or `DRAIN_WAIT` passes (false).
pub async fn drain(lines: &mut mpsc::Receiver<Line>, mut on_line: impl FnMut(Line)) -> bool {
    let until = Instant::now() + DRAIN_WAIT;
    loop {
        match timeout(
            until.saturating_duration_since(Instant::now()),
            lines.recv(),
        )
        .await
        {
            Ok(Some(line)) => on_line(line),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Whether a variable of the worker's environment is Updraft's own (withheld from tasks).
fn is_updraft_setting(name: &str) -> bool {
    name == "DATABASE_URL" || name.starts_with("UPDRAFT_")
}

/// Updraft's own settings and secrets (its database, passwords, keys, variables) are never a
/// task's program's: a DAG passes what a task needs through its config.
pub fn withhold_updraft_settings(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if is_updraft_setting(&name.to_string_lossy()) {
            command.env_remove(&name);
        }
    }
}

pub fn describe_exit(status: ExitStatus) -> String {
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
pub struct ProcessGroup {
    pub pgid: i32,
    armed: bool,
    /// Holds the write end of the watchdog's pipe (its stdin) open while the try runs.
    _watchdog: Child,
}

impl ProcessGroup {
    pub fn start() -> std::io::Result<Self> {
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

    pub fn signal(&self, signal: i32) {
        if self.armed && self.pgid > 0 {
            // SAFETY: kill(2) takes plain integers; a negative pid addresses the process group.
            unsafe {
                libc::kill(-self.pgid, signal);
            }
        }
    }

    /// SIGTERM, wait up to `KILL_GRACE` for the program to exit, then SIGKILL.
    pub async fn terminate(&self, child: &mut Child) {
        self.signal(libc::SIGTERM);
        if timeout(KILL_GRACE, child.wait()).await.is_err() {
            self.signal(libc::SIGKILL);
            let _ = child.wait().await;
        }
        // Stragglers in the group that ignored SIGTERM, and the watchdog.
        self.signal(libc::SIGKILL);
    }

    /// Ends the group (stragglers included) once the program is done.
    pub fn finish(mut self) {
        self.signal(libc::SIGKILL);
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
        for name in [
            "DATABASE_URL",
            "UPDRAFT_ADMIN_PASSWORD",
            "UPDRAFT_VAR_API_KEY",
        ] {
            assert!(is_updraft_setting(name), "{name}");
        }
        for name in ["PATH", "HOME", "KAFKA_BOOTSTRAP_SERVERS"] {
            assert!(!is_updraft_setting(name), "{name}");
        }
    }

    #[tokio::test]
    async fn long_lines_are_split_at_the_cap() {
        let cap = 1024;
        let mut data = vec![b'x'; cap + 10];
        data.extend_from_slice(b"\nend\n");
        let mut reader = BufReader::new(&data[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line_capped(&mut reader, &mut line, cap).await.unwrap(),
            cap
        );
        line.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut line, cap).await.unwrap(),
            11
        );
        line.clear();
        read_line_capped(&mut reader, &mut line, cap).await.unwrap();
        assert_eq!(line, b"end\n");
    }

    #[tokio::test]
    async fn a_cut_line_is_marked() {
        let data = format!("{}\nshort\n", "y".repeat(40));
        let (tx, mut rx) = mpsc::channel(8);
        forward_lines(BufReader::new(data.as_bytes()), Stream::Out, 16, tx).await;
        let mut cuts = Vec::new();
        while let Some(line) = rx.recv().await {
            cuts.push((line.text.len(), line.cut));
        }
        assert_eq!(cuts, [(16, true), (16, true), (8, false), (5, false)]);
    }
}
