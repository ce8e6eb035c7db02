//! `kafka_publish` against the real broker: publish, consume back, compare.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{WithConnections, harness, run};
use serde_json::{Value, json};
use testkit::kafka::Record;
use updraft_operators::OperatorError;

const PARTITIONS: i32 = 3;

async fn create_topic(prefix: &str) -> String {
    let topic = testkit::unique_name(prefix);
    testkit::kafka::create_topic(&topic, PARTITIONS).await;
    topic
}

/// Reads `expected` records from the start of every partition, or fails after 30 s.
async fn consume(topic: &str, expected: usize) -> Vec<Record> {
    testkit::kafka::read_topic(topic, expected, Duration::from_secs(30)).await
}

/// The output's partition ranges must be exactly those of the records read back.
fn assert_ranges_match(output: &Value, records: &[Record]) {
    let mut ranges: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for record in records {
        let range = ranges
            .entry(record.partition.to_string())
            .or_insert((record.offset, record.offset));
        range.0 = range.0.min(record.offset);
        range.1 = range.1.max(record.offset);
    }
    let expected: serde_json::Map<String, Value> = ranges
        .into_iter()
        .map(|(partition, (first, last))| {
            (
                partition,
                json!({"first_offset": first, "last_offset": last}),
            )
        })
        .collect();
    assert_eq!(output["partitions"], Value::Object(expected));
}

#[tokio::test]
async fn for_each_renders_key_value_and_headers_per_item() {
    if !testkit::require_kafka() {
        return;
    }
    let topic = create_topic("ops_for_each").await;
    let users = json!([
        {"login": {"uuid": "u-1", "username": "bluefrog512"}, "name": {"first": "Zoë", "last": "Ünal"}, "postcode": 75001},
        {"login": {"uuid": "u-2", "username": "tinybear77"}, "name": {"first": "Jörg", "last": "Ødegård"}, "postcode": "9008"},
        {"login": {"uuid": "u-3", "username": "quietowl"}, "name": {"first": "Ana", "last": "Silva"}, "postcode": 1000},
        {"login": {"uuid": "u-4", "username": "redfox"}, "name": {"first": "Li", "last": "Wei"}, "postcode": "100000"},
        {"login": {"uuid": "u-5", "username": "greyseal"}, "name": {"first": "Émile", "last": "Zola"}, "postcode": 13100},
    ]);
    let h = harness("stream_users");
    let config = json!({
        "brokers": testkit::kafka_bootstrap_servers(),
        "topic": topic,
        // Already rendered by the orchestrator (not deferred): the native list.
        "for_each": users,
        "key": "{{ item.login.uuid }}",
        "value": {
            "username": "{{ item.login.username }}",
            "full_name": "{{ item.name.first }} {{ item.name.last }}",
            "post_code": "{{ item.postcode }}",
            "position": "{{ index }}",
        },
        "headers": {"source": "randomuser-{{ index }}"},
    });
    let output = run("kafka_publish", config, &h.ctx).await.unwrap();
    assert_eq!(output["count"], 5);
    assert_eq!(output["topic"], json!(topic));
    assert_eq!(output["rounds"], 1);

    let mut records = consume(&topic, 5).await;
    assert_ranges_match(&output, &records);
    records.sort_by(|a, b| a.key.cmp(&b.key));
    let users = users.as_array().unwrap();
    for (index, (record, user)) in records.iter().zip(users).enumerate() {
        assert_eq!(record.key.as_deref(), user["login"]["uuid"].as_str());
        let expected = json!({
            "username": user["login"]["username"],
            "full_name": format!("{} {}", user["name"]["first"].as_str().unwrap(), user["name"]["last"].as_str().unwrap()),
            // A whole-expression template keeps the native value: numbers stay numbers.
            "post_code": user["postcode"],
            "position": index,
        });
        assert_eq!(record.json(), expected);
        assert_eq!(
            record.headers,
            BTreeMap::from([("source".to_string(), format!("randomuser-{index}"))])
        );
    }
    assert!(
        h.log
            .lines()
            .iter()
            .any(|line| line.starts_with("round 1: published 5 records to topic")),
        "{:?}",
        h.log.lines()
    );
}

