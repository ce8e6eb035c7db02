//! `/connections`: Airflow's Connections (admin only). A password is written, never read back:
//! no answer carries it.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use updraft_orchestrator::store::connections::{self, SecretStoreError};
use updraft_secrets::{CipherError, Connection};
use utoipa::ToSchema;

use crate::AppState;
use crate::audit;
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiJson, ApiPath, Params};
use crate::users::Role;

/// How long `POST /connections/test` waits for the other side.
const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Store errors: a duplicate id is 409, no key 400, a secret no key opens 500 (said), the
/// database 500, what the store refuses (too large, a bad key) 400.
pub fn secret_error(error: SecretStoreError) -> AppError {
    match error {
        duplicate @ SecretStoreError::DuplicateConnection(_) => {
            AppError::Conflict(duplicate.to_string())
        }
        no_key @ SecretStoreError::Cipher {
            source: CipherError::NoKey,
            ..
        } => AppError::BadRequest(no_key.to_string()),
        cipher @ SecretStoreError::Cipher { .. } => AppError::ServerError(cipher.to_string()),
        SecretStoreError::Database(error) => AppError::Database(error),
        // What the store refuses (too large, a bad key) is the request's fault.
        refused => AppError::BadRequest(refused.to_string()),
    }
}

/// A connection in a list: no password, no extra.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionCollectionItem {
    pub connection_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub login: Option<String>,
    pub schema: Option<String>,
    pub port: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionCollection {
    pub connections: Vec<ConnectionCollectionItem>,
    pub total_entries: i64,
}

/// A connection as answered: never its password; `extra` with values under sensitive keys as
/// `***`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionJson {
    pub connection_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub login: Option<String>,
    pub schema: Option<String>,
    pub port: Option<i32>,
    /// A JSON object as text.
    pub extra: Option<String>,
}

impl From<&Connection> for ConnectionCollectionItem {
    fn from(connection: &Connection) -> Self {
        ConnectionCollectionItem {
            connection_id: connection.conn_id.clone(),
            conn_type: connection.conn_type.clone(),
            description: connection.description.clone(),
            host: connection.host.clone(),
            login: connection.login.clone(),
            schema: connection.schema.clone(),
            port: connection.port.map(i32::from),
        }
    }
}

impl From<&Connection> for ConnectionJson {
    fn from(connection: &Connection) -> Self {
        ConnectionJson {
            connection_id: connection.conn_id.clone(),
            conn_type: connection.conn_type.clone(),
            description: connection.description.clone(),
            host: connection.host.clone(),
            login: connection.login.clone(),
            schema: connection.schema.clone(),
            port: connection.port.map(i32::from),
            extra: connection.masked_extra(),
        }
    }
}

/// A connection to create or test; `password` is write-only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    pub connection_id: String,
    pub conn_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 65535)]
    pub port: Option<i64>,
    #[serde(default)]
    pub password: Option<String>,
    /// A JSON object as text.
    #[serde(default)]
    pub extra: Option<String>,
}

/// Fields to change; with `update_mask` only those named, else every one given. A password
/// left out is kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    /// Must be the id in the path when given.
    #[serde(default)]
    pub connection_id: Option<String>,
    #[serde(default)]
    pub conn_type: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 65535)]
    pub port: Option<i64>,
    #[serde(default)]
    pub password: Option<String>,
    /// A JSON object as text; `***` under a sensitive key keeps the stored value.
    #[serde(default)]
    pub extra: Option<String>,
}

/// `POST /connections/test`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionTest {
    pub status: bool,
    pub message: String,
}

/// The fields PATCH may change.
const PATCHABLE: &[&str] = &[
    "conn_type",
    "description",
    "host",
    "login",
    "schema",
    "port",
    "password",
    "extra",
];

pub fn port(port: Option<i64>) -> ApiResult<Option<u16>> {
    port.map(|port| {
        u16::try_from(port).map_err(|_| {
            AppError::BadRequest(format!("`port` must be from 0 to 65535, got {port}"))
        })
    })
    .transpose()
}

