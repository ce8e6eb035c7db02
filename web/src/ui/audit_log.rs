//! Browse → Audit log: every change made through the UI, the API or the CLI, newest first,
//! filtered by DAG, event and user.

use askama::Template;
use axum::extract::State;
use updraft_orchestrator::store::event_log::{self, EventFilter, EventRow};

use super::{Frame, PageResult, Pager, enc, fmt_date, render};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::extract::Params;

const PAGE: i64 = 50;

pub struct EventLine {
    pub when: String,
    pub owner: String,
    pub event: String,
    pub target: String,
    pub href: Option<String>,
    pub source: String,
    pub remote_addr: Option<String>,
    pub extra: Option<String>,
}

impl From<EventRow> for EventLine {
    fn from(row: EventRow) -> Self {
        let (target, href) = match (&row.dag_id, &row.run_id, &row.task_id) {
            (Some(dag), Some(run), Some(task)) => (
                format!("{dag} / {run} / {task}"),
                Some(format!(
                    "/dags/{}/runs/{}/tasks/{}",
                    enc(dag),
                    enc(run),
                    enc(task)
                )),
            ),
            (Some(dag), Some(run), None) => (
                format!("{dag} / {run}"),
                Some(format!("/dags/{}/runs/{}", enc(dag), enc(run))),
            ),
            (Some(dag), ..) => (dag.clone(), Some(format!("/dags/{}", enc(dag)))),
            _ => (String::new(), None),
        };
        EventLine {
            when: fmt_date(Some(row.logged_at)),
            owner: row.owner,
            event: row.event,
            target,
            href,
            source: row.source,
            remote_addr: row.remote_addr,
            extra: row.extra.map(|extra| extra.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditLogPage {
    user: String,
    role: String,
    csrf: String,
    dag_id: String,
    event: String,
    owner: String,
    filtered: bool,
    rows: Vec<EventLine>,
    total: i64,
    pager: Pager,
}

pub async fn page(State(state): State<AppState>, user: CurrentUser, params: Params) -> PageResult {
    let page = params.int("page", 1, 1)?;
    let text = |name: &str| params.get(name).unwrap_or_default().trim().to_string();
    let (dag_id, event, owner) = (text("dag_id"), text("event"), text("owner"));
    let given = |value: &String| (!value.is_empty()).then(|| value.clone());
    let filter = EventFilter {
        dag_id: given(&dag_id),
        event: given(&event),
        owner: given(&owner),
        newest_first: true,
        ..EventFilter::default()
    };
    let offset = (page - 1).saturating_mul(PAGE);
    let events = event_log::page(&state.pool, &filter, PAGE, offset)
        .await
        .map_err(AppError::from)?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("dag_id", &dag_id)
        .append_pair("event", &event)
        .append_pair("owner", &owner)
        .finish();
    let frame = Frame::of(&user);
    render(&AuditLogPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        filtered: filter.dag_id.is_some() || filter.event.is_some() || filter.owner.is_some(),
        dag_id,
        event,
        owner,
        total: events.total,
        rows: events.rows.into_iter().map(EventLine::from).collect(),
        pager: Pager::new(page, events.total, PAGE, |n| {
            format!("/audit-log?{query}&page={n}")
        }),
    })
}
