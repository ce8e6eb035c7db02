//! `http` against a local wiremock server standing in for randomuser.me.

use std::time::{Duration, Instant};

use crate::support::{WithConnections, harness, run};
use serde_json::{Value, json};
use updraft_operators::OperatorError;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Two users shaped like randomuser.me's answer: a numeric postcode, non-ASCII names.
fn randomuser_page() -> Value {
    json!({
        "results": [
            {
                "gender": "female",
                "name": {"title": "Ms", "first": "Zoë", "last": "Ünal"},
                "location": {
                    "street": {"number": 4021, "name": "Rue de l'Église"},
                    "city": "Besançon", "state": "Doubs", "country": "France",
                    "postcode": 75001
                },
                "email": "zoe.unal@example.com",
                "login": {"uuid": "0f1c9b1e-6c55-4c11-9a55-1f6f0e7b6a01", "username": "bluefrog512"},
                "dob": {"date": "1987-03-14T08:21:45.123Z", "age": 38},
                "registered": {"date": "2012-06-02T11:10:01.456Z", "age": 13},
                "phone": "03-21-52-74-77",
                "picture": {"medium": "https://randomuser.me/api/portraits/med/women/12.jpg"}
            },
            {
                "gender": "male",
                "name": {"title": "Mr", "first": "Jörg", "last": "Ødegård"},
                "location": {
                    "street": {"number": 12, "name": "Storgata"},
                    "city": "Tromsø", "state": "Troms", "country": "Norway",
                    "postcode": "9008"
                },
                "email": "jorg.odegard@example.com",
                "login": {"uuid": "7d1b2c3e-1111-4c11-9a55-1f6f0e7b6a02", "username": "tinybear77"},
                "dob": {"date": "1990-11-30T23:59:59.000Z", "age": 34},
                "registered": {"date": "2019-01-01T00:00:00.000Z", "age": 6},
                "phone": "71 23 45 67",
                "picture": {"medium": "https://randomuser.me/api/portraits/med/men/3.jpg"}
            }
        ],
        "info": {"seed": "abc", "results": 2, "page": 1, "version": "1.4"}
    })
}

fn failure(result: Result<Value, OperatorError>) -> String {
    match result {
        Err(OperatorError::Failed(message)) => message,
        other => panic!("expected a failed try, got {other:?}"),
    }
}

#[tokio::test]
async fn a_json_response_is_parsed_into_the_output() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/"))
        .and(query_param("results", "2"))
        .and(query_param("nat", "fr"))
        .and(header("x-request-source", "updraft"))
        .respond_with(ResponseTemplate::new(200).set_body_json(randomuser_page()))
        .expect(1)
        .mount(&server)
        .await;
    let h = harness("fetch_users");
    let url = format!("{}/api/", server.uri());
    let config = json!({
        "url": url,
        "query": {"results": 2, "nat": "fr"},
        "headers": {"X-Request-Source": "updraft"},
        "timeout": "5s",
    });
    let output = run("http", config, &h.ctx).await.unwrap();

    assert_eq!(output["status"], 200);
    assert_eq!(output["headers"]["content-type"], "application/json");
    assert_eq!(output["body"], randomuser_page());
    let first = &output["body"]["results"][0];
    assert_eq!(first["name"]["first"], "Zoë");
    assert_eq!(first["name"]["last"], "Ünal");
    assert_eq!(
        first["location"]["postcode"],
        json!(75001),
        "a numeric postcode stays a number"
    );
    assert_eq!(first["login"]["username"], "bluefrog512");

    let lines = h.log.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(&format!("GET {url}")), "{lines:?}");
    assert!(lines[0].contains("-> 200 OK in "), "{lines:?}");
}

#[tokio::test]
async fn a_post_sends_json_and_accepts_the_listed_status() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/users"))
        .and(body_json(json!({"name": "Zoë"})))
        .respond_with(ResponseTemplate::new(201).set_body_string("created"))
        .expect(1)
        .mount(&server)
        .await;
    let h = harness("create_user");
    let config = json!({
        "method": "post",
        "url": format!("{}/users", server.uri()),
        "json": {"name": "Zoë"},
        "expected_status": ["201"],
    });
    let output = run("http", config, &h.ctx).await.unwrap();
    assert_eq!(output["status"], 201);
    assert_eq!(output["body"], "created", "a non-JSON body is text");
}

#[tokio::test]
async fn a_server_error_fails_with_url_status_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .mount(&server)
        .await;
    let h = harness("fetch_users");
    let url = format!("{}/api/", server.uri());
    let message = failure(run("http", json!({"url": url}), &h.ctx).await);
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("500 Internal Server Error"), "{message}");
    assert!(message.contains("expected 2xx"), "{message}");
    assert!(message.contains("upstream exploded"), "{message}");
}

