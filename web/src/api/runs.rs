//! `/dags/{dag_id}/dagRuns` and `/dags/{dag_id}/clearTaskInstances`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use sqlx::PgPool;
use updraft_orchestrator::dag::{RunState, TaskState};
use updraft_orchestrator::engine::clear::{
    ClearRequest, ClearedTask, clear_task_instances, mark_run, mark_task,
};
use updraft_orchestrator::engine::trigger::{TriggerError, TriggerRequest, trigger_run};
use updraft_orchestrator::store::runs::{self, DagRunRow, RunFilter, RunOrder};
use updraft_orchestrator::store::{StoreError, task_instances};

use super::dags::fetch_dag;
use super::models::{
    ClearTaskInstancesBody, DagRunCollection, DagRunCreate, DagRunJson, DagRunStatePatch,
    TaskInstanceReference, TaskInstanceReferenceCollection,
};
use crate::AppState;
use crate::audit::{self, Target};
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiJson, ApiPath, Params};
use crate::users::Role;

pub async fn fetch_run(pool: &PgPool, dag_id: &str, run_id: &str) -> ApiResult<DagRunRow> {
    runs::get(pool, dag_id, run_id).await?.ok_or_else(|| {
        AppError::not_found(format!(
            "DAGRun with DAG ID: '{dag_id}' and DagRun ID: '{run_id}' not found"
        ))
    })
}

/// `order_by` values Airflow accepts for runs, mapped to the store's orders.
fn run_order(order_by: Option<&str>) -> ApiResult<RunOrder> {
    Ok(match order_by.unwrap_or("-execution_date") {
        "execution_date" | "logical_date" => RunOrder::LogicalDate,
        "-execution_date" | "-logical_date" => RunOrder::LogicalDateDesc,
        "start_date" => RunOrder::StartDate,
        "-start_date" => RunOrder::StartDateDesc,
        "end_date" => RunOrder::EndDate,
        "-end_date" => RunOrder::EndDateDesc,
        "dag_run_id" | "run_id" => RunOrder::RunId,
        "-dag_run_id" | "-run_id" => RunOrder::RunIdDesc,
        "id" => RunOrder::Id,
        "-id" => RunOrder::IdDesc,
        other => {
            return Err(AppError::BadRequest(format!(
                "Ordering with '{other}' is disallowed or the attribute does not exist on the model"
            )));
        }
    })
}

