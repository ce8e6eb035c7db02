//! `cql` against the real Cassandra node, in a keyspace of the test's own: statements with `?`
//! bound by column type, typed rows back, the server's message on errors, bounded rows.

use serde_json::{Value, json};
use updraft_operators::{OperatorError, TaskContext};
use updraft_secrets::Connection;

use crate::support::{WithConnections, harness, run};

fn cluster(keyspace: &str) -> TaskContext {
    let connection = Connection {
        conn_id: "cluster".into(),
        conn_type: "cassandra".into(),
        host: Some(testkit::cassandra_contact_points()),
        schema: Some(keyspace.into()),
        ..Connection::default()
    };
    let mut h = harness("cql");
    h.ctx.renderer = std::sync::Arc::new(WithConnections(vec![connection]));
    h.ctx
}

async fn cql(ctx: &TaskContext, config: Value) -> Result<Value, OperatorError> {
    run("cql", config, ctx).await
}

#[tokio::test]
async fn statements_bind_values_by_column_type_and_rows_come_back_typed() {
    if !testkit::require_cassandra() {
        return;
    }
    let keyspace = testkit::unique_name("cql_operator").to_lowercase();
    let session = testkit::cassandra::session().await;
    testkit::cassandra::create_keyspace(&session, &keyspace).await;
    let ctx = cluster(&keyspace);
    cql(
        &ctx,
        json!({"conn_id": "cluster", "cql": [
            "CREATE TABLE users (id uuid PRIMARY KEY, name text, tags set<text>, born date, \
             seen timestamp, visits int, scores map<text, int>)",
            "INSERT INTO users (id, name, tags, born, seen, visits, scores) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ], "parameters": [
            "6f1c5d1e-8a43-4c53-9c1a-2f7b8e6d4a10", "Ada", ["math", "poetry"], "1815-12-10",
            "2024-01-31T12:00:00Z", 7, {"algebra": 10},
        ]}),
    )
    .await
    .unwrap();
    let read = cql(
        &ctx,
        json!({"conn_id": "cluster", "consistency": "ONE",
               "cql": "SELECT id, name, tags, born, seen, visits, scores FROM users WHERE id = ?",
               "parameters": ["6f1c5d1e-8a43-4c53-9c1a-2f7b8e6d4a10"]}),
    )
    .await
    .unwrap();
    assert_eq!(
        read,
        json!({"rows": [{"id": "6f1c5d1e-8a43-4c53-9c1a-2f7b8e6d4a10", "name": "Ada",
                         "tags": ["math", "poetry"], "born": "1815-12-10",
                         "seen": "2024-01-31T12:00:00+00:00", "visits": 7,
                         "scores": {"algebra": 10}}],
               "row_count": 1, "truncated": false})
    );

    // A would-be injection is a value; rows beyond max_rows are counted, not kept.
    let inserts: Vec<String> = (0..12)
        .map(|n| format!("INSERT INTO users (id, name) VALUES (uuid(), 'user {n}')"))
        .collect();
    cql(&ctx, json!({"conn_id": "cluster", "cql": inserts}))
        .await
        .unwrap();
    let odd = cql(
        &ctx,
        json!({"conn_id": "cluster", "cql": "INSERT INTO users (id, name) VALUES (uuid(), ?)",
               "parameters": ["x'); DROP TABLE users; --"]}),
    )
    .await;
    assert!(odd.is_ok(), "{odd:?}");
    let all = cql(
        &ctx,
        json!({"conn_id": "cluster", "cql": "SELECT name FROM users", "max_rows": 5}),
    )
    .await
    .unwrap();
    assert_eq!(all["rows"].as_array().unwrap().len(), 5);
    assert_eq!(
        (all["row_count"].clone(), all["truncated"].clone()),
        (json!(14), json!(true))
    );

    let error = cql(
        &ctx,
        json!({"conn_id": "cluster", "cql": "SELEC * FROM users"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("statement 1 of 1") && error.contains("SELEC"),
        "{error}"
    );
    let error = cql(
        &ctx,
        json!({"conn_id": "cluster", "cql": "SELECT * FROM users WHERE id = ?", "parameters": ["nope"]}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("parameter 1 (a string \"nope\") for `id`: expected a UUID"),
        "{error}"
    );
    testkit::cassandra::drop_keyspace(&session, &keyspace).await;
}
