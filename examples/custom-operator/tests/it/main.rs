//! The SDK example as a user runs it: `my-updraft` keeps every `updraft` command, and its own
//! `checksum` operator is validated, documented in the schema and run by `dags test` like a
//! built-in one.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn my_updraft(args: &[&str]) -> Output {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(env!("CARGO_BIN_EXE_my-updraft"))
        .args(args)
        .env("UPDRAFT_DAGS_FOLDER", example.join("dags"))
        .env("UPDRAFT_PLUGINS_FOLDER", example.join("no-plugins"))
        .output()
        .expect("run my-updraft")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_updraft_command_is_kept() {
    let help = text(&my_updraft(&["--help"]));
    for command in [
        "standalone",
        "scheduler",
        "webserver",
        "dags",
        "connections",
        "plugins",
    ] {
        assert!(help.contains(command), "`{command}` missing:\n{help}");
    }
}

#[test]
fn dags_test_runs_the_custom_operator_and_its_xcom_reaches_the_next_task() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("users.txt");
    let conf = serde_json::json!({"text": "ada,grace", "file": file}).to_string();
    let output = my_updraft(&["dags", "test", "verify_download", "--conf", &conf]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    let sha256: String = Sha256::digest(b"ada,grace")
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert!(
        printed.contains(&format!("sha256={sha256} bytes=9")),
        "{printed}"
    );

    // The wrong checksum fails the task, and says which file and which sums.
    let conf = serde_json::json!({"file": file, "expected_sha256": "0".repeat(64)}).to_string();
    let output = my_updraft(&["dags", "test", "verify_download", "--conf", &conf]);
    let printed = text(&output);
    assert!(!output.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("`{}` has sha256 ", file.display()))
            && printed.contains(&format!("expected {}", "0".repeat(64))),
        "{printed}"
    );
}

#[test]
fn the_custom_operator_is_validated_and_in_the_schema() {
    let folder = tempfile::tempdir().unwrap();
    let dag = folder.path().join("typo.yaml");
    std::fs::write(
        &dag,
        "dag_id: typo\nschedule: null\ntasks:\n  - id: verify\n    operator: checksum\n    paht: /tmp/x\n",
    )
    .unwrap();
    let output = my_updraft(&["dags", "validate", dag.to_str().unwrap()]);
    let printed = text(&output);
    assert!(!output.status.success(), "{printed}");
    assert!(
        printed.contains("typo.yaml:6:5: error: unknown key `paht`"),
        "{printed}"
    );

    let schema = text(&my_updraft(&["dags", "schema"]));
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let described = schema.to_string();
    assert!(
        described.contains("\"checksum\"") && described.contains("The SHA-256 the file must have"),
        "{described}"
    );
}
