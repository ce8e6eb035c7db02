//! Authentication: no route but the public ones answers without credentials; sessions, CSRF,
//! roles on UI forms; the OpenAPI document matches the router.

use crate::common::{Ctx, basic, csrf_of, form, login, page, setup};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;
use updraft_orchestrator::store::{event_log, import_errors, runs, sessions, users};
use updraft_web::auth::sha256_hex;

const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/health"),
    ("GET", "/api/v1/health"),
    ("GET", "/static/{file}"),
];

/// Every route of the router: the API's from its OpenAPI document, the UI's from `ui::ROUTES`.
fn all_routes() -> Vec<(String, String)> {
    let openapi = updraft_web::openapi();
    let mut routes = vec![("GET".to_string(), "/api/v1/openapi.json".to_string())];
    for (path, item) in &openapi.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PATCH", item.patch.is_some()),
            ("PUT", item.put.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, present) in methods {
            if present {
                routes.push((method.to_string(), format!("/api/v1{path}")));
            }
        }
    }
    for (method, path) in updraft_web::ui::ROUTES {
        routes.push((method.to_string(), path.to_string()));
    }
    routes
}

fn concrete(path: &str, import_error_id: i64, event_log_id: i64) -> String {
    path.replace("{dag_id}", "web_demo")
        .replace("{dag_run_id}", "r1")
        .replace("{run_id}", "r1")
        .replace("{task_id}", "extract")
        .replace("{task_try_number}", "1")
        .replace("{xcom_key}", "return_value")
        .replace("{import_error_id}", &import_error_id.to_string())
        .replace("{event_log_id}", &event_log_id.to_string())
        .replace("{file}", "app.css")
        .replace("{connection_id}", "web_conn")
        .replace("{variable_key}", "web_var")
}

async fn import_error_id(ctx: &Ctx) -> i64 {
    let errors = import_errors::all(&ctx.pool).await.unwrap();
    errors.first().expect("an import error").id
}