#[tokio::test]
async fn repeat_times_publishes_every_round() {
    if !testkit::require_kafka() {
        return;
    }
    let topic = create_topic("ops_repeat").await;
    let h = harness("repeat");
    let config = json!({
        "brokers": testkit::kafka_bootstrap_servers(),
        "topic": topic,
        "value": {"greeting": "grüß dich"},
        "repeat": {"times": 3},
    });
    let output = run("kafka_publish", config, &h.ctx).await.unwrap();
    assert_eq!(output["count"], 3);
    assert_eq!(output["rounds"], 3);
    let records = consume(&topic, 3).await;
    assert_ranges_match(&output, &records);
    for record in &records {
        assert_eq!(record.json(), json!({"greeting": "grüß dich"}));
        assert_eq!(record.key, None);
    }
}

#[tokio::test]
async fn repeat_for_keeps_publishing_until_the_time_is_up() {
    if !testkit::require_kafka() {
        return;
    }
    let topic = create_topic("ops_repeat_for").await;
    let h = harness("repeat_for");
    let config = json!({
        "brokers": testkit::kafka_bootstrap_servers(),
        "topic": topic,
        "for_each": [{"n": 1}, {"n": 2}],
        "repeat": {"for": "1s", "interval": "200ms"},
    });
    let started = Instant::now();
    let output = run("kafka_publish", config, &h.ctx).await.unwrap();
    let elapsed = started.elapsed();
    let rounds = output["rounds"].as_u64().unwrap();
    assert!((2..=6).contains(&rounds), "{rounds} rounds in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(output["count"].as_u64().unwrap(), rounds * 2);
    let records = consume(&topic, (rounds * 2) as usize).await;
    assert_ranges_match(&output, &records);
    // Without `value`, each record is the item itself.
    let ones = records
        .iter()
        .filter(|record| record.json() == json!({"n": 1}))
        .count();
    assert_eq!(ones as u64, rounds);
    eprintln!("repeat for 1s with 200ms interval: {rounds} rounds in {elapsed:?}");
}

#[tokio::test]
async fn cancellation_stops_a_repeat() {
    if !testkit::require_kafka() {
        return;
    }
    let topic = create_topic("ops_cancel").await;
    let h = harness("cancel");
    let ctx = h.ctx.clone();
    let config = json!({
        "brokers": testkit::kafka_bootstrap_servers(),
        "topic": topic,
        "value": 1,
        "repeat": {"for": "60s", "interval": "100ms"},
    });
    let task = tokio::spawn(async move { run("kafka_publish", config, &ctx).await });
    let log = h.log.clone();
    testkit::eventually("a round to finish", Duration::from_secs(20), async || {
        !log.lines().is_empty()
    })
    .await;
    let cancelled_at = Instant::now();
    h.ctx.cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(OperatorError::Cancelled)),
        "{result:?}"
    );
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(2),
        "took {:?}",
        cancelled_at.elapsed()
    );
}

#[tokio::test]
async fn a_template_error_names_the_field_and_item() {
    let h = harness("bad_template");
    let config = json!({
        "brokers": "127.0.0.1:1",
        "topic": "never_created",
        "for_each": [{"id": 1}, {"other": 2}],
        "key": "{{ item.id }}",
    });
    let result = run("kafka_publish", config, &h.ctx).await;
    match result {
        Err(OperatorError::Template(message)) => {
            assert!(message.contains("`key` of for_each item 1"), "{message}");
            assert!(message.contains("item.id"), "{message}");
        }
        other => panic!("expected a template error, got {other:?}"),
    }
}

