//! External plugins as real processes: the shipped examples (Python, shell) discovered and run,
//! and broken plugins, each failing its task or its discovery with a message that says what
//! happened.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use updraft_operators::plugins::{self, Discovery, MAX_MESSAGE_BYTES};
use updraft_operators::{OperatorError, OperatorKind, builtin_registry};

use crate::support::harness;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples")
}

async fn discover(folder: &Path) -> Discovery {
    let builtins = builtin_registry();
    plugins::discover(folder, &builtins.names()).await
}

fn operator<'a>(discovery: &'a Discovery, name: &str) -> &'a dyn OperatorKind {
    discovery
        .plugins
        .iter()
        .flat_map(|plugin| &plugin.operators)
        .find(|operator| operator.name() == name)
        .map(|operator| operator.as_ref() as &dyn OperatorKind)
        .unwrap_or_else(|| panic!("no operator `{name}`"))
}

/// A plugin folder holding `plugin.sh` (the given body) and a manifest naming `operators`.
fn plugin(root: &Path, name: &str, operators: &[&str], script: &str) -> PathBuf {
    let folder = root.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let list = operators.join(", ");
    std::fs::write(
        folder.join("plugin.yaml"),
        format!("name: {name}\nversion: 0.1.0\ncommand: [./plugin.sh]\noperators: [{list}]\n"),
    )
    .unwrap();
    let path = folder.join("plugin.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap();
    folder
}

/// A `spec` for one operator `name` taking anything.
fn open_spec(name: &str) -> String {
    format!(
        r#"if [ "$1" = spec ]; then echo '{{"operators": {{"{name}": {{"config_schema": {{"type": "object"}}}}}}}}'; exit 0; fi"#
    )
}

#[tokio::test]
async fn the_shipped_examples_are_discovered_and_run() {
    let discovery = discover(&examples()).await;
    assert!(discovery.errors.is_empty(), "{:?}", discovery.errors);
    let names: Vec<&str> = discovery
        .plugins
        .iter()
        .map(|plugin| plugin.manifest.name.as_str())
        .collect();
    assert_eq!(names, ["word-count", "disk-free"]);

    let word_count = operator(&discovery, "word_count");
    let h = harness("count");
    let output = word_count
        .execute(
            json!({"text": "the cat and the hat and the bat", "top": 2}),
            &h.ctx,
        )
        .await
        .unwrap();
    assert_eq!(
        output,
        json!([{"word": "the", "count": 3}, {"word": "and", "count": 2}])
    );
    assert_eq!(h.xcom.entries(), [("total_words".to_string(), json!(8))]);
    assert!(
        h.log.lines().contains(&"count: 8 words".to_string()),
        "{:?}",
        h.log.lines()
    );
    // The config is checked against the plugin's schema: at parse time a template may stand in
    // for a number, once rendered it may not.
    let error = word_count
        .validate(&json!({"text": "x", "topp": 1}))
        .unwrap_err();
    assert!(error.contains("'topp' was unexpected"), "{error}");
    word_count
        .validate(&json!({"text": "x", "top": "{{ params.top }}"}))
        .unwrap();
    let rendered_badly = word_count
        .execute(json!({"text": "x", "top": "3"}), &h.ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(&rendered_badly, OperatorError::Config(message) if message.contains("at `/top`")),
        "{rendered_badly}"
    );
    // Exit code 1 with a reason on stderr.
    let error = word_count
        .execute(json!({"text": " "}), &h.ctx)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("exited with code 1; last stderr line: nothing to count"),
        "{error}"
    );

    let disk_free = operator(&discovery, "disk_free");
    let h = harness("disk");
    let output = disk_free
        .execute(json!({"path": "/"}), &h.ctx)
        .await
        .unwrap();
    assert!(
        output["free_kb"].as_u64().is_some_and(|kb| kb > 0),
        "{output}"
    );
    let error = disk_free
        .execute(json!({"path": "/", "min_free_kb": i64::MAX}), &h.ctx)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("KiB free under /, below"),
        "{error}"
    );
}

