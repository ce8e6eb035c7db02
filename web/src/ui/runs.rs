//! Run page (task instances, clear, mark), task log page with its JSON feed, import errors.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use serde_json::json;
use updraft_orchestrator::dag::TaskState;
use updraft_orchestrator::engine::clear::ClearRequest;
use updraft_orchestrator::store::import_errors::{self, ImportErrorOrder};
use updraft_orchestrator::store::logs;
use updraft_orchestrator::store::task_instances::{self, TaskInstanceView};

use super::charts::{GanttRow, GanttTry, gantt};
use super::{Frame, PageResult, Pager, enc, fmt_date, fmt_duration, render, safe_next};
use crate::AppState;
use crate::api::runs::{clear_as, fetch_run, mark_run_as, parse_settable_state};
use crate::api::task_instances::{fetch_ti, format_line};
use crate::auth::CurrentUser;
use crate::error::{AppError, PageError};
use crate::extract::{ApiPath, Params};
use crate::users::Role;

const LOG_PAGE_LINES: i64 = 5_000;

pub struct TiView {
    pub task_id: String,
    pub operator: String,
    pub state: String,
    pub try_number: i32,
    pub max_tries: i32,
    pub start: String,
    pub end: String,
    pub duration: String,
    pub rendered: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    user: String,
    role: String,
    csrf: String,
    dag_id: String,
    enc_dag: String,
    run_id: String,
    enc_run: String,
    state: String,
    live_after: u64,
    details: Vec<(String, String)>,
    tis: Vec<TiView>,
    gantt: Option<String>,
    can_operate: bool,
}

pub async fn page(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
) -> PageResult {
    // Before the reads: changes committed after them reach the page live.
    let live_after = state.live.position();
    let run = fetch_run(&state.pool, &dag_id, &run_id).await?;
    let rows = task_instances::views_of_run(&state.pool, &dag_id, &run_id)
        .await
        .map_err(AppError::from)?;
    let earlier = task_instances::earlier_tries(&state.pool, &dag_id, &run_id)
        .await
        .map_err(AppError::from)?;
    let gantt = gantt(
        &rows
            .iter()
            .map(|ti| GanttRow {
                task_id: ti.task_id.clone(),
                tries: earlier
                    .iter()
                    .filter(|t| t.task_id == ti.task_id)
                    .map(|t| GanttTry {
                        try_number: t.try_number,
                        state: t.state.to_string(),
                        queued_at: t.queued_at,
                        start_date: t.start_date,
                        end_date: t.end_date,
                    })
                    .chain((ti.try_number > 0).then(|| GanttTry {
                        try_number: ti.try_number,
                        state: ti.state.to_string(),
                        queued_at: ti.queued_at,
                        start_date: ti.start_date,
                        end_date: ti.end_date,
                    }))
                    .collect(),
            })
            .collect::<Vec<_>>(),
        chrono::Utc::now(),
    );
    let tis = rows
        .into_iter()
        .map(|ti| TiView {
            href: format!(
                "/dags/{}/runs/{}/tasks/{}",
                enc(&dag_id),
                enc(&run_id),
                enc(&ti.task_id)
            ),
            rendered: ti
                .rendered_config
                .as_ref()
                .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
                .unwrap_or_else(|| "(not rendered yet)".into()),
            task_id: ti.task_id,
            operator: ti.operator,
            state: ti.state.to_string(),
            try_number: ti.try_number,
            max_tries: ti.max_tries,
            start: fmt_date(ti.start_date),
            end: fmt_date(ti.end_date),
            duration: fmt_duration(ti.duration),
        })
        .collect();
    let details = vec![
        ("Run type".to_string(), run.run_type.to_string()),
        ("Logical date".to_string(), fmt_date(Some(run.logical_date))),
        (
            "Data interval".to_string(),
            format!(
                "{} → {}",
                fmt_date(Some(run.data_interval_start)),
                fmt_date(Some(run.data_interval_end))
            ),
        ),
        ("Start".to_string(), fmt_date(run.start_date)),
        ("End".to_string(), fmt_date(run.end_date)),
        (
            "Duration".to_string(),
            fmt_duration(
                run.start_date
                    .zip(run.end_date)
                    .map(|(s, e)| (e - s).num_milliseconds() as f64 / 1000.0),
            ),
        ),
        ("Conf".to_string(), run.conf.to_string()),
        ("Note".to_string(), run.note.clone().unwrap_or_default()),
    ];
    let frame = Frame::of(&user);
    render(&RunPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        enc_dag: enc(&dag_id),
        enc_run: enc(&run_id),
        live_after,
        state: run.state.to_string(),
        details,
        tis,
        gantt,
        can_operate: user.user.role.allows(Role::Op),
        dag_id,
        run_id,
    })
}

#[derive(Deserialize)]
pub struct ClearForm {
    csrf_token: String,
    task_id: String,
    upstream: Option<String>,
    downstream: Option<String>,
    next: Option<String>,
}

