//! `shell` against a real bash: exit codes, log lines, env, cwd, timeout and cancellation.

use std::time::{Duration, Instant};

use crate::support::{harness, run};
use serde_json::json;
use updraft_operators::OperatorError;

fn failure(result: Result<serde_json::Value, OperatorError>) -> String {
    match result {
        Err(OperatorError::Failed(message)) => message,
        other => panic!("expected a failed try, got {other:?}"),
    }
}

fn process_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie still has one but is state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn stdout_lines_reach_the_log_in_order_and_the_last_line_is_the_output() {
    let h = harness("lines");
    let output = run(
        "shell",
        json!({"command": "for i in 1 2 3 4 5; do echo line $i; done; echo"}),
        &h.ctx,
    )
    .await
    .unwrap();
    assert_eq!(output, json!({"exit_code": 0, "last_line": "line 5"}));
    let lines = h.log.lines();
    assert_eq!(
        lines,
        ["line 1", "line 2", "line 3", "line 4", "line 5", ""]
    );
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_code_and_last_stderr_line() {
    let h = harness("fails");
    let message = failure(
        run(
            "shell",
            json!({"command": "echo working; echo 'disk full' >&2; exit 3"}),
            &h.ctx,
        )
        .await,
    );
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(message.contains("last stderr line: disk full"), "{message}");
    assert_eq!(h.log.lines(), ["working", "[stderr] disk full"]);
}

#[tokio::test]
async fn a_script_stops_at_its_first_failing_line() {
    let h = harness("script");
    let script = "echo first\nfalse | true\nls /no/such/dir\necho unreachable\n";
    let message = failure(run("shell", json!({"script": script}), &h.ctx).await);
    // pipefail: `false | true` fails, so `ls` never runs.
    assert_eq!(message, "`echo first` exited with code 1");
    assert_eq!(h.log.lines(), ["first"]);
}

#[tokio::test]
async fn env_cwd_and_identity_reach_the_command() {
    let h = harness("env_task");
    let dir = std::env::temp_dir().join(testkit::unique_name("shell_cwd"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({
        "command": "echo \"$GREETING|$PORT|$(pwd)|$UPDRAFT_DAG_ID|$UPDRAFT_TASK_ID|$UPDRAFT_TRY_NUMBER\"",
        "env": {"GREETING": "grüß dich", "PORT": 8080},
        "cwd": dir.to_str().unwrap(),
    });
    let output = run("shell", config, &h.ctx).await.unwrap();
    let cwd = dir.canonicalize().unwrap();
    let expected = format!("grüß dich|8080|{}|operators_test|env_task|1", cwd.display());
    assert_eq!(output["last_line"], json!(expected));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn without_inherit_env_only_the_given_variables_are_set() {
    let h = harness("clean_env");
    let config = json!({"command": "echo \"${HOME:-unset}|$ONLY\"", "env": {"ONLY": "yes"}, "inherit_env": false});
    let output = run("shell", config, &h.ctx).await.unwrap();
    assert_eq!(output["last_line"], "unset|yes");
}

#[tokio::test]
async fn updrafts_own_settings_and_secrets_never_reach_a_task() {
    // Under `scripts/test` this process has DATABASE_URL (and CI sets UPDRAFT_* switches).
    assert!(
        !testkit::in_ci() || std::env::var_os("DATABASE_URL").is_some(),
        "CI=true: the test needs DATABASE_URL in its environment to prove anything"
    );
    let h = harness("secrets");
    let listing = "env | cut -d= -f1 | grep -E '^(DATABASE_URL|UPDRAFT_)' | sort | tr '\\n' ' '";
    let output = run("shell", json!({"command": listing}), &h.ctx)
        .await
        .unwrap();
    assert_eq!(
        output["last_line"], "UPDRAFT_DAG_ID UPDRAFT_RUN_ID UPDRAFT_TASK_ID UPDRAFT_TRY_NUMBER ",
        "only the identity variables"
    );
}

#[tokio::test]
async fn a_missing_cwd_is_a_config_error() {
    let h = harness("bad_cwd");
    let result = run(
        "shell",
        json!({"command": "true", "cwd": "/no/such/dir"}),
        &h.ctx,
    )
    .await;
    assert!(
        matches!(&result, Err(OperatorError::Config(message)) if message.contains("/no/such/dir")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let h = harness("timeout");
    let started = Instant::now();
    // The background sleep is a grandchild: only a group kill reaches it.
    let config = json!({"command": "sleep 30 & echo $!; wait", "timeout": "500ms"});
    let message = failure(run("shell", config, &h.ctx).await);
    let elapsed = started.elapsed();
    assert!(message.contains("timed out after 500ms"), "{message}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let pid: u32 = h.log.lines()[0].parse().unwrap();
    let what = format!("the background sleep {pid} to be gone");
    testkit::eventually(&what, Duration::from_secs(5), async || !process_alive(pid)).await;
}

#[tokio::test]
async fn cancellation_kills_promptly() {
    let h = harness("cancel");
    let ctx = h.ctx.clone();
    let task = tokio::spawn(async move {
        run("shell", json!({"command": "echo started; sleep 30"}), &ctx).await
    });
    let log = h.log.clone();
    testkit::eventually(
        "the command to start",
        Duration::from_secs(10),
        async || log.lines().contains(&"started".to_string()),
    )
    .await;
    let cancelled_at = Instant::now();
    h.ctx.cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    let elapsed = cancelled_at.elapsed();
    assert!(
        matches!(result, Err(OperatorError::Cancelled)),
        "{result:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "cancellation took {elapsed:?}"
    );
    eprintln!("cancellation took {elapsed:?}");
}

#[tokio::test]
async fn a_try_dropped_from_outside_leaves_no_processes() {
    let h = harness("dropped");
    // The orchestrator's execution_timeout drops the future instead of cancelling.
    let outcome = tokio::time::timeout(
        Duration::from_millis(500),
        run(
            "shell",
            json!({"command": "sleep 30 & echo $!; wait"}),
            &h.ctx,
        ),
    )
    .await;
    assert!(
        outcome.is_err(),
        "the command should still be running: {outcome:?}"
    );
    let pid: u32 = h.log.lines()[0].parse().unwrap();
    let what = format!("the background sleep {pid} to be gone");
    testkit::eventually(&what, Duration::from_secs(5), async || !process_alive(pid)).await;
}

#[tokio::test]
async fn background_processes_holding_the_output_do_not_hang_the_try() {
    let h = harness("background");
    let started = Instant::now();
    let output = run(
        "shell",
        json!({"command": "sleep 30 & echo $!; echo done"}),
        &h.ctx,
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(output, json!({"exit_code": 0, "last_line": "done"}));
    let pid: u32 = h.log.lines()[0].parse().unwrap();
    let what = format!("the background sleep {pid} to be gone");
    testkit::eventually(&what, Duration::from_secs(5), async || !process_alive(pid)).await;
}

#[tokio::test]
async fn invalid_utf8_output_is_logged_lossily() {
    let h = harness("bytes");
    let output = run("shell", json!({"command": "printf 'caf\\xe9\\n'"}), &h.ctx)
        .await
        .unwrap();
    assert_eq!(output["last_line"], "caf\u{fffd}");
}
