//! The worker's JSON API (what the UI's Streams pages read) against a running worker.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common::*;

/// The body of a response as JSON, after checking its status line.
fn json_of(response: &str, status: &str) -> serde_json::Value {
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status}")),
        "{response}"
    );
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_state_lag_errors_dead_letters_topics_and_replays() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let names = Names::new("sw_api");
    testkit::kafka::create_topic(&names.topic, 1).await;
    let payloads = vec![
        seed_record(0).to_string().into_bytes(),
        b"{\"id\": oops".to_vec(),
        seed_record(2).to_string().into_bytes(),
    ];
    testkit::kafka::produce(&names.topic, &payloads).await;
    let stream = definition(&names, "");
    let worker = start_worker(config(), vec![stream.clone()]);
    worker.ready().await;
    first_dead_letter(&names).await;
    let session = testkit::cassandra::session().await;
    wait_for_rows(&session, &names.keyspace, 2, Duration::from_secs(60)).await;

    let known = Arc::new(OnceLock::new());
    let _ = known.set(config());
    let router = stream_worker::api::router(worker.metrics.clone(), vec![stream], known);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let streams = json_of(&http_request(port, "GET", "/api/streams").await, "200");
    let status = &streams[0];
    assert_eq!(status["name"], "users_created");
    assert_eq!(status["state"], "running");
    assert_eq!(status["tables"], serde_json::json!(["created_users"]));
    assert_eq!(
        (status["written"].as_u64(), status["dead_lettered"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(status["dead_lettered_by_kind"]["not_json"], 1);
    let error = &status["recent_errors"][0];
    assert_eq!(
        (error["kind"].as_str(), error["offset"].as_i64()),
        (Some("not_json"), Some(1))
    );

    let letters = json_of(
        &http_request(port, "GET", "/api/streams/users_created/dead-letters").await,
        "200",
    );
    let headers: Vec<(String, String)> =
        serde_json::from_value(letters[0]["headers"].clone()).expect("headers");
    assert!(
        headers.contains(&("error".to_string(), "not_json".to_string())),
        "{headers:?}"
    );
    assert_eq!(letters[0]["payload"], "{\"id\": oops");

    let topics = json_of(&http_request(port, "GET", "/api/topics").await, "200");
    let topic = topics
        .as_array()
        .expect("topics")
        .iter()
        .find(|topic| topic["name"] == names.topic.as_str())
        .expect("the test's topic");
    assert_eq!(topic["records"], 3);
    assert_eq!(topic["partitions"][0]["next"], 3);
    let records = json_of(
        &http_request(
            port,
            "GET",
            &format!(
                "/api/topics/{}/records?partition=0&offset=1&limit=1",
                names.topic
            ),
        )
        .await,
        "200",
    );
    assert_eq!(
        (records[0]["offset"].as_i64(), records[0]["bytes"].as_u64()),
        (Some(1), Some(11))
    );

    let replayed = json_of(
        &http_request(
            port,
            "POST",
            "/api/streams/users_created/dead-letters/replay",
        )
        .await,
        "200",
    );
    assert_eq!(
        (
            replayed["read"].as_u64(),
            replayed["refused_again"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let missing = json_of(
        &http_request(port, "GET", "/api/streams/nope/dead-letters").await,
        "404",
    );
    assert_eq!(missing["error"], "no stream `nope`");
    worker.stop().await;
}
