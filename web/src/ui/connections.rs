//! Admin → Connections: list, add, edit, delete and test (admin role). A stored password is
//! never put into a page: the edit form leaves it empty (empty keeps it) and shows the extra
//! with sensitive values as `***` (sent back, they keep the stored ones).

use askama::Template;
use axum::Form;
use axum::extract::State;
use serde::Deserialize;
use updraft_orchestrator::store::connections;
use updraft_secrets::Connection;
use updraft_secrets::connection::CONN_TYPES;

use super::{CsrfForm, Frame, PageResult, Pager, back_to_list, enc, render, saved_or_deleted};
use crate::AppState;
use crate::api::connections::{port, secret_error, try_connection, validate};
use crate::audit;
use crate::auth::CurrentUser;
use crate::error::{AppError, PageError};
use crate::extract::{ApiPath, Params};
use crate::users::Role;

const PAGE_SIZE: i64 = 50;

pub struct ConnectionRow {
    pub conn_id: String,
    pub conn_type: String,
    pub host: String,
    pub port: String,
    pub login: String,
    pub description: String,
    pub has_password: bool,
    pub edit_href: String,
    pub delete_action: String,
}

#[derive(Template)]
#[template(path = "connections.html")]
struct ConnectionListPage {
    user: String,
    role: String,
    csrf: String,
    rows: Vec<ConnectionRow>,
    notice: Option<String>,
    total: i64,
    pager: Pager,
}

/// The form's fields as text, exactly as the page shows them.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ConnectionFields {
    pub connection_id: String,
    pub conn_type: String,
    pub description: String,
    pub host: String,
    pub schema: String,
    pub login: String,
    pub port: String,
    pub extra: String,
}

#[derive(Template)]
#[template(path = "connection_form.html")]
struct ConnectionFormPage {
    user: String,
    role: String,
    csrf: String,
    /// The stored connection being edited; `None` on the add form.
    existing: Option<String>,
    has_password: bool,
    /// What this user just typed into the password field, kept when the form comes back
    /// (a test, a refusal); a stored password is never put into a page.
    typed_password: String,
    fields: ConnectionFields,
    conn_types: Vec<&'static str>,
    error: Option<String>,
    test: Option<(bool, String)>,
}

#[derive(Deserialize)]
pub struct ConnectionForm {
    csrf_token: String,
    #[serde(flatten)]
    fields: ConnectionFields,
    #[serde(default)]
    password: String,
    /// Set on the edit form: a password left empty keeps this connection's.
    #[serde(default)]
    existing: String,
    #[serde(default)]
    clear_password: Option<String>,
}

fn text(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

impl ConnectionFields {
    fn of(connection: &Connection) -> ConnectionFields {
        ConnectionFields {
            connection_id: connection.conn_id.clone(),
            conn_type: connection.conn_type.clone(),
            description: connection.description.clone().unwrap_or_default(),
            host: connection.host.clone().unwrap_or_default(),
            schema: connection.schema.clone().unwrap_or_default(),
            login: connection.login.clone().unwrap_or_default(),
            port: connection.port.map(|p| p.to_string()).unwrap_or_default(),
            extra: connection.masked_extra().unwrap_or_default(),
        }
    }
}

fn frame_page(user: &CurrentUser, existing: Option<String>) -> ConnectionFormPage {
    let frame = Frame::of(user);
    ConnectionFormPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        existing,
        has_password: false,
        typed_password: String::new(),
        fields: ConnectionFields {
            conn_type: "http".into(),
            ..ConnectionFields::default()
        },
        conn_types: CONN_TYPES.to_vec(),
        error: None,
        test: None,
    }
}