#[tokio::test]
async fn broken_plugins_fail_their_discovery_with_file_and_reason() {
    let root = tempfile::tempdir().unwrap();
    plugin(
        root.path(),
        "a-bad-json",
        &["bad_json"],
        r#"echo '{"operators": '"#,
    );
    plugin(
        root.path(),
        "b-bad-schema",
        &["bad_schema"],
        r#"echo '{"operators": {"bad_schema": {"config_schema": {"type": 12}}}}'"#,
    );
    plugin(
        root.path(),
        "c-missing",
        &["missing_op"],
        &open_spec("other"),
    );
    plugin(
        root.path(),
        "d-shadows-shell",
        &["shell"],
        &open_spec("shell"),
    );
    plugin(
        root.path(),
        "e-fails",
        &["fails"],
        "echo broken >&2; exit 3",
    );
    let typo = root.path().join("f-typo");
    std::fs::create_dir_all(&typo).unwrap();
    std::fs::write(
        typo.join("plugin.yaml"),
        "name: t\nversion: 1\ncommand: [x]\noperator: [t]\n",
    )
    .unwrap();
    plugin(root.path(), "g-good", &["good"], &open_spec("good"));

    let discovery = discover(root.path()).await;
    let errors: Vec<String> = discovery.errors.iter().map(ToString::to_string).collect();
    let expect = [
        (
            "a-bad-json/plugin.yaml: plugin `a-bad-json` (operators `bad_json`)",
            "did not print the expected JSON object",
        ),
        (
            "b-bad-schema/plugin.yaml:",
            "config_schema is not a valid JSON Schema",
        ),
        (
            "c-missing/plugin.yaml:",
            "`spec` does not describe operator `missing_op`",
        ),
        (
            "d-shadows-shell/plugin.yaml:",
            "operator `shell` is already defined",
        ),
        (
            "e-fails/plugin.yaml:",
            "`spec` exited with code 3; last stderr line: broken",
        ),
        ("f-typo/plugin.yaml:4:1:", "unknown field `operator`"),
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for ((place, reason), error) in expect.iter().zip(&errors) {
        assert!(
            error.contains(place) && error.contains(reason),
            "{error}\nexpected {place} … {reason}"
        );
    }
    assert_eq!(discovery.plugins.len(), 1, "the good one still loads");
    let mut registry = builtin_registry();
    discovery.register(&mut registry);
    assert!(registry.get("good").is_some());
    assert_eq!(registry.unavailable("missing_op"), Some(errors[2].as_str()));
    assert_eq!(registry.unavailable("shell"), None, "the built-in stays");
}

#[tokio::test]
async fn a_misbehaving_plugin_fails_its_task_and_says_how() {
    let root = tempfile::tempdir().unwrap();
    // One line, no newline, longer than a protocol line may be.
    let flood = format!(
        "head -c {} /dev/zero | tr '\\0' x",
        MAX_MESSAGE_BYTES + 1024
    );
    let cases = [
        (
            "not_json",
            r#"echo 'hello there'"#,
            "is not a protocol message",
        ),
        (
            "bad_result",
            r#"echo '{"type": "result", "value": nope}'"#,
            "is not a protocol message",
        ),
        (
            "two_results",
            r#"echo '{"type": "result", "value": 1}'; echo '{"type": "result", "value": 2}'"#,
            "more than one `result`",
        ),
        (
            "reserved_key",
            r#"echo '{"type": "xcom", "key": "return_value", "value": 1}'"#,
            "may not use the key `return_value`",
        ),
        (
            "exits_two",
            r#"echo '{"type": "log", "message": "about to fail"}'; exit 2"#,
            "exited with code 2",
        ),
        ("floods", flood.as_str(), "longer than"),
    ];
    for (name, body, _) in &cases {
        let script = format!("{}\n{body}", open_spec(name));
        plugin(root.path(), &name.replace('_', "-"), &[name], &script);
    }
    let discovery = discover(root.path()).await;
    assert!(discovery.errors.is_empty(), "{:?}", discovery.errors);
    for (name, _, reason) in cases {
        let h = harness(name);
        let error = operator(&discovery, name)
            .execute(json!({}), &h.ctx)
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("operator `{name}`")) && message.contains(reason),
            "{name}: {message}"
        );
    }
}

#[tokio::test]
async fn a_plugin_that_never_exits_is_stopped_with_its_children() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("child.pid");
    let body = format!(
        "{}\nsleep 300 & echo $! > {}\ntrap '' TERM\nwhile true; do sleep 1; done",
        open_spec("hangs"),
        marker.display()
    );
    plugin(root.path(), "hangs", &["hangs"], &body);
    let discovery = discover(root.path()).await;
    let hangs = discovery.plugins[0].operators[0].clone();
    let h = harness("hangs");
    let cancel = h.ctx.cancel.clone();
    let ctx = h.ctx.clone();
    let started = Instant::now();
    let running = tokio::spawn(async move { hangs.execute(json!({}), &ctx).await });
    testkit::eventually(
        "the plugin's child to start",
        Duration::from_secs(10),
        async || marker.exists().then_some(()),
    )
    .await;
    cancel.cancel();
    let outcome = running.await.unwrap();
    assert!(
        matches!(outcome, Err(OperatorError::Cancelled)),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let child: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Killed with its group (a zombie is reaped by init soon after).
    testkit::eventually(
        "the plugin's child to be gone",
        Duration::from_secs(10),
        async || {
            // SAFETY: signal 0 only asks whether the process exists.
            let gone = unsafe { libc::kill(child, 0) } != 0;
            gone.then_some(())
        },
    )
    .await;
}
