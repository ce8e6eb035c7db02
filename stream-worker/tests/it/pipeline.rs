//! The worker run in-process against real Kafka and Cassandra.

use std::time::Duration;

use crate::common::*;
use scylla::client::session::Session;

type UserRow = (
    uuid::Uuid,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const FIELDS: [&str; 11] = [
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
];

async fn read_user(session: &Session, keyspace: &str, id: uuid::Uuid) -> UserRow {
    let cql = format!(
        "SELECT id, {} FROM {keyspace}.created_users WHERE id = ?",
        FIELDS.join(", ")
    );
    session
        .query_unpaged(cql, (id,))
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row::<UserRow>()
        .unwrap_or_else(|e| panic!("row {id}: {e}"))
}

fn as_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_seed_records_become_ten_thousand_rows() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_seed");
    testkit::kafka::create_topic(&names.topic, 2).await;
    let records: Vec<serde_json::Value> = (0..10_000).map(seed_record).collect();
    let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.to_string().into_bytes()).collect();
    testkit::kafka::produce(&names.topic, &payloads).await;

    let worker = start_worker(config(), vec![definition(&names, "")]);
    let session = testkit::cassandra::session().await;
    wait_for_rows(&session, &names.keyspace, 10_000, Duration::from_secs(90)).await;
    let stream = worker.metrics.stream("users_created");
    // A row is in Cassandra a moment before the worker counts it as written.
    testkit::eventually(
        "the worker to count every row",
        Duration::from_secs(10),
        async || {
            let written = stream.written_total();
            if written >= 10_000 {
                Ok(())
            } else {
                Err(written)
            }
        },
    )
    .await;
    assert_eq!(stream.written_total(), 10_000);
    assert_eq!(stream.dead_lettered_total(), 0);

    // Every name (non-ASCII included), numeric and text post codes, and a spread of others.
    let sample = (0..16).chain((100..10_000).step_by(997));
    for i in sample {
        let record = &records[i];
        let id = uuid::Uuid::parse_str(record["id"].as_str().expect("id")).expect("uuid");
        let row = read_user(&session, &names.keyspace, id).await;
        let values = [
            &row.1, &row.2, &row.3, &row.4, &row.5, &row.6, &row.7, &row.8, &row.9, &row.10,
            &row.11,
        ];
        for (field, value) in FIELDS.iter().zip(values) {
            assert_eq!(
                value.as_deref(),
                Some(as_text(&record[*field]).as_str()),
                "record {i} field {field}"
            );
        }
    }
    let zero = &records[0];
    let row = read_user(
        &session,
        &names.keyspace,
        uuid::Uuid::parse_str(zero["id"].as_str().unwrap_or("")).expect("uuid"),
    )
    .await;
    assert_eq!(
        row.5.as_deref(),
        Some("10000"),
        "a numeric post_code is stored as text"
    );
    assert_eq!(row.1.as_deref(), Some("Zoë"));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_records_go_to_the_dead_letter_topic_and_good_ones_land() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_bad");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let good = |i: usize| seed_record(i).to_string().into_bytes();
    let mut missing_id = seed_record(1);
    missing_id.as_object_mut().expect("object").remove("id");
    let mut missing_email = seed_record(2);
    missing_email["email"] = serde_json::Value::Null;
    let mut bad_uuid = seed_record(3);
    bad_uuid["id"] = "not-a-uuid".into();
    let mut wrong_type = seed_record(4);
    wrong_type["first_name"] = serde_json::json!({"given": "Zoë"});
    let mut too_large = seed_record(5);
    too_large["picture"] = "x".repeat(5000).into();
    let bad: Vec<(Vec<u8>, &str, Option<&str>)> = vec![
        (b"{\"id\": oops".to_vec(), "not_json", None),
        (b"[\"an\", \"array\"]".to_vec(), "not_object", None),
        (
            missing_id.to_string().into_bytes(),
            "missing_field",
            Some("id"),
        ),
        (
            missing_email.to_string().into_bytes(),
            "missing_field",
            Some("email"),
        ),
        (
            bad_uuid.to_string().into_bytes(),
            "invalid_uuid",
            Some("id"),
        ),
        (
            wrong_type.to_string().into_bytes(),
            "wrong_type",
            Some("first_name"),
        ),
        (too_large.to_string().into_bytes(), "too_large", None),
    ];
    // good, bad, good, bad, ... then good: every bad record sits between good ones.
    let mut payloads = Vec::new();
    let mut expected = Vec::new();
    for (i, (payload, kind, field)) in bad.iter().enumerate() {
        payloads.push(good(100 + i));
        expected.push((payloads.len() as i64, payload.clone(), *kind, *field));
        payloads.push(payload.clone());
    }
    for i in 0..50 {
        payloads.push(good(200 + i));
    }
    let good_count = payloads.len() - bad.len();
    testkit::kafka::produce(&names.topic, &payloads).await;

    let worker = start_worker(
        config(),
        vec![definition(&names, "max_record_bytes: 4096\n")],
    );
    worker.ready().await;
    let letters = testkit::kafka::read_topic(
        &format!("{}.dlq", names.topic),
        bad.len(),
        Duration::from_secs(60),
    )
    .await;
    let session = testkit::cassandra::session().await;
    let good_count = good_count as i64;
    wait_for_rows(
        &session,
        &names.keyspace,
        good_count,
        Duration::from_secs(60),
    )
    .await;

    // Dead letters are sent concurrently: match them by source offset.
    assert_eq!(letters.len(), expected.len());
    for (offset, payload, kind, field) in &expected {
        let letter = letters
            .iter()
            .find(|l| l.headers.get("source.offset") == Some(&offset.to_string()))
            .unwrap_or_else(|| panic!("no dead letter for offset {offset} ({kind})"));
        assert_eq!(
            letter.headers.get("error").map(String::as_str),
            Some(*kind),
            "{:?}",
            letter.headers
        );
        assert_eq!(
            letter.headers.get("error.field").map(String::as_str),
            *field,
            "{:?}",
            letter.headers
        );
        assert_eq!(letter.headers.get("source.topic"), Some(&names.topic));
        assert_eq!(
            letter.headers.get("source.partition").map(String::as_str),
            Some("0")
        );
        assert_eq!(
            letter.headers.get("source.offset"),
            Some(&offset.to_string())
        );
        assert!(letter.headers.contains_key("error.message"));
        assert_eq!(&letter.payload, payload, "the original bytes are kept");
    }
    let stream = worker.metrics.stream("users_created");
    // A dead letter is on its topic a moment before the worker counts it.
    let letters_sent = bad.len() as u64;
    testkit::eventually(
        "the worker to count every dead letter",
        Duration::from_secs(10),
        async || {
            let counted = stream.dead_lettered_total();
            if counted >= letters_sent {
                Ok(())
            } else {
                Err(counted)
            }
        },
    )
    .await;
    assert_eq!(stream.dead_lettered_total(), letters_sent);
    assert!(worker.metrics.render().contains(
        "updraft_stream_records_dead_lettered_total{stream=\"users_created\",error=\"missing_field\"} 2"
    ));
    assert!(!worker.task.is_finished(), "the worker kept running");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_a_four_partition_topic() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_two");
    testkit::kafka::create_topic(&names.topic, 4).await;
    let stream = definition(&names, "");
    let first = start_worker(config(), vec![stream.clone()]);
    let second = start_worker(config(), vec![stream]);
    let what = "both workers to hold partitions, four in all";
    testkit::eventually(what, Duration::from_secs(60), async || {
        let a = first.metrics.stream("users_created").assigned().len();
        let b = second.metrics.stream("users_created").assigned().len();
        if a > 0 && b > 0 && a + b == 4 {
            Ok(())
        } else {
            Err((a, b))
        }
    })
    .await;

    let payloads: Vec<Vec<u8>> = (0..4_000)
        .map(|i| seed_record(i).to_string().into_bytes())
        .collect();
    testkit::kafka::produce(&names.topic, &payloads).await;
    let session = testkit::cassandra::session().await;
    wait_for_rows(&session, &names.keyspace, 4_000, Duration::from_secs(60)).await;
    // More than 4,000 only if a rebalance replayed records (at-least-once); never fewer. A row
    // is in Cassandra a moment before its worker counts it as written.
    let what = "the workers to count at least 4,000 rows written";
    let (a, b) = testkit::eventually(what, Duration::from_secs(10), async || {
        let a = first.metrics.stream("users_created").written_total();
        let b = second.metrics.stream("users_created").written_total();
        if a + b >= 4_000 {
            Ok((a, b))
        } else {
            Err((a, b))
        }
    })
    .await;
    assert!(a > 0 && b > 0, "both wrote rows: {a} and {b}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cassandra_outage_loses_nothing_and_the_worker_recovers() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_outage");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let proxy = testkit::proxy::TcpProxy::start(&testkit::cassandra_contact_points()).await;
    let mut config = config();
    config.cassandra_contact_points = vec![proxy.addr.to_string()];
    config.concurrency = 32;
    let worker = start_worker(config, vec![definition(&names, "")]);
    let stream = worker.metrics.stream("users_created");

    let first: Vec<Vec<u8>> = (0..1_000)
        .map(|i| seed_record(i).to_string().into_bytes())
        .collect();
    testkit::kafka::produce(&names.topic, &first).await;
    let session = testkit::cassandra::session().await;
    wait_for_rows(&session, &names.keyspace, 1_000, Duration::from_secs(60)).await;

    proxy.cut();
    let second: Vec<Vec<u8>> = (1_000..3_000)
        .map(|i| seed_record(i).to_string().into_bytes())
        .collect();
    testkit::kafka::produce(&names.topic, &second).await;
    let what = "writes to fail and be retried while Cassandra is unreachable";
    testkit::eventually(what, Duration::from_secs(20), async || {
        stream.retries_total() > 0
    })
    .await;
    // Hold the outage ~20 s, watching that no more than `concurrency` records are taken.
    let outage = std::time::Instant::now();
    let mut max_in_flight = 0;
    while outage.elapsed() < Duration::from_secs(18) {
        max_in_flight = max_in_flight.max(stream.in_flight());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = stream.written_total();
    assert!(
        max_in_flight <= 32,
        "in flight {max_in_flight} exceeds the bound"
    );
    assert!(
        stream.consumed_total() < 3_000,
        "consumption should pause, consumed {}",
        stream.consumed_total()
    );
    proxy.restore();

    wait_for_rows(&session, &names.keyspace, 3_000, Duration::from_secs(90)).await;
    assert!(stream.written_total() > during);
    assert_eq!(stream.dead_lettered_total(), 0);
    assert!(!worker.task.is_finished(), "the worker kept running");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_too_large_for_the_dead_letter_topic_is_sent_as_a_reference() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_huge");
    // The source accepts 8 MiB records; the dead-letter topic has the broker's 1 MB default.
    testkit::kafka::create_topic_with(&names.topic, 1, &[("max.message.bytes", "8388608")]).await;
    let huge = vec![b'x'; 5 * 1024 * 1024];
    let mut payloads: Vec<Vec<u8>> = (0..10)
        .map(|i| seed_record(i).to_string().into_bytes())
        .collect();
    payloads.push(huge.clone());
    payloads.extend((10..20).map(|i| seed_record(i).to_string().into_bytes()));
    testkit::kafka::produce(&names.topic, &payloads).await;

    let worker = start_worker(config(), vec![definition(&names, "")]);
    worker.ready().await;
    let session = testkit::cassandra::session().await;
    // The partition goes on past the huge record.
    wait_for_rows(&session, &names.keyspace, 20, Duration::from_secs(60)).await;
    let letters =
        testkit::kafka::read_topic(&format!("{}.dlq", names.topic), 1, Duration::from_secs(30))
            .await;
    let [letter] = &letters[..] else {
        panic!("one dead letter: {letters:?}");
    };
    assert!(letter.payload.is_empty(), "sent without its payload");
    assert_eq!(
        letter.headers.get("error").map(String::as_str),
        Some("too_large")
    );
    assert_eq!(
        letter.headers.get("source.offset").map(String::as_str),
        Some("10")
    );
    let omitted = letter
        .headers
        .get("payload.omitted")
        .expect("payload.omitted");
    assert!(
        omitted.starts_with(&format!("{} bytes", huge.len())),
        "{omitted}"
    );
    assert_eq!(
        worker.metrics.stream("users_created").dead_lettered_total(),
        1
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_table_is_an_outage_not_bad_records() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_dropped");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let worker = start_worker(config(), vec![definition(&names, "")]);
    worker.ready().await;
    let stream = worker.metrics.stream("users_created");
    let records = |range: std::ops::Range<usize>| -> Vec<Vec<u8>> {
        range
            .map(|i| seed_record(i).to_string().into_bytes())
            .collect()
    };
    testkit::kafka::produce(&names.topic, &records(0..200)).await;
    let session = testkit::cassandra::session().await;
    wait_for_rows(&session, &names.keyspace, 200, Duration::from_secs(60)).await;

    // As after a restart that lost the table: every write fails with Cassandra's `Invalid`.
    let drop = format!("DROP TABLE {}.created_users", names.keyspace);
    session
        .query_unpaged(drop, ())
        .await
        .expect("drop the table");
    testkit::kafka::produce(&names.topic, &records(200..1_200)).await;

    // The worker creates the table again, as at start-up, and the records wait for it.
    wait_for_rows(&session, &names.keyspace, 1_000, Duration::from_secs(90)).await;
    assert!(
        stream.retries_total() > 0,
        "the writes met the missing table"
    );
    assert_eq!(
        stream.dead_lettered_total(),
        0,
        "no good record dead-lettered"
    );
    assert!(worker.metrics.unhealthy().is_none());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_table_that_does_not_match_is_refused_with_its_columns_named() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_schema");
    let session = testkit::cassandra::session().await;
    // The seed's table: no `dob`, which its own job then wrote.
    testkit::cassandra::create_keyspace(&session, &names.keyspace).await;
    let table = format!(
        "CREATE TABLE {}.created_users (id uuid PRIMARY KEY, first_name text, last_name text, \
         gender text, address text, post_code int, email text, username text, \
         registered_date text, phone text, picture text)",
        names.keyspace
    );
    session
        .query_unpaged(table, ())
        .await
        .expect("create seed schema");
    let worker = start_worker(config(), vec![definition(&names, "")]);
    let error = worker
        .task
        .await
        .expect("task")
        .expect_err("the worker must refuse to start");
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "table {}.created_users does not match",
            names.keyspace
        )),
        "{message}"
    );
    assert!(
        message.contains("column `dob` is missing (expected text)"),
        "{message}"
    );
    assert!(
        message.contains("column `post_code` has type int, the definition says text"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_started_while_cassandra_is_away_waits_for_it() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_late");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let proxy = testkit::proxy::TcpProxy::start(&testkit::cassandra_contact_points()).await;
    proxy.cut();
    let mut config = config();
    config.cassandra_contact_points = vec![proxy.addr.to_string()];
    let worker = start_worker(config, vec![definition(&names, "")]);
    // A restarting node is no reason to exit: the worker tries again, and again.
    let what = "the worker to try reaching Cassandra twice";
    testkit::eventually(what, Duration::from_secs(20), async || {
        assert!(!worker.task.is_finished(), "the worker gave up");
        proxy.refused() >= 2
    })
    .await;
    let records: Vec<Vec<u8>> = (0..100)
        .map(|i| seed_record(i).to_string().into_bytes())
        .collect();
    testkit::kafka::produce(&names.topic, &records).await;
    proxy.restore();
    let session = testkit::cassandra::session().await;
    wait_for_rows(&session, &names.keyspace, 100, Duration::from_secs(60)).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_one_fan_out_table_refuses_is_a_dead_letter_naming_that_table() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_fan_bad");
    testkit::kafka::create_topic(&names.topic, 1).await;
    // Cassandra refuses an empty text partition key: users_by_email cannot take this row.
    let mut empty_email = seed_record(1);
    empty_email["email"] = "".into();
    let payloads = vec![
        seed_record(0).to_string().into_bytes(),
        empty_email.to_string().into_bytes(),
        seed_record(2).to_string().into_bytes(),
    ];
    testkit::kafka::produce(&names.topic, &payloads).await;
    let stream = stream_worker::definition::parse(
        std::path::Path::new("fan_out.yaml"),
        &fan_out_yaml(&names),
    )
    .expect("valid definition");
    let worker = start_worker(config(), vec![stream]);
    worker.ready().await;
    let letter = first_dead_letter(&names).await;
    let session = testkit::cassandra::session().await;
    let by_email = format!("{}.users_by_email", names.keyspace);
    wait_for_table(&session, &by_email, 2, Duration::from_secs(30)).await;
    assert_dead_letter(
        &letter,
        "rejected",
        1,
        &format!("Cassandra rejected the row: table {by_email}: "),
    );
    worker.stop().await;
}
