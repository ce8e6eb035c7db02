//! A `kafka_publish` try that failed after publishing part of its records is retried: the retry
//! re-sends the same records (`uuid4()` ids included) with the same keys, so an upsert by id
//! collapses them instead of multiplying people.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use updraft_orchestrator::dag::RunState;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::{runs, task_instances};

use crate::scheduler_support::{config, env};

/// A record as sent: its key and its bytes.
type Sent = (Option<String>, Vec<u8>);

/// Try 1 publishes round 1, then sleeps past `execution_timeout` before round 2 and fails;
/// try 2 (no pause) publishes both rounds.
fn dag(topic: &str) -> String {
    format!(
        r#"
dag_id: publish_retry
schedule: null
is_paused_upon_creation: false
tasks:
  - id: publish
    operator: kafka_publish
    brokers: "{brokers}"
    topic: {topic}
    for_each: [{{login: a1, name: Ana}}, {{login: b2, name: Ben}}, {{login: c3, name: Cleo}}]
    key: "{{{{ item.login }}}}"
    value: {{id: "{{{{ uuid4() }}}}", name: "{{{{ item.name }}}}"}}
    repeat: {{times: 2, interval: "{{{{ '30s' if try_number == 1 else '0s' }}}}"}}
    execution_timeout: 3s
    retries: 1
    retry_delay: 0s
"#,
        brokers = testkit::kafka_bootstrap_servers(),
    )
}

#[tokio::test]
async fn a_retried_publish_resends_identical_records() {
    if !testkit::require_postgres() || !testkit::require_kafka() {
        return;
    }
    let topic = testkit::unique_name("publish_retry");
    testkit::kafka::create_topic(&topic, 1).await;
    let mut env = env("publish_retry").await;
    env.write_dag("publish_retry", &dag(&topic)).await;
    env.start_scheduler(config());
    let run = trigger_run(&env.pool, "publish_retry", TriggerRequest::default())
        .await
        .unwrap();
    let state = testkit::eventually("the run to finish", Duration::from_secs(60), async || {
        let now = runs::get(&env.pool, "publish_retry", &run.run_id)
            .await
            .unwrap()
            .expect("the run exists");
        now.state.is_finished().then_some(now.state)
    })
    .await;
    assert_eq!(state, RunState::Success);
    let tis = task_instances::of_runs(&env.pool, &[run.id]).await.unwrap();
    assert_eq!(tis[0].try_number, 2, "the first try timed out");

    // Try 1: round 1 (3 records); try 2: rounds 1 and 2 (6).
    let records = testkit::kafka::read_topic(&topic, 9, Duration::from_secs(30)).await;
    let mut copies: BTreeMap<String, BTreeSet<Sent>> = BTreeMap::new();
    for record in &records {
        let id = record.json()["id"].as_str().expect("an id").to_string();
        copies
            .entry(id)
            .or_default()
            .insert((record.key.clone(), record.payload.clone()));
    }
    assert_eq!(copies.len(), 6, "3 people × 2 rounds: {copies:#?}");
    let resent: Vec<_> = records[..3]
        .iter()
        .map(|record| &copies[record.json()["id"].as_str().unwrap_or_default()])
        .collect();
    for sent in resent {
        assert_eq!(sent.len(), 1, "the retry re-sent it identically: {sent:?}");
    }
    assert_eq!(testkit::kafka::record_count(&topic), 9);
    env.stop().await;
}
