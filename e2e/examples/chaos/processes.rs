//! The processes a scenario runs and kills: `updraft` in a role, `stream-worker`, and the
//! stack's services (through `scripts/stack`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A child process, killed when dropped.
pub struct Process {
    child: Child,
    pub name: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Process {
    /// Starts `program args...` with `env`, appending its output to `log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log: &Path,
    ) -> Process {
        let command: Vec<String> = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|arg| arg.to_string()))
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect();
        let child = spawn(&command, &env, log);
        Process {
            child,
            name: name.to_string(),
            command,
            env,
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL, then the same command again.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.child = spawn(&self.command, &self.env, &self.log);
    }

    /// SIGKILL (no chance to release anything), and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs (it should: a scenario without kills never restarts anything).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(command: &[String], env: &[(String, String)], log: &Path) -> Child {
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|error| panic!("log {}: {error}", log.display()));
    let mut process = Command::new(&command[0]);
    process
        .args(&command[1..])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("log file"))
        .stderr(output);
    process
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", command[0]))
}

/// The workspace's root folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary of the workspace, built by `scripts/chaos` (the profile it chose).
pub fn binary(name: &str) -> PathBuf {
    let folder = std::env::var("CHAOS_BINARIES").unwrap_or_else(|_| "target/debug".into());
    let path = workspace().join(folder).join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first",
        path.display()
    );
    path
}

/// `scripts/stack ARGS...`; panics if it fails.
pub fn stack(args: &[&str]) {
    let status = Command::new(workspace().join("scripts/stack"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("scripts/stack");
    assert!(status.success(), "scripts/stack {} failed", args.join(" "));
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A small deterministic generator, so a failing scenario can be replayed with its seed.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(seed | 1)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}
