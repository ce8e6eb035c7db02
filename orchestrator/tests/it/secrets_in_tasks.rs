//! Connections and variables reach a task through its templates, and what the task leaves
//! behind has them masked: a shell task that prints a connection's password, a sensitive extra
//! and a sensitive variable logs `***`, and its stored rendered config holds none of them. A
//! connection no key opens fails only the tasks that read it.

use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::store::{connections, variables};
use updraft_secrets::{Cipher, Connection};

use crate::scheduler_support::{config, env, log_lines};

const PASSWORD: &str = "pa55-w0rd!x";
const TOKEN: &str = "tok-abcdef-123";
const SECRET_VARIABLE: &str = "v-secret-789";

const SHOW_SECRETS: &str = r#"
dag_id: show_secrets
schedule: null
is_paused_upon_creation: false
tasks:
  - id: show
    operator: shell
    command: echo "pw=$PW token=$TOKEN var=$VAR host={{ conn.warehouse.host }} size={{ var.value.batch_size }}"
    env:
      PW: "{{ conn.warehouse.password }}"
      TOKEN: "{{ conn('warehouse').extra_dejson.token }}"
      VAR: "{{ var.value.api_secret }}"
"#;

const READS_STALE: &str = r#"
dag_id: reads_stale
schedule: null
is_paused_upon_creation: false
tasks:
  - id: read
    operator: shell
    command: echo "{{ conn.stale.host }}"
"#;

#[tokio::test]
async fn a_task_printing_a_secret_logs_it_masked() {
    if !testkit::require_postgres() {
        return;
    }
    let mut env = env("secrets_in_tasks").await;
    let cipher = Cipher::from_keys(&Cipher::generate_key()).unwrap();
    let warehouse = Connection {
        conn_id: "warehouse".into(),
        conn_type: "postgres".into(),
        host: Some("db.internal".into()),
        port: Some(5432),
        login: Some("etl".into()),
        password: Some(PASSWORD.into()),
        extra: Some(format!(r#"{{"token": "{TOKEN}", "sslmode": "require"}}"#)),
        ..Connection::default()
    };
    connections::insert(&env.pool, &cipher, &warehouse)
        .await
        .unwrap();
    for (key, value) in [("api_secret", SECRET_VARIABLE), ("batch_size", "50")] {
        let variable = variables::Variable {
            key: key.into(),
            value: value.into(),
            description: None,
        };
        variables::set(&env.pool, &cipher, &variable).await.unwrap();
    }
    // A connection stored with a key the scheduler no longer has: it fails only the task
    // that reads it.
    let stale = Connection {
        conn_id: "stale".into(),
        conn_type: "http".into(),
        host: Some("old.example.com".into()),
        password: Some("lost".into()),
        ..Connection::default()
    };
    let old_key = Cipher::from_keys(&Cipher::generate_key()).unwrap();
    connections::insert(&env.pool, &old_key, &stale)
        .await
        .unwrap();
    env.write_dag("show_secrets", SHOW_SECRETS).await;
    env.write_dag("reads_stale", READS_STALE).await;
    let mut scheduler = config();
    scheduler.cipher = cipher;
    env.start_scheduler(scheduler);

    let seen = env.trigger_and_finish("show_secrets").await;
    assert_eq!(seen.states, vec![RunState::Success], "{seen:?}");
    let ti = &seen.task_instances[0];
    assert_eq!(ti.state, TaskState::Success);
    let lines: Vec<String> = log_lines(&env.pool, ti)
        .await
        .into_iter()
        .map(|(_, line)| line.line)
        .collect();
    let log = lines.join("\n");
    assert!(
        log.contains("pw=*** token=*** var=*** host=db.internal size=50"),
        "{log}"
    );
    let rendered = ti
        .rendered_config
        .as_ref()
        .expect("a rendered config")
        .to_string();
    for secret in [PASSWORD, TOKEN, SECRET_VARIABLE] {
        assert!(!log.contains(secret), "`{secret}` in the log: {log}");
        assert!(
            !rendered.contains(secret),
            "`{secret}` in the rendered config: {rendered}"
        );
    }
    assert!(rendered.contains("db.internal"), "{rendered}");

    let seen = env.trigger_and_finish("reads_stale").await;
    assert_eq!(seen.states, vec![RunState::Failed], "{seen:?}");
    let ti = &seen.task_instances[0];
    let log: Vec<String> = log_lines(&env.pool, ti)
        .await
        .into_iter()
        .map(|(_, line)| line.line)
        .collect();
    assert!(
        log.iter()
            .any(|line| line.contains("connection `stale` password")),
        "the error names the connection it cannot open: {log:?}"
    );
    env.stop().await;
}
