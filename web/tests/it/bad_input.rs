//! Bad input never yields a 500 or a state change: wrong types, unknown fields, malformed JSON,
//! oversized bodies, unknown ids, injection strings in paths and queries.

use crate::common::{Ctx, basic, setup};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::store::runs::{self, RunFilter, RunOrder};
use updraft_orchestrator::store::task_instances::{self, TaskInstanceFilter};
use updraft_orchestrator::store::{dags, users};

/// Everything a bad request could change: each DAG's pause, each run's state and conf, each
/// task instance's state and try, and how many users exist.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    dags: Vec<(String, bool)>,
    runs: Vec<(String, RunState, Value)>,
    task_instances: Vec<(String, TaskState, i32)>,
    users: i64,
}

async fn state_of(ctx: &Ctx) -> Fingerprint {
    let pool = &ctx.pool;
    let dags = dags::list(pool).await.unwrap();
    let every_run = RunFilter::default();
    let runs = runs::page(pool, &every_run, RunOrder::Id, i64::MAX, 0)
        .await
        .unwrap();
    let every_ti = TaskInstanceFilter::default();
    let tis = task_instances::page(pool, &every_ti, i64::MAX, 0)
        .await
        .unwrap();
    Fingerprint {
        dags: dags
            .into_iter()
            .map(|dag| (dag.dag_id, dag.is_paused))
            .collect(),
        runs: runs
            .rows
            .into_iter()
            .map(|run| (run.run_id, run.state, run.conf))
            .collect(),
        task_instances: tis
            .rows
            .into_iter()
            .map(|ti| (ti.task_id, ti.state, ti.try_number))
            .collect(),
        users: users::count(pool).await.unwrap(),
    }
}

