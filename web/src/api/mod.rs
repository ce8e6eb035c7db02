//! The Airflow 2 compatible REST API under `/api/v1`, with its OpenAPI document built from the
//! handlers' annotations (so the document and the router cannot drift apart).

pub mod connections;
pub mod dags;
pub mod event_logs;
pub mod misc;
pub mod models;
pub mod runs;
pub mod task_instances;
pub mod variables;

use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, Server};
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
        .routes(routes!(
            task_instances::get_task_instance,
            task_instances::patch_task_instance
        ))
        .routes(routes!(task_instances::get_log))
        .routes(routes!(task_instances::get_xcom_entries))
        .routes(routes!(task_instances::get_xcom_entry))
        .routes(routes!(event_logs::get_event_logs))
        .routes(routes!(event_logs::get_event_log))
        .routes(routes!(misc::get_import_errors))
        .routes(routes!(misc::get_import_error))
        .routes(routes!(misc::get_health))
        .routes(routes!(misc::get_version))
        .routes(routes!(
            connections::get_connections,
            connections::post_connection
        ))
        .routes(routes!(
            connections::get_connection,
            connections::patch_connection,
            connections::delete_connection
        ))
        .routes(routes!(connections::test_connection))
        .routes(routes!(variables::get_variables, variables::post_variable))
        .routes(routes!(
            variables::get_variable,
            variables::patch_variable,
            variables::delete_variable
        ))
        .split_for_parts();
    let router = router.route("/connections/test", connections::connection_named_test());
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
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            document_errors(operation);
        }
    }
    (router, openapi)
}

/// The content type of every error body.
const PROBLEM: &str = "application/problem+json";

/// What every operation may answer besides its own responses, said once here rather than in
/// each annotation: errors are `application/problem+json`; a malformed parameter gets `400`, a
/// body that is not JSON `415`, a user locked after failed logins `429`.
fn document_errors(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_problem = response.content.get("application/json").is_some_and(|content| {
            matches!(&content.schema, Some(RefOr::Ref(schema)) if schema.ref_location.ends_with("/Problem"))
        });
        if is_problem && let Some(content) = response.content.shift_remove("application/json") {
            response.content.insert(PROBLEM.into(), content);
        }
    }
    let problem = |description: &str| {
        let mut response = Response::new(description);
        let schema = Ref::from_schema_name("Problem");
        response
            .content
            .insert(PROBLEM.into(), Content::new(Some(schema)));
        RefOr::T(response)
    };
    let responses = &mut operation.responses.responses;
    if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        responses
            .entry("400".into())
            .or_insert_with(|| problem("a parameter is malformed"));
    }
    if operation.request_body.is_some() {
        responses
            .entry("415".into())
            .or_insert_with(|| problem("the body is not `Content-Type: application/json`"));
    }
    let is_public = operation.security.as_ref().is_some_and(|requirements| {
        requirements.iter().all(|requirement| {
            serde_json::to_value(requirement).is_ok_and(|v| v == serde_json::json!({}))
        })
    });
    if !is_public {
        responses
            .entry("429".into())
            .or_insert_with(|| problem("the user is locked for a while after failed logins"));
    }
}
