//! Admin → Variables: anyone signed in sees the keys; op and admin see values (a sensitive
//! key's value as `***`, as Airflow's list does), add, edit and delete.

use askama::Template;
use axum::Form;
use axum::extract::State;
use serde::Deserialize;
use updraft_orchestrator::store::variables::{self, Variable};
use updraft_secrets::mask::{MASK, is_sensitive};

use super::{CsrfForm, Frame, PageResult, Pager, back_to_list, enc, render, saved_or_deleted};
use crate::AppState;
use crate::api::connections::secret_error;
use crate::api::variables::check_key;
use crate::audit;
use crate::auth::CurrentUser;
use crate::error::{AppError, PageError};
use crate::extract::{ApiPath, Params};
use crate::users::Role;

const PAGE_SIZE: i64 = 50;
/// Characters of a value the list shows.
const PREVIEW_CHARS: usize = 120;

pub struct VariableRow {
    pub key: String,
    /// `None` for a viewer, who sees keys only.
    pub value: Option<String>,
    pub description: String,
    pub edit_href: String,
    pub delete_action: String,
}

#[derive(Template)]
#[template(path = "variables.html")]
struct VariableListPage {
    user: String,
    role: String,
    csrf: String,
    can_edit: bool,
    rows: Vec<VariableRow>,
    notice: Option<String>,
    total: i64,
    pager: Pager,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct VariableForm {
    csrf_token: String,
    key: String,
    value: String,
    description: String,
    /// Set on the edit form: `***` as the value of a sensitive key keeps this variable's.
    existing: String,
}

#[derive(Template)]
#[template(path = "variable_form.html")]
struct VariableFormPage {
    user: String,
    role: String,
    csrf: String,
    existing: Option<String>,
    key: String,
    value: String,
    description: String,
    sensitive: bool,
    error: Option<String>,
}

/// What the page may show of a value.
fn shown(key: &str, value: &str) -> String {
    if is_sensitive(key) {
        MASK.to_string()
    } else {
        value.to_string()
    }
}

fn preview(value: &str) -> String {
    match value.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

fn form_page(user: &CurrentUser, existing: Option<String>) -> VariableFormPage {
    let frame = Frame::of(user);
    VariableFormPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        existing,
        key: String::new(),
        value: String::new(),
        description: String::new(),
        sensitive: false,
        error: None,
    }
}

pub async fn list(State(state): State<AppState>, user: CurrentUser, params: Params) -> PageResult {
    user.require(Role::Viewer)?;
    let can_edit = user.user.role.allows(Role::Op);
    let page = params.int("page", 1, 1)?;
    let offset = (page - 1).saturating_mul(PAGE_SIZE);
    let found = variables::page(&state.pool, &state.cipher, PAGE_SIZE, offset)
        .await
        .map_err(secret_error)?;
    let frame = Frame::of(&user);
    render(&VariableListPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        can_edit,
        rows: found
            .rows
            .iter()
            .map(|v| VariableRow {
                key: v.key.clone(),
                value: can_edit.then(|| preview(&shown(&v.key, &v.value))),
                description: v.description.clone().unwrap_or_default(),
                edit_href: format!("/variables/{}/edit", enc(&v.key)),
                delete_action: format!("/variables/{}/delete", enc(&v.key)),
            })
            .collect(),
        notice: saved_or_deleted(&params, "variable"),
        total: found.total,
        pager: Pager::new(page, found.total, PAGE_SIZE, |n| {
            format!("/variables?page={n}")
        }),
    })
}

pub async fn new(user: CurrentUser) -> PageResult {
    user.require(Role::Op)?;
    render(&form_page(&user, None))
}

pub async fn edit(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(key): ApiPath<String>,
) -> PageResult {
    user.require(Role::Op)?;
    let variable = variables::get(&state.pool, &state.cipher, &key)
        .await
        .map_err(secret_error)?
        .ok_or_else(|| AppError::not_found(format!("no variable `{key}`")))?;
    let mut page = form_page(&user, Some(key));
    page.sensitive = is_sensitive(&variable.key);
    page.value = shown(&variable.key, &variable.value);
    page.key = variable.key;
    page.description = variable.description.unwrap_or_default();
    render(&page)
}

/// Add (no `existing`) or save an edit; a sensitive variable's `***` keeps its stored value.
pub async fn save(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<VariableForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Op)?;
    let existing = (!form.existing.is_empty()).then(|| form.existing.clone());
    let key = form.key.trim().to_string();
    let mut page = form_page(&user, existing.clone());
    page.sensitive = is_sensitive(&key);
    let mut variable = Variable {
        key: key.clone(),
        value: form.value.clone(),
        description: (!form.description.trim().is_empty()).then(|| form.description.clone()),
    };
    let outcome = async {
        check_key(&key)?;
        if let Some(existing) = &existing {
            if *existing != key {
                return Err(AppError::BadRequest(
                    "a variable's key cannot change; add a new variable instead".into(),
                ));
            }
            if variable.value == MASK && is_sensitive(&key) {
                let stored = variables::get(&state.pool, &state.cipher, &key)
                    .await
                    .map_err(secret_error)?
                    .ok_or_else(|| AppError::not_found(format!("no variable `{key}`")))?;
                variable.value = stored.value;
            }
        }
        variables::set(&state.pool, &state.cipher, &variable)
            .await
            .map_err(secret_error)
    }
    .await;
    match outcome {
        Ok(()) => {
            audit::variable(&state.pool, &user, "variable_set", &key).await;
            Ok(back_to_list("/variables", "saved", &key))
        }
        Err(error) if error.status_code().is_client_error() => {
            page.error = Some(error.problem().detail.unwrap_or_default());
            page.key = form.key;
            page.value = form.value; // what this user just typed
            page.description = form.description;
            let status = error.status_code();
            let mut response = render(&page)?;
            *response.status_mut() = status;
            Ok(response)
        }
        Err(error) => Err(PageError(error)),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(key): ApiPath<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Op)?;
    let found = variables::delete(&state.pool, &key)
        .await
        .map_err(secret_error)?;
    if !found {
        return Err(AppError::not_found(format!("no variable `{key}`")).into());
    }
    audit::variable(&state.pool, &user, "variable_delete", &key).await;
    Ok(back_to_list("/variables", "deleted", &key))
}
