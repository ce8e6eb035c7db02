//! `/dags/{dag_id}/dagRuns` and `/dags/{dag_id}/clearTaskInstances`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use updraft_orchestrator::dag::RunState;
use updraft_orchestrator::engine::clear::{ClearRequest, clear_task_instances, mark_run};
use updraft_orchestrator::engine::trigger::{TriggerError, TriggerRequest, trigger_run};
use updraft_orchestrator::store::StoreError;

use super::dags::fetch_dag;
use super::models::{
    ClearTaskInstancesBody, DagRunCollection, DagRunCreate, DagRunJson, DagRunStatePatch,
    RUN_COLUMNS, RunRow, TaskInstanceReference, TaskInstanceReferenceCollection,
};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiJson, ApiPath, Params};
use crate::users::Role;

pub async fn fetch_run(pool: &PgPool, dag_id: &str, run_id: &str) -> ApiResult<RunRow> {
    sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 AND r.run_id = $2"
    )))
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        AppError::not_found(format!(
            "DAGRun with DAG ID: '{dag_id}' and DagRun ID: '{run_id}' not found"
        ))
    })
}

/// `order_by` values Airflow accepts for runs, mapped to our columns.
fn run_order(order_by: Option<&str>) -> ApiResult<&'static str> {
    Ok(match order_by.unwrap_or("-execution_date") {
        "execution_date" | "logical_date" => "r.logical_date ASC, r.id",
        "-execution_date" | "-logical_date" => "r.logical_date DESC, r.id DESC",
        "start_date" => "r.start_date ASC NULLS FIRST, r.id",
        "-start_date" => "r.start_date DESC NULLS LAST, r.id DESC",
        "end_date" => "r.end_date ASC NULLS FIRST, r.id",
        "-end_date" => "r.end_date DESC NULLS LAST, r.id DESC",
        "dag_run_id" | "run_id" => "r.run_id ASC",
        "-dag_run_id" | "-run_id" => "r.run_id DESC",
        "id" => "r.id ASC",
        "-id" => "r.id DESC",
        other => {
            return Err(AppError::BadRequest(format!(
                "Ordering with '{other}' is disallowed or the attribute does not exist on the model"
            )));
        }
    })
}

const RUN_WHERE: &str = "($1::text IS NULL OR r.dag_id = $1) \
    AND (cardinality($2::text[]) = 0 OR r.state = ANY($2)) \
    AND ($3::timestamptz IS NULL OR r.logical_date >= $3) \
    AND ($4::timestamptz IS NULL OR r.logical_date <= $4) \
    AND ($5::timestamptz IS NULL OR r.start_date >= $5) \
    AND ($6::timestamptz IS NULL OR r.start_date <= $6)";

/// List runs of a DAG (`~` for every DAG).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns", tag = "DAGRun",
    params(("dag_id" = String, Path, description = "`~` for all DAGs"),
        ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query),
        ("state" = Option<Vec<String>>, Query), ("order_by" = Option<String>, Query),
        ("execution_date_gte" = Option<String>, Query), ("execution_date_lte" = Option<String>, Query),
        ("start_date_gte" = Option<String>, Query), ("start_date_lte" = Option<String>, Query)),
    responses((status = 200, body = DagRunCollection), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_dag_runs(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
    params: Params,
) -> ApiResult<Json<DagRunCollection>> {
    let (limit, offset) = params.page()?;
    let dag_filter = (dag_id != "~").then_some(dag_id.clone());
    if let Some(dag_id) = &dag_filter {
        fetch_dag(&state.pool, dag_id).await?;
    }
    let states = params.all("state");
    if let Some(bad) = states.iter().find(|s| s.parse::<RunState>().is_err()) {
        return Err(AppError::BadRequest(format!(
            "unknown DAG run state `{bad}`"
        )));
    }
    let order = run_order(params.get("order_by"))?;
    let from = params
        .date("execution_date_gte")?
        .or(params.date("logical_date_gte")?);
    let to = params
        .date("execution_date_lte")?
        .or(params.date("logical_date_lte")?);
    let (start_gte, start_lte) = (
        params.date("start_date_gte")?,
        params.date("start_date_lte")?,
    );
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM dag_run r WHERE {RUN_WHERE}"
    )))
    .bind(&dag_filter)
    .bind(&states)
    .bind(from)
    .bind(to)
    .bind(start_gte)
    .bind(start_lte)
    .fetch_one(&state.pool)
    .await?;
    let rows = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE {RUN_WHERE} ORDER BY {order} LIMIT $7 OFFSET $8"
    )))
    .bind(&dag_filter)
    .bind(&states)
    .bind(from)
    .bind(to)
    .bind(start_gte)
    .bind(start_lte)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(DagRunCollection {
        dag_runs: rows.into_iter().map(DagRunJson::from).collect(),
        total_entries: total,
    }))
}

