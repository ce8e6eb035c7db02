//! Plugin operators in DAGs, run by the scheduler as real processes: a Python plugin's result
//! is the task's XCom for the next task and its `xcom` lines are stored; a declared secret field
//! is masked in the log; a DAG naming the operator of a plugin that did not load is told why;
//! a plugin added or fixed while the processor and a scheduler run is picked up without a
//! restart.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use updraft_orchestrator::engine::Scheduler;
use updraft_orchestrator::processor::{DagProcessor, PluginsWatcher};

use updraft_operators::plugins;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::store::{import_errors, xcom};

use crate::scheduler_support::{config, env, env_with, log_lines};

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

    // The broken plugin is an import error of its manifest, and the DAG naming its operator
    // one that says why.
    let errors = import_errors::all(&env.pool).await.unwrap();
    let [plugin, error] = errors.as_slice() else {
        panic!("two import errors: {errors:?}");
    };
    assert!(
        plugin.fileloc.ends_with("broken/plugin.yaml")
            && plugin.message.contains("`spec` exited with code 1"),
        "{}",
        plugin.message
    );
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

const COUNTING: &str = r#"
dag_id: counting
schedule: null
is_paused_upon_creation: false
tasks:
  - id: count
    operator: word_count
    text: "one two two"
    top: 1
"#;

/// Import errors as `(file name, message)`.
async fn import_errors_now(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    import_errors::all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|error| {
            let name = Path::new(&error.fileloc)
                .file_name()
                .map(|name| name.to_string_lossy().to_string())
                .unwrap_or_default();
            (name, error.message)
        })
        .collect()
}

#[tokio::test]
async fn a_plugin_added_while_running_is_found_without_a_restart() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("plugins_rediscovered").await;
    let plugins_folder = tempfile::tempdir().unwrap();
    let (watcher, operators) = PluginsWatcher::start(
        plugins_folder.path().to_path_buf(),
        updraft_operators::builtin_registry(),
    )
    .await;
    let cancel = CancellationToken::new();
    tokio::spawn(watcher.run(cancel.clone()));
    let processor = DagProcessor::new(env.pool.clone(), env.folder.clone(), operators.clone());
    tokio::spawn({
        let cancel = cancel.clone();
        async move { processor.run(cancel).await.unwrap() }
    });
    std::fs::write(env.folder.join("counting.yaml"), COUNTING).unwrap();
    let within = Duration::from_secs(20);
    testkit::eventually(
        "the DAG's unknown operator as an import error",
        within,
        async || {
            let errors = import_errors_now(&env.pool).await;
            match errors.as_slice() {
                [(file, message)]
                    if file == "counting.yaml"
                        && message.contains("unknown operator `word_count`") =>
                {
                    Ok(())
                }
                _ => Err(errors),
            }
        },
    )
    .await;

    // A broken plugin is an import error of its own, and the DAG is told why its operator is
    // missing.
    let plugin = plugins_folder.path().join("word-count");
    std::fs::create_dir(&plugin).unwrap();
    std::fs::write(
        plugin.join("plugin.yaml"),
        "name: word-count\nversion: 1.0.0\ncommand: [python3, main.py]\noperators: [word_count]\n",
    )
    .unwrap();
    std::fs::write(
        plugin.join("main.py"),
        "raise SystemExit('not yet written')\n",
    )
    .unwrap();
    testkit::eventually("the broken plugin as an import error", within, async || {
        let errors = import_errors_now(&env.pool).await;
        let plugin_error = errors.iter().any(|(file, message)| {
            file == "plugin.yaml" && message.contains("`spec` exited with code 1")
        });
        let dag_error = errors.iter().any(|(file, message)| {
            file == "counting.yaml" && message.contains("its plugin did not load")
        });
        if plugin_error && dag_error {
            Ok(())
        } else {
            Err(errors)
        }
    })
    .await;

    // Fixed: the DAG loads, both import errors go, and a scheduler runs the new operator.
    let example = Path::new("../plugins/examples/python-word-count/main.py");
    std::fs::copy(example, plugin.join("main.py")).unwrap();
    testkit::eventually(
        "no import errors once the plugin loads",
        within,
        async || {
            let errors = import_errors_now(&env.pool).await;
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors)
            }
        },
    )
    .await;
    let scheduler = Scheduler::new(env.pool.clone(), operators, config());
    tokio::spawn({
        let cancel = cancel.clone();
        async move { scheduler.run(cancel).await.unwrap() }
    });
    let seen = env.trigger_and_finish("counting").await;
    assert_eq!(seen.states, vec![RunState::Success], "{seen:?}");
    cancel.cancel();
    env.stop().await;
}
