//! Import errors, health, version.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use updraft_orchestrator::store::import_errors::{self, ImportErrorOrder, ImportErrorRow};
use updraft_orchestrator::store::processes;
use updraft_secrets::Masker;

use super::models::{
    HealthJson, ImportErrorCollection, ImportErrorJson, SchedulerStatus, StatusJson, VersionJson,
};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiPath, Params};

/// A scheduler whose last heartbeat is older than this is unhealthy (Airflow's default threshold).
pub const SCHEDULER_HEALTH_SECONDS: i64 = 30;

impl ImportErrorJson {
    /// A DAG file's error as answered, a secret it quotes (a password pasted into the YAML) as
    /// `***`.
    fn masked(row: ImportErrorRow, masker: &Masker) -> Self {
        ImportErrorJson {
            import_error_id: row.id,
            timestamp: row.created_at,
            filename: row.fileloc,
            stack_trace: masker.mask(&row.message),
        }
    }
}

/// List import errors.
#[utoipa::path(get, path = "/importErrors", tag = "ImportError",
    params(("limit" = Option<i64>, Query, minimum = 0), ("offset" = Option<i64>, Query, minimum = 0)),
    responses((status = 200, body = ImportErrorCollection), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn get_import_errors(
    State(state): State<AppState>,
    _user: CurrentUser,
    params: Params,
) -> ApiResult<Json<ImportErrorCollection>> {
    let (limit, offset) = params.page()?;
    let page = import_errors::page(&state.pool, ImportErrorOrder::Id, limit, offset).await?;
    let masker = state.secrets_masker().await?;
    Ok(Json(ImportErrorCollection {
        import_errors: page
            .rows
            .into_iter()
            .map(|row| ImportErrorJson::masked(row, &masker))
            .collect(),
        total_entries: page.total,
    }))
}

/// Get an import error.
#[utoipa::path(get, path = "/importErrors/{import_error_id}", tag = "ImportError",
    params(("import_error_id" = i64, Path)),
    responses((status = 200, body = ImportErrorJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
pub async fn get_import_error(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ImportErrorJson>> {
    let masker = state.secrets_masker().await?;
    import_errors::get(&state.pool, id)
        .await?
        .map(|row| Json(ImportErrorJson::masked(row, &masker)))
        .ok_or_else(|| {
            AppError::not_found(format!(
                "The ImportError with import_error_id: `{id}` was not found"
            ))
        })
}

pub async fn health_of(state: &AppState) -> HealthJson {
    let (database, heartbeat) = match processes::latest_heartbeat(&state.pool).await {
        Ok(heartbeat) => ("healthy", heartbeat),
        Err(error) => {
            tracing::warn!(%error, "health check cannot reach the database");
            ("unhealthy", None)
        }
    };
    let scheduler_healthy =
        heartbeat.is_some_and(|at| (Utc::now() - at).num_seconds() < SCHEDULER_HEALTH_SECONDS);
    HealthJson {
        metadatabase: StatusJson {
            status: Some(database.into()),
        },
        scheduler: SchedulerStatus {
            status: Some(
                if scheduler_healthy {
                    "healthy"
                } else {
                    "unhealthy"
                }
                .into(),
            ),
            latest_scheduler_heartbeat: heartbeat,
        },
    }
}

/// Health of the metadata database and the schedulers (no authentication).
#[utoipa::path(get, path = "/health", tag = "Monitoring", security(()),
    responses((status = 200, body = HealthJson)))]
pub async fn get_health(State(state): State<AppState>) -> Json<HealthJson> {
    Json(health_of(&state).await)
}

/// The server's version.
#[utoipa::path(get, path = "/version", tag = "Monitoring",
    responses((status = 200, body = VersionJson), (status = 401, body = Problem)))]
pub async fn get_version(_user: CurrentUser) -> Json<VersionJson> {
    Json(VersionJson {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_version: option_env!("UPDRAFT_GIT_VERSION").map(str::to_string),
    })
}