#[tokio::test]
async fn for_each_that_renders_to_a_non_list_is_a_config_error() {
    let h = harness("not_a_list");
    let config = json!({"topic": "t", "for_each": "{{ xcom('fetch') }}"});
    let kind = updraft_operators::builtin_registry();
    let kind = kind.get("kafka_publish").unwrap();
    kind.validate(&config).unwrap();
    // The orchestrator rendered the template to an object, not a list.
    let rendered = json!({"topic": "t", "for_each": {"status": 200}});
    let result = kind.execute(rendered, &h.ctx).await;
    assert!(
        matches!(&result, Err(OperatorError::Config(m)) if m.contains("must be a list")),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unreachable_broker_fails_naming_topic_and_broker() {
    let h = harness("unreachable");
    let config = json!({
        "brokers": "127.0.0.1:1",
        "topic": "users_created",
        "value": {"a": 1},
        "delivery_timeout": "1s",
    });
    let started = Instant::now();
    let result = run("kafka_publish", config, &h.ctx).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    match result {
        Err(OperatorError::Failed(message)) => {
            assert!(
                message.contains("topic `users_created` at brokers `127.0.0.1:1`"),
                "{message}"
            );
            assert!(message.contains("is the broker reachable?"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_large_for_each_is_pipelined_and_fully_acknowledged() {
    if !testkit::require_kafka() {
        return;
    }
    // More records than the in-flight bound, so the bounded-window path runs too.
    const RECORDS: usize = 20_000;
    let topic = create_topic("ops_large").await;
    let h = harness("large");
    let items: Vec<Value> = (0..RECORDS).map(|n| json!({"n": n})).collect();
    let config = json!({
        "brokers": testkit::kafka_bootstrap_servers(),
        "topic": topic,
        "for_each": items,
        "key": "{{ item.n }}",
    });
    let started = Instant::now();
    let output = run("kafka_publish", config, &h.ctx).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(output["count"], RECORDS);
    let records = consume(&topic, RECORDS).await;
    assert_ranges_match(&output, &records);
    let mut seen: Vec<u64> = records
        .iter()
        .map(|record| record.json()["n"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..RECORDS as u64).collect::<Vec<_>>());
    eprintln!("published {RECORDS} records in {elapsed:?}");
}

#[tokio::test]
async fn a_connection_gives_the_brokers_and_client_settings() {
    if !testkit::require_kafka() {
        return;
    }
    let topic = create_topic("ops_conn").await;
    let bootstrap = testkit::kafka_bootstrap_servers();
    let by_extra = updraft_secrets::Connection::from_json(
        "events",
        &json!({"conn_type": "kafka", "extra": {"bootstrap.servers": bootstrap, "linger.ms": 5}})
            .to_string(),
    )
    .unwrap();
    // Brokers from the host; a setting librdkafka refuses shows the extra reaches the producer.
    let by_host = updraft_secrets::Connection::from_json(
        "misconfigured",
        &json!({"conn_type": "kafka", "host": bootstrap, "extra": {"security.protocol": "carrier-pigeon"}})
            .to_string(),
    )
    .unwrap();
    let mut h = harness("with_connection");
    h.ctx.renderer = std::sync::Arc::new(WithConnections(vec![by_extra, by_host]));
    let config = json!({"conn_id": "events", "topic": topic, "value": {"via": "connection"}});
    let output = run("kafka_publish", config, &h.ctx).await.unwrap();
    assert_eq!(output["count"], 1);
    let records = consume(&topic, 1).await;
    assert_eq!(records[0].json(), json!({"via": "connection"}));

    let config = json!({"conn_id": "misconfigured", "topic": topic, "value": 1});
    let refused = run("kafka_publish", config, &h.ctx).await;
    assert!(
        matches!(&refused, Err(OperatorError::Failed(message)) if message.contains("security.protocol")),
        "{refused:?}"
    );
}

/// The seed's Avro schema, as the stream worker's example reads it.
const USER_SCHEMA: &str = include_str!("../../../streams/examples/users_created.avsc");

#[tokio::test]
async fn format_avro_registers_the_schema_and_frames_each_value_with_its_id() {
    if !testkit::require_kafka() || !testkit::require_schema_registry() {
        return;
    }
    let topic = create_topic("ops_avro").await;
    let schema: Value = serde_json::from_str(USER_SCHEMA).unwrap();
    let users: Vec<Value> = (0..4)
        .map(|i| {
            let mut user = serde_json::Map::new();
            for field in schema["fields"].as_array().unwrap() {
                let name = field["name"].as_str().unwrap();
                user.insert(name.into(), json!(format!("{name} {i} ✓")));
            }
            Value::Object(user)
        })
        .collect();
    let h = harness("stream_users_avro");
    let config = json!({
        "brokers": testkit::kafka_bootstrap_servers(),
        "topic": topic,
        "for_each": users,
        "format": "avro",
        "schema_registry": testkit::schema_registry_url(),
        "schema": schema,
    });
    let output = run("kafka_publish", config, &h.ctx).await.unwrap();
    assert_eq!(output["count"], 4);

    // The id in each header is the one the registry holds for the topic's subject.
    let registry = schema_registry::Registry::new(&testkit::schema_registry_url()).unwrap();
    let latest = registry
        .latest(&schema_registry::value_subject(&topic))
        .await
        .unwrap();
    let parsed = apache_avro::Schema::parse_str(&latest.schema).unwrap();
    let mut decoded: Vec<Value> = consume(&topic, 4)
        .await
        .iter()
        .map(|record| {
            let (id, mut datum) = schema_registry::unframe(&record.payload).unwrap();
            assert_eq!(id, latest.id);
            let value = apache_avro::from_avro_datum(&parsed, &mut datum, None).unwrap();
            Value::try_from(value).unwrap()
        })
        .collect();
    decoded.sort_by_key(|user| user["first_name"].to_string());
    assert_eq!(decoded, users);
    assert!(
        h.log.lines().iter().any(|line| line
            == &format!(
                "Avro: schema id {} of subject `{topic}-value` at {}",
                latest.id,
                registry.url()
            )),
        "{:?}",
        h.log.lines()
    );
}

#[tokio::test]
async fn format_avro_fails_clearly_on_a_misfit_value_or_an_incompatible_schema() {
    if !testkit::require_kafka() || !testkit::require_schema_registry() {
        return;
    }
    let topic = create_topic("ops_avro_bad").await;
    let schema = json!({"type": "record", "name": "Greeting", "fields": [{"name": "text", "type": "string"}]});
    let h = harness("avro_bad");
    let publish = |value: Value, schema: Value| {
        json!({
            "brokers": testkit::kafka_bootstrap_servers(),
            "topic": topic,
            "for_each": [{"text": "hi"}, value],
            "format": "avro",
            "schema_registry": testkit::schema_registry_url(),
            "schema": schema,
        })
    };
    let error = run(
        "kafka_publish",
        publish(json!({"text": 7}), schema.clone()),
        &h.ctx,
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the value of for_each item 1 does not fit Avro schema id"),
        "{error}"
    );
    assert_eq!(
        testkit::kafka::record_count(&topic),
        0,
        "no record of a failed round is sent"
    );

    // A new required field without a default breaks BACKWARD compatibility: the registry says no.
    let breaking = json!({"type": "record", "name": "Greeting", "fields": [
        {"name": "text", "type": "string"}, {"name": "lang", "type": "string"}]});
    let error = run(
        "kafka_publish",
        publish(json!({"text": "yo", "lang": "en"}), breaking),
        &h.ctx,
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains(&format!(
            "refused the schema for subject `{topic}-value` (HTTP 409)"
        )),
        "{error}"
    );

    // The registry from a connection (its login sent as basic auth): the subject's latest
    // version is used when no schema is given.
    let mut h = harness("avro_conn");
    let registry = updraft_secrets::Connection::parse(
        "schemas",
        &testkit::schema_registry_url().replace("://", "://reader:s3cret@"),
    )
    .unwrap();
    h.ctx.renderer = std::sync::Arc::new(WithConnections(vec![registry]));
    let output = run(
        "kafka_publish",
        json!({
            "brokers": testkit::kafka_bootstrap_servers(),
            "topic": topic,
            "value": {"text": "from the latest version"},
            "format": "avro",
            "schema_registry_conn_id": "schemas",
        }),
        &h.ctx,
    )
    .await
    .unwrap();
    assert_eq!(output["count"], 1);
    let record = consume(&topic, 1).await.remove(0);
    let latest = schema_registry::Registry::new(&testkit::schema_registry_url())
        .unwrap()
        .latest(&format!("{topic}-value"))
        .await
        .unwrap();
    assert_eq!(
        schema_registry::unframe(&record.payload).unwrap().0,
        latest.id
    );

    let error = run(
        "kafka_publish",
        json!({"topic": topic, "value": {"a": 1}, "schema": schema}),
        &h.ctx,
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`schema` is read only with `format: avro`"),
        "{error}"
    );
}
