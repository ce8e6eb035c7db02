//! A value a user triggers a run with never becomes shell code: templates in `shell`'s
//! `command` are shell-quoted, so a `conf` of `hi; touch FILE` prints that text and creates
//! nothing.

use serde_json::json;
use updraft_orchestrator::dag::RunState;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::{task_instances, xcom};

use crate::scheduler_support::{config, env};

const ECHO_PARAM: &str = r#"
dag_id: echo_param
schedule: null
is_paused_upon_creation: false
params:
  msg: hello
tasks:
  - id: say
    operator: shell
    command: "echo {{ params.msg }}"
"#;

#[tokio::test]
async fn a_conf_value_is_printed_not_run() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("injection").await;
    env.write_dag("echo_param", ECHO_PARAM).await;
    env.start_scheduler(config());
    let marker = std::env::temp_dir().join(testkit::unique_name("injected"));
    let msg = format!(
        "hi; touch {} $(touch {}2)",
        marker.display(),
        marker.display()
    );
    let mut request = TriggerRequest::default();
    request.conf.insert("msg".into(), json!(msg));
    let run = trigger_run(&env.pool, "echo_param", request).await.unwrap();
    let runs = env
        .wait_for_runs(
            "the run to end",
            &[run.id],
            std::time::Duration::from_secs(30),
            |runs| runs.states.iter().all(|state| state.is_finished()),
        )
        .await;
    assert_eq!(runs.states, [RunState::Success]);
    let printed = xcom::return_values(&env.pool, run.id).await.unwrap()["say"]["last_line"].clone();
    assert_eq!(printed, json!(msg), "the value printed as it was given");
    assert!(!marker.exists(), "no command from conf ran");
    assert!(
        !marker
            .with_file_name(format!(
                "{}2",
                marker.file_name().unwrap().to_string_lossy()
            ))
            .exists()
    );
    // The stored rendered command shows the quoting the shell received.
    let rows = task_instances::of_runs(&env.pool, &[run.id]).await.unwrap();
    let command = rows[0].rendered_config.as_ref().unwrap()["command"].clone();
    assert!(
        command
            .as_str()
            .is_some_and(|c| c.starts_with("echo 'hi; touch")),
        "{command}"
    );
    env.stop().await;
}