/// Get a DAG run.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DAGRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DagRunJson), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_dag_run(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<DagRunJson>> {
    Ok(Json(fetch_run(&state.pool, &dag_id, &run_id).await?.into()))
}

/// Trigger a DAG run. 409 on a duplicate run id or logical date, 400 on invalid conf.
#[utoipa::path(post, path = "/dags/{dag_id}/dagRuns", tag = "DAGRun",
    params(("dag_id" = String, Path)),
    request_body = DagRunCreate,
    responses((status = 200, body = DagRunJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 413, body = Problem)))]
pub async fn post_dag_run(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(body): ApiJson<DagRunCreate>,
) -> ApiResult<Json<DagRunJson>> {
    user.require(Role::Op)?;
    let logical_date = match (body.logical_date, body.execution_date) {
        (Some(a), Some(b)) if a != b => {
            return Err(AppError::BadRequest(
                "logical_date and execution_date are both given and differ".into(),
            ));
        }
        (a, b) => a.or(b),
    };
    let conf = match body.conf {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(AppError::BadRequest("`conf` must be a JSON object".into())),
    };
    let request = TriggerRequest {
        run_id: body.dag_run_id,
        logical_date,
        conf,
        note: body.note,
    };
    let record = trigger(&state.pool, &dag_id, request).await?;
    Ok(Json(fetch_run(&state.pool, &dag_id, &record).await?.into()))
}

/// Triggers through the store and maps its errors to statuses; returns the run id.
pub async fn trigger(pool: &PgPool, dag_id: &str, request: TriggerRequest) -> ApiResult<String> {
    if let Some(run_id) = &request.run_id {
        check_run_id(run_id)?;
    }
    match trigger_run(pool, dag_id, request).await {
        Ok(record) => Ok(record.run_id),
        Err(TriggerError::UnknownDag(id)) => Err(AppError::not_found(format!(
            "DAG with dag_id: '{id}' not found"
        ))),
        Err(TriggerError::DuplicateRunId(run_id)) => Err(AppError::Conflict(format!(
            "DAGRun with DAG ID: '{dag_id}' and DAGRun ID: '{run_id}' already exists"
        ))),
        Err(TriggerError::DuplicateLogicalDate(date)) => Err(AppError::Conflict(format!(
            "DAGRun with DAG ID: '{dag_id}' and DAGRun logical date: '{}' already exists",
            date.to_rfc3339()
        ))),
        Err(TriggerError::InvalidConf(error)) => Err(AppError::BadRequest(error.to_string())),
        Err(TriggerError::Store(error)) => Err(store_error(error)),
    }
}

/// Airflow's run ids are at most 250 characters; NUL cannot be stored.
pub fn check_run_id(run_id: &str) -> ApiResult<()> {
    if run_id.chars().count() > 250 || run_id.contains('\0') || run_id.trim().is_empty() {
        return Err(AppError::BadRequest(
            "dag_run_id must be 1-250 characters without NUL".into(),
        ));
    }
    Ok(())
}

/// Store errors: unknown things are 404, refused state changes 400, the rest 500.
pub fn store_error(error: StoreError) -> AppError {
    match error {
        StoreError::NotFound(what) => AppError::NotFound(format!("{what} not found")),
        invalid @ StoreError::InvalidTransition { .. } => AppError::BadRequest(invalid.to_string()),
        StoreError::Database(error) => AppError::Database(error),
        other => AppError::Internal(other.to_string()),
    }
}

