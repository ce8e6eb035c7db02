//! Browse → DAG runs and Task instances: every DAG's, newest first, filtered (DAG, state, run
//! type or task, a range of dates), a page at a time by keyset (where the last row of the page
//! before ended), so a deep page costs what the first one does.

use askama::Template;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use updraft_orchestrator::dag::{RunState, RunType, TaskState};
use updraft_orchestrator::store::runs::{self, BrowseFilter, DagRunRow};
use updraft_orchestrator::store::task_instances::{self, BrowsedTaskInstance};

use super::{Frame, PageResult, enc, fmt_date, fmt_duration, render};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::extract::Params;

const PAGE: i64 = 50;

pub struct RunLine {
    pub state: String,
    pub dag_id: String,
    pub enc_dag: String,
    pub run_id: String,
    pub enc_run: String,
    pub run_type: String,
    pub logical_date: String,
    pub started: String,
    pub duration: String,
}

impl From<&DagRunRow> for RunLine {
    fn from(run: &DagRunRow) -> Self {
        let duration = run.start_date.map(|start| {
            let end = run.end_date.unwrap_or_else(Utc::now);
            (end - start).num_milliseconds() as f64 / 1000.0
        });
        RunLine {
            state: run.state.to_string(),
            dag_id: run.dag_id.clone(),
            enc_dag: enc(&run.dag_id),
            run_id: run.run_id.clone(),
            enc_run: enc(&run.run_id),
            run_type: run.run_type.to_string(),
            logical_date: fmt_date(Some(run.logical_date)),
            started: fmt_date(run.start_date),
            duration: fmt_duration(duration),
        }
    }
}

