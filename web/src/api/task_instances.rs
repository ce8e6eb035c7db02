//! Task instances, their logs and XComs.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sqlx::PgPool;
use updraft_orchestrator::dag::TaskState;
use updraft_orchestrator::store::logs::{self, LogLine};
use updraft_orchestrator::store::task_instances::{self, TaskInstanceFilter, TaskInstanceView};
use updraft_orchestrator::store::xcom::{self, XComRow};
use updraft_secrets::Masker;

use super::models::{
    LogJson, TaskInstanceCollection, TaskInstanceJson, TaskInstanceReference,
    TaskInstanceStatePatch, XComCollection, XComEntry,
};
use super::runs::{fetch_run, mark_task_as};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiJson, ApiPath, Params};
use crate::users::Role;

/// Most lines one log response carries; the continuation token fetches the rest.
pub const LOG_PAGE_LINES: i64 = 5_000;

pub async fn fetch_ti(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> ApiResult<TaskInstanceView> {
    task_instances::get_view(pool, dag_id, run_id, task_id)
        .await?
        .ok_or_else(|| {
        AppError::not_found(format!(
            "Task instance not found: dag_id '{dag_id}', dag_run_id '{run_id}', task_id '{task_id}'"
        ))
    })
}

/// Task instances of a run (`~` for all DAGs or all runs).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
        ("limit" = Option<i64>, Query, minimum = 0), ("offset" = Option<i64>, Query, minimum = 0), ("state" = Option<Vec<String>>, Query)),
    responses((status = 200, body = TaskInstanceCollection), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_task_instances(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    params: Params,
) -> ApiResult<Json<TaskInstanceCollection>> {
    let (limit, offset) = params.page()?;
    if dag_id != "~" && run_id != "~" {
        fetch_run(&state.pool, &dag_id, &run_id).await?;
    }
    let dag_filter = (dag_id != "~").then_some(dag_id);
    let run_filter = (run_id != "~").then_some(run_id);
    // Airflow's `none` state filter means "no state yet" (null in JSON). A state we do not know
    // matches nothing: with only such states the page is empty.
    let wanted = params.all("state");
    let states: Vec<TaskState> = wanted.iter().filter_map(|s| s.parse().ok()).collect();
    let filter = TaskInstanceFilter {
        dag_id: dag_filter.as_deref(),
        run_id: run_filter.as_deref(),
        states: (!wanted.is_empty()).then_some(states.as_slice()),
    };
    let page = task_instances::page(&state.pool, &filter, limit, offset).await?;
    Ok(Json(TaskInstanceCollection {
        task_instances: page.rows.into_iter().map(TaskInstanceJson::from).collect(),
        total_entries: page.total,
    }))
}

/// Get a task instance.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskInstanceJson), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_task_instance(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<TaskInstanceJson>> {
    Ok(Json(
        fetch_ti(&state.pool, &dag_id, &run_id, &task_id)
            .await?
            .into(),
    ))
}

