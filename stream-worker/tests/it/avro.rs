//! Avro through the real schema registry (`scripts/stack`'s): records in the Confluent wire
//! format land, a new schema version is read without a restart, records the registry cannot
//! explain are dead-lettered, and a registry outage delays records without losing any.

use std::path::Path;
use std::time::Duration;

use apache_avro::Schema;
use schema_registry::Registry;
use serde_json::{Value, json};

use crate::common::*;

const SCHEMA_V1: &str = include_str!("../../../streams/examples/users_created.avsc");

/// The shipped Avro example, pointed at this test's names (its registry: the worker's).
fn avro_definition(names: &Names) -> stream_worker::Stream {
    let text = shipped_definition("examples/users_avro.yaml", "users_created_avro", names);
    stream_worker::definition::parse(Path::new("users_avro.yaml"), &text).expect("valid")
}

/// Schema v1 with `nat`, an optional field, added (v2), or with `email` removed (v3).
fn evolved(add_nat: bool, drop_email: bool) -> String {
    let mut schema: Value = serde_json::from_str(SCHEMA_V1).expect("schema JSON");
    let fields = schema["fields"].as_array_mut().expect("fields");
    if add_nat {
        fields.push(json!({"name": "nat", "type": ["null", "string"], "default": null}));
    }
    if drop_email {
        fields.retain(|field| field["name"] != "email");
    }
    schema.to_string()
}

/// The seed record as the Avro schema types it (every field a string).
fn user(i: usize) -> Value {
    let mut record = seed_record(i);
    record["post_code"] = record["post_code"].to_string().trim_matches('"').into();
    record
}

/// `record` written with `schema` (registered as `id`) in the Confluent wire format.
fn framed(schema: &Schema, id: u32, record: &Value) -> Vec<u8> {
    let value = apache_avro::types::Value::from(record.clone())
        .resolve(schema)
        .expect("the record fits the schema");
    let datum = apache_avro::to_avro_datum(schema, value).expect("encode");
    schema_registry::frame(id, &datum)
}

async fn register(registry: &Registry, subject: &str, schema: &str) -> (u32, Schema) {
    let id = registry.register(subject, schema).await.expect("register");
    (id, Schema::parse_str(schema).expect("schema"))
}

