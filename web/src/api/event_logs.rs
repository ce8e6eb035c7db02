//! `/eventLogs`: the audit log, as Airflow's event logs. `extra` is a JSON text holding where
//! the change came from (`source`: ui, api or cli; `remote_addr`) and what it carried.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use updraft_orchestrator::store::event_log::{self, EventFilter, EventRow};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiResult, AppError, Problem};
use crate::extract::{ApiPath, Params};

#[derive(Debug, Serialize, ToSchema)]
pub struct EventLogJson {
    pub event_log_id: i64,
    pub when: DateTime<Utc>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub map_index: Option<i64>,
    pub try_number: Option<i64>,
    pub event: String,
    pub execution_date: Option<DateTime<Utc>>,
    pub owner: Option<String>,
    /// JSON text: `source`, `remote_addr` and what the change carried.
    pub extra: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventLogCollection {
    pub event_logs: Vec<EventLogJson>,
    pub total_entries: i64,
}

impl From<EventRow> for EventLogJson {
    fn from(row: EventRow) -> Self {
        let mut extra = Map::new();
        extra.insert("source".into(), Value::String(row.source));
        if let Some(address) = row.remote_addr {
            extra.insert("remote_addr".into(), Value::String(address));
        }
        if let Some(Value::Object(carried)) = row.extra {
            extra.extend(carried);
        }
        EventLogJson {
            event_log_id: row.id,
            when: row.logged_at,
            dag_id: row.dag_id,
            task_id: row.task_id,
            run_id: row.run_id,
            map_index: None,
            try_number: None,
            event: row.event,
            execution_date: None,
            owner: Some(row.owner),
            extra: Some(Value::Object(extra).to_string()),
        }
    }
}

/// The filter of a list request (Airflow's query parameters).
pub fn filter(params: &Params) -> ApiResult<EventFilter> {
    let text = |name: &str| {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let newest_first = match params.get("order_by").unwrap_or("event_log_id") {
        "event_log_id" | "when" => false,
        "-event_log_id" | "-when" => true,
        other => {
            return Err(AppError::BadRequest(format!(
                "order_by must be event_log_id, -event_log_id, when or -when, got `{other}`"
            )));
        }
    };
    Ok(EventFilter {
        dag_id: text("dag_id"),
        run_id: text("run_id"),
        task_id: text("task_id"),
        event: text("event"),
        owner: text("owner"),
        after: params.date("after")?,
        before: params.date("before")?,
        newest_first,
    })
}

/// List audit events: who changed what, when, and from where.
#[utoipa::path(get, path = "/eventLogs", tag = "EventLog",
    params(
        ("limit" = Option<i64>, Query, minimum = 0), ("offset" = Option<i64>, Query, minimum = 0),
        ("order_by" = Option<String>, Query, description = "event_log_id (default), -event_log_id, when, -when"),
        ("dag_id" = Option<String>, Query), ("run_id" = Option<String>, Query),
        ("task_id" = Option<String>, Query), ("event" = Option<String>, Query),
        ("owner" = Option<String>, Query),
        ("after" = Option<DateTime<Utc>>, Query), ("before" = Option<DateTime<Utc>>, Query),
    ),
    responses((status = 200, body = EventLogCollection), (status = 400, body = Problem),
              (status = 401, body = Problem)))]
pub async fn get_event_logs(
    State(state): State<AppState>,
    _user: CurrentUser,
    params: Params,
) -> ApiResult<Json<EventLogCollection>> {
    let (limit, offset) = params.page()?;
    let page = event_log::page(&state.pool, &filter(&params)?, limit, offset).await?;
    Ok(Json(EventLogCollection {
        event_logs: page.rows.into_iter().map(EventLogJson::from).collect(),
        total_entries: page.total,
    }))
}

/// Get an audit event.
#[utoipa::path(get, path = "/eventLogs/{event_log_id}", tag = "EventLog",
    params(("event_log_id" = i64, Path)),
    responses((status = 200, body = EventLogJson), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_event_log(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<EventLogJson>> {
    event_log::get(&state.pool, id)
        .await?
        .map(|row| Json(row.into()))
        .ok_or_else(|| AppError::not_found(format!("The Event Log with id: `{id}` was not found")))
}
