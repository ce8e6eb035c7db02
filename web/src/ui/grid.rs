//! The DAG page's grid (runs as columns, newest right, tasks as rows, a bar of each run's
//! duration above its column) and the side panel a cell opens: the task instance's details,
//! log, XCom, rendered config and actions.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use updraft_orchestrator::dag::{Dag, TaskState};
use updraft_orchestrator::store::runs::{self, RecentRun};
use updraft_orchestrator::store::task_instances::{self, GridCell as StoredCell};
use updraft_orchestrator::store::{logs, xcom};

use super::charts::{DurationColumn, task_durations};
use super::{PageResult, enc, fmt_date, fmt_duration, render, safe_next};
use crate::AppState;
use crate::api::runs::mark_task_as;
use crate::api::task_instances::{fetch_ti, format_line};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::extract::ApiPath;
use crate::users::Role;

/// Runs a grid shows.
pub const GRID_RUNS: i64 = 25;
/// Log lines the panel shows before following.
const PANEL_LOG_LINES: i64 = 500;
/// XCom entries the panel shows, and how much of each value.
const PANEL_XCOMS: i64 = 20;
const PANEL_VALUE_CHARS: usize = 4_000;

pub struct GridRun {
    pub run_id: String,
    pub state: String,
    pub href: String,
    /// Height of its duration bar, percent of the longest run shown.
    pub bar: u32,
    pub tip: String,
}

pub struct GridCell {
    pub run_id: String,
    pub task_id: String,
    pub state: String,
    pub try_number: i32,
    pub tip: String,
    /// The side panel's URL; `None` for a task the run does not have.
    pub panel: Option<String>,
}

pub struct GridRow {
    pub task_id: String,
    pub cells: Vec<GridCell>,
}

/// The grid of up to [`GRID_RUNS`] runs before `before` (the latest when `None`).
pub struct Grid {
    pub runs: Vec<GridRun>,
    pub rows: Vec<GridRow>,
    /// The link to the previous page of runs, and back to the latest.
    pub older: Option<String>,
    pub newer: Option<String>,
    pub longest: String,
    /// The newest run shown and its task states (the graph colours by it).
    pub newest: Option<(String, HashMap<String, TaskState>)>,
    /// The tasks' durations over the runs shown (SVG), when any task has run.
    pub durations: Option<String>,
}

