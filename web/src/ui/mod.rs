//! Server-rendered pages. Each page is one or two SQL queries with joins (no N+1) and paginated.

mod audit_log;
mod browse;
mod charts;
mod connections;
mod dags;
pub mod graph;
mod grid;
mod runs;
mod streams;
mod trigger;
mod variables;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{self, CurrentUser};
use crate::error::{AppError, PageError};
use crate::extract::Params;
use crate::users;

pub type PageResult = Result<Response, PageError>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dags") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/{file}", get(static_file))
        .route("/dags", get(dags::list))
        .route("/dags/{dag_id}", get(dags::page))
        .route("/dags/{dag_id}/pause", post(dags::pause))
        .route("/dags/{dag_id}/trigger", post(trigger::trigger))
        .route("/dags/{dag_id}/runs/{run_id}", get(runs::page))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(runs::clear))
        .route("/dags/{dag_id}/runs/{run_id}/mark", post(runs::mark))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(runs::log_page),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/log.json",
            get(runs::log_json),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/panel",
            get(grid::panel),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            post(grid::mark),
        )
        .route("/events", get(crate::live::events))
        .route("/import-errors", get(runs::import_errors))
        .route("/audit-log", get(audit_log::page))
        .route("/runs", get(browse::runs_page))
        .route("/task-instances", get(browse::task_instances_page))
        .route(
            "/connections",
            get(connections::list).post(connections::save),
        )
        .route("/connections/new", get(connections::new))
        .route("/connections/test", post(connections::test))
        .route("/connections/{connection_id}/edit", get(connections::edit))
        .route(
            "/connections/{connection_id}/delete",
            post(connections::delete),
        )
        .route("/variables", get(variables::list).post(variables::save))
        .route("/variables/new", get(variables::new))
        .route("/variables/{variable_key}/edit", get(variables::edit))
        .route("/variables/{variable_key}/delete", post(variables::delete))
        .route("/streams", get(streams::list))
        .route("/streams/{stream}", get(streams::page))
        .route("/streams/{stream}/replay", post(streams::replay))
        .route("/topics", get(streams::topics))
        .route("/topics/{topic}", get(streams::topic))
}

/// Every UI route as (method, path template), for the authentication test.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/static/{file}"),
    ("GET", "/dags"),
    ("GET", "/dags/{dag_id}"),
    ("POST", "/dags/{dag_id}/pause"),
    ("POST", "/dags/{dag_id}/trigger"),
    ("GET", "/dags/{dag_id}/runs/{run_id}"),
    ("POST", "/dags/{dag_id}/runs/{run_id}/clear"),
    ("POST", "/dags/{dag_id}/runs/{run_id}/mark"),
    ("GET", "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"),
    (
        "GET",
        "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/log.json",
    ),
    ("GET", "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/panel"),
    ("POST", "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark"),
    ("GET", "/events"),
    ("GET", "/import-errors"),
    ("GET", "/audit-log"),
    ("GET", "/runs"),
    ("GET", "/task-instances"),
    ("GET", "/connections"),
    ("POST", "/connections"),
    ("GET", "/connections/new"),
    ("POST", "/connections/test"),
    ("GET", "/connections/{connection_id}/edit"),
    ("POST", "/connections/{connection_id}/delete"),
    ("GET", "/variables"),
    ("POST", "/variables"),
    ("GET", "/variables/new"),
    ("GET", "/variables/{variable_key}/edit"),
    ("POST", "/variables/{variable_key}/delete"),
    ("GET", "/streams"),
    ("GET", "/streams/{stream}"),
    ("POST", "/streams/{stream}/replay"),
    ("GET", "/topics"),
    ("GET", "/topics/{topic}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
];

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes one path segment (run ids hold `:` and `+`).
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub fn fmt_date(date: Option<DateTime<Utc>>) -> String {
    date.map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

pub fn fmt_duration(seconds: Option<f64>) -> String {
    match seconds {
        None => String::new(),
        Some(s) if s < 60.0 => format!("{s:.2}s"),
        Some(s) if s < 3600.0 => format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        Some(s) => format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
    }
}

/// Where a paginated list is (`pager.html`): its page, how many there are, links to the
/// neighbours.
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub prev_href: Option<String>,
    pub next_href: Option<String>,
}

impl Pager {
    /// Page `page` of `total` rows, `page_size` a page; `href(n)` links to page `n`.
    pub fn new(page: i64, total: i64, page_size: i64, href: impl Fn(i64) -> String) -> Pager {
        let pages = ((total + page_size - 1) / page_size).max(1);
        Pager {
            page,
            pages,
            prev_href: (page > 1).then(|| href(page - 1)),
            next_href: (page < pages).then(|| href(page + 1)),
        }
    }
}

