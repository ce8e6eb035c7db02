//! The Streams and Topics pages against a real `stream-worker` (the binary, built by
//! `cargo build -p stream-worker`), Kafka and Cassandra: a stream's state, its dead letters and
//! their replay (op/admin), and the topic browser.

use crate::common::stream_worker::{record, start_worker, wait_until_written};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_pages_show_a_worker_its_dead_letters_replay_them_and_browse_topics() {
    if !testkit::require_kafka() || !testkit::require_cassandra() {
        return;
    }
    let Some(mut ctx) = setup("web_streams").await else {
        return;
    };
    let topic = testkit::unique_name("web_streams").to_lowercase();
    testkit::kafka::create_topic(&topic, 1).await;
    testkit::kafka::produce(&topic, &[record(0), b"{\"id\": oops".to_vec(), record(2)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_worker, port) = start_worker(&topic, dir.path());
    let api = format!("http://127.0.0.1:{port}");
    wait_until_written(&api, 2, 1).await;
    // A second worker that does not answer is named, and the page still shows the first.
    ctx.read_stream_workers(vec![api.clone(), "http://127.0.0.1:1".to_string()]);

    let list = ctx.get("/streams", "viewer").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let html = list.text();
    assert!(html.contains("data-stream=\"users_created\""), "{html}");
    assert!(html.contains("stream-running"), "{html}");
    assert!(html.contains("stream worker http://127.0.0.1:1"), "{html}");

    let detail = ctx.get("/streams/users_created", "viewer").await;
    let html = detail.text();
    assert_eq!(detail.status, 200, "{html}");
    for expected in [
        "not_json",
        "{&#34;id&#34;: oops",
        &format!("{topic}.dlq"),
        "Consumer lag",
    ] {
        assert!(html.contains(expected), "`{expected}` in {html}");
    }
    assert!(
        !html.contains("Replay dead letters"),
        "a viewer cannot replay"
    );

    // An operator replays: the letter is still bad, so it is refused again, and it is audited.
    let cookie = login(&ctx, "op").await;
    let html = page(&ctx, &cookie, "/streams/users_created").await.text();
    assert!(html.contains("Replay dead letters"), "{html}");
    let csrf = csrf_of(&ctx, &cookie).await;
    let replayed = form(
        &ctx,
        &cookie,
        "/streams/users_created/replay",
        format!("csrf_token={csrf}"),
    )
    .await;
    assert_eq!(replayed.status, 303, "{}", replayed.text());
    let location = replayed.headers["location"]
        .to_str()
        .expect("location")
        .to_string();
    let html = page(&ctx, &cookie, &location).await.text();
    assert!(
        html.contains(
            "Replayed 1 dead letter(s): 0 written, 0 dropped by where/transform, 1 refused again"
        ),
        "{html}"
    );
    let events = ctx
        .get(
            "/api/v1/eventLogs?event=stream_dead_letters_replay",
            "viewer",
        )
        .await
        .json();
    assert_eq!(events["total_entries"], 1, "{events}");
    let viewer = login(&ctx, "viewer").await;
    let viewer_csrf = csrf_of(&ctx, &viewer).await;
    let refused = form(
        &ctx,
        &viewer,
        "/streams/users_created/replay",
        format!("csrf_token={viewer_csrf}"),
    )
    .await;
    assert_eq!(refused.status, 403);

    // The topic browser: the topic, its partition's offsets, its records from an offset.
    let html = ctx.get("/topics", "viewer").await.text();
    assert!(html.contains(&format!("data-topic=\"{topic}\"")), "{html}");
    let html = ctx.get(&format!("/topics/{topic}"), "viewer").await.text();
    assert!(
        html.contains("data-offset=\"0\"") && html.contains("data-offset=\"2\""),
        "{html}"
    );
    let html = ctx
        .get(&format!("/topics/{topic}?partition=0&offset=2"), "viewer")
        .await
        .text();
    assert!(
        html.contains("data-offset=\"2\"") && !html.contains("data-offset=\"1\""),
        "{html}"
    );
    assert!(html.contains("user2@example.com"), "{html}");
    assert_eq!(
        ctx.get("/topics/no_such_topic_here", "viewer").await.status,
        404
    );
    // An unknown stream: 503 while a worker that might run it does not answer, else 404.
    let unknown = ctx.get("/streams/nope", "viewer").await;
    assert_eq!(unknown.status, 503);
    assert!(
        unknown.text().contains("stream worker http://127.0.0.1:1"),
        "{}",
        unknown.text()
    );
    ctx.read_stream_workers(vec![api]);
    assert_eq!(ctx.get("/streams/nope", "viewer").await.status, 404);
}
