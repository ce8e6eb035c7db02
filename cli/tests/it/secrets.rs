//! `updraft connections|variables|secrets`: a connection's password and extra and a variable's
//! value are stored encrypted with UPDRAFT_SECRET_KEY (none of them in the table's raw
//! contents), read back with the key, refused without one, rotated to a new key, and exported
//! and imported in Airflow's file formats.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use testkit::TestDatabase;
use updraft_orchestrator::store::event_log;

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `updraft ARGS...` on `url`, with `key` as UPDRAFT_SECRET_KEY (unset when `None`).
fn updraft(url: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_updraft"));
    command
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match key {
        Some(key) => command.env("UPDRAFT_SECRET_KEY", key),
        None => command.env_remove("UPDRAFT_SECRET_KEY"),
    };
    let mut child = command.spawn().expect("start updraft");
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("updraft output");
    Output {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(output: Output) -> String {
    assert!(output.ok, "updraft failed: {}", output.stderr);
    output.stdout
}

const URI: &str = "http://me:s3cr%40t@api.example.com:8443/v1?timeout=5";

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_rotate_to_a_new_key() {
    if !testkit::require_postgres() {
        return;
    }
    let database = TestDatabase::create("secrets_cli").await;
    let url = database.url();
    ok(updraft(url, None, &["db", "migrate"]));
    let old = ok(updraft(url, None, &["secrets", "generate-key"]))
        .trim()
        .to_string();
    let new = ok(updraft(url, None, &["secrets", "generate-key"]))
        .trim()
        .to_string();

    // Without a key a password cannot be stored, and the error says why.
    let refused = updraft(url, None, &["connections", "add", "api", "--conn-uri", URI]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("UPDRAFT_SECRET_KEY is not set"),
        "{}",
        refused.stderr
    );

    ok(updraft(
        url,
        Some(&old),
        &["connections", "add", "api", "--conn-uri", URI],
    ));
    ok(updraft(
        url,
        Some(&old),
        &["variables", "set", "api_token", "tok-123"],
    ));
    let duplicate = updraft(
        url,
        Some(&old),
        &["connections", "add", "api", "--conn-uri", URI],
    );
    assert!(!duplicate.ok && duplicate.stderr.contains("already exists"));

    // At rest: tokens only.
    let raw = [
        database.raw_rows("connection").await,
        database.raw_rows("variable").await,
    ]
    .concat()
    .join("\n");
    for secret in ["s3cr@t", "s3cr%40t", "timeout", "tok-123"] {
        assert!(
            !raw.contains(secret),
            "`{secret}` stored in plain text: {raw}"
        );
    }
    assert!(raw.contains("api.example.com"), "{raw}");

    // Read back: the password never printed by `get`.
    let shown: Value = serde_json::from_str(&ok(updraft(
        url,
        Some(&old),
        &["connections", "get", "api"],
    )))
    .unwrap();
    assert_eq!(shown["password"], json!("***"));
    assert_eq!(
        (&shown["host"], &shown["port"], &shown["schema"]),
        (&json!("api.example.com"), &json!(8443), &json!("v1"))
    );
    assert_eq!(
        serde_json::from_str::<Value>(shown["extra"].as_str().unwrap()).unwrap(),
        json!({"timeout": "5"})
    );
    assert_eq!(
        ok(updraft(url, Some(&old), &["variables", "get", "api_token"])).trim(),
        "tok-123"
    );

    // Rotation: the new key first, the old one after it; then the new key alone reads all.
    let both = format!("{new},{old}");
    let rotated = ok(updraft(url, Some(&both), &["secrets", "rotate"]));
    assert!(
        rotated.contains("1 connections and 1 variables"),
        "{rotated}"
    );
    assert_eq!(
        ok(updraft(url, Some(&new), &["variables", "get", "api_token"])).trim(),
        "tok-123"
    );
    let stale = updraft(url, Some(&old), &["variables", "get", "api_token"]);
    assert!(!stale.ok);
    assert!(
        stale.stderr.contains("variable `api_token`") && stale.stderr.contains("another key"),
        "{}",
        stale.stderr
    );

    // Export (passwords included, for moving them), delete, import: the same connection.
    let exported = ok(updraft(url, Some(&new), &["connections", "export", "-"]));
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().write_all(exported.as_bytes()).unwrap();
    let path = file.path().to_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&exported).unwrap()["api"]["password"],
        json!("s3cr@t")
    );
    ok(updraft(url, Some(&new), &["connections", "delete", "api"]));
    let gone = updraft(url, Some(&new), &["connections", "get", "api"]);
    assert!(!gone.ok && gone.stderr.contains("not found"));
    ok(updraft(url, Some(&new), &["connections", "import", path]));
    let again = ok(updraft(url, Some(&new), &["connections", "export", "-"]));
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap(),
        serde_json::from_str::<Value>(&exported).unwrap()
    );
    let skipped = ok(updraft(url, Some(&new), &["connections", "import", path]));
    assert!(skipped.contains("skipped"), "{skipped}");

    // Every change above is in the audit log as the CLI's, by the operating system's user.
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let every = event_log::EventFilter::default();
    let events = event_log::page(&pool, &every, 100, 0).await.unwrap().rows;
    let names: Vec<&str> = events.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "connection_create",
            "variable_set",
            "secrets_rotate",
            "connection_delete",
            "connections_import",
            "connections_import",
        ],
        "{events:?}"
    );
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    for event in &events {
        assert_eq!((event.source.as_str(), &event.owner), ("cli", &user));
    }
    assert_eq!(events[3].extra, Some(json!({"conn_id": "api"})));
}