/// The form again, with what was typed (never the password) and why it was refused.
fn refused(mut page: ConnectionFormPage, error: AppError) -> PageResult {
    let status = error.status_code();
    if status.is_server_error() {
        return Err(PageError(error));
    }
    page.error = Some(error.problem().detail.unwrap_or_default());
    let mut response = render(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

async fn stored(state: &AppState, conn_id: &str) -> Result<Connection, AppError> {
    connections::get(&state.pool, &state.cipher, conn_id)
        .await
        .map_err(secret_error)?
        .ok_or_else(|| AppError::not_found(format!("no connection `{conn_id}`")))
}

/// Whether the connection being edited has a password (the form's hint and its Remove box).
async fn has_stored_password(state: &AppState, existing: Option<&str>) -> bool {
    match existing {
        Some(conn_id) => stored(state, conn_id)
            .await
            .is_ok_and(|connection| connection.password.is_some()),
        None => false,
    }
}

/// The connection the form describes; on the edit form, the stored password and the stored
/// secrets behind `***` in the extra carry over.
async fn from_form(state: &AppState, form: &ConnectionForm) -> Result<Connection, AppError> {
    let fields = &form.fields;
    let mut connection = Connection {
        conn_id: fields.connection_id.trim().to_string(),
        conn_type: fields.conn_type.trim().to_string(),
        description: text(&fields.description),
        host: text(&fields.host),
        port: None,
        login: text(&fields.login),
        password: (!form.password.is_empty()).then(|| form.password.clone()),
        schema: text(&fields.schema),
        extra: None,
    };
    let port_text = fields.port.trim();
    if !port_text.is_empty() {
        let number = port_text.parse::<i64>().map_err(|_| {
            AppError::BadRequest(format!("`port` must be a number, got `{port_text}`"))
        })?;
        connection.port = port(Some(number))?;
    }
    let extra = text(&fields.extra);
    if form.existing.is_empty() {
        connection.extra = extra;
    } else {
        if connection.conn_id != form.existing {
            return Err(AppError::BadRequest(
                "a connection's id cannot change; add a new connection instead".into(),
            ));
        }
        let old = stored(state, &form.existing).await?;
        if connection.password.is_none() && form.clear_password.is_none() {
            connection.password = old.password;
        }
        connection.extra = old.extra;
        connection
            .merge_masked_extra(extra)
            .map_err(|error| AppError::BadRequest(format!("stored {error}")))?;
    }
    validate(&connection)?;
    Ok(connection)
}

pub async fn list(State(state): State<AppState>, user: CurrentUser, params: Params) -> PageResult {
    user.require(Role::Admin)?;
    let page = params.int("page", 1, 1)?;
    let offset = (page - 1).saturating_mul(PAGE_SIZE);
    let found = connections::page(&state.pool, &state.cipher, PAGE_SIZE, offset)
        .await
        .map_err(secret_error)?;
    let frame = Frame::of(&user);
    render(&ConnectionListPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        rows: found
            .rows
            .iter()
            .map(|c| ConnectionRow {
                conn_id: c.conn_id.clone(),
                conn_type: c.conn_type.clone(),
                host: c.host.clone().unwrap_or_default(),
                port: c.port.map(|p| p.to_string()).unwrap_or_default(),
                login: c.login.clone().unwrap_or_default(),
                description: c.description.clone().unwrap_or_default(),
                has_password: c.password.is_some(),
                edit_href: format!("/connections/{}/edit", enc(&c.conn_id)),
                delete_action: format!("/connections/{}/delete", enc(&c.conn_id)),
            })
            .collect(),
        notice: saved_or_deleted(&params, "connection"),
        total: found.total,
        pager: Pager::new(page, found.total, PAGE_SIZE, |n| {
            format!("/connections?page={n}")
        }),
    })
}

pub async fn new(user: CurrentUser) -> PageResult {
    user.require(Role::Admin)?;
    render(&frame_page(&user, None))
}

pub async fn edit(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(conn_id): ApiPath<String>,
) -> PageResult {
    user.require(Role::Admin)?;
    let connection = stored(&state, &conn_id).await?;
    let mut page = frame_page(&user, Some(conn_id));
    page.has_password = connection.password.is_some();
    page.fields = ConnectionFields::of(&connection);
    render(&page)
}

/// The form as the user sent it, to show again (after a refusal, with a test's outcome).
async fn form_again(
    state: &AppState,
    user: &CurrentUser,
    form: ConnectionForm,
) -> ConnectionFormPage {
    let existing = text(&form.existing);
    let mut page = frame_page(user, existing.clone());
    page.has_password = has_stored_password(state, existing.as_deref()).await;
    page.typed_password = form.password;
    page.fields = form.fields;
    page
}

/// Add (no `existing`) or save an edit.
pub async fn save(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<ConnectionForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Admin)?;
    let saved = async {
        let connection = from_form(&state, &form).await?;
        let found = if form.existing.is_empty() {
            connections::insert(&state.pool, &state.cipher, &connection)
                .await
                .map(|()| true)
        } else {
            connections::update(&state.pool, &state.cipher, &connection).await
        };
        match found.map_err(secret_error)? {
            true => Ok(connection.conn_id),
            false => Err(AppError::not_found(format!(
                "no connection `{}`",
                connection.conn_id
            ))),
        }
    }
    .await;
    match saved {
        Ok(conn_id) => {
            let event = if form.existing.is_empty() {
                "connection_create"
            } else {
                "connection_update"
            };
            audit::connection(&state.pool, &user, event, &conn_id).await;
            Ok(back_to_list("/connections", "saved", &conn_id))
        }
        Err(error) => refused(form_again(&state, &user, form).await, error),
    }
}

/// The Test button: tries what the form says (with the stored password when editing) and shows
/// the form again with the outcome; nothing is stored.
pub async fn test(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<ConnectionForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Admin)?;
    let connection = from_form(&state, &form).await;
    let mut page = form_again(&state, &user, form).await;
    match connection {
        Ok(connection) => {
            let outcome = try_connection(&connection).await;
            page.test = Some((outcome.status, outcome.message));
            render(&page)
        }
        Err(error) => refused(page, error),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(conn_id): ApiPath<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Admin)?;
    let found = connections::delete(&state.pool, &conn_id)
        .await
        .map_err(secret_error)?;
    if !found {
        return Err(AppError::not_found(format!("no connection `{conn_id}`")).into());
    }
    audit::connection(&state.pool, &user, "connection_delete", &conn_id).await;
    Ok(back_to_list("/connections", "deleted", &conn_id))
}