pub async fn build(
    pool: &PgPool,
    dag_id: &str,
    parsed: Option<&Dag>,
    before: Option<DateTime<Utc>>,
) -> Result<Grid, AppError> {
    // One more than shown: whether older runs exist.
    let mut runs = runs::recent(pool, dag_id, before, GRID_RUNS + 1).await?;
    let has_older = runs.len() as i64 > GRID_RUNS;
    runs.truncate(GRID_RUNS as usize);
    runs.reverse();
    let run_ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let tis = task_instances::grid(pool, dag_id, &run_ids).await?;
    let by_cell: HashMap<(&str, &str), &StoredCell> = tis
        .iter()
        .map(|ti| ((ti.run_id.as_str(), ti.task_id.as_str()), ti))
        .collect();

    // Task rows: the latest version's tasks in order, then ids seen only in older runs.
    let mut task_ids: Vec<String> = parsed
        .map(|d| {
            d.topological_order()
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for ti in &tis {
        if !task_ids.contains(&ti.task_id) {
            task_ids.push(ti.task_id.clone());
        }
    }
    let now = Utc::now();
    let durations: Vec<f64> = runs.iter().map(|run| run_seconds(run, now)).collect();
    let longest = durations.iter().copied().fold(0.0, f64::max);
    let rows = task_ids
        .iter()
        .map(|task_id| GridRow {
            task_id: task_id.clone(),
            cells: runs
                .iter()
                .map(|run| cell(dag_id, run, task_id, by_cell.get(&(&run.run_id, task_id))))
                .collect(),
        })
        .collect();
    let grid_runs = runs
        .iter()
        .zip(&durations)
        .map(|(run, seconds)| GridRun {
            run_id: run.run_id.clone(),
            state: run.state.to_string(),
            href: format!("/dags/{}/runs/{}", enc(dag_id), enc(&run.run_id)),
            bar: match longest > 0.0 {
                true => ((seconds / longest) * 100.0).round().clamp(4.0, 100.0) as u32,
                false => 4,
            },
            tip: [
                format!("Run {}", run.run_id),
                format!("State: {}", run.state),
                format!("Type: {}", run.run_type),
                format!("Logical date: {}", fmt_date(Some(run.logical_date))),
                format!("Start: {}", fmt_date(run.start_date)),
                format!("End: {}", fmt_date(run.end_date)),
                format!("Duration: {}", fmt_duration(Some(*seconds))),
            ]
            .join("\n"),
        })
        .collect();
    let durations = task_durations(
        &task_ids,
        &runs
            .iter()
            .map(|run| DurationColumn {
                run_id: run.run_id.clone(),
                seconds: task_ids
                    .iter()
                    .map(|task_id| {
                        by_cell
                            .get(&(run.run_id.as_str(), task_id.as_str()))
                            .and_then(|ti| ti.duration)
                    })
                    .collect(),
            })
            .collect::<Vec<_>>(),
    );
    let page = |before: &str| format!("/dags/{}?before={}#grid", enc(dag_id), enc(before));
    Ok(Grid {
        older: match (has_older, runs.first()) {
            (true, Some(oldest)) => Some(page(&oldest.logical_date.to_rfc3339())),
            _ => None,
        },
        newer: before.map(|_| format!("/dags/{}#grid", enc(dag_id))),
        longest: fmt_duration(Some(longest)),
        newest: runs.last().map(|run| {
            let states = tis
                .iter()
                .filter(|ti| ti.run_id == run.run_id)
                .map(|ti| (ti.task_id.clone(), ti.state))
                .collect();
            (run.run_id.clone(), states)
        }),
        runs: grid_runs,
        rows,
        durations,
    })
}

/// How long a run took, or has been running.
fn run_seconds(run: &RecentRun, now: DateTime<Utc>) -> f64 {
    match (run.start_date, run.end_date) {
        (Some(start), end) => (end.unwrap_or(now) - start).num_milliseconds().max(0) as f64 / 1e3,
        _ => 0.0,
    }
}

fn cell(dag_id: &str, run: &RecentRun, task_id: &str, ti: Option<&&StoredCell>) -> GridCell {
    let Some(ti) = ti else {
        return GridCell {
            run_id: run.run_id.clone(),
            task_id: task_id.to_string(),
            state: "none".into(),
            try_number: 0,
            tip: format!("{task_id}\nnot in run {}", run.run_id),
            panel: None,
        };
    };
    GridCell {
        run_id: run.run_id.clone(),
        task_id: task_id.to_string(),
        state: ti.state.to_string(),
        try_number: ti.try_number,
        tip: [
            task_id.to_string(),
            format!("Run: {}", run.run_id),
            format!("State: {}", ti.state),
            format!("Try: {}", ti.try_number),
            format!("Start: {}", fmt_date(ti.start_date)),
            format!("End: {}", fmt_date(ti.end_date)),
            format!("Duration: {}", fmt_duration(ti.duration)),
        ]
        .join("\n"),
        panel: Some(format!(
            "/dags/{}/runs/{}/tasks/{}/panel",
            enc(dag_id),
            enc(&run.run_id),
            enc(task_id)
        )),
    }
}

#[derive(Template)]
#[template(path = "ti_panel.html")]
struct Panel {
    csrf: String,
    run_id: String,
    task_id: String,
    state: String,
    base: String,
    run_href: String,
    back: String,
    details: Vec<(&'static str, String)>,
    log: String,
    log_after: i64,
    log_running: bool,
    try_number: i32,
    xcoms: Vec<(String, String)>,
    xcom_total: i64,
    rendered: String,
    can_operate: bool,
}

/// `GET …/tasks/{task_id}/panel`: the side panel's HTML (no layout around it).
pub async fn panel(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
) -> PageResult {
    let ti = fetch_ti(&state.pool, &dag_id, &run_id, &task_id).await?;
    let lines = logs::tail(&state.pool, ti.id, ti.try_number, PANEL_LOG_LINES)
        .await
        .map_err(AppError::from)?;
    let xcoms = xcom::page(&state.pool, ti.id, PANEL_XCOMS, 0)
        .await
        .map_err(AppError::from)?;
    let masker = state.secrets_masker().await?;
    let base = format!(
        "/dags/{}/runs/{}/tasks/{}",
        enc(&dag_id),
        enc(&run_id),
        enc(&task_id)
    );
    let shorten = |text: String| match text.char_indices().nth(PANEL_VALUE_CHARS) {
        Some((cut, _)) => format!("{}… (cut; the full value is on the API)", &text[..cut]),
        None => text,
    };
    let details = vec![
        ("Operator", ti.operator.clone()),
        ("Try", format!("{} of {}", ti.try_number, ti.max_tries + 1)),
        ("Queued", fmt_date(ti.queued_at)),
        ("Start", fmt_date(ti.start_date)),
        ("End", fmt_date(ti.end_date)),
        ("Duration", fmt_duration(ti.duration)),
        ("Worker", ti.owner.clone().unwrap_or_default()),
        ("Priority weight", ti.priority_weight.to_string()),
    ];
    render(&Panel {
        csrf: user.csrf.clone().unwrap_or_default(),
        run_href: format!("/dags/{}/runs/{}", enc(&dag_id), enc(&run_id)),
        back: format!("/dags/{}", enc(&dag_id)),
        log_after: lines.last().map_or(0, |line| line.id),
        log: lines.iter().map(format_line).collect::<Vec<_>>().join("\n"),
        log_running: !ti.state.is_finished(),
        try_number: ti.try_number,
        xcoms: xcoms
            .rows
            .into_iter()
            .map(|row| {
                let text = serde_json::to_string_pretty(&row.value).unwrap_or_default();
                (row.key, shorten(masker.mask(&text)))
            })
            .collect(),
        xcom_total: xcoms.total,
        rendered: ti
            .rendered_config
            .as_ref()
            .map(|config| masker.mask(&serde_json::to_string_pretty(config).unwrap_or_default()))
            .unwrap_or_else(|| "(not rendered yet)".into()),
        can_operate: user.user.role.allows(Role::Op),
        state: ti.state.to_string(),
        details,
        base,
        run_id,
        task_id,
    })
}

#[derive(Deserialize)]
pub struct MarkTaskForm {
    csrf_token: String,
    state: String,
    next: Option<String>,
}

/// `POST …/tasks/{task_id}/mark`: Airflow's "mark success/failed" of one task instance.
pub async fn mark(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((dag_id, run_id, task_id)): ApiPath<(String, String, String)>,
    Form(form): Form<MarkTaskForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Op)?;
    let target = match form.state.as_str() {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        other => {
            return Err(AppError::BadRequest(format!(
                "a task can be marked success or failed, not `{other}`"
            ))
            .into());
        }
    };
    mark_task_as(&state.pool, &user, &dag_id, &run_id, &task_id, target).await?;
    let fallback = format!("/dags/{}/runs/{}", enc(&dag_id), enc(&run_id));
    Ok(Redirect::to(&safe_next(form.next.as_deref(), &fallback)).into_response())
}
