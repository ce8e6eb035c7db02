//! The Airflow 2 compatible REST API under `/api/v1`, with its OpenAPI document built from the
//! handlers' annotations (so the document and the router cannot drift apart).

pub mod dags;
pub mod misc;
pub mod models;
pub mod runs;
pub mod task_instances;

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, Server};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// The API router (paths relative to `/api/v1`) and its OpenAPI document.
pub fn router() -> (Router<AppState>, OpenApi) {
    let (router, mut openapi) = OpenApiRouter::<AppState>::new()
        .routes(routes!(dags::get_dags))
        .routes(routes!(dags::get_dag, dags::patch_dag))
        .routes(routes!(dags::get_dag_details))
        .routes(routes!(runs::get_dag_runs, runs::post_dag_run))
        .routes(routes!(runs::get_dag_run, runs::patch_dag_run))
        .routes(routes!(runs::post_clear_task_instances))
        .routes(routes!(task_instances::get_task_instances))
        .routes(routes!(task_instances::get_task_instance))
        .routes(routes!(task_instances::get_log))
        .routes(routes!(task_instances::get_xcom_entries))
        .routes(routes!(task_instances::get_xcom_entry))
        .routes(routes!(misc::get_import_errors))
        .routes(routes!(misc::get_import_error))
        .routes(routes!(misc::get_health))
        .routes(routes!(misc::get_version))
        .split_for_parts();
    openapi.info.title = "Updraft REST API (Airflow 2 compatible)".into();
    openapi.info.version = env!("CARGO_PKG_VERSION").into();
    openapi.servers = Some(vec![Server::new("/api/v1")]);
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "Basic",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
    );
    openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "Basic",
        Vec::<String>::new(),
    )]);
    (router, openapi)
}