/// The banner of a list page after a form's redirect (`?saved=id`, `?deleted=id`).
pub fn saved_or_deleted(params: &Params, noun: &str) -> Option<String> {
    match (params.get("saved"), params.get("deleted")) {
        (Some(id), _) => Some(format!("Saved {noun} `{id}`.")),
        (_, Some(id)) => Some(format!("Deleted {noun} `{id}`.")),
        _ => None,
    }
}

/// Back to the list at `path` after a form, saying what happened (`saved` or `deleted`) to `id`.
pub fn back_to_list(path: &str, what: &str, id: &str) -> Response {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(what, id)
        .finish();
    Redirect::to(&format!("{path}?{query}")).into_response()
}

pub fn render(template: &impl Template) -> PageResult {
    template
        .render()
        .map(|html| Html(html).into_response())
        .map_err(|error| PageError(AppError::Internal(format!("template: {error}"))))
}

/// What the layout shows of the signed-in user.
pub struct Frame {
    pub user: String,
    pub role: String,
    pub csrf: String,
}

impl Frame {
    pub fn of(user: &CurrentUser) -> Frame {
        Frame {
            user: user.user.username.clone(),
            role: user.user.role.to_string(),
            csrf: user.csrf.clone().unwrap_or_default(),
        }
    }
}

/// A same-site path to go back to after a form; anything else becomes `fallback`.
pub fn safe_next(next: Option<&str>, fallback: &str) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            path.to_string()
        }
        _ => fallback.to_string(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    next: String,
    username: String,
    csrf: String,
}

/// Renders the login form with `status`, (re)setting the login CSRF cookie to the form's token.
fn login_form(page: LoginPage, status: StatusCode) -> PageResult {
    let cookie = auth::login_csrf_cookie(&page.csrf);
    let mut response = render(&page)?;
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn login_page(headers: HeaderMap, params: Params) -> PageResult {
    let page = LoginPage {
        error: None,
        next: safe_next(params.get("next"), "/dags"),
        username: String::new(),
        csrf: auth::login_csrf_token(&headers).unwrap_or_else(auth::random_token),
    };
    login_form(page, StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
    csrf_token: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let next = safe_next(form.next.as_deref(), "/dags");
    let expected = auth::login_csrf_token(&headers);
    if expected.is_none() || expected != form.csrf_token {
        tracing::info!(username = %form.username, "login refused: missing or wrong CSRF token");
        let page = LoginPage {
            error: Some("The login form expired. Please log in again.".into()),
            next,
            username: form.username,
            csrf: auth::random_token(),
        };
        return login_form(page, StatusCode::FORBIDDEN);
    }
    if let Some(wait) = state.login_throttle.locked_for(&form.username) {
        tracing::info!(username = %form.username, "login refused: too many failures");
        let page = LoginPage {
            error: Some(auth::too_many_failures(&form.username, wait).to_string()),
            next,
            username: form.username,
            csrf: expected.unwrap_or_else(auth::random_token),
        };
        return login_form(page, StatusCode::TOO_MANY_REQUESTS);
    }
    let user = users::authenticate(&state.pool, &form.username, &form.password)
        .await
        .map_err(|error| match error {
            users::UserError::Database(db) => AppError::Database(db),
            other => AppError::Internal(other.to_string()),
        })?;
    let Some(user) = user else {
        state.login_throttle.failed(&form.username);
        tracing::info!(username = %form.username, "failed login");
        let page = LoginPage {
            error: Some("Wrong username or password.".into()),
            next,
            username: form.username,
            csrf: expected.unwrap_or_else(auth::random_token),
        };
        return login_form(page, StatusCode::UNAUTHORIZED);
    };
    state.login_throttle.succeeded(&form.username);
    let cookie = auth::start_session(&state.pool, &user, auth::over_https(&headers)).await?;
    tracing::info!(username = %user.username, "login");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

/// A form that carries nothing but its CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf_token: String,
}

async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    let cookie = auth::end_session(&state.pool, &headers).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (
            include_str!("../../static/app.css"),
            "text/css; charset=utf-8",
        ),
        "app.js" => (
            include_str!("../../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            enc("manual__2024-01-01T00:00:00+00:00"),
            "manual__2024-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(
            escape_html("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
        assert_eq!(safe_next(Some("//evil.example"), "/dags"), "/dags");
        assert_eq!(safe_next(Some("/dags/x"), "/dags"), "/dags/x");
        assert_eq!(safe_next(Some("/dags\r\nSet-Cookie: x"), "/dags"), "/dags");
        assert_eq!(safe_next(Some("/\0"), "/dags"), "/dags");
        assert_eq!(fmt_duration(Some(75.0)), "1m 15s");
    }
}
