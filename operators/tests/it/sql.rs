//! `sql` against a real PostgreSQL database of the test's own: parameters bound with the types
//! the server infers (an injection attempt stays a value), typed rows back, all statements in
//! one transaction, the server's message on errors, bounded rows.

use serde_json::{Value, json};
use testkit::TestDatabase;
use updraft_operators::OperatorError;
use updraft_secrets::Connection;

use crate::support::{WithConnections, harness, run};

async fn warehouse(database: &TestDatabase) -> updraft_operators::TaskContext {
    let connection = Connection::from_uri("warehouse", database.url()).unwrap();
    let mut h = harness("sql");
    h.ctx.renderer = std::sync::Arc::new(WithConnections(vec![connection]));
    h.ctx
}

async fn sql(ctx: &updraft_operators::TaskContext, config: Value) -> Result<Value, OperatorError> {
    run("sql", config, ctx).await
}

#[tokio::test]
async fn statements_bind_parameters_by_inferred_type_and_rows_come_back_typed() {
    if !testkit::require_postgres() {
        return;
    }
    let database = TestDatabase::create("sql_operator").await;
    let ctx = warehouse(&database).await;
    let created = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": [
            "CREATE TABLE users (id uuid PRIMARY KEY, name text NOT NULL, born date, \
             score numeric(10, 2), tags text[], extra jsonb, seen timestamptz, visits int4)",
            "INSERT INTO users VALUES ($1, $2, $3, $4::text::numeric, $5, $6, $7, $8), \
             ($9, $10, NULL, NULL, NULL, NULL, NULL, NULL)",
        ], "parameters": [
            "6f1c5d1e-8a43-4c53-9c1a-2f7b8e6d4a10", "Ada", "1815-12-10", 12.5, ["math", "poetry"],
            {"city": "London"}, "2024-01-31T12:00:00Z", "7",
            "0b0e7f43-5c1a-4f0e-9b1e-3f2c1a0d9e8b", "x'); DROP TABLE users; --",
        ]}),
    )
    .await
    .unwrap();
    assert_eq!(created["rows_affected"], 2, "{created}");
    assert_eq!(created["rows"], json!([]));

    let read = sql(
        &ctx,
        json!({"conn_id": "warehouse",
               "sql": "SELECT id, name, born, score, tags, extra, seen, visits, visits > $1 AS many \
                       FROM users ORDER BY name",
               "parameters": [3]}),
    )
    .await
    .unwrap();
    assert_eq!(
        read["rows"],
        json!([
            {"id": "6f1c5d1e-8a43-4c53-9c1a-2f7b8e6d4a10", "name": "Ada", "born": "1815-12-10",
             "score": 12.5, "tags": ["math", "poetry"], "extra": {"city": "London"},
             "seen": "2024-01-31T12:00:00+00:00", "visits": 7, "many": true},
            // The would-be injection is a name like any other: bound, never spliced.
            {"id": "0b0e7f43-5c1a-4f0e-9b1e-3f2c1a0d9e8b", "name": "x'); DROP TABLE users; --",
             "born": null, "score": null, "tags": null, "extra": null, "seen": null,
             "visits": null, "many": null},
        ]),
        "{read}"
    );
    assert_eq!(
        (read["row_count"].clone(), read["truncated"].clone()),
        (json!(2), json!(false))
    );

    // `= ANY($1)` takes a list as an array.
    let some = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "SELECT count(*) AS n FROM users WHERE name = ANY($1)",
               "parameters": [["Ada", "Grace"]]}),
    )
    .await
    .unwrap();
    assert_eq!(some["rows"], json!([{"n": 1}]));
}

#[tokio::test]
async fn a_failing_statement_rolls_back_the_others_and_says_what_the_server_said() {
    if !testkit::require_postgres() {
        return;
    }
    let database = TestDatabase::create("sql_operator_errors").await;
    let ctx = warehouse(&database).await;
    sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "CREATE TABLE t (id int PRIMARY KEY)"}),
    )
    .await
    .unwrap();
    let failed = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": [
            "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"
        ]}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        failed.contains("statement 2")
            && failed.contains("duplicate key value violates unique constraint")
            && failed.contains("SQLSTATE 23505"),
        "{failed}"
    );
    let count = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "SELECT count(*) AS n FROM t"}),
    )
    .await
    .unwrap();
    assert_eq!(
        count["rows"],
        json!([{"n": 0}]),
        "the first insert was rolled back"
    );

    // With autocommit each statement stands alone.
    let _ = sql(
        &ctx,
        json!({"conn_id": "warehouse", "autocommit": true, "sql": [
            "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"
        ]}),
    )
    .await
    .unwrap_err();
    let count = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "SELECT count(*) AS n FROM t"}),
    )
    .await
    .unwrap();
    assert_eq!(count["rows"], json!([{"n": 1}]));

    let syntax = sql(&ctx, json!({"conn_id": "warehouse", "sql": "SELEC 1"}))
        .await
        .unwrap_err();
    assert!(
        syntax
            .to_string()
            .contains("syntax error at or near \"SELEC\""),
        "{syntax}"
    );
    let missing = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "SELECT $1::int + $2::int AS n", "parameters": [1]}),
    )
    .await
    .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("uses $2 but `parameters` gives 1"),
        "{missing}"
    );
    let mistyped = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "SELECT $1::int AS n", "parameters": ["seven"]}),
    )
    .await
    .unwrap_err();
    assert!(
        mistyped
            .to_string()
            .contains("parameter 1 (a string \"seven\"): expected a 32-bit integer"),
        "{mistyped}"
    );
    let unreadable = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "SELECT '1 day'::interval AS d"}),
    )
    .await
    .unwrap_err();
    assert!(
        unreadable
            .to_string()
            .contains("column `d`: the sql operator cannot read type INTERVAL"),
        "{unreadable}"
    );
}

#[tokio::test]
async fn rows_beyond_max_rows_are_counted_not_kept() {
    if !testkit::require_postgres() {
        return;
    }
    let database = TestDatabase::create("sql_operator_rows").await;
    let ctx = warehouse(&database).await;
    let many = sql(
        &ctx,
        json!({"conn_id": "warehouse", "sql": "SELECT n FROM generate_series(1, 2500) AS n"}),
    )
    .await
    .unwrap();
    let rows = many["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[999], json!({"n": 1000}));
    assert_eq!(
        (many["row_count"].clone(), many["truncated"].clone()),
        (json!(2500), json!(true))
    );
    let few = sql(
        &ctx,
        json!({"conn_id": "warehouse", "max_rows": 2, "sql": "SELECT n FROM generate_series(1, 5) AS n"}),
    )
    .await
    .unwrap();
    assert_eq!(few["rows"], json!([{"n": 1}, {"n": 2}]));
}