/// What a stored connection must be: a valid id, a known type, an extra that is an object.
pub fn validate(connection: &Connection) -> ApiResult<()> {
    Connection::validate_conn_id(&connection.conn_id)
        .map_err(|error| AppError::BadRequest(format!("`connection_id`: {error}")))?;
    connection
        .check_conn_type()
        .map_err(|error| AppError::BadRequest(format!("`conn_type`: {error}")))?;
    connection
        .extra_dejson()
        .map_err(|error| AppError::BadRequest(error.to_string()))?;
    Ok(())
}

impl ConnectionBody {
    fn into_connection(self) -> ApiResult<Connection> {
        Ok(Connection {
            port: port(self.port)?,
            conn_id: self.connection_id,
            conn_type: self.conn_type,
            description: self.description,
            host: self.host,
            login: self.login,
            password: self.password,
            schema: self.schema,
            extra: self.extra,
        })
    }
}

async fn fetch(state: &AppState, connection_id: &str) -> ApiResult<Connection> {
    connections::get(&state.pool, &state.cipher, connection_id)
        .await
        .map_err(secret_error)?
        .ok_or_else(|| {
            AppError::not_found(format!(
                "The Connection with connection_id: `{connection_id}` was not found"
            ))
        })
}

/// A text sort key of a connection's field, for `order_by`.
fn order_key(connection: &Connection, field: &str) -> Option<(Option<String>, Option<u16>)> {
    let text = |value: &Option<String>| (value.clone(), None);
    Some(match field {
        "connection_id" | "conn_id" => (Some(connection.conn_id.clone()), None),
        "conn_type" => (Some(connection.conn_type.clone()), None),
        "description" => text(&connection.description),
        "host" => text(&connection.host),
        "login" => text(&connection.login),
        "schema" => text(&connection.schema),
        "port" => (None, connection.port),
        _ => return None,
    })
}

/// List connections (by `connection_id`, or `order_by` a field, `-` first for descending).
#[utoipa::path(get, path = "/connections", tag = "Connection",
    params(
        ("limit" = Option<i64>, Query, minimum = 0, description = "page size, at most 100"),
        ("offset" = Option<i64>, Query, minimum = 0),
        ("order_by" = Option<String>, Query, description = "a field, `-` before it for descending"),
    ),
    responses((status = 200, body = ConnectionCollection), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 500, body = Problem)))]
pub async fn get_connections(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Params,
) -> ApiResult<Json<ConnectionCollection>> {
    user.require(Role::Admin)?;
    let (limit, offset) = params.page()?;
    let order_by = params.get("order_by").unwrap_or("connection_id");
    let (descending, field) = match order_by.strip_prefix('-') {
        Some(field) => (true, field),
        None => (false, order_by),
    };
    let probe = Connection::default();
    if order_key(&probe, field).is_none() {
        return Err(AppError::BadRequest(format!(
            "Ordering with '{order_by}' is disallowed or the attribute does not exist on the model"
        )));
    }
    let (rows, total) = if !descending && matches!(field, "connection_id" | "conn_id") {
        let page = connections::page(&state.pool, &state.cipher, limit, offset)
            .await
            .map_err(secret_error)?;
        (page.rows, page.total)
    } else {
        let mut every = connections::all(&state.pool, &state.cipher)
            .await
            .map_err(secret_error)?;
        every.sort_by(|a, b| {
            let order = order_key(a, field)
                .cmp(&order_key(b, field))
                .then_with(|| a.conn_id.cmp(&b.conn_id));
            if descending { order.reverse() } else { order }
        });
        let total = i64::try_from(every.len()).unwrap_or(i64::MAX);
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        (every.into_iter().skip(skip).take(take).collect(), total)
    };
    Ok(Json(ConnectionCollection {
        connections: rows.iter().map(ConnectionCollectionItem::from).collect(),
        total_entries: total,
    }))
}

