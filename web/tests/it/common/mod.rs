//! Shared setup: a database of the test's own with migrations, three users, DAGs loaded by the
//! processor, and a router driven with `oneshot`.

pub mod server;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::PgPool;
use testkit::TestDatabase;
use tower::ServiceExt;
use updraft_web::users::{Role, create_user};
use updraft_web::{AppState, app};

pub const DEMO_DAG: &str = r#"dag_id: web_demo
description: A DAG for the web tests
schedule: "@daily"
start_date: 2024-01-01
tags: [web, demo]
params:
  greeting: hello
  times:
    default: 2
    type: integer
default_args:
  owner: web-team
tasks:
  - id: extract
    operator: empty
  - id: transform
    operator: empty
    upstream: [extract]
  - id: load
    operator: empty
    upstream: [transform, extract]
"#;

pub const OTHER_DAG: &str = r#"dag_id: web_other
schedule: null
tags: [other]
tasks:
  - id: only
    operator: empty
"#;

pub const BROKEN_DAG: &str = "dag_id: broken\ntasks: [\n";

pub struct Ctx {
    pub pool: PgPool,
    pub app: Router,
    /// The DAGs folder the app reads, kept as long as the context.
    _dags: tempfile::TempDir,
    /// Dropped last (fields drop in order), after the pool.
    _database: TestDatabase,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// Asserts an Airflow problem document with this status.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.text()
        );
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert!(problem["type"].is_string() && problem["title"].is_string());
        assert!(problem["detail"].is_string());
    }
}

pub fn password(role: &str) -> String {
    format!("password-{role}")
}

pub fn basic(user: &str) -> String {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password(user)));
    format!("Basic {token}")
}

/// `None` when PostgreSQL is absent outside CI (the test is skipped).
pub async fn setup(prefix: &str) -> Option<Ctx> {
    if !testkit::require_postgres() {
        return None;
    }
    let database = TestDatabase::create(prefix).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(database.url())
        .await
        .expect("connect");
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    for (name, role) in [
        ("admin", Role::Admin),
        ("op", Role::Op),
        ("viewer", Role::Viewer),
    ] {
        create_user(&pool, name, role, &password(name))
            .await
            .expect("user");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web_demo.yaml"), DEMO_DAG).expect("write");
    std::fs::write(dir.path().join("web_other.yaml"), OTHER_DAG).expect("write");
    std::fs::write(dir.path().join("broken.yaml"), BROKEN_DAG).expect("write");
    let processor = updraft_orchestrator::processor::DagProcessor::new(
        pool.clone(),
        dir.path().to_path_buf(),
        Arc::new(updraft_operators::builtin_registry()),
    );
    processor.sync_once().await.expect("sync");
    let app = app(AppState::new(pool.clone(), dir.path().to_path_buf()));
    Some(Ctx {
        pool,
        app,
        _dags: dir,
        _database: database,
    })
}

impl Ctx {
    /// Sends a request; `user` = Some(name) adds Basic auth for that user.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(user) = user {
            builder = builder.header(header::AUTHORIZATION, basic(user));
        }
        let body = match body {
            Some(value) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&value).expect("json"))
            }
            None => Body::empty(),
        };
        self.raw(builder.body(body).expect("request")).await
    }

    /// GET /login as a browser would: the login CSRF cookie (`name=value`) and the form's token.
    pub async fn login_csrf(&self) -> (String, String) {
        let reply = self.send(Method::GET, "/login", None, None).await;
        let set = reply.headers[axum::http::header::SET_COOKIE]
            .to_str()
            .expect("cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().expect("cookie pair").to_string();
        let html = String::from_utf8_lossy(&reply.body).to_string();
        let field = "name=\"csrf_token\" value=\"";
        let start = html.find(field).expect("csrf field on the login form") + field.len();
        let token = html[start..start + html[start..].find('"').expect("end")].to_string();
        assert_eq!(cookie.split_once('=').map(|(_, v)| v), Some(token.as_str()));
        (cookie, token)
    }

    pub async fn raw(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str, user: &str) -> Reply {
        self.send(Method::GET, uri, Some(user), None).await
    }

    /// Triggers a run through the store and gives it task instances (what the scheduler would do),
    /// with a log line and an XCom on `extract`.
    pub async fn run_with_tis(&self, run_id: &str) -> i64 {
        let record = updraft_orchestrator::engine::trigger::trigger_run(
            &self.pool,
            "web_demo",
            updraft_orchestrator::engine::trigger::TriggerRequest {
                run_id: Some(run_id.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("trigger");
        for (task, state, try_number) in [
            ("extract", "success", 1),
            ("transform", "failed", 1),
            ("load", "upstream_failed", 0),
        ] {
            sqlx::query(
                "INSERT INTO task_instance (dag_run_id, dag_id, run_id, task_id, operator, state,
                     try_number, start_date, end_date, duration, rendered_config)
                 VALUES ($1, 'web_demo', $2, $3, 'empty', $4, $5, now(), now(), 0.5, '{\"x\": 1}')
                 ON CONFLICT (dag_run_id, task_id) DO UPDATE SET state = EXCLUDED.state,
                     try_number = EXCLUDED.try_number",
            )
            .bind(record.id)
            .bind(run_id)
            .bind(task)
            .bind(state)
            .bind(try_number)
            .execute(&self.pool)
            .await
            .expect("ti");
        }
        let extract: i64 = sqlx::query_scalar(
            "SELECT id FROM task_instance WHERE dag_run_id = $1 AND task_id = 'extract'",
        )
        .bind(record.id)
        .fetch_one(&self.pool)
        .await
        .expect("ti id");
        sqlx::query("INSERT INTO task_log (task_instance_id, try_number, line) VALUES ($1, 1, 'hello from extract'), ($1, 1, 'second line')")
            .bind(extract)
            .execute(&self.pool)
            .await
            .expect("log");
        sqlx::query("INSERT INTO xcom (task_instance_id, key, value) VALUES ($1, 'return_value', '{\"rows\": 3}')")
            .bind(extract)
            .execute(&self.pool)
            .await
            .expect("xcom");
        record.id
    }

    pub async fn is_paused(&self, dag_id: &str) -> bool {
        sqlx::query_scalar("SELECT is_paused FROM dag WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_one(&self.pool)
            .await
            .expect("dag")
    }

    pub async fn run_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM dag_run")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}