#[tokio::test]
async fn a_status_outside_expected_status_fails_even_when_2xx() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let h = harness("strict");
    let url = format!("{}/ping", server.uri());
    let message = failure(
        run(
            "http",
            json!({"url": url, "expected_status": [200]}),
            &h.ctx,
        )
        .await,
    );
    assert!(
        message.contains("204 No Content") && message.contains("expected 200"),
        "{message}"
    );
}

#[tokio::test]
async fn invalid_json_under_a_json_content_type_fails() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("{\"results\": [", "application/json"),
        )
        .mount(&server)
        .await;
    let h = harness("broken");
    let message = failure(run("http", json!({"url": server.uri()}), &h.ctx).await);
    assert!(message.contains("invalid JSON"), "{message}");
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let h = harness("slow");
    let url = format!("{}/api/", server.uri());
    let started = Instant::now();
    let message = failure(run("http", json!({"url": url, "timeout": "300ms"}), &h.ctx).await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        message.contains(&url) && message.contains("timed out after 300ms"),
        "{message}"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_url() {
    let h = harness("nowhere");
    let message = failure(run("http", json!({"url": "http://127.0.0.1:1/api/"}), &h.ctx).await);
    assert!(
        message.starts_with("GET http://127.0.0.1:1/api/ failed:"),
        "{message}"
    );
}

#[tokio::test]
async fn cancellation_stops_a_request_in_flight() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let h = harness("cancelled");
    let ctx = h.ctx.clone();
    let url = server.uri();
    let task = tokio::spawn(async move { run("http", json!({"url": url}), &ctx).await });
    testkit::eventually(
        "the request to reach the server",
        Duration::from_secs(5),
        async || {
            server
                .received_requests()
                .await
                .is_some_and(|requests| !requests.is_empty())
        },
    )
    .await;
    let cancelled_at = Instant::now();
    h.ctx.cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(OperatorError::Cancelled)),
        "{result:?}"
    );
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "took {:?}",
        cancelled_at.elapsed()
    );
    testkit::eventually(
        "the cancellation in the log",
        Duration::from_secs(1),
        async || h.log.lines().iter().any(|l| l.ends_with("cancelled")),
    )
    .await;
}

#[tokio::test]
async fn a_connection_gives_the_base_url_auth_and_default_headers() {
    let server = MockServer::start().await;
    // Basic auth from login and password; the task's own header wins over the connection's.
    Mock::given(method("GET"))
        .and(path("/api/users"))
        .and(header("authorization", "Basic Ym90OnMzY3IzdA=="))
        .and(header("x-team", "data"))
        .and(header("x-trace", "from-task"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": "basic"})))
        .mount(&server)
        .await;
    // A bearer token from extra.token when there is no login.
    Mock::given(method("GET"))
        .and(path("/v2/items"))
        .and(header("authorization", "Bearer tok-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": "bearer"})))
        .mount(&server)
        .await;
    let address = server.address();
    let basic = updraft_secrets::Connection::from_uri(
        "users_api",
        &format!("http://bot:s3cr3t@{}:{}/api", address.ip(), address.port()),
    )
    .unwrap();
    let mut bearer = updraft_secrets::Connection::from_json(
        "items_api",
        &format!(
            r#"{{"conn_type": "http", "host": "{}", "port": {}, "extra": {{"token": "tok-123"}}}}"#,
            address.ip(),
            address.port()
        ),
    )
    .unwrap();
    bearer.schema = Some("v2".into());
    let mut basic = basic;
    basic.extra = Some(r#"{"headers": {"X-Team": "data", "X-Trace": "from-connection"}}"#.into());

    let mut h = harness("with_connection");
    h.ctx.renderer = std::sync::Arc::new(WithConnections(vec![basic, bearer]));
    let users = run(
        "http",
        json!({"conn_id": "users_api", "url": "/users", "headers": {"X-Trace": "from-task"}}),
        &h.ctx,
    )
    .await
    .unwrap();
    assert_eq!(users["body"], json!({"ok": "basic"}));
    let items = run(
        "http",
        json!({"conn_id": "items_api", "url": "items"}),
        &h.ctx,
    )
    .await
    .unwrap();
    assert_eq!(items["body"], json!({"ok": "bearer"}));

    // A relative URL needs a connection; a missing connection is named.
    let relative = run("http", json!({"url": "/users"}), &h.ctx).await;
    assert!(
        matches!(&relative, Err(OperatorError::Config(message)) if message.contains("not an absolute")),
        "{relative:?}"
    );
    let missing = run("http", json!({"conn_id": "nope"}), &h.ctx).await;
    assert!(
        matches!(&missing, Err(OperatorError::Config(message)) if message.contains("connection `nope`")),
        "{missing:?}"
    );
    let log = h.log.lines().join("\n");
    assert!(!log.contains("s3cr3t") && !log.contains("tok-123"), "{log}");
}