/// Get a connection (without its password).
#[utoipa::path(get, path = "/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path)),
    responses((status = 200, body = ConnectionJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 500, body = Problem)))]
pub async fn get_connection(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(connection_id): ApiPath<String>,
) -> ApiResult<Json<ConnectionJson>> {
    user.require(Role::Admin)?;
    let connection = fetch(&state, &connection_id).await?;
    Ok(Json(ConnectionJson::from(&connection)))
}

/// Create a connection. 409 when the id is taken.
#[utoipa::path(post, path = "/connections", tag = "Connection",
    request_body = ConnectionBody,
    responses((status = 200, body = ConnectionJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
              (status = 500, body = Problem)))]
pub async fn post_connection(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<ConnectionBody>,
) -> ApiResult<Json<ConnectionJson>> {
    user.require(Role::Admin)?;
    let connection = body.into_connection()?;
    validate(&connection)?;
    connections::insert(&state.pool, &state.cipher, &connection)
        .await
        .map_err(secret_error)?;
    audit::connection(&state.pool, &user, "connection_create", &connection.conn_id).await;
    Ok(Json(ConnectionJson::from(&connection)))
}

/// Update a connection: the fields `update_mask` names, else every field given.
#[utoipa::path(patch, path = "/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query, description = "the fields to update, comma-separated")),
    request_body = ConnectionPatch,
    responses((status = 200, body = ConnectionJson), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem),
              (status = 500, body = Problem)))]
pub async fn patch_connection(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(connection_id): ApiPath<String>,
    params: Params,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Json<ConnectionJson>> {
    user.require(Role::Admin)?;
    let patch: ConnectionPatch = serde_json::from_value(Value::Object(body.clone()))
        .map_err(|error| AppError::BadRequest(format!("invalid JSON body: {error}")))?;
    if let Some(id) = &patch.connection_id
        && *id != connection_id
    {
        return Err(AppError::BadRequest(
            "The connection_id in the body does not match the connection_id in the path".into(),
        ));
    }
    let mask = params.all("update_mask");
    let fields: Vec<String> = if params.get("update_mask").is_some() {
        if let Some(field) = mask.iter().find(|f| !PATCHABLE.contains(&f.as_str())) {
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
        PATCHABLE
            .iter()
            .filter(|field| body.contains_key(**field))
            .map(|field| field.to_string())
            .collect()
    };
    let mut connection = fetch(&state, &connection_id).await?;
    for field in &fields {
        match field.as_str() {
            "conn_type" => {
                connection.conn_type = patch
                    .conn_type
                    .clone()
                    .ok_or_else(|| AppError::BadRequest("`conn_type` cannot be null".into()))?
            }
            "description" => connection.description = patch.description.clone(),
            "host" => connection.host = patch.host.clone(),
            "login" => connection.login = patch.login.clone(),
            "schema" => connection.schema = patch.schema.clone(),
            "port" => connection.port = port(patch.port)?,
            "password" => connection.password = patch.password.clone(),
            "extra" => connection
                .merge_masked_extra(patch.extra.clone())
                .map_err(|error| AppError::BadRequest(format!("stored {error}")))?,
            _ => {}
        }
    }
    validate(&connection)?;
    let found = connections::update(&state.pool, &state.cipher, &connection)
        .await
        .map_err(secret_error)?;
    if !found {
        return Err(AppError::not_found(format!(
            "The Connection with connection_id: `{connection_id}` was not found"
        )));
    }
    audit::connection(&state.pool, &user, "connection_update", &connection.conn_id).await;
    Ok(Json(ConnectionJson::from(&connection)))
}

/// Delete a connection.
#[utoipa::path(delete, path = "/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_connection(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(connection_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    user.require(Role::Admin)?;
    let found = connections::delete(&state.pool, &connection_id)
        .await
        .map_err(secret_error)?;
    if found {
        audit::connection(&state.pool, &user, "connection_delete", &connection_id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!(
            "The Connection with connection_id: `{connection_id}` was not found"
        )))
    }
}

