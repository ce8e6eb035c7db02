//! Typed columns round-trip: a record with a value of every supported type is written by the
//! worker, read back from Cassandra and compared; a table's TTL applies.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use scylla::value::{CqlDate, CqlDecimal, CqlTimestamp, CqlValue};

use crate::common::*;

fn typed_definition(names: &Names) -> stream_worker::Stream {
    let text = format!(
        "\
source: {{topic: {topic}, group: {group}}}
types:
  - name: address
    fields:
      - {{name: street, cql_type: text}}
      - {{name: number, cql_type: int}}
      - {{name: lines, cql_type: list<text>}}
columns:
  - {{name: id, cql_type: uuid}}
  - {{name: born, cql_type: date}}
  - {{name: seen, cql_type: timestamp}}
  - {{name: visits, cql_type: int}}
  - {{name: views, cql_type: bigint}}
  - {{name: score, cql_type: double}}
  - {{name: active, cql_type: boolean}}
  - {{name: balance, cql_type: decimal}}
  - {{name: tags, cql_type: list<text>}}
  - {{name: codes, cql_type: set<int>}}
  - {{name: ratings, cql_type: 'map<text, double>'}}
  - {{name: home, cql_type: frozen<address>}}
target:
  keyspace: {keyspace}
  table: typed
  primary_key: [id]
  ttl: 3600
dead_letter_topic: {topic}.dlq
",
        topic = names.topic,
        group = names.group,
        keyspace = names.keyspace
    );
    stream_worker::definition::parse(Path::new("typed.yaml"), &text).expect("valid definition")
}

type TypedRow = (
    CqlDate,
    CqlTimestamp,
    i32,
    i64,
    f64,
    bool,
    CqlDecimal,
    Vec<String>,
    Vec<i32>,
    HashMap<String, f64>,
    CqlValue,
    i32,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_typed_column_round_trips_and_the_ttl_applies() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_types");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let id = uuid::Uuid::new_v4();
    let record = serde_json::json!({
        "id": id.to_string(),
        "born": "1987-03-14",
        "seen": "2026-12-07T10:11:12.345Z",
        "visits": "42",
        "views": 9_000_000_000i64,
        "score": 0.25,
        "active": true,
        "balance": "-12345678901234567890.123456789",
        "tags": ["a", "é", "a"],
        "codes": [3, 1, 3],
        "ratings": {"food": 4.5, "noise": 2.0},
        "home": {"street": "Rue de l'Église", "number": 7, "lines": ["2nd floor"]},
    });
    testkit::kafka::produce(&names.topic, &[record.to_string().into_bytes()]).await;
    let worker = start_worker(config(), vec![typed_definition(&names)]);
    worker.ready().await;
    let session = testkit::cassandra::session().await;
    let table = format!("{}.typed", names.keyspace);
    wait_for_table(&session, &table, 1, Duration::from_secs(60)).await;
    worker.stop().await;

    let row: TypedRow = session
        .query_unpaged(
            format!(
                "SELECT born, seen, visits, views, score, active, balance, tags, codes, ratings, \
                 home, TTL(active) FROM {table} WHERE id = ?"
            ),
            (id,),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row()
        .expect("the row");
    let (born, seen, visits, views, score, active, balance, tags, codes, ratings, home, ttl) = row;
    let born_days = i64::from(born.0) - (1 << 31);
    let expected_days = chrono::NaiveDate::from_ymd_opt(1987, 3, 14)
        .expect("date")
        .signed_duration_since(chrono::NaiveDate::default())
        .num_days();
    assert_eq!(born_days, expected_days);
    let seen_millis = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:11:12.345Z")
        .expect("time")
        .timestamp_millis();
    assert_eq!(seen.0, seen_millis);
    assert_eq!(
        (visits, views, score, active),
        (42, 9_000_000_000, 0.25, true)
    );
    assert_eq!(
        stream_worker::decode::decimal_parts(&balance),
        Some((-12345678901234567890123456789, 9)),
        "the decimal is exact"
    );
    assert_eq!(tags, ["a", "é", "a"], "a list keeps order and repeats");
    assert_eq!(codes, [1, 3], "a set is sorted and distinct");
    assert_eq!(
        ratings,
        HashMap::from([("food".to_string(), 4.5), ("noise".to_string(), 2.0)])
    );
    let CqlValue::UserDefinedType { name, fields, .. } = home else {
        panic!("a UDT, got {home:?}");
    };
    assert_eq!(name, "address");
    assert_eq!(
        fields,
        [
            (
                "street".to_string(),
                Some(CqlValue::Text("Rue de l'Église".into()))
            ),
            ("number".to_string(), Some(CqlValue::Int(7))),
            (
                "lines".to_string(),
                Some(CqlValue::List(vec![CqlValue::Text("2nd floor".into())]))
            ),
        ]
    );
    assert!((1..=3600).contains(&ttl), "TTL {ttl}");
}