/// Set a task instance's state (Airflow's "mark success/failed" of one task).
#[utoipa::path(patch, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    request_body = TaskInstanceStatePatch,
    responses((status = 200, body = TaskInstanceReference), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_task_instance(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<TaskInstanceStatePatch>,
) -> ApiResult<Json<TaskInstanceReference>> {
    user.require(Role::Op)?;
    let new_state = match body.new_state.as_str() {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        other => {
            return Err(AppError::BadRequest(format!(
                "'{other}' is not one of ['success', 'failed'] - 'new_state'"
            )));
        }
    };
    let ti = fetch_ti(&state.pool, &dag_id, &run_id, &task_id).await?;
    if !body.dry_run {
        mark_task_as(&state.pool, &user, &dag_id, &run_id, &task_id, new_state).await?;
    }
    Ok(Json(TaskInstanceReference {
        task_id,
        dag_id,
        dag_run_id: run_id,
        execution_date: ti.logical_date,
    }))
}

pub fn format_line(line: &LogLine) -> String {
    format!(
        "[{}] {}",
        line.logged_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        line.line
    )
}

/// A try's log: JSON `{content, continuation_token}` for `Accept: application/json`, else text.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}",
    tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("task_try_number" = i32, Path), ("full_content" = Option<bool>, Query),
        ("token" = Option<String>, Query, pattern = "^[0-9]*$", description = "continuation token of a previous answer")),
    responses((status = 200, description = "the log lines", content(
                  (LogJson = "application/json"), (String = "text/plain"))), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
pub async fn get_log(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((dag_id, run_id, task_id, try_number)): ApiPath<(String, String, String, i32)>,
    params: Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ti = fetch_ti(&state.pool, &dag_id, &run_id, &task_id).await?;
    if try_number < 1 || try_number > ti.try_number.max(1) {
        return Err(AppError::not_found(format!(
            "Task {task_id} has no try {try_number} (its tries: 1..={})",
            ti.try_number
        )));
    }
    let after = match params.get("token") {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| AppError::BadRequest(format!("invalid continuation token `{text}`")))?,
    };
    let full = params.bool("full_content")?.unwrap_or(false);
    let limit = if full { i64::MAX } else { LOG_PAGE_LINES };
    let lines = logs::lines(&state.pool, ti.id, try_number, after, limit).await?;
    let token = lines.last().map_or(after, |line| line.id).to_string();
    let content = lines.iter().map(format_line).collect::<Vec<_>>().join("\n");
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        return Ok(Json(LogJson {
            content,
            continuation_token: Some(token),
        })
        .into_response());
    }
    let mut response = content.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// An entry as answered; its value (when asked for) with every secret and every value under a
/// sensitive key as `***`.
fn xcom_entry(
    ti: &TaskInstanceView,
    row: XComRow,
    value_masked_by: Option<&Masker>,
    deserialize: bool,
) -> XComEntry {
    let value = value_masked_by.map(|masker| {
        let masked = masker.mask_json(&row.value);
        if deserialize {
            masked
        } else {
            Value::String(serde_json::to_string(&masked).unwrap_or_default())
        }
    });
    XComEntry {
        key: row.key,
        timestamp: row.created_at,
        execution_date: ti.logical_date,
        map_index: -1,
        task_id: ti.task_id.clone(),
        dag_id: ti.dag_id.clone(),
        value,
    }
}

/// XCom entries of a task instance.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
    tag = "XCom",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("limit" = Option<i64>, Query, minimum = 0), ("offset" = Option<i64>, Query, minimum = 0)),
    responses((status = 200, body = XComCollection), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_xcom_entries(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    params: Params,
) -> ApiResult<Json<XComCollection>> {
    let (limit, offset) = params.page()?;
    let ti = fetch_ti(&state.pool, &dag_id, &run_id, &task_id).await?;
    let page = xcom::page(&state.pool, ti.id, limit, offset).await?;
    Ok(Json(XComCollection {
        xcom_entries: page
            .rows
            .into_iter()
            .map(|row| xcom_entry(&ti, row, None, false))
            .collect(),
        total_entries: page.total,
    }))
}

/// One XCom entry; `value` is JSON text unless `deserialize=true`, secrets in it as `***`.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
    tag = "XCom",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("xcom_key" = String, Path), ("deserialize" = Option<bool>, Query)),
    responses((status = 200, body = XComEntry), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_xcom_entry(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((dag_id, run_id, task_id, key)): ApiPath<(String, String, String, String)>,
    params: Params,
) -> ApiResult<Json<XComEntry>> {
    let deserialize = params.bool("deserialize")?.unwrap_or(false);
    let ti = fetch_ti(&state.pool, &dag_id, &run_id, &task_id).await?;
    let row = xcom::get(&state.pool, ti.id, &key)
        .await?
        .ok_or_else(|| AppError::not_found(format!("XCom entry not found: key '{key}'")))?;
    let masker = state.secrets_masker().await?;
    Ok(Json(xcom_entry(&ti, row, Some(&masker), deserialize)))
}
