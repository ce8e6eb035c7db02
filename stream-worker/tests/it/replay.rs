//! `stream-worker replay --from`: a stream's source topic read again from a time or from
//! offsets into its table, through the current definition, outside the worker's group.

use std::time::Duration;

use chrono::Utc;
use stream_worker::replay::{StartPoint, replay_source};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_replayed_from_a_time_or_from_offsets_lands_those_records() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_replay");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let batch = |range: std::ops::Range<usize>| -> Vec<Vec<u8>> {
        range
            .map(|i| seed_record(i).to_string().into_bytes())
            .collect()
    };
    testkit::kafka::produce(&names.topic, &batch(0..10)).await;
    // Every later record is stamped after `between` (Kafka's time has millisecond steps).
    let between = Utc::now() + chrono::Duration::milliseconds(1);
    testkit::eventually(
        "the clock to pass the boundary",
        Duration::from_secs(1),
        async || Utc::now() > between,
    )
    .await;
    let mut later = batch(10..20);
    later.push(b"{\"id\": oops".to_vec());
    testkit::kafka::produce(&names.topic, &later).await;
    let stream = definition(&names, "");
    let session = testkit::cassandra::session().await;

    // From a time: only the records stamped at or after it.
    let replayed = replay_source(&config(), &stream, &StartPoint::Time(between))
        .await
        .expect("replay from a time");
    assert_eq!(
        (replayed.read, replayed.written, replayed.dead_lettered),
        (11, 10, 1),
        "{replayed:?}"
    );
    assert_eq!(count_rows(&session, &names.keyspace).await, 10);
    let letter = first_dead_letter(&names).await;
    assert_dead_letter(&letter, "not_json", 20, "record is not JSON");

    // From offsets: 5 onwards, the 5 rows not written yet among them; rewriting is harmless.
    let replayed = replay_source(&config(), &stream, &StartPoint::Offsets(vec![(0, 5)]))
        .await
        .expect("replay from offsets");
    assert_eq!((replayed.read, replayed.written), (16, 15), "{replayed:?}");
    assert_eq!(count_rows(&session, &names.keyspace).await, 15);

    // The command line: from the first offset, every record; a bad start point is refused.
    let file = definition_file(&names);
    let output = stream_worker(
        &file,
        &["replay", "--stream", "users_created", "--from", "0:0"],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains(&format!(
            "replayed 21 record(s) of `{}` into stream `users_created`: 20 written, 0 dropped by \
             where/transform, 1 dead-lettered",
            names.topic
        )),
        "{text}"
    );
    assert_eq!(count_rows(&session, &names.keyspace).await, 20);
    let refused = stream_worker(
        &file,
        &["replay", "--stream", "users_created", "--from", "yesterday"],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is neither an RFC 3339 time"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
