//! `/dags`: list, get, details, pause.

use axum::Json;
use axum::extract::State;
use sqlx::PgPool;

use super::models::{
    DAG_COLUMNS, DagCollection, DagDetailJson, DagJson, DagPatch, DagRow, airflow_params,
};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiJson, ApiPath, Params, like_pattern};
use crate::users::Role;

pub async fn fetch_dag(pool: &PgPool, dag_id: &str) -> ApiResult<DagRow> {
    let sql = format!("SELECT {DAG_COLUMNS} FROM dag d WHERE d.dag_id = $1");
    sqlx::query_as::<_, DagRow>(sqlx::AssertSqlSafe(sql))
        .bind(dag_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| AppError::not_found(format!("DAG with dag_id: '{dag_id}' not found")))
}

/// Filters shared by the API list and the UI list.
pub struct DagFilter {
    pub paused: Option<bool>,
    pub only_active: bool,
    pub pattern: Option<String>,
    pub tags: Vec<String>,
}

const DAG_WHERE: &str = "($1::bool IS NULL OR d.is_paused = $1) AND (NOT $2 OR d.is_active) \
    AND ($3::text IS NULL OR d.dag_id ILIKE $3) AND (cardinality($4::text[]) = 0 OR d.tags && $4)";

pub async fn list_dag_rows(
    pool: &PgPool,
    filter: &DagFilter,
    limit: i64,
    offset: i64,
) -> ApiResult<(Vec<DagRow>, i64)> {
    let pattern = filter
        .pattern
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(like_pattern);
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM dag d WHERE {DAG_WHERE}"
    )))
    .bind(filter.paused)
    .bind(filter.only_active)
    .bind(&pattern)
    .bind(&filter.tags)
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query_as::<_, DagRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {DAG_COLUMNS} FROM dag d WHERE {DAG_WHERE} ORDER BY d.dag_id LIMIT $5 OFFSET $6"
    )))
    .bind(filter.paused)
    .bind(filter.only_active)
    .bind(&pattern)
    .bind(&filter.tags)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok((rows, total))
}

/// List DAGs.
#[utoipa::path(get, path = "/dags", tag = "DAG",
    params(
        ("limit" = Option<i64>, Query, description = "page size, at most 100"),
        ("offset" = Option<i64>, Query),
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
    let filter = DagFilter {
        paused: params.bool("paused")?,
        only_active: params.bool("only_active")?.unwrap_or(true),
        pattern: params.get("dag_id_pattern").map(str::to_string),
        tags: params.all("tags"),
    };
    let (rows, total) = list_dag_rows(&state.pool, &filter, limit, offset).await?;
    Ok(Json(DagCollection {
        dags: rows.iter().map(DagJson::from).collect(),
        total_entries: total,
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
    set_paused(&state.pool, &dag_id, body.is_paused).await?;
    let row = fetch_dag(&state.pool, &dag_id).await?;
    Ok(Json(DagJson::from(&row)))
}

/// Pauses or unpauses through the store (which notifies schedulers); 404 when unknown.
pub async fn set_paused(pool: &PgPool, dag_id: &str, paused: bool) -> ApiResult<()> {
    let found = updraft_orchestrator::store::dags::set_paused(pool, dag_id, paused)
        .await
        .map_err(super::runs::store_error)?;
    if found {
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
    let snapshot: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT v.snapshot FROM dag d JOIN dag_version v ON v.id = d.latest_version_id
          WHERE d.dag_id = $1",
    )
    .bind(&dag_id)
    .fetch_optional(&state.pool)
    .await?;
    let parsed = snapshot
        .as_ref()
        .and_then(|value| updraft_orchestrator::dag::Dag::from_snapshot(value).ok());
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
