//! The audit log: changes made in the UI and through the API are recorded with the user, the
//! source and the client's address; `GET /api/v1/eventLogs` lists them as Airflow does, with
//! filters; the Audit log page shows them; a refused change records nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{csrf_of, login, page, setup};

fn extra(event: &Value) -> Value {
    serde_json::from_str(event["extra"].as_str().expect("extra is JSON text")).expect("JSON")
}

#[tokio::test]
async fn changes_in_the_ui_and_the_api_are_in_the_audit_log() {
    let Some(ctx) = setup("web_audit_log").await else {
        return;
    };
    // Refused changes record nothing.
    ctx.send(
        Method::PATCH,
        "/api/v1/dags/web_demo",
        Some("viewer"),
        Some(json!({"is_paused": false})),
    )
    .await
    .assert_problem(403);

    // A pause in the UI, from behind a proxy.
    let op = login(&ctx, "op").await;
    let csrf = csrf_of(&ctx, &op).await;
    let paused = ctx
        .raw(
            Request::post("/dags/web_demo/pause")
                .header(header::COOKIE, &op)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
                .body(Body::from(format!("csrf_token={csrf}&is_paused=true")))
                .unwrap(),
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.text());
    // An unpause, a trigger, a clear and a variable through the API.
    let unpaused = ctx
        .send(
            Method::PATCH,
            "/api/v1/dags/web_demo",
            Some("op"),
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(unpaused.status, StatusCode::OK, "{}", unpaused.text());
    let run = ctx
        .send(
            Method::POST,
            "/api/v1/dags/web_demo/dagRuns",
            Some("op"),
            Some(json!({"dag_run_id": "audited"})),
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text());
    let variable = ctx
        .send(
            Method::POST,
            "/api/v1/variables",
            Some("op"),
            Some(json!({"key": "k", "value": "v"})),
        )
        .await;
    assert_eq!(variable.status, StatusCode::OK, "{}", variable.text());

    let all = ctx.get("/api/v1/eventLogs", "viewer").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    let all = all.json();
    assert_eq!(all["total_entries"], 4, "{all}");
    let events: Vec<(&str, &str, &str)> = all["event_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["event"].as_str().unwrap(),
                event["owner"].as_str().unwrap(),
                event["dag_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("pause", "op", "web_demo"),
            ("unpause", "op", "web_demo"),
            ("trigger", "op", "web_demo"),
            ("variable_set", "op", ""),
        ]
    );
    let first = &all["event_logs"][0];
    assert_eq!(
        extra(first),
        json!({"source": "ui", "remote_addr": "203.0.113.7"})
    );
    assert_eq!(extra(&all["event_logs"][1])["source"], "api");
    assert_eq!(all["event_logs"][2]["run_id"], "audited");
    assert_eq!(extra(&all["event_logs"][3])["key"], "k");

    // Filters and order, as Airflow's.
    let pauses = ctx
        .get("/api/v1/eventLogs?event=pause", "viewer")
        .await
        .json();
    assert_eq!(pauses["total_entries"], 1);
    let newest = ctx
        .get("/api/v1/eventLogs?order_by=-event_log_id&limit=1", "viewer")
        .await
        .json();
    assert_eq!(newest["event_logs"][0]["event"], "variable_set");
    assert_eq!(newest["total_entries"], 4);
    ctx.get("/api/v1/eventLogs?order_by=sideways", "viewer")
        .await
        .assert_problem(400);
    let id = first["event_log_id"].as_i64().unwrap();
    let one = ctx
        .get(&format!("/api/v1/eventLogs/{id}"), "viewer")
        .await
        .json();
    assert_eq!(one["event"], "pause");
    ctx.get("/api/v1/eventLogs/999999", "viewer")
        .await
        .assert_problem(404);

    // The page, filtered.
    let html = page(&ctx, &op, "/audit-log?event=unpause").await;
    assert_eq!(html.status, StatusCode::OK);
    let html = html.text();
    assert!(
        html.contains("data-event=\"unpause\"") && !html.contains("data-event=\"pause\""),
        "{html}"
    );
    let html = page(&ctx, &op, "/audit-log").await.text();
    assert!(html.contains("203.0.113.7") && html.contains("href=\"/dags/web_demo/runs/audited\""));
}
