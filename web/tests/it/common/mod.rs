//! Shared setup: a database of the test's own with migrations, three users, DAGs loaded by the
//! processor, and a router driven with `oneshot`.

pub mod server;
pub mod stream_worker;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::TestDatabase;
use tower::ServiceExt;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::advance::{decide_run_fully, start_queued_runs};
use updraft_orchestrator::engine::clear::mark_run;
use updraft_orchestrator::engine::trigger::{TriggerRequest, trigger_run};
use updraft_orchestrator::store::task_instances::{self, TryEnd};
use updraft_orchestrator::store::{DagCache, dags, logs, runs};
use updraft_secrets::Cipher;
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
    /// The key the app encrypts secrets with.
    pub cipher: Cipher,
    pub app: Router,
    /// The DAGs folder the app reads, kept as long as the context.
    pub dags: tempfile::TempDir,
    /// Dropped last (fields drop in order), after the pool.
    database: TestDatabase,
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
    let key = Cipher::generate_key();
    let cipher = Cipher::from_keys(&key).expect("a generated key");
    let app =
        app(AppState::new(pool.clone(), dir.path().to_path_buf()).with_cipher(cipher.clone()));
    Some(Ctx {
        pool,
        cipher,
        app,
        dags: dir,
        database,
    })
}

impl Ctx {
    /// Serves the app again, its Streams pages reading the stream workers at `urls`.
    pub fn read_stream_workers(&mut self, urls: Vec<String>) {
        self.app = app(
            AppState::new(self.pool.clone(), self.dags.path().to_path_buf())
                .with_cipher(self.cipher.clone())
                .with_stream_workers(urls),
        );
    }

    /// The test's database (for outages).
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }

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

    /// A run of `web_demo` taken through the engine as the scheduler and an executor would:
    /// `extract` succeeds (two log lines, an XCom), `transform` fails, `load` is
    /// upstream_failed; then the run is marked queued (a user's mark), so it shows as unfinished.
    /// Returns the run's id.
    pub async fn run_with_tis(&self, run_id: &str) -> i64 {
        self.run_with_output(run_id, &json!({"rows": 3})).await
    }

    /// As `run_with_tis`, `extract` returning `output` (its XCom).
    pub async fn run_with_output(&self, run_id: &str, output: &Value) -> i64 {
        let pool = &self.pool;
        let request = TriggerRequest {
            run_id: Some(run_id.to_string()),
            ..Default::default()
        };
        let run = trigger_run(pool, "web_demo", request)
            .await
            .expect("trigger");
        // A paused DAG's runs wait: unpause it while its run starts, as a user would.
        let paused = self.is_paused("web_demo").await;
        if paused {
            dags::set_paused(pool, "web_demo", false)
                .await
                .expect("unpause");
        }
        let cache = DagCache::new();
        let started = start_queued_runs(pool, &cache, "web_demo")
            .await
            .expect("start");
        assert_eq!(started, vec![run.id], "the run started, and only it");
        if paused {
            dags::set_paused(pool, "web_demo", true)
                .await
                .expect("pause");
        }
        let lines = ["hello from extract", "second line"];
        self.one_try("extract", TaskState::Success, &lines, Some(output))
            .await;
        decide_run_fully(pool, &cache, "web_demo", run.id)
            .await
            .expect("decide");
        self.one_try("transform", TaskState::Failed, &[], None)
            .await;
        let ended = decide_run_fully(pool, &cache, "web_demo", run.id)
            .await
            .expect("decide");
        assert_eq!(ended, Some(RunState::Failed), "load is upstream_failed");
        mark_run(pool, "web_demo", run_id, RunState::Queued)
            .await
            .expect("mark queued")
            .expect("the run");
        run.id
    }

    /// Claims the queued task instance (it must be `task_id`'s), logs `lines` and ends its try
    /// in `state` with `output` as its XCom, as an executor does; returns the try's number.
    pub async fn one_try(
        &self,
        task_id: &str,
        state: TaskState,
        lines: &[&str],
        output: Option<&Value>,
    ) -> i32 {
        let owner = "web-tests";
        let claimed = task_instances::claim(&self.pool, owner, 1)
            .await
            .expect("claim");
        let [claimed] = claimed.as_slice() else {
            panic!("one queued task instance to claim: {claimed:?}");
        };
        assert_eq!(claimed.task_id, task_id);
        let lines: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
        logs::append(
            &self.pool,
            &vec![claimed.id; lines.len()],
            &vec![claimed.try_number; lines.len()],
            &lines,
        )
        .await
        .expect("log");
        let end = TryEnd {
            task_instance_id: claimed.id,
            state,
            rendered_config: Some(json!({"x": 1})),
            next_retry_at: None,
            output: output.cloned(),
            read_back: Vec::new(),
            decided_downstream: None,
        };
        let ended = task_instances::end_tries(&self.pool, owner, &[end])
            .await
            .expect("end the try");
        assert!(ended[0].is_some(), "the try was still ours");
        claimed.try_number
    }

    /// Reads the DAGs folder again, as the processor does after a file changes.
    pub async fn sync_dags(&self) {
        updraft_orchestrator::processor::DagProcessor::new(
            self.pool.clone(),
            self.dags.path().to_path_buf(),
            Arc::new(updraft_operators::builtin_registry()),
        )
        .sync_once()
        .await
        .expect("sync");
    }

    pub async fn is_paused(&self, dag_id: &str) -> bool {
        let dag = dags::get_view(&self.pool, dag_id).await.expect("dag");
        dag.expect("the DAG exists").is_paused
    }

    pub async fn run_count(&self) -> i64 {
        let by_state = runs::count_by_state(&self.pool).await.expect("count");
        by_state.iter().map(|states| states.count).sum()
    }
}

fn cookie_of(reply: &Reply) -> String {
    let set = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

/// Logs `user` in through the form; the session cookie (`name=value`).
pub async fn login(ctx: &Ctx, user: &str) -> String {
    let (csrf_cookie, csrf) = ctx.login_csrf().await;
    let body = format!(
        "username={user}&password={}&next=%2Fdags&csrf_token={csrf}",
        password(user)
    );
    let reply = ctx
        .raw(
            Request::post("/login")
                .header(header::COOKIE, csrf_cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.headers[header::LOCATION], "/dags");
    cookie_of(&reply)
}

/// Posts a URL-encoded form with the session cookie.
pub async fn form(ctx: &Ctx, cookie: &str, uri: &str, body: String) -> Reply {
    ctx.raw(
        Request::post(uri)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// Gets a page with the session cookie.
pub async fn page(ctx: &Ctx, cookie: &str, uri: &str) -> Reply {
    ctx.raw(
        Request::get(uri)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// The CSRF token of `cookie`'s session, read from a page's form.
pub async fn csrf_of(ctx: &Ctx, cookie: &str) -> String {
    let html = page(ctx, cookie, "/dags").await.text();
    let start = html
        .find("name=\"csrf_token\" value=\"")
        .expect("csrf field")
        + 25;
    html[start..start + html[start..].find('"').unwrap()].to_string()
}