/// List runs of a DAG (`~` for every DAG).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns", tag = "DAGRun",
    params(("dag_id" = String, Path, description = "`~` for all DAGs"),
        ("limit" = Option<i64>, Query, minimum = 0), ("offset" = Option<i64>, Query, minimum = 0),
        ("state" = Option<Vec<String>>, Query), ("order_by" = Option<String>, Query),
        ("execution_date_gte" = Option<chrono::DateTime<chrono::Utc>>, Query),
        ("execution_date_lte" = Option<chrono::DateTime<chrono::Utc>>, Query),
        ("start_date_gte" = Option<chrono::DateTime<chrono::Utc>>, Query),
        ("start_date_lte" = Option<chrono::DateTime<chrono::Utc>>, Query)),
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
    let mut states = Vec::new();
    for text in params.all("state") {
        let state = text
            .parse::<RunState>()
            .map_err(|_| AppError::BadRequest(format!("unknown DAG run state `{text}`")))?;
        states.push(state);
    }
    let order = run_order(params.get("order_by"))?;
    let filter = RunFilter {
        dag_id: dag_filter.as_deref(),
        states: (!states.is_empty()).then_some(states.as_slice()),
        logical_date_gte: params
            .date("execution_date_gte")?
            .or(params.date("logical_date_gte")?),
        logical_date_lte: params
            .date("execution_date_lte")?
            .or(params.date("logical_date_lte")?),
        start_date_gte: params.date("start_date_gte")?,
        start_date_lte: params.date("start_date_lte")?,
    };
    let page = runs::page(&state.pool, &filter, order, limit, offset).await?;
    Ok(Json(DagRunCollection {
        dag_runs: page.rows.into_iter().map(DagRunJson::from).collect(),
        total_entries: page.total,
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
    let record = trigger(&state.pool, &user, &dag_id, request).await?;
    Ok(Json(fetch_run(&state.pool, &dag_id, &record).await?.into()))
}

/// Triggers through the store, records who did, and maps its errors to statuses; returns the
/// run id.
pub async fn trigger(
    pool: &PgPool,
    user: &CurrentUser,
    dag_id: &str,
    request: TriggerRequest,
) -> ApiResult<String> {
    match trigger_run(pool, dag_id, request).await {
        Ok(record) => {
            let target = Target::run(dag_id, &record.run_id);
            audit::record(pool, user, "trigger", target, None).await;
            Ok(record.run_id)
        }
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
        Err(
            invalid @ (TriggerError::InvalidConf(_)
            | TriggerError::ConfNumberOutOfRange(_)
            | TriggerError::InvalidRunId(_)),
        ) => Err(AppError::BadRequest(invalid.to_string())),
        Err(TriggerError::Store(error)) => Err(store_error(error)),
    }
}

/// Clears task instances and records who did (a dry run changes nothing and is not recorded).
pub async fn clear_as(
    pool: &PgPool,
    user: &CurrentUser,
    request: &ClearRequest<'_>,
) -> ApiResult<Vec<ClearedTask>> {
    let cleared = clear_task_instances(pool, request)
        .await
        .map_err(store_error)?;
    if !request.dry_run {
        let target = Target {
            dag_id: Some(request.dag_id),
            run_id: request.run_id,
            task_id: None,
        };
        let extra = json!({
            "task_ids": request.task_ids,
            "include_upstream": request.include_upstream,
            "include_downstream": request.include_downstream,
            "only_failed": request.only_failed,
            "reset_dag_runs": request.reset_dag_runs,
            "cleared": cleared.len(),
        });
        audit::record(pool, user, "clear", target, Some(extra)).await;
    }
    Ok(cleared)
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
    mark_run_as(&state.pool, &user, &dag_id, &run_id, run_state).await?;
    Ok(Json(fetch_run(&state.pool, &dag_id, &run_id).await?.into()))
}

/// Marks a run (Airflow's "mark success/failed", or queued to run it again) and records who did.
pub async fn mark_run_as(
    pool: &PgPool,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    run_state: RunState,
) -> ApiResult<()> {
    mark_run(pool, dag_id, run_id, run_state)
        .await
        .map_err(store_error)?;
    let event = format!("mark_run_{run_state}");
    audit::record(pool, user, &event, Target::run(dag_id, run_id), None).await;
    Ok(())
}

/// Marks one task instance `success` or `failed` for `user`, and says so in the audit log.
pub async fn mark_task_as(
    pool: &PgPool,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    state: TaskState,
) -> ApiResult<TaskState> {
    let from = mark_task(pool, dag_id, run_id, task_id, state)
        .await
        .map_err(store_error)?;
    let target = Target {
        dag_id: Some(dag_id),
        run_id: Some(run_id),
        task_id: Some(task_id),
    };
    let extra = json!({"from": from});
    audit::record(
        pool,
        user,
        &format!("mark_task_{state}"),
        target,
        Some(extra),
    )
    .await;
    Ok(from)
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
        _ => task_instances::task_ids(&state.pool, &dag_id, body.dag_run_id.as_deref()).await?,
    };
    let request = ClearRequest {
        dag_id: &dag_id,
        run_id: body.dag_run_id.as_deref(),
        task_ids: &task_ids,
        include_upstream: body.include_upstream,
        include_downstream: body.include_downstream,
        only_failed: body.only_failed,
        dry_run: body.dry_run,
        reset_dag_runs: body.reset_dag_runs,
    };
    let cleared = clear_as(&state.pool, &user, &request).await?;
    // One query for the logical dates of the runs touched.
    let run_ids: Vec<String> = cleared.iter().map(|task| task.run_id.clone()).collect();
    let dates = runs::logical_dates(&state.pool, &dag_id, &run_ids).await?;
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