async fn send_raw(
    ctx: &Ctx,
    method: &Method,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> crate::common::Reply {
    ctx.raw(
        Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::AUTHORIZATION, basic("admin"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn bad_bodies_are_problem_json_4xx_without_state_change() {
    let Some(ctx) = setup("web_bad_bodies").await else {
        return;
    };
    ctx.run_with_tis("r1").await;
    let before = state_of(&ctx).await;
    let endpoints = [
        (Method::PATCH, "/api/v1/dags/web_demo"),
        (Method::POST, "/api/v1/dags/web_demo/dagRuns"),
        (Method::PATCH, "/api/v1/dags/web_demo/dagRuns/r1"),
        (Method::POST, "/api/v1/dags/web_demo/clearTaskInstances"),
    ];
    let huge = format!("{{\"conf\": {{\"x\": \"{}\"}}}}", "a".repeat(70 * 1024));
    let deep = format!("{{\"conf\": {}{}}}", "[".repeat(200), "]".repeat(200));
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("malformed", "application/json", b"{\"is_paused\": ".to_vec()),
        ("not json", "application/json", b"is_paused=true".to_vec()),
        ("wrong types", "application/json", br#"{"is_paused": "yes", "state": 5, "dry_run": "no", "conf": 3, "dag_run_id": 7}"#.to_vec()),
        ("unknown field", "application/json", br#"{"is_paused": false, "state": "success", "dry_run": false, "owner": "me"}"#.to_vec()),
        ("array", "application/json", b"[]".to_vec()),
        ("null", "application/json", b"null".to_vec()),
        ("empty", "application/json", Vec::new()),
        ("form", "application/x-www-form-urlencoded", b"is_paused=false".to_vec()),
        ("oversized", "application/json", huge.into_bytes()),
        ("too deep", "application/json", deep.into_bytes()),
        ("nul", "application/json", br#"{"is_paused": false, "state": "success", "dag_run_id": "a\u0000b", "dry_run": false}"#.to_vec()),
        ("invalid utf8", "application/json", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']),
    ];
    for (method, uri) in &endpoints {
        for (label, content_type, body) in &bodies {
            let reply = send_raw(&ctx, method, uri, content_type, body.clone()).await;
            assert!(
                reply.status.is_client_error(),
                "{label} → {method} {uri}: {} {}",
                reply.status,
                reply.text()
            );
            reply.assert_problem(reply.status.as_u16());
            if *label == "oversized" {
                assert_eq!(
                    reply.status,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "{method} {uri}"
                );
            }
        }
    }
    // Over-long run ids and logical dates in the wrong format.
    for body in [
        format!(r#"{{"dag_run_id": "{}"}}"#, "r".repeat(300)),
        r#"{"logical_date": "yesterday"}"#.to_string(),
        r#"{"logical_date": "2024-01-01T00:00:00Z", "execution_date": "2024-01-02T00:00:00Z"}"#
            .to_string(),
    ] {
        let reply = send_raw(
            &ctx,
            &Method::POST,
            "/api/v1/dags/web_demo/dagRuns",
            "application/json",
            body.into_bytes(),
        )
        .await;
        reply.assert_problem(400);
    }
    assert_eq!(state_of(&ctx).await, before, "bad requests changed state");
}

#[tokio::test]
async fn injection_strings_in_paths_and_queries() {
    let Some(ctx) = setup("web_bad_inject").await else {
        return;
    };
    ctx.run_with_tis("r1").await;
    let before = state_of(&ctx).await;
    let nasty = [
        "' OR '1'='1",
        "x'; DROP TABLE dag; --",
        "%27%20OR%201%3D1%20--",
        "..%2F..%2Fetc%2Fpasswd",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "%00",
        "a%00b",
        "%25%5F%5C",
        "%F0%9F%92%A9",
        "%FF%FE",
        "~",
    ];
    let long = "x".repeat(5000);
    let mut values: Vec<String> = nasty
        .iter()
        .map(|s| {
            s.replace(' ', "%20")
                .replace('\'', "%27")
                .replace(';', "%3B")
        })
        .collect();
    values.push(long);
    for value in &values {
        let paths = [
            format!("/api/v1/dags/{value}"),
            format!("/api/v1/dags/{value}/details"),
            format!("/api/v1/dags/{value}/dagRuns"),
            format!("/api/v1/dags/web_demo/dagRuns/{value}"),
            format!("/api/v1/dags/web_demo/dagRuns/{value}/taskInstances"),
            format!("/api/v1/dags/web_demo/dagRuns/r1/taskInstances/{value}"),
            format!("/api/v1/dags/web_demo/dagRuns/r1/taskInstances/extract/logs/{value}"),
            format!("/api/v1/dags/web_demo/dagRuns/r1/taskInstances/extract/xcomEntries/{value}"),
            format!("/api/v1/importErrors/{value}"),
            format!("/api/v1/dags?dag_id_pattern={value}&tags={value}"),
            format!("/api/v1/dags?limit={value}"),
            format!("/api/v1/dags/~/dagRuns?state={value}&order_by={value}"),
            format!("/api/v1/dags/~/dagRuns?execution_date_gte={value}"),
            format!("/api/v1/dags/web_demo/dagRuns/r1/taskInstances/extract/logs/1?token={value}"),
            format!("/dags?q={value}&tag={value}&page={value}"),
            format!("/dags/{value}"),
            format!("/dags/web_demo/runs/{value}"),
            format!("/dags/web_demo/runs/r1/tasks/{value}"),
            format!("/dags/web_demo/runs/r1/tasks/extract?try={value}"),
            format!("/dags/web_demo/runs/r1/tasks/extract/log.json?after={value}"),
        ];
        for path in paths {
            let request = Request::get(&path)
                .header(header::AUTHORIZATION, basic("viewer"))
                .body(Body::empty());
            let Ok(request) = request else { continue }; // not a valid URI at all: never reaches us
            let reply = ctx.raw(request).await;
            assert!(
                !reply.status.is_server_error(),
                "{path}: {} {}",
                reply.status,
                reply.text()
            );
            if reply.status.is_client_error() && path.starts_with("/api/") {
                reply.assert_problem(reply.status.as_u16());
            }
            if reply.status == StatusCode::OK && path.contains("dag_id_pattern") {
                assert_eq!(reply.json()["total_entries"], 0, "{path}");
            }
        }
        // Injection in Basic credentials.
        let request = Request::get("/api/v1/dags")
            .header(header::AUTHORIZATION, format!("Basic {value}"))
            .body(Body::empty());
        if let Ok(request) = request {
            ctx.raw(request).await.assert_problem(401);
        }
    }
    let creds = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "admin' --\u{0}:x",
    );
    let reply = ctx
        .raw(
            Request::get("/api/v1/dags")
                .header(header::AUTHORIZATION, format!("Basic {creds}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    reply.assert_problem(401);
    // Forms with bad values.
    let (csrf_cookie, csrf) = ctx.login_csrf().await;
    let login = ctx
        .raw(
            Request::post("/login")
                .header(header::COOKIE, csrf_cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "username=a%00b&password=x&next=%2F%0D%0ASet-Cookie%3A%20x&csrf_token={csrf}"
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    assert_eq!(state_of(&ctx).await, before, "bad requests changed state");
}

#[tokio::test]
async fn out_of_range_conf_numbers_and_unsafe_run_ids_are_refused() {
    let Some(ctx) = setup("web_bad_values").await else {
        return;
    };
    let before = state_of(&ctx).await;
    for (body, says) in [
        (r#"{"conf": {"x": 1.7976931348623157e+308}}"#, "`conf.x`"),
        (
            r#"{"conf": {"deep": [1, {"y": -1e301}]}}"#,
            "`conf.deep[1].y`",
        ),
        (r#"{"dag_run_id": "a<b>'\""}"#, "run_id"),
        (r#"{"dag_run_id": "with space"}"#, "run_id"),
    ] {
        let reply = send_raw(
            &ctx,
            &Method::POST,
            "/api/v1/dags/web_demo/dagRuns",
            "application/json",
            body.as_bytes().to_vec(),
        )
        .await;
        reply.assert_problem(400);
        assert!(reply.text().contains(says), "{body}: {}", reply.text());
    }
    assert_eq!(
        state_of(&ctx).await,
        before,
        "refused triggers changed state"
    );
    // The largest number kept exactly still goes through.
    let fine = send_raw(
        &ctx,
        &Method::POST,
        "/api/v1/dags/web_demo/dagRuns",
        "application/json",
        br#"{"dag_run_id": "big.numbers~1", "conf": {"x": 1e299}}"#.to_vec(),
    )
    .await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.text());
}