/// Test a connection without storing it: an HTTP GET of an http(s) connection's base URL, a TCP
/// connection to a kafka connection's bootstrap server, each within 5 s.
#[utoipa::path(post, path = "/connections/test", tag = "Connection",
    request_body = ConnectionBody,
    responses((status = 200, body = ConnectionTest), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 413, body = Problem)))]
pub async fn test_connection(
    user: CurrentUser,
    ApiJson(body): ApiJson<ConnectionBody>,
) -> ApiResult<Json<ConnectionTest>> {
    user.require(Role::Admin)?;
    let connection = body.into_connection()?;
    Ok(Json(try_connection(&connection).await))
}

/// Tries a connection the way `POST /connections/test` says; the UI's Test button too.
pub async fn try_connection(connection: &Connection) -> ConnectionTest {
    let (status, message) = match connection.conn_type.as_str() {
        "http" | "https" => test_http(connection).await,
        "kafka" => test_kafka(connection).await,
        other => (
            false,
            format!("testing {other} connections is not supported"),
        ),
    };
    // Whatever a message quotes, it never carries the password.
    let message = match connection.password.as_deref() {
        Some(password) if !password.is_empty() => message.replace(password, "***"),
        _ => message,
    };
    ConnectionTest { status, message }
}

async fn test_http(connection: &Connection) -> (bool, String) {
    let url = match connection.http_base_url() {
        Ok(url) => url,
        Err(message) => return (false, message),
    };
    let client = match reqwest::Client::builder().timeout(TEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => return (false, format!("cannot build an HTTP client: {error}")),
    };
    match client.get(&url).send().await {
        Ok(response) if response.status().as_u16() < 500 => {
            (true, format!("GET {url} answered {}", response.status()))
        }
        Ok(response) => (false, format!("GET {url} answered {}", response.status())),
        Err(error) => (false, format!("GET {url} failed: {}", error.without_url())),
    }
}

/// The first bootstrap server the connection names (9092 when it gives no port).
fn bootstrap_server(connection: &Connection) -> Result<String, String> {
    let brokers = connection.kafka_client()?.brokers.ok_or_else(|| {
        "the connection has no host and no `bootstrap.servers` in its extra".to_string()
    })?;
    let first = brokers
        .split(',')
        .map(str::trim)
        .find(|broker| !broker.is_empty())
        .unwrap_or_default();
    Ok(if first.contains(':') {
        first.to_string()
    } else {
        format!("{first}:9092")
    })
}

async fn test_kafka(connection: &Connection) -> (bool, String) {
    let server = match bootstrap_server(connection) {
        Ok(server) => server,
        Err(message) => return (false, message),
    };
    match tokio::time::timeout(TEST_TIMEOUT, tokio::net::TcpStream::connect(&server)).await {
        Ok(Ok(_)) => (true, format!("{server} accepts connections")),
        Ok(Err(error)) => (false, format!("cannot connect to {server}: {error}")),
        Err(_) => (
            false,
            format!("{server} did not accept a connection within 5 s"),
        ),
    }
}

/// `/connections/test` is also the path of a connection whose id is `test`: its GET, PATCH and
/// DELETE (routed apart from the test's POST, which wins the path) reach the same handlers.
pub fn connection_named_test() -> axum::routing::MethodRouter<AppState> {
    fn id() -> ApiPath<String> {
        ApiPath("test".to_string())
    }
    axum::routing::get(|state: State<AppState>, user: CurrentUser| async move {
        get_connection(state, user, id()).await
    })
    .patch(
        |state: State<AppState>,
         user: CurrentUser,
         params: Params,
         body: ApiJson<Map<String, Value>>| async move {
            patch_connection(state, user, id(), params, body).await
        },
    )
    .delete(|state: State<AppState>, user: CurrentUser| async move {
        delete_connection(state, user, id()).await
    })
}
