//! Process roles on one database: `updraft webserver` serves the UI and the API only (it parses,
//! schedules and runs nothing); `updraft scheduler` runs what was triggered through it.

use std::time::Duration;

use serde_json::json;
use updraft_orchestrator::dag::RunState;
use updraft_orchestrator::store::{processes, runs};

use crate::common::{Scheduler, setup, wait_for_runs};

const DAG: &str = "dag_id: hello\nschedule: null\nis_paused_upon_creation: false\ntasks:\n  \
    - id: greet\n    operator: shell\n    command: echo hello\n";
const PASSWORD: &str = "roles-test-password";

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_triggered_on_the_webserver_is_run_by_a_scheduler() {
    let Some((pool, database, folder)) = setup("roles", "hello.yaml", DAG).await else {
        return;
    };
    let bind = format!("127.0.0.1:{}", free_port());
    let env = [("UPDRAFT_ADMIN_PASSWORD", PASSWORD)];
    let args = ["webserver", "--bind", &bind];
    let mut webserver = Scheduler::start_role(&args, database.url(), folder.path(), &env, None);
    let http = reqwest::Client::new();
    let base = format!("http://{bind}/api/v1");
    testkit::eventually(
        "the webserver to answer",
        Duration::from_secs(30),
        async || {
            webserver.assert_alive("while starting");
            let health = http.get(format!("{base}/health")).send().await;
            health.is_ok_and(|response| response.status().is_success())
        },
    )
    .await;

    let triggered = http
        .post(format!("{base}/dags/hello/dagRuns"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({"dag_run_id": "r1"}))
        .send()
        .await
        .expect("trigger");
    assert!(triggered.status().is_success(), "{triggered:?}");
    let run = runs::get(&pool, "hello", "r1")
        .await
        .expect("read")
        .expect("the run exists");
    // The webserver runs no scheduler: no heartbeat was ever stored.
    assert_eq!(
        processes::latest_heartbeat(&pool).await.expect("read"),
        None
    );

    let _scheduler = Scheduler::start(database.url(), folder.path(), &[], None);
    wait_for_runs(
        &pool,
        "the run to succeed",
        &[run.id],
        Duration::from_secs(30),
        |runs| runs.count(RunState::Success) == 1,
    )
    .await;
    webserver.assert_alive("after the run");
}
