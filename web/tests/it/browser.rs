//! The browser test: starts `updraft standalone` on a fresh database with one small DAG, then runs
//! `web/browser-test/test.mjs` (playwright-core + Debian's chromium) against it.
//!
//! It needs node and chromium, which `scripts/test` installs and then sets `UPDRAFT_BROWSER_TEST=1`.
//! Without that variable the test is skipped, except with `CI=true`, where it fails. By hand:
//!   cargo build -p updraft-cli && (cd web/browser-test && npm ci)
//!   UPDRAFT_BROWSER_TEST=1 CI=true cargo test -p updraft-web --test it browser:: -- --nocapture
//! `UPDRAFT_BIN` overrides the binary's path. Screenshots land in `artifacts/browser/`.

use std::process::{Command, Stdio};

use updraft_orchestrator::dag::{RunState, RunType};
use updraft_orchestrator::store::runs::{self, RunFilter, RunOrder};
use updraft_orchestrator::store::{connections, dags};

use crate::common::server;
use crate::common::stream_worker::{record, start_worker, wait_until_written};

const CONN_PASSWORD: &str = "browser-s3cr3t";

#[tokio::test]
async fn browser_login_unpause_trigger_and_log() {
    if std::env::var("UPDRAFT_BROWSER_TEST").as_deref() != Ok("1") {
        let message = "set UPDRAFT_BROWSER_TEST=1 (as scripts/test does) to run the browser test";
        assert!(!testkit::in_ci(), "CI=true: {message}");
        eprintln!("SKIPPED: {message}");
        return;
    }
    if !testkit::require_postgres() {
        return;
    }
    let test_dir = server::workspace().join("web/browser-test");
    let installed = ["playwright-core", "axe-core"]
        .iter()
        .all(|package| test_dir.join("node_modules").join(package).exists());
    if !installed {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(&test_dir)
            .status()
            .expect("npm");
        assert!(status.success(), "npm install failed");
    }
    let artifacts = server::artifacts();
    // A stream worker with one stream and one dead letter, for the Streams pages (when Kafka and
    // Cassandra are up; always in CI).
    let streams_dir = tempfile::tempdir().expect("tempdir");
    let mut stream_env: Vec<(&str, String)> = Vec::new();
    let mut _stream_worker = None;
    if testkit::require_kafka() && testkit::require_cassandra() {
        let topic = testkit::unique_name("web_browser").to_lowercase();
        testkit::kafka::create_topic(&topic, 1).await;
        testkit::kafka::produce(&topic, &[record(0), b"{\"id\": oops".to_vec(), record(2)]).await;
        let (worker, port) = start_worker(&topic, streams_dir.path());
        let api = format!("http://127.0.0.1:{port}");
        wait_until_written(&api, 2, 1).await;
        _stream_worker = Some(worker);
        stream_env.push(("UPDRAFT_STREAM_WORKERS", api));
        stream_env.push(("STREAM_NAME", "users_created".to_string()));
        stream_env.push(("STREAM_TOPIC", topic));
    }
    let standalone =
        server::start_with_env("web_browser", "standalone-browser.log", &stream_env).await;
    let status = Command::new("node")
        .arg("test.mjs")
        .current_dir(&test_dir)
        .env("BASE_URL", standalone.base_url())
        .env("UPDRAFT_USER", "admin")
        .env("UPDRAFT_PASSWORD", server::PASSWORD)
        .env("DAG_ID", "browser_demo")
        .env("ARTIFACTS", &artifacts)
        .env("REQUIRE_FOLLOW", "1")
        .env("CONN_ID", "browser_api")
        .env("CONN_PASSWORD", CONN_PASSWORD)
        .envs(
            stream_env
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        )
        .stdin(Stdio::null())
        .status()
        .expect("node");
    assert!(
        status.success(),
        "the browser test failed (server log in artifacts/browser/)"
    );

    // What the browser did is in the database.
    let dag = dags::get_view(&standalone.pool, "browser_demo")
        .await
        .expect("dag")
        .expect("the DAG exists");
    assert!(!dag.is_paused, "unpaused by the toggle");
    let filter = RunFilter {
        dag_id: Some("browser_demo"),
        ..Default::default()
    };
    let runs = runs::page(&standalone.pool, &filter, RunOrder::Id, i64::MAX, 0)
        .await
        .expect("runs")
        .rows;
    let manual: Vec<_> = runs
        .iter()
        .filter(|run| run.run_type == RunType::Manual)
        .collect();
    // The one triggered with the form, then the one triggered through the API while the
    // browser watched the grid.
    let [run, live] = manual.as_slice() else {
        panic!("two manual runs: {runs:?}");
    };
    assert_eq!(run.state, RunState::Success);
    assert_eq!(
        (live.state, &live.conf["message"]),
        (RunState::Success, &"live".into())
    );
    let conf = &run.conf;
    assert!(
        conf["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("hello-from-browser-"),
        "{conf}"
    );
    // The connection added through the UI: stored with its password, encrypted.
    let connection = connections::get(&standalone.pool, &standalone.cipher, "browser_api")
        .await
        .expect("read the connection")
        .expect("the connection the browser added");
    assert_eq!(connection.password.as_deref(), Some(CONN_PASSWORD));
    assert_eq!(connection.login.as_deref(), Some("browser"));
    let raw = standalone.raw_rows("connection").await;
    assert!(
        raw.len() == 1 && !raw[0].contains(CONN_PASSWORD),
        "the password is stored encrypted: {raw:?}"
    );
    for shot in [
        "dag-list.png",
        "run-live.png",
        "run.png",
        "grid-panel.png",
        "grid.png",
        "graph-fan100.png",
        "log.png",
        "connections.png",
    ] {
        let size = std::fs::metadata(artifacts.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 1000, "screenshot {shot} missing");
    }
}
