//! Every REST endpoint against real PostgreSQL: success, 401, 403, 404/409/400, pagination.

use axum::http::{Method, StatusCode};
use serde_json::json;
use updraft_orchestrator::dag::TaskState;
use updraft_orchestrator::store::{processes, task_instances};

use crate::common::setup;

#[tokio::test]
async fn dags_endpoints() {
    let Some(ctx) = setup("web_api_dags").await else {
        return;
    };
    // list
    let reply = ctx.get("/api/v1/dags", "viewer").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["total_entries"], 2);
    let demo = &body["dags"][0];
    assert_eq!(demo["dag_id"], "web_demo");
    assert_eq!(
        demo["schedule_interval"],
        json!({"__type": "CronExpression", "value": "@daily"})
    );
    assert_eq!(demo["tags"], json!([{"name": "web"}, {"name": "demo"}]));
    assert_eq!(demo["owners"], json!(["web-team"]));
    assert_eq!(demo["is_paused"], true);
    assert_eq!(demo["is_subdag"], false);
    assert!(demo["fileloc"].as_str().unwrap().ends_with("web_demo.yaml"));
    assert_eq!(body["dags"][1]["schedule_interval"], json!(null));
    // filters and pagination
    let page = ctx
        .get("/api/v1/dags?limit=1&offset=1", "viewer")
        .await
        .json();
    assert_eq!(page["total_entries"], 2);
    assert_eq!(page["dags"].as_array().unwrap().len(), 1);
    assert_eq!(page["dags"][0]["dag_id"], "web_other");
    let tagged = ctx
        .get("/api/v1/dags?tags=other&tags=nothing", "viewer")
        .await
        .json();
    assert_eq!(tagged["total_entries"], 1);
    assert_eq!(tagged["dags"][0]["dag_id"], "web_other");
    let pattern = ctx
        .get("/api/v1/dags?dag_id_pattern=DEMO", "viewer")
        .await
        .json();
    assert_eq!(pattern["total_entries"], 1);
    let unpaused = ctx.get("/api/v1/dags?paused=false", "viewer").await.json();
    assert_eq!(unpaused["total_entries"], 0);
    let capped = ctx.get("/api/v1/dags?limit=100000", "viewer").await;
    assert_eq!(capped.status, StatusCode::OK);
    ctx.get("/api/v1/dags?limit=-1", "viewer")
        .await
        .assert_problem(400);
    ctx.get("/api/v1/dags?paused=maybe", "viewer")
        .await
        .assert_problem(400);
    ctx.send(Method::GET, "/api/v1/dags", None, None)
        .await
        .assert_problem(401);
    let wrong = ctx
        .raw(
            axum::http::Request::get("/api/v1/dags")
                .header("authorization", "Basic YWRtaW46d3Jvbmc=")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    wrong.assert_problem(401);
    assert!(wrong.headers.contains_key("www-authenticate"));

    // one DAG, details
    let dag = ctx.get("/api/v1/dags/web_demo", "viewer").await;
    assert_eq!(dag.status, StatusCode::OK);
    assert_eq!(dag.json()["timetable_description"], "@daily (UTC)");
    ctx.get("/api/v1/dags/nope", "viewer")
        .await
        .assert_problem(404);
    let details = ctx
        .get("/api/v1/dags/web_demo/details", "viewer")
        .await
        .json();
    assert_eq!(details["params"]["times"]["value"], 2);
    assert_eq!(details["params"]["greeting"]["value"], "hello");
    assert_eq!(details["dag_id"], "web_demo");
    assert_eq!(details["timezone"], "UTC");
    ctx.get("/api/v1/dags/nope/details", "viewer")
        .await
        .assert_problem(404);

    // pause / unpause
    let patch = |user: Option<&'static str>, uri: &'static str, body| {
        ctx.send(Method::PATCH, uri, user, Some(body))
    };
    patch(
        Some("viewer"),
        "/api/v1/dags/web_demo",
        json!({"is_paused": false}),
    )
    .await
    .assert_problem(403);
    patch(None, "/api/v1/dags/web_demo", json!({"is_paused": false}))
        .await
        .assert_problem(401);
    assert!(ctx.is_paused("web_demo").await);
    let done = patch(
        Some("op"),
        "/api/v1/dags/web_demo?update_mask=is_paused",
        json!({"is_paused": false}),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(done.json()["is_paused"], false);
    assert!(!ctx.is_paused("web_demo").await);
    patch(Some("op"), "/api/v1/dags/nope", json!({"is_paused": false}))
        .await
        .assert_problem(404);
    patch(
        Some("op"),
        "/api/v1/dags/web_demo?update_mask=description",
        json!({"is_paused": true}),
    )
    .await
    .assert_problem(400);
    assert!(!ctx.is_paused("web_demo").await);
}

#[tokio::test]
async fn dag_run_endpoints() {
    let Some(ctx) = setup("web_api_runs").await else {
        return;
    };
    let post = |user: Option<&'static str>, uri: &'static str, body| {
        ctx.send(Method::POST, uri, user, Some(body))
    };
    let created = post(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns",
        json!({"dag_run_id": "r1", "conf": {"times": 3}, "note": "hi", "logical_date": "2024-05-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let run = created.json();
    assert_eq!(run["dag_run_id"], "r1");
    assert_eq!(run["state"], "queued");
    assert_eq!(run["run_type"], "manual");
    assert_eq!(run["external_trigger"], true);
    assert_eq!(run["conf"], json!({"times": 3}));
    assert_eq!(run["note"], "hi");
    assert!(
        run["logical_date"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-01T00:00:00")
    );
    assert_eq!(run["logical_date"], run["execution_date"]);
    // conflicts and errors
    post(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns",
        json!({"dag_run_id": "r1"}),
    )
    .await
    .assert_problem(409);
    post(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns",
        json!({"logical_date": "2024-05-01T00:00:00+00:00"}),
    )
    .await
    .assert_problem(409);
    post(Some("op"), "/api/v1/dags/nope/dagRuns", json!({}))
        .await
        .assert_problem(404);
    post(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns",
        json!({"conf": {"times": "many"}}),
    )
    .await
    .assert_problem(400);
    post(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns",
        json!({"conf": [1]}),
    )
    .await
    .assert_problem(400);
    post(Some("viewer"), "/api/v1/dags/web_demo/dagRuns", json!({}))
        .await
        .assert_problem(403);
    post(None, "/api/v1/dags/web_demo/dagRuns", json!({}))
        .await
        .assert_problem(401);
    assert_eq!(ctx.run_count().await, 1);
    // admin may too; default run id
    let second = post(Some("admin"), "/api/v1/dags/web_demo/dagRuns", json!({})).await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(
        second.json()["dag_run_id"]
            .as_str()
            .unwrap()
            .starts_with("manual__")
    );

    // list, pagination, ~, filters
    let list = ctx
        .get("/api/v1/dags/web_demo/dagRuns", "viewer")
        .await
        .json();
    assert_eq!(list["total_entries"], 2);
    let page = ctx
        .get(
            "/api/v1/dags/web_demo/dagRuns?limit=1&offset=1&order_by=-execution_date",
            "viewer",
        )
        .await
        .json();
    assert_eq!(page["dag_runs"].as_array().unwrap().len(), 1);
    assert_eq!(page["dag_runs"][0]["dag_run_id"], "r1");
    assert_eq!(page["total_entries"], 2);
    let all = ctx
        .get("/api/v1/dags/~/dagRuns?state=queued", "viewer")
        .await
        .json();
    assert_eq!(all["total_entries"], 2);
    let none = ctx
        .get("/api/v1/dags/~/dagRuns?state=failed", "viewer")
        .await
        .json();
    assert_eq!(none["total_entries"], 0);
    let dated = ctx
        .get(
            "/api/v1/dags/~/dagRuns?execution_date_lte=2024-06-01T00:00:00Z",
            "viewer",
        )
        .await
        .json();
    assert_eq!(dated["total_entries"], 1);
    ctx.get("/api/v1/dags/~/dagRuns?state=bogus", "viewer")
        .await
        .assert_problem(400);
    ctx.get("/api/v1/dags/~/dagRuns?order_by=password", "viewer")
        .await
        .assert_problem(400);
    ctx.get(
        "/api/v1/dags/~/dagRuns?execution_date_gte=yesterday",
        "viewer",
    )
    .await
    .assert_problem(400);
    ctx.get("/api/v1/dags/nope/dagRuns", "viewer")
        .await
        .assert_problem(404);
    ctx.send(Method::GET, "/api/v1/dags/web_demo/dagRuns", None, None)
        .await
        .assert_problem(401);

    // one run
    let one = ctx.get("/api/v1/dags/web_demo/dagRuns/r1", "viewer").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["dag_run_id"], "r1");
    ctx.get("/api/v1/dags/web_demo/dagRuns/zzz", "viewer")
        .await
        .assert_problem(404);

    // mark
    let patch = |user: Option<&'static str>, uri: &'static str, body| {
        ctx.send(Method::PATCH, uri, user, Some(body))
    };
    patch(
        Some("viewer"),
        "/api/v1/dags/web_demo/dagRuns/r1",
        json!({"state": "success"}),
    )
    .await
    .assert_problem(403);
    patch(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns/r1",
        json!({"state": "running"}),
    )
    .await
    .assert_problem(400);
    patch(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns/zzz",
        json!({"state": "failed"}),
    )
    .await
    .assert_problem(404);
    let marked = patch(
        Some("op"),
        "/api/v1/dags/web_demo/dagRuns/r1",
        json!({"state": "failed"}),
    )
    .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text());
    assert_eq!(marked.json()["state"], "failed");
}

#[tokio::test]
async fn task_instance_log_and_xcom_endpoints() {
    let Some(ctx) = setup("web_api_tis").await else {
        return;
    };
    ctx.run_with_tis("r1").await;
    let base = "/api/v1/dags/web_demo/dagRuns/r1/taskInstances";
    let list = ctx.get(base, "viewer").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let list = list.json();
    assert_eq!(list["total_entries"], 3);
    let page = ctx
        .get(&format!("{base}?limit=2&offset=2"), "viewer")
        .await
        .json();
    assert_eq!(page["task_instances"].as_array().unwrap().len(), 1);
    let failed = ctx
        .get(
            "/api/v1/dags/~/dagRuns/~/taskInstances?state=failed",
            "viewer",
        )
        .await
        .json();
    assert_eq!(failed["total_entries"], 1);
    assert_eq!(failed["task_instances"][0]["task_id"], "transform");
    ctx.get("/api/v1/dags/web_demo/dagRuns/zzz/taskInstances", "viewer")
        .await
        .assert_problem(404);
    ctx.send(Method::GET, base, None, None)
        .await
        .assert_problem(401);

    let ti = ctx.get(&format!("{base}/extract"), "viewer").await.json();
    assert_eq!(ti["state"], "success");
    assert_eq!(ti["try_number"], 1);
    assert_eq!(ti["pool"], "default_pool");
    assert_eq!(ti["pool_slots"], 1);
    assert_eq!(ti["dag_run_id"], "r1");
    assert_eq!(ti["rendered_fields"], json!({"x": 1}));
    ctx.get(&format!("{base}/nope"), "viewer")
        .await
        .assert_problem(404);

    // logs: text, JSON with continuation token
    let text = ctx.get(&format!("{base}/extract/logs/1"), "viewer").await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(text.content_type().starts_with("text/plain"));
    assert!(text.text().contains("hello from extract") && text.text().contains("second line"));
    let json_log = ctx
        .raw(
            axum::http::Request::get(format!("{base}/extract/logs/1"))
                .header("authorization", crate::common::basic("viewer"))
                .header("accept", "application/json")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .json();
    assert!(
        json_log["content"]
            .as_str()
            .unwrap()
            .contains("second line")
    );
    let token = json_log["continuation_token"].as_str().unwrap().to_string();
    let rest = ctx
        .get(&format!("{base}/extract/logs/1?token={token}"), "viewer")
        .await;
    assert_eq!(rest.text(), "");
    ctx.get(&format!("{base}/extract/logs/7"), "viewer")
        .await
        .assert_problem(404);
    ctx.get(&format!("{base}/extract/logs/one"), "viewer")
        .await
        .assert_problem(400);
    ctx.get(&format!("{base}/extract/logs/1?token=abc"), "viewer")
        .await
        .assert_problem(400);

    // xcom
    let entries = ctx
        .get(&format!("{base}/extract/xcomEntries"), "viewer")
        .await
        .json();
    assert_eq!(entries["total_entries"], 1);
    assert_eq!(entries["xcom_entries"][0]["key"], "return_value");
    let entry = ctx
        .get(
            &format!("{base}/extract/xcomEntries/return_value"),
            "viewer",
        )
        .await
        .json();
    assert_eq!(entry["value"], "{\"rows\":3}");
    let native = ctx
        .get(
            &format!("{base}/extract/xcomEntries/return_value?deserialize=true"),
            "viewer",
        )
        .await
        .json();
    assert_eq!(native["value"], json!({"rows": 3}));
    ctx.get(&format!("{base}/extract/xcomEntries/missing"), "viewer")
        .await
        .assert_problem(404);
    ctx.get(&format!("{base}/load/xcomEntries"), "viewer")
        .await
        .json();

    // clear
    let clear = |user: Option<&'static str>, body| {
        ctx.send(
            Method::POST,
            "/api/v1/dags/web_demo/clearTaskInstances",
            user,
            Some(body),
        )
    };
    clear(Some("viewer"), json!({"dry_run": true}))
        .await
        .assert_problem(403);
    clear(None, json!({"dry_run": true}))
        .await
        .assert_problem(401);
    clear(Some("op"), json!({"include_future": true}))
        .await
        .assert_problem(400);
    ctx.send(
        Method::POST,
        "/api/v1/dags/nope/clearTaskInstances",
        Some("op"),
        Some(json!({})),
    )
    .await
    .assert_problem(404);
    let dry = clear(Some("op"), json!({"dry_run": true, "dag_run_id": "r1"})).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text());
    let cleared = dry.json();
    // only_failed (the default) takes failed and upstream_failed tasks.
    let mut ids: Vec<&str> = cleared["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["load", "transform"], "{cleared}");
    let transform = task_instances::get_view(&ctx.pool, "web_demo", "r1", "transform")
        .await
        .unwrap()
        .expect("transform's task instance");
    assert_eq!(
        transform.state,
        TaskState::Failed,
        "a dry run changes nothing"
    );
    let real = clear(
        Some("op"),
        json!({"dry_run": false, "dag_run_id": "r1", "task_ids": ["transform"], "include_downstream": true, "only_failed": false}),
    )
    .await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.text());
    assert_eq!(real.json()["task_instances"].as_array().unwrap().len(), 2);
    let ti = ctx.get(&format!("{base}/transform"), "viewer").await.json();
    assert_eq!(ti["state"], json!(null), "cleared tasks show state null");
}

#[tokio::test]
async fn misc_endpoints() {
    let Some(ctx) = setup("web_api_misc").await else {
        return;
    };
    let health = ctx.send(Method::GET, "/api/v1/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let health = health.json();
    assert_eq!(health["metadatabase"]["status"], "healthy");
    assert_eq!(health["scheduler"]["status"], "unhealthy");
    assert_eq!(
        health["scheduler"]["latest_scheduler_heartbeat"],
        json!(null)
    );
    processes::register(&ctx.pool, "h:1:x", "h", 1)
        .await
        .unwrap();
    let health = ctx.send(Method::GET, "/health", None, None).await.json();
    assert_eq!(health["scheduler"]["status"], "healthy");
    assert!(health["scheduler"]["latest_scheduler_heartbeat"].is_string());

    let version = ctx.get("/api/v1/version", "viewer").await.json();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    ctx.send(Method::GET, "/api/v1/version", None, None)
        .await
        .assert_problem(401);

    let errors = ctx.get("/api/v1/importErrors", "viewer").await.json();
    assert_eq!(errors["total_entries"], 1);
    let error = &errors["import_errors"][0];
    assert!(error["filename"].as_str().unwrap().ends_with("broken.yaml"));
    assert!(
        error["stack_trace"]
            .as_str()
            .unwrap()
            .contains("broken.yaml:")
    );
    let id = error["import_error_id"].as_i64().unwrap();
    let one = ctx
        .get(&format!("/api/v1/importErrors/{id}"), "viewer")
        .await;
    assert_eq!(one.status, StatusCode::OK);
    ctx.get("/api/v1/importErrors/999999", "viewer")
        .await
        .assert_problem(404);
    ctx.get("/api/v1/importErrors/x", "viewer")
        .await
        .assert_problem(400);
    let empty_page = ctx
        .get("/api/v1/importErrors?offset=5", "viewer")
        .await
        .json();
    assert_eq!(empty_page["total_entries"], 1);
    assert_eq!(empty_page["import_errors"], json!([]));

    ctx.run_with_tis("r1").await;
    let metrics = ctx.get("/metrics", "viewer").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    assert!(
        text.contains("updraft_dag_runs{state=\"queued\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("updraft_task_instances{state=\"failed\"} 1"),
        "{text}"
    );
    assert!(text.contains("updraft_import_errors 1"), "{text}");
    ctx.send(Method::GET, "/metrics", None, None)
        .await
        .assert_problem(401);

    ctx.get("/api/v1/nothing/here", "viewer")
        .await
        .assert_problem(404);
}
