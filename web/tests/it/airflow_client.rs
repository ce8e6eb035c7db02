//! `apache-airflow-client` 2.x against a real `updraft standalone`: its generated models check
//! every field's type and nullability, so this catches drift from Airflow's schema.
//!
//! Needs a Python with the client installed, which `scripts/test` prepares (skipped without it,
//! except with `CI=true`, where it fails). By hand:
//!   python3 -m venv /tmp/afc && /tmp/afc/bin/pip install 'apache-airflow-client==2.10.0'
//!   UPDRAFT_AIRFLOW_CLIENT_PYTHON=/tmp/afc/bin/python CI=true \
//!     cargo test -p updraft-web --test it airflow_client:: -- --nocapture

use std::process::{Command, Stdio};

use crate::common::server;

#[tokio::test]
async fn airflow_python_client_works_unmodified() {
    let Ok(python) = std::env::var("UPDRAFT_AIRFLOW_CLIENT_PYTHON") else {
        let message = "set UPDRAFT_AIRFLOW_CLIENT_PYTHON to a python with apache-airflow-client";
        assert!(!testkit::in_ci(), "CI=true: {message}");
        eprintln!("SKIPPED: {message}");
        return;
    };
    if !testkit::require_postgres() {
        return;
    }
    let standalone = server::start("web_afclient", "standalone-airflow-client.log").await;
    let script = server::workspace().join("web/tests/it/airflow_client/check.py");
    let status = Command::new(python)
        .arg(script)
        .env("BASE_URL", standalone.base_url())
        .env("UPDRAFT_USER", "admin")
        .env("UPDRAFT_PASSWORD", server::PASSWORD)
        .env("DAG_ID", "browser_demo")
        .stdin(Stdio::null())
        .status()
        .expect("python");
    assert!(
        status.success(),
        "the Airflow client check failed (server log in artifacts/browser/)"
    );
}