#[tokio::test]
async fn no_route_but_public_ones_answers_without_authentication() {
    let Some(ctx) = setup("web_auth_routes").await else {
        return;
    };
    ctx.run_with_tis("r1").await;
    let error_id = import_error_id(&ctx).await;
    let connection = serde_json::json!({"connection_id": "web_conn", "conn_type": "http"});
    let variable = serde_json::json!({"key": "web_var", "value": "v"});
    for (uri, body) in [
        ("/api/v1/connections", connection),
        ("/api/v1/variables", variable),
    ] {
        let created = ctx.send(Method::POST, uri, Some("admin"), Some(body)).await;
        assert_eq!(created.status, StatusCode::OK, "{uri}: {}", created.text());
    }
    // Creating them was recorded in the audit log.
    let every = event_log::EventFilter::default();
    let events = event_log::page(&ctx.pool, &every, 1, 0).await.unwrap();
    let event_log_id = events.rows.first().expect("an audit event").id;
    let mut routes = all_routes();
    assert!(routes.len() >= 30, "{routes:?}");
    // DELETEs last: each removes what other routes' GETs read.
    routes.sort_by_key(|(method, _)| method == "DELETE");
    for (method, template) in &routes {
        let uri = concrete(template, error_id, event_log_id);
        let method: Method = method.parse().unwrap();
        let public = PUBLIC
            .iter()
            .any(|(m, p)| *m == method.as_str() && p == template);
        let anonymous = ctx.send(method.clone(), &uri, None, None).await;
        if public {
            assert_ne!(anonymous.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        } else if uri.starts_with("/api/") || uri == "/metrics" {
            anonymous.assert_problem(401);
        } else {
            assert_eq!(
                anonymous.status,
                StatusCode::SEE_OTHER,
                "{method} {uri}: {}",
                anonymous.text()
            );
            let location = anonymous.headers[header::LOCATION].to_str().unwrap();
            assert!(
                location.starts_with("/login?next="),
                "{method} {uri} → {location}"
            );
        }
        // With a user every route exists: GETs answer 200, writes refuse only the empty body
        // (a DELETE needs none: it answers 204).
        if uri == "/events" {
            // An endless stream: its head only.
            let request = Request::get(&uri)
                .header(header::AUTHORIZATION, basic("admin"))
                .body(Body::empty())
                .unwrap();
            let response = ctx.app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            continue;
        }
        let authed = ctx.send(method.clone(), &uri, Some("admin"), None).await;
        if method == Method::GET && uri == "/" {
            assert_eq!(authed.status, StatusCode::SEE_OTHER);
        } else if method == Method::DELETE && uri.starts_with("/api/") {
            assert_eq!(
                authed.status,
                StatusCode::NO_CONTENT,
                "{method} {uri}: {}",
                authed.text()
            );
        } else if method == Method::GET
            && (template.starts_with("/streams/") || template.starts_with("/topics/"))
        {
            // A stream's or topic's page exists while a stream worker serves it: here none
            // answers (503), or one without that stream or topic does (404).
            assert!(
                [StatusCode::SERVICE_UNAVAILABLE, StatusCode::NOT_FOUND].contains(&authed.status),
                "{method} {uri}: {} {}",
                authed.status,
                authed.text()
            );
        } else if method == Method::GET {
            assert_eq!(
                authed.status,
                StatusCode::OK,
                "{method} {uri}: {}",
                authed.text()
            );
        } else {
            assert!(
                ![
                    StatusCode::NOT_FOUND,
                    StatusCode::METHOD_NOT_ALLOWED,
                    StatusCode::UNAUTHORIZED
                ]
                .contains(&authed.status)
                    && authed.status.is_client_error()
                    || authed.status.is_redirection(),
                "{method} {uri}: {} {}",
                authed.status,
                authed.text()
            );
        }
    }
    // Unknown paths are not public either.
    for uri in [
        "/nothing",
        "/api/v1/nothing",
        "/static/../Cargo.toml",
        "/api/v1/dags/x/../../health",
    ] {
        let reply = ctx.send(Method::GET, uri, None, None).await;
        assert!(
            reply.status == StatusCode::UNAUTHORIZED
                || reply.status == StatusCode::SEE_OTHER
                || reply.status == StatusCode::NOT_FOUND,
            "{uri}: {}",
            reply.status
        );
        assert_ne!(reply.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let Some(ctx) = setup("web_auth_openapi").await else {
        return;
    };
    let reply = ctx.get("/api/v1/openapi.json", "viewer").await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for expected in [
        "/dags",
        "/dags/{dag_id}",
        "/dags/{dag_id}/details",
        "/dags/{dag_id}/dagRuns",
        "/dags/{dag_id}/dagRuns/{dag_run_id}",
        "/dags/{dag_id}/clearTaskInstances",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        "/importErrors",
        "/health",
        "/version",
        "/connections",
        "/connections/{connection_id}",
        "/connections/test",
        "/variables",
        "/variables/{variable_key}",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert!(doc["paths"]["/dags/{dag_id}"]["patch"].is_object());
    assert!(doc["paths"]["/dags/{dag_id}/dagRuns"]["post"].is_object());
    assert!(doc["components"]["schemas"]["DagRunJson"].is_object());
    // The served document is the one built from the handlers.
    let built = serde_json::to_value(updraft_web::openapi()).unwrap();
    assert_eq!(built["paths"], doc["paths"]);
}

#[tokio::test]
async fn sessions_csrf_and_roles_on_forms() {
    let Some(ctx) = setup("web_auth_session").await else {
        return;
    };
    let login_page = ctx.send(Method::GET, "/login", None, None).await;
    assert_eq!(login_page.status, StatusCode::OK);
    let (csrf_cookie, csrf) = ctx.login_csrf().await;
    let wrong = form(
        &ctx,
        &csrf_cookie,
        "/login",
        format!("username=op&password=nope&csrf_token={csrf}"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let no_session = |reply: &crate::common::Reply| {
        reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|value| !value.to_str().unwrap_or("").starts_with("updraft_session"))
    };
    assert!(no_session(&wrong));
    // Login CSRF: the right password without the form's token (a cross-site post) is refused.
    let password = crate::common::password("op");
    for (cookie, body) in [
        ("", format!("username=op&password={password}")),
        (
            csrf_cookie.as_str(),
            format!("username=op&password={password}"),
        ),
        (
            csrf_cookie.as_str(),
            format!("username=op&password={password}&csrf_token=forged"),
        ),
    ] {
        let forged = form(&ctx, cookie, "/login", body).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(no_session(&forged));
    }

    let cookie = login(&ctx, "op").await;
    let token = cookie.split_once('=').unwrap().1.to_string();
    // One session, found by the token's hash and not by the token: only the hash is stored.
    assert_eq!(sessions::count(&ctx.pool).await.unwrap(), 1);
    let by_hash = sessions::user_of(&ctx.pool, &sha256_hex(&token)).await;
    assert_eq!(
        by_hash.unwrap().map(|user| user.username),
        Some("op".into())
    );
    let by_token = sessions::user_of(&ctx.pool, &token).await.unwrap();
    assert!(by_token.is_none(), "only the hash is stored");

    assert_eq!(page(&ctx, &cookie, "/dags").await.status, StatusCode::OK);
    // The API takes the cookie for reads, never for writes.
    assert_eq!(
        page(&ctx, &cookie, "/api/v1/dags").await.status,
        StatusCode::OK
    );
    let api_write = ctx
        .raw(
            Request::patch("/api/v1/dags/web_demo")
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"is_paused": false}"#))
                .unwrap(),
        )
        .await;
    api_write.assert_problem(401);

    // CSRF: missing or wrong → refused, state unchanged; right → done.
    let missing = form(
        &ctx,
        &cookie,
        "/dags/web_demo/pause",
        "is_paused=false".into(),
    )
    .await;
    assert!(missing.status.is_client_error(), "{}", missing.status);
    let wrong = form(
        &ctx,
        &cookie,
        "/dags/web_demo/pause",
        "csrf_token=forged&is_paused=false".into(),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(ctx.is_paused("web_demo").await);
    let csrf = csrf_of(&ctx, &cookie).await;
    let done = form(
        &ctx,
        &cookie,
        "/dags/web_demo/pause",
        format!("csrf_token={csrf}&is_paused=false&next=%2Fdags"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
    assert!(!ctx.is_paused("web_demo").await);

    // A viewer's valid session and token still cannot operate.
    let viewer = login(&ctx, "viewer").await;
    let viewer_csrf = csrf_of(&ctx, &viewer).await;
    let refused = form(
        &ctx,
        &viewer,
        "/dags/web_demo/pause",
        format!("csrf_token={viewer_csrf}&is_paused=true"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!ctx.is_paused("web_demo").await);
    let refused = form(
        &ctx,
        &viewer,
        "/dags/web_demo/trigger",
        format!("csrf_token={viewer_csrf}&conf=%7B%7D"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(ctx.run_count().await, 0);

    // Trigger through the form with a conf.
    let conf: String = form_urlencoded::byte_serialize(br#"{"times": 4}"#).collect();
    let triggered = form(
        &ctx,
        &cookie,
        "/dags/web_demo/trigger",
        format!("csrf_token={csrf}&conf={conf}&run_id=ui1"),
    )
    .await;
    assert_eq!(
        triggered.status,
        StatusCode::SEE_OTHER,
        "{}",
        triggered.text()
    );
    assert_eq!(
        triggered.headers[header::LOCATION],
        "/dags/web_demo/runs/ui1"
    );
    let stored = runs::get(&ctx.pool, "web_demo", "ui1").await.unwrap();
    let stored_conf = stored.expect("the triggered run").conf;
    assert_eq!(stored_conf, serde_json::json!({"times": 4}));
    let bad = form(
        &ctx,
        &cookie,
        "/dags/web_demo/trigger",
        format!("csrf_token={csrf}&conf=%5B1%5D"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Logout with the token ends the session.
    let out = form(&ctx, &cookie, "/logout", format!("csrf_token={csrf}")).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page(&ctx, &cookie, "/dags").await.status,
        StatusCode::SEE_OTHER
    );
    let left = sessions::count(&ctx.pool).await.unwrap();
    assert_eq!(left, 1, "only the viewer's session is left");
    let viewer_token = viewer.split_once('=').unwrap().1;
    let kept = sessions::user_of(&ctx.pool, &sha256_hex(viewer_token)).await;
    assert_eq!(
        kept.unwrap().map(|user| user.username),
        Some("viewer".into())
    );
}

#[tokio::test]
async fn ensure_admin_creates_once() {
    let Some(ctx) = setup("web_auth_admin").await else {
        return;
    };
    // Users exist already: nothing happens.
    assert_eq!(
        updraft_web::users::ensure_admin(&ctx.pool).await.unwrap(),
        None
    );
    // A database without users: the admin is created.
    let empty = testkit::TestDatabase::create("web_auth_no_users").await;
    let pool = sqlx::PgPool::connect(empty.url()).await.expect("connect");
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    assert_eq!(users::count(&pool).await.unwrap(), 0);
    let generated = updraft_web::users::ensure_admin(&pool).await.unwrap();
    assert_eq!(users::count(&pool).await.unwrap(), 1);
    // UPDRAFT_ADMIN_PASSWORD is not set in tests: a password is generated and returned once.
    if std::env::var("UPDRAFT_ADMIN_PASSWORD").is_err() {
        let password = generated.expect("generated password");
        let user = updraft_web::users::authenticate(&pool, "admin", &password)
            .await
            .unwrap();
        assert_eq!(user.unwrap().role, updraft_web::users::Role::Admin);
    }
    assert_eq!(updraft_web::users::ensure_admin(&pool).await.unwrap(), None);
    let duplicate =
        updraft_web::users::create_user(&pool, "admin", updraft_web::users::Role::Op, "longenough")
            .await;
    assert!(matches!(
        duplicate,
        Err(updraft_web::users::UserError::Duplicate(_))
    ));
}

fn basic_with(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn get_dags_as(ctx: &Ctx, authorization: &str) -> crate::common::Reply {
    ctx.raw(
        Request::get("/api/v1/dags")
            .header(header::AUTHORIZATION, authorization)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_name_without_checking_passwords() {
    let Some(ctx) = setup("web_throttle").await else {
        return;
    };
    for attempt in 1..=5 {
        let reply = get_dags_as(&ctx, &basic_with("viewer", "guess")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // Locked now: even the right password is refused, with how long to wait.
    let right = crate::common::basic("viewer");
    let locked = get_dags_as(&ctx, &right).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text()
    );
    assert!(
        locked
            .text()
            .contains("too many failed logins for `viewer`"),
        "{}",
        locked.text()
    );
    // The login form says the same for that name; other users are not affected.
    let (csrf_cookie, csrf) = ctx.login_csrf().await;
    let body = format!("username=viewer&password=guess&next=%2Fdags&csrf_token={csrf}");
    let refused = form(&ctx, &csrf_cookie, "/login", body).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().contains("too many failed logins"));
    let other = get_dags_as(&ctx, &crate::common::basic("admin")).await;
    assert_eq!(other.status, StatusCode::OK);
}

#[tokio::test]
async fn responses_carry_security_headers_and_https_sessions_secure_cookies() {
    let Some(ctx) = setup("web_headers").await else {
        return;
    };
    for reply in [
        ctx.send(Method::GET, "/login", None, None).await,
        ctx.send(Method::GET, "/api/v1/dags", Some("viewer"), None)
            .await,
        ctx.send(Method::GET, "/api/v1/dags", None, None).await,
    ] {
        assert_eq!(reply.headers["x-frame-options"], "DENY");
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    let (csrf_cookie, csrf) = ctx.login_csrf().await;
    let body = format!(
        "username=viewer&password={}&next=%2Fdags&csrf_token={csrf}",
        crate::common::password("viewer")
    );
    let login = ctx
        .raw(
            Request::post("/login")
                .header(header::COOKIE, csrf_cookie)
                .header("x-forwarded-proto", "https")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    let cookie = login.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

/// Once wrong (#14): every time was `format: date` (a type alias named `Date` reads so), none
/// was nullable, and paging had no minimum.
#[test]
fn openapi_times_are_nullable_date_times_and_paging_has_minimums() {
    let doc = serde_json::to_value(updraft_web::openapi()).expect("the document as JSON");
    let schemas = &doc["components"]["schemas"];
    let end_date = &schemas["DagRunJson"]["properties"]["end_date"];
    assert_eq!(end_date["format"], "date-time", "{end_date}");
    assert_eq!(end_date["type"], serde_json::json!(["string", "null"]));
    let text = doc.to_string();
    assert!(
        !text.contains(r#""format":"date""#),
        "no plain dates remain"
    );
    let parameters = doc["paths"]["/dags"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    for name in ["limit", "offset"] {
        let parameter = parameters
            .iter()
            .find(|parameter| parameter["name"] == name)
            .expect(name);
        assert_eq!(parameter["schema"]["minimum"], 0, "{name}");
    }
    let errors = &doc["paths"]["/dags/{dag_id}/dagRuns"]["post"]["responses"];
    for status in ["400", "401", "415", "429"] {
        assert!(
            errors[status]["content"]["application/problem+json"].is_object(),
            "{status}: {}",
            errors[status]
        );
    }
}