async fn text_of(
    session: &scylla::client::session::Session,
    table: &str,
    column: &str,
    id: &str,
) -> Option<String> {
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    session
        .query_unpaged(format!("SELECT {column} FROM {table} WHERE id = ?"), (id,))
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row::<(Option<String>,)>()
        .expect("one row")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_land_and_new_schema_versions_are_read_without_a_restart() {
    if !testkit::require_kafka()
        || !testkit::require_cassandra()
        || !testkit::require_schema_registry()
    {
        return;
    }
    let names = Names::new("sw_avro");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let registry = Registry::new(&testkit::schema_registry_url()).expect("registry URL");
    let subject = schema_registry::value_subject(&names.topic);
    let (v1, schema_v1) = register(&registry, &subject, SCHEMA_V1).await;
    let first: Vec<Value> = (0..20).map(user).collect();
    let mut payloads: Vec<Vec<u8>> = first.iter().map(|r| framed(&schema_v1, v1, r)).collect();
    // Offset 20: JSON, not Avro; offset 21: a schema id the registry never gave.
    payloads.push(first[0].to_string().into_bytes());
    payloads.push(framed(&schema_v1, u32::MAX - 7, &user(99)));
    testkit::kafka::produce(&names.topic, &payloads).await;

    let worker = start_worker(config(), vec![avro_definition(&names)]);
    worker.ready().await;
    let session = testkit::cassandra::session().await;
    let table = format!("{}.created_users_avro", names.keyspace);
    wait_for_table(&session, &table, 20, Duration::from_secs(60)).await;
    let dlq = format!("{}.dlq", names.topic);
    let letters = dead_letters_by_offset(&names, 2).await;
    assert_dead_letter(
        &letters[0],
        "not_avro",
        20,
        "record is not Avro: record starts with byte 0x7b",
    );
    assert_dead_letter(
        &letters[1],
        "unknown_schema",
        21,
        &format!(
            "schema registry {}: schema id {} is not registered",
            registry.url(),
            u32::MAX - 7
        ),
    );

    // The producer moves to v2 (adds the optional `nat`): the running worker reads it.
    let (v2, schema_v2) = register(&registry, &subject, &evolved(true, false)).await;
    assert_ne!(v1, v2, "a new version gets a new id");
    let second: Vec<Value> = (20..40)
        .map(|i| {
            let mut record = user(i);
            record["nat"] = json!(format!("N{i}"));
            record
        })
        .collect();
    let payloads: Vec<Vec<u8>> = second.iter().map(|r| framed(&schema_v2, v2, r)).collect();
    testkit::kafka::produce(&names.topic, &payloads).await;
    wait_for_table(&session, &table, 40, Duration::from_secs(60)).await;

    // Then drops `email`, which the stream requires: those records are dead letters that say so.
    let (v3, schema_v3) = register(&registry, &subject, &evolved(true, true)).await;
    let mut without_email = user(40);
    without_email
        .as_object_mut()
        .expect("object")
        .remove("email");
    testkit::kafka::produce(&names.topic, &[framed(&schema_v3, v3, &without_email)]).await;
    let letters = dead_letters_by_offset(&names, 3).await;
    assert_dead_letter(&letters[2], "missing_field", 42, "required field `email`");

    // Every field as produced, field by field, for a record of each version.
    for record in [&first[3], &second[5]] {
        let id = record["id"].as_str().expect("id");
        for column in [
            "first_name",
            "last_name",
            "gender",
            "address",
            "post_code",
            "email",
            "username",
            "dob",
            "registered_date",
            "phone",
            "picture",
        ] {
            assert_eq!(
                text_of(&session, &table, column, id).await.as_deref(),
                record[column].as_str(),
                "{column}"
            );
        }
    }
    assert_eq!(
        text_of(
            &session,
            &table,
            "nat",
            first[3]["id"].as_str().expect("id")
        )
        .await,
        None
    );
    assert_eq!(
        text_of(
            &session,
            &table,
            "nat",
            second[5]["id"].as_str().expect("id")
        )
        .await
        .as_deref(),
        Some("N25")
    );
    assert_eq!(testkit::kafka::record_count(&dlq), 3);

    // The topic browser shows Avro records as JSON, with their schema id.
    let known = std::sync::Arc::new(std::sync::OnceLock::new());
    let _ = known.set(config());
    let router =
        stream_worker::api::router(worker.metrics.clone(), vec![avro_definition(&names)], known);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let path = format!(
        "/api/topics/{}/records?partition=0&offset=19&limit=3",
        names.topic
    );
    let response = http_request(port, "GET", &path).await;
    let body = response.split_once("\r\n\r\n").expect("a response").1;
    let views: Vec<stream_worker_api::RecordView> = serde_json::from_str(body).expect("records");
    let payload = |i: usize| {
        serde_json::from_str::<Value>(views[i].payload.as_deref().expect("payload")).expect("JSON")
    };
    assert_eq!(
        (views[0].avro_schema_id, payload(0)),
        (Some(v1), first[19].clone())
    );
    assert_eq!(
        (views[1].avro_schema_id, payload(1)),
        (None, first[0].clone())
    );
    assert_eq!(
        views[2].avro_schema_id, None,
        "an unknown schema id stays undecoded"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_delays_avro_records_and_dead_letters_none() {
    if !testkit::require_kafka()
        || !testkit::require_cassandra()
        || !testkit::require_schema_registry()
    {
        return;
    }
    let names = Names::new("sw_avro_outage");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let registry = Registry::new(&testkit::schema_registry_url()).expect("registry URL");
    let (id, schema) = register(
        &registry,
        &schema_registry::value_subject(&names.topic),
        SCHEMA_V1,
    )
    .await;
    let records: Vec<Value> = (0..10).map(user).collect();
    let payloads: Vec<Vec<u8>> = records.iter().map(|r| framed(&schema, id, r)).collect();
    testkit::kafka::produce(&names.topic, &payloads).await;

    // The worker reaches the registry through a proxy that is cut before it starts.
    let registry_address = testkit::schema_registry_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = testkit::proxy::TcpProxy::start(&registry_address).await;
    proxy.cut();
    let config = stream_worker::WorkerConfig {
        schema_registry_url: format!("http://{}", proxy.addr),
        ..config()
    };
    let worker = start_worker(config, vec![avro_definition(&names)]);
    worker.ready().await;
    testkit::eventually(
        "the worker to retry the registry",
        Duration::from_secs(30),
        async || {
            if proxy.refused() >= 3 {
                Ok(())
            } else {
                Err(proxy.refused())
            }
        },
    )
    .await;
    let session = testkit::cassandra::session().await;
    let table = format!("{}.created_users_avro", names.keyspace);
    assert_eq!(testkit::cassandra::count_rows(&session, &table).await, 0);
    let dlq = format!("{}.dlq", names.topic);
    assert_eq!(
        testkit::kafka::record_count(&dlq),
        0,
        "an outage is not a bad record"
    );

    proxy.restore();
    wait_for_table(&session, &table, 10, Duration::from_secs(60)).await;
    assert_eq!(testkit::kafka::record_count(&dlq), 0);
    worker.stop().await;
}
