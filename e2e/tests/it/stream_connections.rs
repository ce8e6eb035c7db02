//! The stream worker reads the connections its definitions name from the database the
//! orchestrator stores them in (encrypted with the same key), without the orchestrator crate:
//! this holds its one query to the real schema.

use std::path::Path;

use stream_worker::WorkerConfig;
use stream_worker::connections::{self, ConnectionLookupError, Lookup};
use testkit::TestDatabase;
use updraft_orchestrator::store::{self, connections as stored};
use updraft_secrets::{Cipher, Connection};

fn stream(kafka: &str, cassandra: &str) -> stream_worker::Stream {
    let text = format!(
        "source: {{topic: t, group: g, conn_id: {kafka}}}
columns: [{{name: id, cql_type: uuid}}]
target: {{keyspace: ks, table: t, primary_key: [id], conn_id: {cassandra}}}
"
    );
    stream_worker::definition::parse(Path::new("s.yaml"), &text).expect("a valid definition")
}

#[tokio::test]
async fn the_worker_takes_its_clusters_from_stored_connections() {
    if !testkit::require_postgres() {
        return;
    }
    let database = TestDatabase::create("e2e_stream_conn").await;
    let pool = sqlx::PgPool::connect(database.url())
        .await
        .expect("connect");
    store::MIGRATOR.run(&pool).await.expect("migrate");
    let cipher = Cipher::from_keys(&Cipher::generate_key()).expect("a key");
    let events = Connection::parse(
        "events",
        r#"{"conn_type": "kafka", "host": "broker-1:9093,broker-2:9093", "login": "svc",
            "password": "kafka-s3cret", "extra": {"security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512"}}"#,
    )
    .expect("connection");
    let cassandra = Connection::parse("warehouse", "cassandra://writer:db-s3cret@node-1,node-2")
        .expect("connection");
    let schemas = Connection::parse(
        "schemas",
        "https://sr-user:sr-s3cret@registry.internal:8081",
    )
    .expect("connection");
    for connection in [&events, &cassandra, &schemas] {
        stored::insert(&pool, &cipher, connection)
            .await
            .expect("store");
    }
    let lookup = Lookup {
        database_url: Some(database.url().to_string()),
        cipher: cipher.clone(),
    };

    let mut config = WorkerConfig::default();
    let avro = stream_worker::definition::parse(
        Path::new("avro.yaml"),
        "source: {topic: a, group: g, format: avro, registry_conn_id: schemas}
columns: [{name: id, cql_type: uuid}]
target: {keyspace: ks, table: a, primary_key: [id]}
",
    )
    .expect("a valid definition");
    connections::apply(&mut config, &[stream("events", "warehouse"), avro], &lookup)
        .await
        .expect("every connection found");
    assert_eq!(config.schema_registry_url, "https://registry.internal:8081");
    let login = config.schema_registry_login.as_ref().expect("a login");
    assert_eq!(
        (login.username.as_str(), login.password.as_str()),
        ("sr-user", "sr-s3cret")
    );
    assert_eq!(
        config.kafka_bootstrap_servers,
        "broker-1:9093,broker-2:9093"
    );
    let settings = &config.kafka_settings.0;
    for (name, value) in [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "svc"),
        ("sasl.password", "kafka-s3cret"),
    ] {
        assert!(
            settings.contains(&(name.to_string(), value.to_string())),
            "{name} in {:?}",
            config.kafka_settings
        );
    }
    assert_eq!(
        config.cassandra_contact_points,
        ["node-1:9042", "node-2:9042"]
    );
    let login = config.cassandra_login.as_ref().expect("a login");
    assert_eq!(
        (login.username.as_str(), login.password.as_str()),
        ("writer", "db-s3cret")
    );
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "Debug hides secrets"
    );

    // Another key cannot open the password: an error naming the connection, no garbage.
    let wrong = Lookup {
        cipher: Cipher::from_keys(&Cipher::generate_key()).expect("a key"),
        ..lookup.clone()
    };
    let error = connections::apply(
        &mut WorkerConfig::default(),
        &[stream("events", "warehouse")],
        &wrong,
    )
    .await
    .expect_err("the wrong key");
    assert!(
        matches!(&error, ConnectionLookupError::Cipher { conn_id, .. } if conn_id == "events"),
        "{error}"
    );
    // An id stored nowhere, and two clusters for one worker, are refused by name.
    let error = connections::apply(
        &mut WorkerConfig::default(),
        &[stream("nowhere", "warehouse")],
        &lookup,
    )
    .await
    .expect_err("missing");
    assert!(
        error
            .to_string()
            .contains("connection `nowhere` is not defined"),
        "{error}"
    );
    let two = [stream("events", "warehouse"), stream("events", "other")];
    let error = connections::apply(&mut WorkerConfig::default(), &two, &lookup)
        .await
        .expect_err("two Cassandra clusters");
    assert!(
        error.to_string().contains("`other`, `warehouse`"),
        "{error}"
    );
    pool.close().await;
}
