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

/// A browse page's filter form as submitted: each field's text (shown again as typed), what
/// did not parse (said on the page and left out of the filter), and the query that keeps them
/// from page to page.
struct Filters<'p> {
    params: &'p Params,
    problems: Vec<String>,
}

impl<'p> Filters<'p> {
    fn new(params: &'p Params) -> Self {
        Filters {
            params,
            problems: Vec::new(),
        }
    }

    fn text(&self, name: &str) -> String {
        self.params.get(name).unwrap_or_default().trim().to_string()
    }

    /// The field's text, `None` when empty.
    fn given(&self, name: &str) -> Option<String> {
        Some(self.text(name)).filter(|text| !text.is_empty())
    }

    /// A select's value parsed as `T`.
    fn choice<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let text = self.given(name)?;
        let parsed = text.parse().ok();
        if parsed.is_none() {
            self.problems
                .push(format!("unknown {} `{text}`", name.replace('_', " ")));
        }
        parsed
    }

    /// A `YYYY-MM-DD` field as the first (or, with `end_of_day`, last) instant of that day, UTC.
    fn day(&mut self, name: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
        let text = self.given(name)?;
        let Ok(date) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") else {
            self.problems.push(format!(
                "`{name}` must be a date like 2024-01-31, got `{text}`"
            ));
            return None;
        };
        let start = date.and_time(NaiveTime::MIN).and_utc();
        Some(match end_of_day {
            true => start + TimeDelta::days(1) - TimeDelta::microseconds(1),
            false => start,
        })
    }

    /// The id where the page before ended (the keyset cursor).
    fn before_id(&self) -> Result<Option<i64>, AppError> {
        self.given("before_id")
            .map(|id| {
                id.parse::<i64>().map_err(|_| {
                    AppError::BadRequest(format!("`before_id` must be a number, got `{id}`"))
                })
            })
            .transpose()
    }

    /// A select's choices, each with whether it is the one submitted.
    fn options(
        &self,
        name: &str,
        all: impl Iterator<Item = &'static str>,
    ) -> Vec<(&'static str, bool)> {
        let chosen = self.text(name);
        all.map(|choice| (choice, choice == chosen)).collect()
    }

    /// The submitted fields as a query string, for the links to other pages.
    fn query(&self, names: &[&str]) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for name in names {
            query.append_pair(name, &self.text(name));
        }
        query.finish()
    }

    fn error(&self) -> Option<String> {
        self.problems.first().cloned()
    }
}

/// A page of at most `PAGE` rows, from a query asked for one more: whether there is more.
fn one_page<T>(mut rows: Vec<T>) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    (rows, more)
}

pub async fn runs_page(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Params,
) -> PageResult {
    let mut form = Filters::new(&params);
    let filter = BrowseFilter {
        dag_id: form.given("dag_id"),
        state: form.choice("state"),
        run_type: form.choice("run_type"),
        logical_date_gte: form.day("from", false),
        logical_date_lte: form.day("to", true),
    };
    let before = match (params.date("before_date")?, form.before_id()?) {
        (Some(date), Some(id)) => Some((date, id)),
        _ => None,
    };
    let rows = runs::browse(&state.pool, &filter, before, PAGE + 1)
        .await
        .map_err(AppError::from)?;
    let (rows, more) = one_page(rows);
    let query = form.query(&["dag_id", "state", "run_type", "from", "to"]);
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
        dag_id: form.text("dag_id"),
        from: form.text("from"),
        to: form.text("to"),
        states: form.options("state", RunState::ALL.iter().map(|s| s.as_str())),
        run_types: form.options("run_type", RunType::ALL.iter().map(|t| t.as_str())),
        error: form.error(),
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
    let mut form = Filters::new(&params);
    let filter = task_instances::BrowseFilter {
        dag_id: form.given("dag_id"),
        task_id: form.given("task_id"),
        state: form.choice("state"),
        started_gte: form.day("from", false),
        started_lte: form.day("to", true),
    };
    let before_id = form.before_id()?;
    let rows = task_instances::browse(&state.pool, &filter, before_id, PAGE + 1)
        .await
        .map_err(AppError::from)?;
    let (rows, more) = one_page(rows);
    let query = form.query(&["dag_id", "task_id", "state", "from", "to"]);
    let older = rows
        .last()
        .filter(|_| more)
        .map(|last| format!("/task-instances?{query}&before_id={}", last.id));
    let frame = Frame::of(&user);
    render(&TaskInstancesPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        dag_id: form.text("dag_id"),
        task_id: form.text("task_id"),
        from: form.text("from"),
        to: form.text("to"),
        states: form.options("state", TaskState::ALL.iter().map(|s| s.as_str())),
        error: form.error(),
        rows: rows.iter().map(TaskInstanceLine::from).collect(),
        older,
        newest: format!("/task-instances?{query}"),
        first_page: before_id.is_none(),
    })
}