pub async fn clear(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    Form(form): Form<ClearForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Op)?;
    if form.task_id.contains('\0') {
        return Err(AppError::BadRequest("task_id must not contain NUL".into()).into());
    }
    fetch_ti(&state.pool, &dag_id, &run_id, &form.task_id).await?;
    let request = ClearRequest {
        dag_id: &dag_id,
        run_id: Some(&run_id),
        task_ids: std::slice::from_ref(&form.task_id),
        include_upstream: form.upstream.as_deref() == Some("true"),
        include_downstream: form.downstream.as_deref() == Some("true"),
        only_failed: false,
        dry_run: false,
        reset_dag_runs: true,
    };
    clear_as(&state.pool, &user, &request).await?;
    let run_page = format!("/dags/{}/runs/{}", enc(&dag_id), enc(&run_id));
    Ok(Redirect::to(&safe_next(form.next.as_deref(), &run_page)).into_response())
}

#[derive(Deserialize)]
pub struct MarkForm {
    csrf_token: String,
    state: String,
}

pub async fn mark(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id)): ApiPath<(String, String)>,
    Form(form): Form<MarkForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Op)?;
    let target = parse_settable_state(&form.state)?;
    fetch_run(&state.pool, &dag_id, &run_id).await?;
    mark_run_as(&state.pool, &user, &dag_id, &run_id, target).await?;
    Ok(Redirect::to(&format!("/dags/{}/runs/{}", enc(&dag_id), enc(&run_id))).into_response())
}

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    user: String,
    role: String,
    csrf: String,
    dag_id: String,
    enc_dag: String,
    run_id: String,
    enc_run: String,
    task_id: String,
    state: String,
    try_number: i32,
    tries: Vec<(i32, String)>,
    content: String,
    after: i64,
    running: bool,
    follow_url: String,
}

fn wanted_try(params: &Params, ti: &TaskInstanceView) -> Result<i32, AppError> {
    let wanted = params.int("try", i64::from(ti.try_number), 0)?;
    if wanted > i64::from(ti.try_number) {
        return Err(AppError::not_found(format!(
            "task {} has no try {wanted}",
            ti.task_id
        )));
    }
    Ok(wanted as i32)
}

fn is_live(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Running
            | TaskState::Queued
            | TaskState::Scheduled
            | TaskState::None
            | TaskState::UpForRetry
    )
}

pub async fn log_page(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    params: Params,
) -> PageResult {
    let ti = fetch_ti(&state.pool, &dag_id, &run_id, &task_id).await?;
    let try_number = wanted_try(&params, &ti)?;
    let lines = logs::lines(&state.pool, ti.id, try_number, 0, LOG_PAGE_LINES)
        .await
        .map_err(AppError::from)?;
    let after = lines.last().map_or(0, |line| line.id);
    let base = format!(
        "/dags/{}/runs/{}/tasks/{}",
        enc(&dag_id),
        enc(&run_id),
        enc(&task_id)
    );
    // The latest try follows new lines while the task may still write some.
    let running = try_number == ti.try_number && is_live(ti.state);
    let frame = Frame::of(&user);
    render(&LogPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        enc_dag: enc(&dag_id),
        enc_run: enc(&run_id),
        tries: (1..=ti.try_number)
            .map(|n| (n, format!("{base}?try={n}")))
            .collect(),
        content: lines.iter().map(format_line).collect::<Vec<_>>().join("\n"),
        follow_url: format!("{base}/log.json?try={try_number}"),
        after,
        running,
        state: ti.state.to_string(),
        try_number,
        dag_id,
        run_id,
        task_id,
    })
}

/// New lines of a try after line id `after`, with the task's state, for the log page's poll.
pub async fn log_json(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    params: Params,
) -> Result<Json<serde_json::Value>, AppError> {
    let ti = fetch_ti(&state.pool, &dag_id, &run_id, &task_id).await?;
    let try_number = wanted_try(&params, &ti)?;
    let after = params.int("after", 0, 0)?;
    let lines = logs::lines(&state.pool, ti.id, try_number, after, LOG_PAGE_LINES).await?;
    let next = lines.last().map_or(after, |line| line.id);
    // Keep polling while a newer try may start, or while lines are still coming in pages.
    let running =
        (try_number == ti.try_number && is_live(ti.state)) || lines.len() as i64 == LOG_PAGE_LINES;
    Ok(Json(json!({
        "lines": lines.iter().map(format_line).collect::<Vec<_>>(),
        "next": next,
        "state": ti.state.as_str(),
        "try_number": ti.try_number,
        "running": running,
    })))
}

#[derive(Template)]
#[template(path = "import_errors.html")]
struct ImportErrorsPage {
    user: String,
    role: String,
    csrf: String,
    errors: Vec<(String, String, String)>,
    total: i64,
    pager: Pager,
}

pub async fn import_errors(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Params,
) -> Result<axum::response::Response, PageError> {
    const PAGE: i64 = 50;
    let page = params.int("page", 1, 1)?;
    let offset = (page - 1).saturating_mul(PAGE);
    let errors = import_errors::page(&state.pool, ImportErrorOrder::File, PAGE, offset)
        .await
        .map_err(AppError::from)?;
    let masker = state.secrets_masker().await?;
    let total = errors.total;
    let frame = Frame::of(&user);
    render(&ImportErrorsPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        errors: errors
            .rows
            .into_iter()
            .map(|error| {
                let at = fmt_date(Some(error.created_at));
                (error.fileloc, masker.mask(&error.message), at)
            })
            .collect(),
        total,
        pager: Pager::new(page, total, PAGE, |n| format!("/import-errors?page={n}")),
    })
}
