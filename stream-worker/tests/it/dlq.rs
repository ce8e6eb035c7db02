//! `stream-worker dlq list|show`: a stream's dead letters, read from Kafka as an operator would.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_shown_with_why_they_were_refused() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_dlq_cli");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let bad = b"{\"id\": oops".to_vec();
    let payloads = vec![
        seed_record(1).to_string().into_bytes(),
        bad.clone(),
        seed_record(2).to_string().into_bytes(),
    ];
    testkit::kafka::produce(&names.topic, &payloads).await;
    let worker = start_worker(config(), vec![definition(&names, "")]);
    worker.ready().await;
    let dead_letter_topic = format!("{}.dlq", names.topic);
    testkit::kafka::read_topic(&dead_letter_topic, 1, Duration::from_secs(60)).await;
    worker.stop().await;

    let file = definition_file(&names);
    let listed = stream_worker(&file, &["dlq", "list", "--stream", "users_created"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(
        text.contains(&format!("(topic `{dead_letter_topic}`)")),
        "{text}"
    );
    let row: Vec<&str> = text
        .lines()
        .find(|line| line.trim_start().starts_with("0 "))
        .expect("partition 0's line")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["0", "0", "1", "1"], "{text}");
    assert!(text.contains("total 1"), "{text}");

    let shown = stream_worker(&file, &["dlq", "show", "--stream", "users_created"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    for expected in [
        format!("{dead_letter_topic} partition 0 offset 0 "),
        "  error: not_json".to_string(),
        format!("  source.topic: {}", names.topic),
        "  source.offset: 1".to_string(),
        "  payload (11 bytes): {\"id\": oops".to_string(),
        "1 dead letter(s)".to_string(),
    ] {
        assert!(text.contains(&expected), "`{expected}` in:\n{text}");
    }
    let from_the_end = stream_worker(
        &file,
        &["dlq", "show", "--stream", "users_created", "--offset", "1"],
    );
    assert!(String::from_utf8_lossy(&from_the_end.stdout).contains("0 dead letter(s)"));

    let no_partition = stream_worker(
        &file,
        &[
            "dlq",
            "show",
            "--stream",
            "users_created",
            "--partition",
            "5",
        ],
    );
    assert_eq!(no_partition.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&no_partition.stderr).contains("has no partition 5"),
        "{}",
        String::from_utf8_lossy(&no_partition.stderr)
    );
    let unknown = stream_worker(&file, &["dlq", "list", "--stream", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no stream `nope` in the definitions; they define: users_created")
    );
}

/// A record refused by a definition too strict (`max_record_bytes: 4096`), replayed after the
/// definition is fixed, lands; one that is still bad is dead-lettered again with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_fixing_the_definition_lands_the_fixed_rows() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_dlq_replay");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let mut large = seed_record(7);
    large["picture"] = "x".repeat(5000).into();
    let payloads = vec![
        seed_record(1).to_string().into_bytes(),
        large.to_string().into_bytes(),
        b"{\"id\": oops".to_vec(),
    ];
    testkit::kafka::produce(&names.topic, &payloads).await;
    let worker = start_worker(
        config(),
        vec![definition(&names, "max_record_bytes: 4096\n")],
    );
    worker.ready().await;
    let dead_letter_topic = format!("{}.dlq", names.topic);
    let letters = testkit::kafka::read_topic(&dead_letter_topic, 2, Duration::from_secs(60)).await;
    let mut kinds: Vec<&str> = letters
        .iter()
        .filter_map(|l| l.headers.get("error").map(String::as_str))
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["not_json", "too_large"]);
    let session = testkit::cassandra::session().await;
    wait_for_rows(&session, &names.keyspace, 1, Duration::from_secs(60)).await;
    worker.stop().await;

    // The definition without the limit (the shipped 1 MiB).
    let file = definition_file(&names);
    let replay = stream_worker(&file, &["dlq", "replay", "--stream", "users_created"]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(
        text.contains(
            "replayed 2 dead letter(s) of stream `users_created`: 1 written, 1 refused again"
        ),
        "{text}"
    );
    assert_eq!(
        count_rows(&session, &names.keyspace).await,
        2,
        "the large record landed"
    );
    let letters = testkit::kafka::read_topic(&dead_letter_topic, 3, Duration::from_secs(30)).await;
    let again = letters.last().expect("a third letter");
    assert_eq!(
        again.headers.get("error").map(String::as_str),
        Some("not_json")
    );
    assert_eq!(
        again.headers.get("source.offset").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        again.payload,
        b"{\"id\": oops".to_vec(),
        "the same bytes again"
    );
}
