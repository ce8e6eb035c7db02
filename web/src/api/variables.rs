//! `/variables`: Airflow's Variables. Anyone may list the keys; reading a value or writing
//! takes op or admin.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use updraft_orchestrator::store::variables::{self, Variable};
use utoipa::ToSchema;

use super::connections::secret_error;
use crate::AppState;
use crate::audit;
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiJson, ApiPath, Params};
use crate::users::Role;

/// Longest key accepted (Airflow's `ID_LEN`).
const KEY_MAX_LEN: usize = 250;

/// A variable in a list: no value.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariableCollectionItem {
    pub key: String,
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VariableCollection {
    pub variables: Vec<VariableCollectionItem>,
    pub total_entries: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VariableJson {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
}

impl From<Variable> for VariableJson {
    fn from(variable: Variable) -> Self {
        VariableJson {
            key: variable.key,
            value: variable.value,
            description: variable.description,
        }
    }
}

/// A variable to create (or replace).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableBody {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// Fields to change; with `update_mask` only those named, else every one given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariablePatch {
    /// Must be the key in the path when given.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

fn not_found(key: &str) -> AppError {
    AppError::not_found(format!("Variable not found: `{key}`"))
}

pub fn check_key(key: &str) -> ApiResult<()> {
    let len = key.chars().count();
    if len == 0 || len > KEY_MAX_LEN {
        return Err(AppError::BadRequest(format!(
            "`key` must be 1 to {KEY_MAX_LEN} characters long"
        )));
    }
    Ok(())
}

/// List variables (keys and descriptions, not values).
#[utoipa::path(get, path = "/variables", tag = "Variable",
    params(
        ("limit" = Option<i64>, Query, minimum = 0, description = "page size, at most 100"),
        ("offset" = Option<i64>, Query, minimum = 0),
    ),
    responses((status = 200, body = VariableCollection), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 500, body = Problem)))]
pub async fn get_variables(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Params,
) -> ApiResult<Json<VariableCollection>> {
    user.require(Role::Viewer)?;
    let (limit, offset) = params.page()?;
    let page = variables::page(&state.pool, &state.cipher, limit, offset)
        .await
        .map_err(secret_error)?;
    Ok(Json(VariableCollection {
        variables: page
            .rows
            .into_iter()
            .map(|variable| VariableCollectionItem {
                key: variable.key,
                description: variable.description,
            })
            .collect(),
        total_entries: page.total,
    }))
}

/// Get a variable with its value.
#[utoipa::path(get, path = "/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path)),
    responses((status = 200, body = VariableJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 500, body = Problem)))]
pub async fn get_variable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Json<VariableJson>> {
    user.require(Role::Op)?;
    let variable = variables::get(&state.pool, &state.cipher, &key)
        .await
        .map_err(secret_error)?
        .ok_or_else(|| not_found(&key))?;
    Ok(Json(variable.into()))
}

/// Create a variable (or replace the one with that key).
#[utoipa::path(post, path = "/variables", tag = "Variable",
    request_body = VariableBody,
    responses((status = 200, body = VariableJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 413, body = Problem), (status = 500, body = Problem)))]
pub async fn post_variable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<VariableBody>,
) -> ApiResult<Json<VariableJson>> {
    user.require(Role::Op)?;
    check_key(&body.key)?;
    let variable = Variable {
        key: body.key,
        value: body.value,
        description: body.description,
    };
    variables::set(&state.pool, &state.cipher, &variable)
        .await
        .map_err(secret_error)?;
    audit::variable(&state.pool, &user, "variable_set", &variable.key).await;
    Ok(Json(variable.into()))
}

/// Update a variable: the fields `update_mask` names (`value`, `description`), else every one
/// given.
#[utoipa::path(patch, path = "/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query, description = "`value`, `description`, comma-separated")),
    request_body = VariablePatch,
    responses((status = 200, body = VariableJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem),
              (status = 500, body = Problem)))]
pub async fn patch_variable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(key): ApiPath<String>,
    params: Params,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Json<VariableJson>> {
    user.require(Role::Op)?;
    let patch: VariablePatch = serde_json::from_value(Value::Object(body.clone()))
        .map_err(|error| AppError::BadRequest(format!("invalid JSON body: {error}")))?;
    if patch.key.as_ref().is_some_and(|given| *given != key) {
        return Err(AppError::BadRequest(
            "Invalid post body: key from request body doesn't match uri parameter".into(),
        ));
    }
    let fields: Vec<String> = if params.get("update_mask").is_some() {
        let mask = params.all("update_mask");
        if let Some(field) = mask
            .iter()
            .find(|field| !matches!(field.as_str(), "value" | "description"))
        {
            return Err(AppError::BadRequest(format!(
                "'{field}' is unknown or cannot be updated."
            )));
        }
        if let Some(field) = mask.iter().find(|f| !body.contains_key(f.as_str())) {
            return Err(AppError::BadRequest(format!(
                "update_mask names '{field}' but the body does not give it"
            )));
        }
        mask
    } else {
        ["value", "description"]
            .into_iter()
            .filter(|field| body.contains_key(*field))
            .map(str::to_string)
            .collect()
    };
    let mut variable = variables::get(&state.pool, &state.cipher, &key)
        .await
        .map_err(secret_error)?
        .ok_or_else(|| not_found(&key))?;
    for field in &fields {
        match field.as_str() {
            "value" => {
                variable.value = patch
                    .value
                    .clone()
                    .ok_or_else(|| AppError::BadRequest("`value` cannot be null".into()))?
            }
            "description" => variable.description = patch.description.clone(),
            _ => {}
        }
    }
    variables::set(&state.pool, &state.cipher, &variable)
        .await
        .map_err(secret_error)?;
    audit::variable(&state.pool, &user, "variable_set", &variable.key).await;
    Ok(Json(variable.into()))
}

/// Delete a variable.
#[utoipa::path(delete, path = "/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_variable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<StatusCode> {
    user.require(Role::Op)?;
    let found = variables::delete(&state.pool, &key)
        .await
        .map_err(secret_error)?;
    if found {
        audit::variable(&state.pool, &user, "variable_delete", &key).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&key))
    }
}