#[derive(Template)]
#[template(path = "runs_browse.html")]
struct RunsPage {
    user: String,
    role: String,
    csrf: String,
    dag_id: String,
    from: String,
    to: String,
    /// Each choice and whether it is the one filtered on.
    states: Vec<(&'static str, bool)>,
    run_types: Vec<(&'static str, bool)>,
    error: Option<String>,
    rows: Vec<RunLine>,
    older: Option<String>,
    newest: String,
    first_page: bool,
}

/// A `YYYY-MM-DD` field as the first (or, with `end_of_day`, last) instant of that day, UTC.
fn day(params: &Params, name: &str, end_of_day: bool) -> Result<Option<DateTime<Utc>>, String> {
    let Some(text) = params.get(name).map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{name}` must be a date like 2024-01-31, got `{text}`"))?;
    let start = date.and_time(NaiveTime::MIN).and_utc();
    Ok(Some(if end_of_day {
        start + TimeDelta::days(1) - TimeDelta::microseconds(1)
    } else {
        start
    }))
}

/// An optional select's value: `None` when empty, or (said in `problems`) when unknown.
fn choice<T: std::str::FromStr>(text: &str, what: &str, problems: &mut Vec<String>) -> Option<T> {
    if text.is_empty() {
        return None;
    }
    let parsed = text.parse().ok();
    if parsed.is_none() {
        problems.push(format!("unknown {what} `{text}`"));
    }
    parsed
}

pub async fn runs_page(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Params,
) -> PageResult {
    let text = |name: &str| params.get(name).unwrap_or_default().trim().to_string();
    let (dag_id, state_text, type_text) = (text("dag_id"), text("state"), text("run_type"));
    let (from, to) = (text("from"), text("to"));
    // A filter that does not parse is said on the page and left out.
    let mut problems = Vec::new();
    let run_state = choice::<RunState>(&state_text, "state", &mut problems);
    let run_type = choice::<RunType>(&type_text, "run type", &mut problems);
    let mut date = |result: Result<Option<DateTime<Utc>>, String>| {
        result.unwrap_or_else(|problem| {
            problems.push(problem);
            None
        })
    };
    let logical_date_gte = date(day(&params, "from", false));
    let logical_date_lte = date(day(&params, "to", true));
    let before = match (params.date("before_date")?, params.get("before_id")) {
        (Some(date), Some(id)) => Some((
            date,
            id.parse::<i64>().map_err(|_| {
                AppError::BadRequest(format!("`before_id` must be a number, got `{id}`"))
            })?,
        )),
        _ => None,
    };
    let filter = BrowseFilter {
        dag_id: (!dag_id.is_empty()).then(|| dag_id.clone()),
        state: run_state,
        run_type,
        logical_date_gte,
        logical_date_lte,
    };
    // One row more than shown says whether there is an older page.
    let mut rows = runs::browse(&state.pool, &filter, before, PAGE + 1)
        .await
        .map_err(AppError::from)?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("dag_id", &dag_id)
        .append_pair("state", &state_text)
        .append_pair("run_type", &type_text)
        .append_pair("from", &from)
        .append_pair("to", &to)
        .finish();
    let older = rows.last().filter(|_| more).map(|last| {
        let cursor: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("before_date", &last.logical_date.to_rfc3339())
            .append_pair("before_id", &last.id.to_string())
            .finish();
        format!("/runs?{query}&{cursor}")
    });
    let frame = Frame::of(&user);
    render(&RunsPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        dag_id,
        from,
        to,
        states: RunState::ALL
            .iter()
            .map(|s| (s.as_str(), s.as_str() == state_text))
            .collect(),
        run_types: RunType::ALL
            .iter()
            .map(|t| (t.as_str(), t.as_str() == type_text))
            .collect(),
        error: problems.first().cloned(),
        rows: rows.iter().map(RunLine::from).collect(),
        older,
        newest: format!("/runs?{query}"),
        first_page: before.is_none(),
    })
}

pub struct TaskInstanceLine {
    pub state: String,
    pub dag_id: String,
    pub enc_dag: String,
    pub run_id: String,
    pub enc_run: String,
    pub task_id: String,
    pub enc_task: String,
    pub operator: String,
    pub try_number: i32,
    pub started: String,
    pub duration: String,
}

impl From<&BrowsedTaskInstance> for TaskInstanceLine {
    fn from(ti: &BrowsedTaskInstance) -> Self {
        TaskInstanceLine {
            state: ti.state.to_string(),
            dag_id: ti.dag_id.clone(),
            enc_dag: enc(&ti.dag_id),
            run_id: ti.run_id.clone(),
            enc_run: enc(&ti.run_id),
            task_id: ti.task_id.clone(),
            enc_task: enc(&ti.task_id),
            operator: ti.operator.clone(),
            try_number: ti.try_number,
            started: fmt_date(ti.start_date),
            duration: fmt_duration(ti.duration),
        }
    }
}

#[derive(Template)]
#[template(path = "tis_browse.html")]
struct TaskInstancesPage {
    user: String,
    role: String,
    csrf: String,
    dag_id: String,
    task_id: String,
    from: String,
    to: String,
    states: Vec<(&'static str, bool)>,
    error: Option<String>,
    rows: Vec<TaskInstanceLine>,
    older: Option<String>,
    newest: String,
    first_page: bool,
}

pub async fn task_instances_page(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Params,
) -> PageResult {
    let text = |name: &str| params.get(name).unwrap_or_default().trim().to_string();
    let (dag_id, task_id, state_text) = (text("dag_id"), text("task_id"), text("state"));
    let (from, to) = (text("from"), text("to"));
    let mut problems = Vec::new();
    let ti_state = choice::<TaskState>(&state_text, "state", &mut problems);
    let mut date = |result: Result<Option<DateTime<Utc>>, String>| {
        result.unwrap_or_else(|problem| {
            problems.push(problem);
            None
        })
    };
    let started_gte = date(day(&params, "from", false));
    let started_lte = date(day(&params, "to", true));
    let before_id = match params.get("before_id") {
        Some(id) => Some(id.parse::<i64>().map_err(|_| {
            AppError::BadRequest(format!("`before_id` must be a number, got `{id}`"))
        })?),
        None => None,
    };
    let filter = task_instances::BrowseFilter {
        dag_id: (!dag_id.is_empty()).then(|| dag_id.clone()),
        task_id: (!task_id.is_empty()).then(|| task_id.clone()),
        state: ti_state,
        started_gte,
        started_lte,
    };
    let mut rows = task_instances::browse(&state.pool, &filter, before_id, PAGE + 1)
        .await
        .map_err(AppError::from)?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("dag_id", &dag_id)
        .append_pair("task_id", &task_id)
        .append_pair("state", &state_text)
        .append_pair("from", &from)
        .append_pair("to", &to)
        .finish();
    let older = rows
        .last()
        .filter(|_| more)
        .map(|last| format!("/task-instances?{query}&before_id={}", last.id));
    let frame = Frame::of(&user);
    render(&TaskInstancesPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        dag_id,
        task_id,
        from,
        to,
        states: TaskState::ALL
            .iter()
            .map(|s| (s.as_str(), s.as_str() == state_text))
            .collect(),
        error: problems.first().cloned(),
        rows: rows.iter().map(TaskInstanceLine::from).collect(),
        older,
        newest: format!("/task-instances?{query}"),
        first_page: before_id.is_none(),
    })
}