/// Mark a run success, failed or queued.
#[utoipa::path(patch, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DAGRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    request_body = DagRunStatePatch,
    responses((status = 200, body = DagRunJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_dag_run(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DagRunStatePatch>,
) -> ApiResult<Json<DagRunJson>> {
    user.require(Role::Op)?;
    let run_state = parse_settable_state(&body.state)?;
    fetch_run(&state.pool, &dag_id, &run_id).await?;
    mark_run(&state.pool, &dag_id, &run_id, run_state)
        .await
        .map_err(store_error)?;
    Ok(Json(fetch_run(&state.pool, &dag_id, &run_id).await?.into()))
}

pub fn parse_settable_state(text: &str) -> ApiResult<RunState> {
    match text {
        "success" | "failed" | "queued" => text
            .parse::<RunState>()
            .map_err(|_| AppError::BadRequest(format!("unknown state `{text}`"))),
        other => Err(AppError::BadRequest(format!(
            "'{other}' is not one of ['success', 'failed', 'queued'] - 'state'"
        ))),
    }
}

/// Clear task instances so the scheduler runs them again.
#[utoipa::path(post, path = "/dags/{dag_id}/clearTaskInstances", tag = "DAG",
    params(("dag_id" = String, Path)),
    request_body = ClearTaskInstancesBody,
    responses((status = 200, body = TaskInstanceReferenceCollection), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn post_clear_task_instances(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
    ApiJson(body): ApiJson<ClearTaskInstancesBody>,
) -> ApiResult<Json<TaskInstanceReferenceCollection>> {
    user.require(Role::Op)?;
    let unsupported = [
        ("only_running", body.only_running),
        ("include_upstream", body.include_upstream),
        ("include_future", body.include_future),
        ("include_past", body.include_past),
        ("include_subdags", body.include_subdags),
        ("include_parentdag", body.include_parentdag),
        ("start_date", body.start_date.is_some()),
        ("end_date", body.end_date.is_some()),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(AppError::BadRequest(format!(
            "`{name}` is not supported by Updraft"
        )));
    }
    fetch_dag(&state.pool, &dag_id).await?;
    if let Some(run_id) = &body.dag_run_id {
        fetch_run(&state.pool, &dag_id, run_id).await?;
    }
    // Airflow clears every task when `task_ids` is left out.
    let task_ids = match body.task_ids {
        Some(ids) if !ids.is_empty() => ids,
        _ => {
            sqlx::query_scalar(
                "SELECT DISTINCT task_id FROM task_instance
              WHERE dag_id = $1 AND ($2::text IS NULL OR run_id = $2)",
            )
            .bind(&dag_id)
            .bind(&body.dag_run_id)
            .fetch_all(&state.pool)
            .await?
        }
    };
    let request = ClearRequest {
        dag_id: &dag_id,
        run_id: body.dag_run_id.as_deref(),
        task_ids: &task_ids,
        include_downstream: body.include_downstream,
        only_failed: body.only_failed,
        dry_run: body.dry_run,
        reset_dag_runs: body.reset_dag_runs,
    };
    let cleared = clear_task_instances(&state.pool, &request)
        .await
        .map_err(store_error)?;
    // One query for the logical dates of the runs touched.
    let run_ids: Vec<&str> = cleared.iter().map(|task| task.run_id.as_str()).collect();
    let dates: std::collections::HashMap<String, DateTime<Utc>> = sqlx::query_as(
        "SELECT run_id, logical_date FROM dag_run WHERE dag_id = $1 AND run_id = ANY($2)",
    )
    .bind(&dag_id)
    .bind(&run_ids)
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .collect();
    Ok(Json(TaskInstanceReferenceCollection {
        task_instances: cleared
            .into_iter()
            .filter_map(|task| {
                Some(TaskInstanceReference {
                    execution_date: *dates.get(&task.run_id)?,
                    task_id: task.task_id,
                    dag_id: task.dag_id,
                    dag_run_id: task.run_id,
                })
            })
            .collect(),
    }))
}
