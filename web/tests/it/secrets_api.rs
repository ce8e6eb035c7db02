//! Connections and Variables through the REST API: CRUD, `update_mask`, passwords never read
//! back, validation, and who may do what.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::setup;

const PASSWORD: &str = "s3cr3t-never-shown";

#[tokio::test]
async fn connections_are_created_listed_patched_and_deleted_without_showing_passwords() {
    let Some(ctx) = setup("web_secrets_conn").await else {
        return;
    };
    let body = json!({
        "connection_id": "my_api",
        "conn_type": "https",
        "description": "an API",
        "host": "api.example.com",
        "login": "me",
        "port": 8443,
        "password": PASSWORD,
        "extra": "{\"timeout\": 3}",
    });
    let created = ctx
        .send(
            Method::POST,
            "/api/v1/connections",
            Some("admin"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert!(created.json().get("password").is_none());
    assert!(!created.text().contains(PASSWORD));
    assert_eq!(created.json()["connection_id"], "my_api");

    // The same id again is a conflict.
    let again = ctx
        .send(
            Method::POST,
            "/api/v1/connections",
            Some("admin"),
            Some(body),
        )
        .await;
    again.assert_problem(409);

    // A bad extra, conn_id, conn_type or port is a 400 naming the field.
    for (field, bad) in [
        (
            "extra",
            json!({"connection_id": "x1", "conn_type": "http", "extra": "[1, 2]"}),
        ),
        (
            "connection_id",
            json!({"connection_id": "bad id!", "conn_type": "http"}),
        ),
        (
            "conn_type",
            json!({"connection_id": "x2", "conn_type": "nope"}),
        ),
        (
            "port",
            json!({"connection_id": "x3", "conn_type": "http", "port": 70000}),
        ),
    ] {
        let reply = ctx
            .send(
                Method::POST,
                "/api/v1/connections",
                Some("admin"),
                Some(bad),
            )
            .await;
        reply.assert_problem(400);
        let detail = reply.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(field), "{field}: {detail}");
    }

    let one = ctx.get("/api/v1/connections/my_api", "admin").await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text());
    let json = one.json();
    assert!(json.get("password").is_none(), "{json}");
    assert!(!one.text().contains(PASSWORD));
    assert_eq!(json["host"], "api.example.com");
    assert_eq!(json["port"], 8443);
    assert_eq!(json["extra"], "{\"timeout\": 3}");

    let list = ctx.get("/api/v1/connections?limit=10", "admin").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let list = list.json();
    assert_eq!(list["total_entries"], 1);
    let item = &list["connections"][0];
    assert_eq!(item["connection_id"], "my_api");
    assert!(
        item.get("password").is_none() && item.get("extra").is_none(),
        "{item}"
    );
    let descending = ctx
        .get("/api/v1/connections?order_by=-connection_id", "admin")
        .await;
    assert_eq!(descending.status, StatusCode::OK);
    ctx.get("/api/v1/connections?order_by=nothing", "admin")
        .await
        .assert_problem(400);

    // update_mask: only the host changes, though the body gives more; the password stays.
    let patch = json!({"connection_id": "my_api", "host": "other.example.com", "login": "ignored"});
    let patched = ctx
        .send(
            Method::PATCH,
            "/api/v1/connections/my_api?update_mask=host",
            Some("admin"),
            Some(patch),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(patched.json()["host"], "other.example.com");
    assert_eq!(patched.json()["login"], "me");
    let stored = updraft_orchestrator::store::connections::page(
        &ctx.pool,
        &updraft_secrets::Cipher::none(),
        10,
        0,
    )
    .await;
    assert!(stored.is_err(), "the password is stored encrypted");
    // Without a mask every given field changes.
    let patched = ctx
        .send(
            Method::PATCH,
            "/api/v1/connections/my_api",
            Some("admin"),
            Some(json!({"description": null, "port": 443})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(patched.json()["description"], serde_json::Value::Null);
    assert_eq!(patched.json()["port"], 443);
    assert_eq!(patched.json()["host"], "other.example.com");
    // An unknown mask field, or another id in the body, is a 400.
    let unknown = ctx
        .send(
            Method::PATCH,
            "/api/v1/connections/my_api?update_mask=hostname",
            Some("admin"),
            Some(json!({"host": "x"})),
        )
        .await;
    unknown.assert_problem(400);
    assert!(unknown.text().contains("hostname"), "{}", unknown.text());
    ctx.send(
        Method::PATCH,
        "/api/v1/connections/my_api",
        Some("admin"),
        Some(json!({"connection_id": "other", "host": "x"})),
    )
    .await
    .assert_problem(400);
    ctx.send(
        Method::PATCH,
        "/api/v1/connections/my_api",
        Some("admin"),
        Some(json!({"extra": "not json"})),
    )
    .await
    .assert_problem(400);

    // Testing: unsupported types say so; the password never shows in the message.
    let tested = ctx
        .send(
            Method::POST,
            "/api/v1/connections/test",
            Some("admin"),
            Some(json!({"connection_id": "t", "conn_type": "postgres", "password": PASSWORD})),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text());
    assert_eq!(tested.json()["status"], false);
    assert_eq!(
        tested.json()["message"],
        "testing postgres connections is not supported"
    );
    let refused = ctx
        .send(
            Method::POST,
            "/api/v1/connections/test",
            Some("admin"),
            Some(
                json!({"connection_id": "t", "conn_type": "kafka", "host": "127.0.0.1", "port": 1,
                        "password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(refused.status, StatusCode::OK, "{}", refused.text());
    assert_eq!(refused.json()["status"], false);
    assert!(!refused.text().contains(PASSWORD));

    let deleted = ctx
        .send(
            Method::DELETE,
            "/api/v1/connections/my_api",
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    ctx.get("/api/v1/connections/my_api", "admin")
        .await
        .assert_problem(404);
    ctx.send(
        Method::DELETE,
        "/api/v1/connections/my_api",
        Some("admin"),
        None,
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn extra_secrets_are_masked_and_a_masked_extra_sent_back_keeps_them() {
    let Some(ctx) = setup("web_secrets_extra").await else {
        return;
    };
    let extra = json!({"token": PASSWORD, "headers": {"Accept": "application/json"}});
    let created = ctx
        .send(
            Method::POST,
            "/api/v1/connections",
            Some("admin"),
            Some(json!({"connection_id": "api", "conn_type": "http", "extra": extra.to_string()})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert!(!created.text().contains(PASSWORD), "{}", created.text());
    let shown = ctx.get("/api/v1/connections/api", "admin").await;
    assert!(!shown.text().contains(PASSWORD), "{}", shown.text());
    let shown_extra: serde_json::Value =
        serde_json::from_str(shown.json()["extra"].as_str().unwrap()).unwrap();
    assert_eq!(
        shown_extra,
        json!({"token": "***", "headers": {"Accept": "application/json"}})
    );

    // The edit a UI makes: the shown extra with one more header; the token stays.
    let mut edited = shown_extra.clone();
    edited["headers"]["X-Trace"] = json!("1");
    let patched = ctx
        .send(
            Method::PATCH,
            "/api/v1/connections/api?update_mask=extra",
            Some("admin"),
            Some(json!({"extra": edited.to_string()})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let stored = updraft_orchestrator::store::connections::get(&ctx.pool, &ctx.cipher, "api")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.extra_dejson().unwrap()["token"],
        json!(PASSWORD),
        "the masked token sent back kept the stored one"
    );
    assert_eq!(
        stored.extra_dejson().unwrap()["headers"]["X-Trace"],
        json!("1")
    );
}

#[tokio::test]
async fn xcom_values_and_import_errors_are_shown_with_secrets_masked() {
    let Some(ctx) = setup("web_secrets_shown").await else {
        return;
    };
    const SLACK_TOKEN: &str = "xoxb-slack-123";
    for (uri, body) in [
        (
            "/api/v1/connections",
            json!({"connection_id": "api", "conn_type": "http", "password": PASSWORD}),
        ),
        (
            "/api/v1/variables",
            json!({"key": "slack_token", "value": SLACK_TOKEN}),
        ),
    ] {
        let created = ctx.send(Method::POST, uri, Some("admin"), Some(body)).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    }
    // A task returned what it should not have: the password, the token, a sensitive key.
    ctx.run_with_output(
        "r1",
        &json!({"echo": format!("logged in with {PASSWORD}"), "auth": {"api_key": "plain-key"},
                "note": format!("{SLACK_TOKEN} seen"), "rows": 3}),
    )
    .await;
    let entry = "/api/v1/dags/web_demo/dagRuns/r1/taskInstances/extract/xcomEntries/return_value";
    let value = ctx
        .get(&format!("{entry}?deserialize=true"), "viewer")
        .await
        .json()["value"]
        .clone();
    assert_eq!(
        value,
        json!({"echo": "logged in with ***", "auth": {"api_key": "***"}, "note": "*** seen",
               "rows": 3})
    );
    let as_text = ctx.get(entry, "viewer").await.text();
    assert!(
        !as_text.contains(PASSWORD)
            && !as_text.contains(SLACK_TOKEN)
            && !as_text.contains("plain-key"),
        "{as_text}"
    );
    // The task downstream still gets the real value: only what is shown is masked.
    let stored =
        updraft_orchestrator::store::xcom::get(&ctx.pool, ti_id(&ctx).await, "return_value")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.value["auth"]["api_key"], "plain-key");

    // A DAG file that quotes the password in a line its error shows.
    std::fs::write(
        ctx.dags.path().join("leaky.yaml"),
        format!("dag_id: leaky\nschedule: \"{PASSWORD}\"\ntasks: []\n"),
    )
    .unwrap();
    ctx.sync_dags().await;
    let errors = ctx.get("/api/v1/importErrors", "viewer").await;
    let leaky = errors.json()["import_errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|error| {
            error["filename"]
                .as_str()
                .unwrap_or("")
                .ends_with("leaky.yaml")
        })
        .cloned()
        .expect("leaky.yaml has an import error");
    let trace = leaky["stack_trace"].as_str().unwrap();
    assert!(
        trace.contains("***") && !trace.contains(PASSWORD),
        "{trace}"
    );
    let one = ctx
        .get(
            &format!("/api/v1/importErrors/{}", leaky["import_error_id"]),
            "viewer",
        )
        .await;
    assert!(!one.text().contains(PASSWORD), "{}", one.text());
    let page = ctx.get("/import-errors", "viewer").await.text();
    assert!(
        page.contains("leaky.yaml") && !page.contains(PASSWORD),
        "{page}"
    );
    let raw = updraft_orchestrator::store::import_errors::all(&ctx.pool)
        .await
        .unwrap();
    assert!(
        raw.iter().any(|error| error.message.contains(PASSWORD)),
        "the test's premise: the stored error quotes the password"
    );
}

async fn ti_id(ctx: &crate::common::Ctx) -> i64 {
    updraft_orchestrator::store::task_instances::get_view(&ctx.pool, "web_demo", "r1", "extract")
        .await
        .unwrap()
        .expect("the task instance")
        .id
}

#[tokio::test]
async fn variables_crud_with_update_mask() {
    let Some(ctx) = setup("web_secrets_var").await else {
        return;
    };
    let created = ctx
        .send(
            Method::POST,
            "/api/v1/variables",
            Some("op"),
            Some(json!({"key": "region", "value": "eu-west-1", "description": "where"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert_eq!(
        created.json(),
        json!({"key": "region", "value": "eu-west-1", "description": "where"})
    );

    let list = ctx.get("/api/v1/variables", "op").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert_eq!(
        list.json(),
        json!({"variables": [{"key": "region", "description": "where"}], "total_entries": 1})
    );

    let patched = ctx
        .send(
            Method::PATCH,
            "/api/v1/variables/region?update_mask=value",
            Some("op"),
            Some(json!({"key": "region", "value": "us-east-1", "description": "ignored"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(
        patched.json(),
        json!({"key": "region", "value": "us-east-1", "description": "where"})
    );
    ctx.send(
        Method::PATCH,
        "/api/v1/variables/region?update_mask=key",
        Some("op"),
        Some(json!({"key": "region"})),
    )
    .await
    .assert_problem(400);
    ctx.send(
        Method::PATCH,
        "/api/v1/variables/missing",
        Some("op"),
        Some(json!({"value": "x"})),
    )
    .await
    .assert_problem(404);

    let one = ctx.get("/api/v1/variables/region", "admin").await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text());
    assert_eq!(one.json()["value"], "us-east-1");

    let deleted = ctx
        .send(Method::DELETE, "/api/v1/variables/region", Some("op"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    ctx.get("/api/v1/variables/region", "op")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn roles_guard_connections_and_variable_values() {
    let Some(ctx) = setup("web_secrets_roles").await else {
        return;
    };
    let connection = json!({"connection_id": "c1", "conn_type": "http", "password": PASSWORD});
    let created = ctx
        .send(
            Method::POST,
            "/api/v1/connections",
            Some("admin"),
            Some(connection.clone()),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let variable = json!({"key": "k", "value": "v"});
    let created = ctx
        .send(
            Method::POST,
            "/api/v1/variables",
            Some("admin"),
            Some(variable.clone()),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());

    for user in ["viewer", "op"] {
        ctx.get("/api/v1/connections", user)
            .await
            .assert_problem(403);
        ctx.get("/api/v1/connections/c1", user)
            .await
            .assert_problem(403);
        ctx.send(
            Method::POST,
            "/api/v1/connections",
            Some(user),
            Some(connection.clone()),
        )
        .await
        .assert_problem(403);
        ctx.send(
            Method::POST,
            "/api/v1/connections/test",
            Some(user),
            Some(connection.clone()),
        )
        .await
        .assert_problem(403);
        ctx.send(Method::DELETE, "/api/v1/connections/c1", Some(user), None)
            .await
            .assert_problem(403);
    }

    let list = ctx.get("/api/v1/variables", "viewer").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert!(!list.text().contains("\"v\""), "no values in the list");
    ctx.get("/api/v1/variables/k", "viewer")
        .await
        .assert_problem(403);
    ctx.send(
        Method::POST,
        "/api/v1/variables",
        Some("viewer"),
        Some(variable),
    )
    .await
    .assert_problem(403);
    ctx.send(Method::DELETE, "/api/v1/variables/k", Some("viewer"), None)
        .await
        .assert_problem(403);
    let value = ctx.get("/api/v1/variables/k", "op").await;
    assert_eq!(value.status, StatusCode::OK, "{}", value.text());
}

#[test]
fn the_openapi_document_describes_connections_and_variables() {
    let doc = serde_json::to_value(updraft_web::openapi()).expect("the document as JSON");
    let schemas = &doc["components"]["schemas"];
    let connection = &schemas["ConnectionJson"]["properties"];
    assert!(connection.get("password").is_none(), "{connection}");
    assert_eq!(connection["extra"]["type"], json!(["string", "null"]));
    assert_eq!(connection["port"]["type"], json!(["integer", "null"]));
    assert!(schemas["ConnectionBody"]["properties"]["password"].is_object());
    for (path, method) in [
        ("/connections", "get"),
        ("/connections", "post"),
        ("/connections/{connection_id}", "get"),
        ("/connections/{connection_id}", "patch"),
        ("/connections/{connection_id}", "delete"),
        ("/connections/test", "post"),
        ("/variables", "get"),
        ("/variables", "post"),
        ("/variables/{variable_key}", "get"),
        ("/variables/{variable_key}", "patch"),
        ("/variables/{variable_key}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
}

#[tokio::test]
async fn a_connection_named_test_is_reachable_beside_the_test_route() {
    let Some(ctx) = setup("web_secrets_test_id").await else {
        return;
    };
    let created = ctx
        .send(
            Method::POST,
            "/api/v1/connections",
            Some("admin"),
            Some(json!({"connection_id": "test", "conn_type": "http", "host": "a.example.com"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let got = ctx
        .send(Method::GET, "/api/v1/connections/test", Some("admin"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert_eq!(got.json()["host"], "a.example.com");
    let patched = ctx
        .send(
            Method::PATCH,
            "/api/v1/connections/test?update_mask=host",
            Some("admin"),
            Some(json!({"connection_id": "test", "conn_type": "http", "host": "b.example.com"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(patched.json()["host"], "b.example.com");
    let viewer = ctx
        .send(
            Method::GET,
            "/api/v1/connections/test",
            Some("viewer"),
            None,
        )
        .await;
    viewer.assert_problem(403);
    let deleted = ctx
        .send(
            Method::DELETE,
            "/api/v1/connections/test",
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    // The test itself still answers on POST.
    let tested = ctx
        .send(
            Method::POST,
            "/api/v1/connections/test",
            Some("admin"),
            Some(json!({"connection_id": "t", "conn_type": "smtp"})),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text());
    assert_eq!(tested.json()["status"], false);
}
