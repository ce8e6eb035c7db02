//! Plugin operators in DAGs, run by the scheduler as real processes: a Python plugin's result
//! is the task's XCom for the next task and its `xcom` lines are stored; a declared secret field
//! is masked in the log; a DAG naming the operator of a plugin that did not load is told why.

use std::path::Path;

use updraft_operators::plugins;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::store::{import_errors, xcom};

use crate::scheduler_support::{config, env_with, log_lines};

const TOKEN: &str = "plugin-t0ken-42";

const DAG: &str = r#"
dag_id: with_plugins
schedule: null
is_paused_upon_creation: false
params:
  text: "to be or not to be"
tasks:
  - id: count
    operator: word_count
    text: "{{ params.text }}"
    top: 1
  - id: report
    operator: shell
    command: echo "top={{ xcom('count')[0].word }}"
    upstream: [count]
  - id: call
    operator: call_api
    token: "{{ params.token }}"
"#;

const BROKEN_USER: &str = r#"
dag_id: uses_broken
schedule: null
tasks:
  - id: t
    operator: never_loads
"#;

/// A plugin whose `call_api` declares `token` secret and logs it; and one whose `spec` fails.
fn local_plugins(root: &Path) {
    let write = |name: &str, operators: &str, script: &str| {
        let folder = root.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("plugin.yaml"),
            format!(
                "name: {name}\nversion: 0.1.0\ncommand: [sh, plugin.sh]\noperators: [{operators}]\n"
            ),
        )
        .unwrap();
        std::fs::write(folder.join("plugin.sh"), script).unwrap();
    };
    write(
        "api",
        "call_api",
        r#"if [ "$1" = spec ]; then
  echo '{"operators": {"call_api": {"config_schema": {"type": "object", "properties": {"token": {"type": "string"}}}, "secret": ["token"]}}}'
  exit 0
fi
read -r request
token=$(printf '%s' "$request" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
echo "{\"type\": \"log\", \"message\": \"calling with $token\"}"
echo "token was $token" >&2
echo '{"type": "result", "value": "ok"}'
"#,
    );
    write("broken", "never_loads", "echo 'no spec here' >&2; exit 1\n");
}

#[tokio::test]
async fn plugin_operators_run_in_dags_like_built_in_ones() {
    if !testkit::require_postgres() {
        return;
    }
    let local = tempfile::tempdir().unwrap();
    local_plugins(local.path());
    let mut registry = updraft_operators::builtin_registry();
    for folder in [Path::new("../plugins/examples"), local.path()] {
        let discovery = plugins::discover(folder, &registry.names()).await;
        discovery.register(&mut registry);
    }
    assert!(registry.get("word_count").is_some() && registry.get("call_api").is_some());
    let mut env = env_with("plugins_in_dags", registry).await;
    env.write_dag(
        "with_plugins",
        &DAG.replace("text: \"to be", &format!("token: {TOKEN}\n  text: \"to be")),
    )
    .await;
    env.write_dag("uses_broken", BROKEN_USER).await;

    // The DAG naming the broken plugin's operator is an import error that says why.
    let errors = import_errors::all(&env.pool).await.unwrap();
    let [error] = errors.as_slice() else {
        panic!("one import error: {errors:?}");
    };
    assert!(
        error.fileloc.ends_with("uses_broken.yaml")
            && error
                .message
                .contains("operator `never_loads` is missing: its plugin did not load")
            && error.message.contains("last stderr line: no spec here"),
        "{}",
        error.message
    );

    env.start_scheduler(config());
    let seen = env.trigger_and_finish("with_plugins").await;
    assert_eq!(seen.states, vec![RunState::Success], "{seen:?}");
    let ti = |task_id: &str| {
        seen.task_instances
            .iter()
            .find(|ti| ti.task_id == task_id)
            .unwrap_or_else(|| panic!("no `{task_id}`"))
    };
    for task_id in ["count", "report", "call"] {
        assert_eq!(ti(task_id).state, TaskState::Success, "{task_id}");
    }
    let log = |lines: Vec<(i32, updraft_orchestrator::store::logs::LogLine)>| {
        lines
            .into_iter()
            .map(|(_, line)| line.line)
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The result is the task's XCom; `xcom` lines are stored beside it.
    let report = log(log_lines(&env.pool, ti("report")).await);
    assert!(report.contains("top=to"), "{report}");
    let total = xcom::get(&env.pool, ti("count").id, "total_words")
        .await
        .unwrap()
        .expect("the plugin's xcom line is stored");
    assert_eq!(total.value, serde_json::json!(6));
    let count_log = log(log_lines(&env.pool, ti("count")).await);
    assert!(count_log.contains("count: 6 words"), "{count_log}");
    // The declared secret is masked wherever the task leaves it.
    let call_log = log(log_lines(&env.pool, ti("call")).await);
    assert!(
        call_log.contains("calling with ***") && call_log.contains("[stderr] token was ***"),
        "{call_log}"
    );
    assert!(!call_log.contains(TOKEN), "{call_log}");
    let rendered = ti("call")
        .rendered_config
        .clone()
        .unwrap_or_default()
        .to_string();
    assert!(!rendered.contains(TOKEN), "{rendered}");
    env.stop().await;
}
