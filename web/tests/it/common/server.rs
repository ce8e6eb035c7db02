//! Starts a real `updraft standalone` on a database of its own with one DAG, for the browser and
//! Python-client tests. The process is killed, and the database dropped, when the handle drops.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use testkit::TestDatabase;
use updraft_orchestrator::store::dags;

pub const PASSWORD: &str = "end-to-end-password";

/// The test DAG: paused on creation, `say` echoes `params.message`, waits 3 s, echoes again.
pub const DAG: &str = r#"dag_id: browser_demo
description: Echoes the run's message (end-to-end tests)
schedule: null
tags: [browser]
params:
  message: hi
tasks:
  - id: say
    operator: shell
    # The pause lets the browser watch the log page follow a running try.
    command: "echo 'message={{ params.message }}'; sleep 3; echo 'finished-saying'"
  - id: done
    operator: empty
    upstream: [say]
"#;

pub struct Standalone {
    child: Child,
    pub port: u16,
    pub pool: sqlx::PgPool,
    /// The server's `UPDRAFT_SECRET_KEY`, to read what it stored.
    pub cipher: updraft_secrets::Cipher,
    _dags: tempfile::TempDir,
    /// Dropped last: after the process is killed and the pool dropped.
    database: TestDatabase,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Standalone {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every row of `table` as PostgreSQL prints it, to check what is stored in the clear.
    pub async fn raw_rows(&self, table: &str) -> Vec<String> {
        self.database.raw_rows(table).await
    }
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn artifacts() -> PathBuf {
    let dir = workspace().join("artifacts/browser");
    std::fs::create_dir_all(&dir).expect("artifacts folder");
    dir
}

/// `fan100`: one task, `width` tasks after it, one task after them all (the graph's worst case).
pub fn fan_out(width: usize) -> String {
    let mut yaml =
        format!("dag_id: fan{width}\nschedule: null\ntasks:\n  - id: start\n    operator: empty\n");
    for i in 0..width {
        yaml.push_str(&format!(
            "  - id: fan_{i:03}\n    operator: empty\n    upstream: [start]\n"
        ));
    }
    let all: Vec<String> = (0..width).map(|i| format!("fan_{i:03}")).collect();
    yaml.push_str(&format!(
        "  - id: join\n    operator: empty\n    upstream: [{}]\n",
        all.join(", ")
    ));
    yaml
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Starts the server with `DAG` and waits until it listens and the DAG is loaded (paused).
pub async fn start(prefix: &str, log_name: &str) -> Standalone {
    start_with_env(prefix, log_name, &[]).await
}

/// As [`start`], with more environment variables for the server.
pub async fn start_with_env(prefix: &str, log_name: &str, env: &[(&str, String)]) -> Standalone {
    let binary = std::env::var("UPDRAFT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target/debug/updraft"));
    assert!(
        binary.exists(),
        "{} is missing: cargo build -p updraft-cli",
        binary.display()
    );
    let database = TestDatabase::create(prefix).await;
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("browser_demo.yaml"), DAG).expect("write DAG");
    std::fs::write(dags.path().join("fan100.yaml"), fan_out(100)).expect("write DAG");
    let port = free_port();
    let secret_key = updraft_secrets::Cipher::generate_key();
    let cipher = updraft_secrets::Cipher::from_keys(&secret_key).expect("a generated key");
    let log = std::fs::File::create(artifacts().join(log_name)).expect("log file");
    let child = Command::new(&binary)
        .arg("standalone")
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--dags-folder")
        .arg(dags.path())
        .env("DATABASE_URL", database.url())
        .env("UPDRAFT_ADMIN_PASSWORD", PASSWORD)
        // Connections with passwords can be stored (the client and browser tests create one).
        .env("UPDRAFT_SECRET_KEY", &secret_key)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start updraft standalone");
    let pool = sqlx::PgPool::connect(database.url())
        .await
        .expect("connect");
    let server = Standalone {
        child,
        port,
        pool,
        cipher,
        _dags: dags,
        database,
    };
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    // One minute for both: listening, then the DAG loaded.
    let started = Instant::now();
    let limit = Duration::from_secs(60);
    testkit::eventually("the server to listen", limit, async || {
        TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
    })
    .await;
    let paused = testkit::eventually(
        "the DAG to be loaded",
        limit.saturating_sub(started.elapsed()),
        async || {
            let dag = dags::get_view(&server.pool, "browser_demo").await;
            dag.ok().flatten().map(|dag| dag.is_paused)
        },
    )
    .await;
    assert!(paused, "a new DAG starts paused");
    server
}
