//! `/dags`: list, get, details, pause.

use axum::Json;
use axum::extract::State;
use sqlx::PgPool;
use updraft_orchestrator::store::dags::{self, DagFilter, DagView};
use updraft_orchestrator::store::versions;

use super::models::{DagCollection, DagDetailJson, DagJson, DagPatch, airflow_params};
use crate::AppState;
use crate::audit::{self, Target};
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiJson, ApiPath, Params};
use crate::users::Role;

pub async fn fetch_dag(pool: &PgPool, dag_id: &str) -> ApiResult<DagView> {
    dags::get_view(pool, dag_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("DAG with dag_id: '{dag_id}' not found")))
}

/// List DAGs.
#[utoipa::path(get, path = "/dags", tag = "DAG",
    params(
        ("limit" = Option<i64>, Query, minimum = 0, description = "page size, at most 100"),
        ("offset" = Option<i64>, Query, minimum = 0),
        ("paused" = Option<bool>, Query),
        ("only_active" = Option<bool>, Query, description = "default true"),
        ("dag_id_pattern" = Option<String>, Query, description = "substring, case-insensitive"),
        ("tags" = Option<Vec<String>>, Query, description = "repeat for several; any matches"),
    ),
    responses((status = 200, body = DagCollection), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn get_dags(
    State(state): State<AppState>,
    _user: CurrentUser,
    params: Params,
) -> ApiResult<Json<DagCollection>> {
    let (limit, offset) = params.page()?;
    let tags = params.all("tags");
    let filter = DagFilter {
        paused: params.bool("paused")?,
        only_active: params.bool("only_active")?.unwrap_or(true),
        dag_id_contains: params.get("dag_id_pattern"),
        tags: &tags,
    };
    let page = dags::page(&state.pool, &filter, limit, offset).await?;
    Ok(Json(DagCollection {
        dags: page.rows.iter().map(DagJson::from).collect(),
        total_entries: page.total,
    }))
}

/// Get a DAG.
#[utoipa::path(get, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagJson), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_dag(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
) -> ApiResult<Json<DagJson>> {
    let row = fetch_dag(&state.pool, &dag_id).await?;
    Ok(Json(DagJson::from(&row)))
}

/// Pause or unpause a DAG (`{"is_paused": bool}`; `update_mask=is_paused` optional).
#[utoipa::path(patch, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path), ("update_mask" = Option<Vec<String>>, Query)),
    request_body = DagPatch,
    responses((status = 200, body = DagJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_dag(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
    params: Params,
    ApiJson(body): ApiJson<DagPatch>,
) -> ApiResult<Json<DagJson>> {
    user.require(Role::Op)?;
    if let Some(field) = params
        .all("update_mask")
        .into_iter()
        .find(|f| f != "is_paused")
    {
        return Err(AppError::BadRequest(format!(
            "only `is_paused` can be updated, update_mask names `{field}`"
        )));
    }
    set_paused(&state.pool, &user, &dag_id, body.is_paused).await?;
    let row = fetch_dag(&state.pool, &dag_id).await?;
    Ok(Json(DagJson::from(&row)))
}

/// Pauses or unpauses through the store (which notifies schedulers) and records who did;
/// 404 when unknown.
pub async fn set_paused(
    pool: &PgPool,
    user: &CurrentUser,
    dag_id: &str,
    paused: bool,
) -> ApiResult<()> {
    let found = dags::set_paused(pool, dag_id, paused)
        .await
        .map_err(super::runs::store_error)?;
    if found {
        let event = if paused { "pause" } else { "unpause" };
        audit::record(pool, user, event, Target::dag(dag_id), None).await;
        Ok(())
    } else {
        Err(AppError::not_found(format!(
            "DAG with dag_id: '{dag_id}' not found"
        )))
    }
}

/// The DAG with details from its latest parsed version.
#[utoipa::path(get, path = "/dags/{dag_id}/details", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagDetailJson), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_dag_details(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
) -> ApiResult<Json<DagDetailJson>> {
    let row = fetch_dag(&state.pool, &dag_id).await?;
    let parsed = versions::latest_with_source(&state.pool, &dag_id)
        .await?
        .and_then(|version| version.dag);
    Ok(Json(DagDetailJson {
        timezone: row.timezone.clone(),
        catchup: parsed.as_ref().is_some_and(|dag| dag.catchup),
        orientation: "LR".into(),
        concurrency: row.max_active_tasks,
        start_date: parsed.as_ref().and_then(|dag| dag.start_date),
        end_date: parsed.as_ref().and_then(|dag| dag.end_date),
        dag_run_timeout: None,
        doc_md: None,
        params: parsed
            .as_ref()
            .map(airflow_params)
            .unwrap_or_else(|| serde_json::json!({})),
        is_paused_upon_creation: parsed.as_ref().map(|dag| dag.is_paused_upon_creation),
        last_parsed: Some(row.last_parsed_at),
        template_search_path: None,
        render_template_as_native_obj: false,
        dataset_expression: None,
        dag: DagJson::from(&row),
    }))
}