#[tokio::test]
async fn bad_input_names_what_is_wrong() {
    if !testkit::require_postgres() {
        return;
    }
    let database = TestDatabase::create("secrets_bad").await;
    let url = database.url();
    ok(updraft(url, None, &["db", "migrate"]));
    let key = ok(updraft(url, None, &["secrets", "generate-key"]))
        .trim()
        .to_string();
    let cases: [(&[&str], &str); 4] = [
        (
            &["connections", "add", "p", "--conn-uri", "http://h:99999"],
            "port",
        ),
        (
            &["connections", "add", "t", "--conn-type", "nosuchtype"],
            "nosuchtype",
        ),
        (
            &[
                "connections",
                "add",
                "e",
                "--conn-type",
                "http",
                "--conn-extra",
                "[1]",
            ],
            "extra",
        ),
        (
            &["connections", "add", "bad id!", "--conn-type", "http"],
            "conn_id",
        ),
    ];
    for (args, named) in cases {
        let output = updraft(url, Some(&key), args);
        assert!(!output.ok, "{args:?} was accepted");
        assert!(
            output.stderr.contains(named),
            "{args:?}: the error does not name `{named}`: {}",
            output.stderr
        );
    }
    // Beyond what a command line can hold: through a file.
    let huge = tempfile::NamedTempFile::new().unwrap();
    let value = "x".repeat(1024 * 1024 + 1);
    huge.as_file()
        .write_all(json!({ "big": value }).to_string().as_bytes())
        .unwrap();
    let file = huge.path().to_str().unwrap();
    let oversized = updraft(url, Some(&key), &["variables", "import", file]);
    assert!(!oversized.ok);
    assert!(
        oversized.stderr.contains("variable `big`") && oversized.stderr.contains("at most"),
        "{}",
        oversized.stderr
    );
    let blank = updraft(url, Some(&key), &["variables", "set", " ", "v"]);
    assert!(
        !blank.ok && blank.stderr.contains("variable key"),
        "{}",
        blank.stderr
    );
    let wrong = updraft(url, Some("not-a-key"), &["variables", "list"]);
    assert!(!wrong.ok && wrong.stderr.contains("UPDRAFT_SECRET_KEY"));
}
