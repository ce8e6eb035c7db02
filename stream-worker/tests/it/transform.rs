//! VRL transforms on the real Kafka and Cassandra: randomuser.me's nested records shaped into the
//! seed's row by `streams/examples/users_randomuser.yaml`, a `where:` that skips records, and a
//! record the transform cannot handle dead-lettered with VRL's error.

use std::path::Path;
use std::time::Duration;

use scylla::value::CqlTimestamp;
use stream_worker::transform::{Stage, Vrl};

use crate::common::*;

/// The example definition, pointed at this test's topic, group and keyspace, plus `extra`.
fn randomuser_definition(names: &Names, extra: &str) -> stream_worker::Stream {
    let text = shipped_definition("examples/users_randomuser.yaml", "users_randomuser", names);
    stream_worker::definition::parse(
        Path::new("users_randomuser.yaml"),
        &format!("{text}{extra}"),
    )
    .expect("valid definition")
}

const SKIP_XX: &str = "where: .nat != \"XX\"\n";

/// The ten users of the e2e fixture, as randomuser.me returns them.
fn randomuser_records() -> Vec<serde_json::Value> {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/testdata/randomuser_response.json");
    let response: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("JSON");
    response["results"].as_array().expect("results").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_records_are_shaped_by_vrl_filtered_and_dead_lettered_with_its_error() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_vrl");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let users = randomuser_records();
    let mut payloads: Vec<Vec<u8>> = users
        .iter()
        .map(|user| user.to_string().into_bytes())
        .collect();
    let mut skipped = users[0].clone();
    skipped["nat"] = "XX".into();
    skipped["login"]["uuid"] = uuid::Uuid::new_v4().to_string().into();
    payloads.insert(3, skipped.to_string().into_bytes());
    let mut unparsable = users[1].clone();
    unparsable["dob"]["date"] = "last Tuesday".into();
    unparsable["login"]["uuid"] = uuid::Uuid::new_v4().to_string().into();
    payloads.insert(6, unparsable.to_string().into_bytes());
    testkit::kafka::produce(&names.topic, &payloads).await;

    let stream = randomuser_definition(&names, SKIP_XX);
    let worker = start_worker(config(), vec![stream]);
    worker.ready().await;
    let letter = first_dead_letter(&names).await;
    let session = testkit::cassandra::session().await;
    let table = format!("{}.users_randomuser", names.keyspace);
    let want = users.len() as i64;
    wait_for_table(&session, &table, want, Duration::from_secs(60)).await;

    // The row holds what VRL derived, typed: the address joined, dob a timestamp.
    for user in &users {
        let id = uuid::Uuid::parse_str(user["login"]["uuid"].as_str().expect("uuid")).expect("id");
        let (address, post_code, dob, username): (String, String, CqlTimestamp, String) = session
            .query_unpaged(
                format!("SELECT address, post_code, dob, username FROM {table} WHERE id = ?"),
                (id,),
            )
            .await
            .expect("select")
            .into_rows_result()
            .expect("rows")
            .single_row()
            .expect("one row");
        let location = &user["location"];
        let street = &location["street"];
        assert_eq!(
            address,
            format!(
                "{} {}, {}, {}, {}",
                street["number"],
                street["name"].as_str().expect("street"),
                location["city"].as_str().expect("city"),
                location["state"].as_str().expect("state"),
                location["country"].as_str().expect("country")
            )
        );
        let postcode = &location["postcode"];
        assert_eq!(
            post_code,
            postcode
                .as_str()
                .map_or_else(|| postcode.to_string(), str::to_string)
        );
        let born = chrono::DateTime::parse_from_rfc3339(user["dob"]["date"].as_str().expect("dob"))
            .expect("date");
        assert_eq!(dob.0, born.timestamp_millis());
        assert_eq!(
            username,
            user["login"]["username"].as_str().expect("username")
        );
    }

    // The unparsable date is a dead letter naming the stage, the function and its place.
    assert_dead_letter(
        &letter,
        "transform",
        6,
        "transform: function call error for \"parse_timestamp\" at line 9, column 8",
    );

    // The skipped record counts as dropped, and every offset is committed past it.
    let metrics = worker.metrics.stream("users_randomuser");
    let total = payloads.len() as i64;
    testkit::eventually(
        "every offset committed",
        Duration::from_secs(30),
        async || match testkit::kafka::committed_offset(&names.group, &names.topic, 0) {
            Some(offset) if offset == total => Ok(()),
            other => Err(other),
        },
    )
    .await;
    assert_eq!(metrics.dropped_total(), 1);
    assert_eq!(metrics.dead_lettered_total(), 1);
    assert!(
        worker
            .metrics
            .render()
            .contains("updraft_stream_records_dropped_total{stream=\"users_randomuser\"} 1")
    );
    worker.stop().await;

    // Fixed (an unreadable date becomes null), a replay of the dead letters lands the row.
    let stream = randomuser_definition(&names, SKIP_XX);
    let fixed = stream
        .transform
        .as_ref()
        .expect("a transform")
        .source
        .replace(
            "parse_timestamp!(.dob.date, \"%+\")",
            "parse_timestamp(.dob.date, \"%+\") ?? null",
        );
    let stream = stream_worker::Stream {
        transform: Some(Vrl::compile(Stage::Transform, &fixed).expect("the fix compiles")),
        ..stream
    };
    let replayed = stream_worker::dlq::replay(&config(), &stream, None, None)
        .await
        .expect("replay");
    assert_eq!((replayed.read, replayed.written), (1, 1), "{replayed:?}");
    let id =
        uuid::Uuid::parse_str(unparsable["login"]["uuid"].as_str().expect("uuid")).expect("id");
    let (dob,): (Option<CqlTimestamp>,) = session
        .query_unpaged(format!("SELECT dob FROM {table} WHERE id = ?"), (id,))
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row()
        .expect("the replayed row");
    assert_eq!(dob, None);
}
