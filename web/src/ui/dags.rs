//! DAG list and DAG page (graph, grid, trigger form, source, details), pause and trigger.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use updraft_orchestrator::store::dags::{self, DagFilter, DagView};
use updraft_orchestrator::store::{import_errors, runs, versions};

use super::charts::{Day, calendar};
use super::graph::{GraphNode, render_svg};
use super::grid::{self, Grid};
use super::trigger::{self, ParamField};
use super::{Frame, PageResult, Pager, enc, fmt_date, render, safe_next};
use crate::AppState;
use crate::api::dags::{fetch_dag, set_paused};
use crate::api::models::timetable_description;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::extract::{ApiPath, Params};
use crate::users::Role;

const PAGE_SIZE: i64 = 50;
const RECENT_RUNS: i64 = 10;
/// The states the grid's legend explains, in the order a run goes through them.
const LEGEND: &[&str] = &[
    "none",
    "scheduled",
    "queued",
    "running",
    "success",
    "failed",
    "up_for_retry",
    "upstream_failed",
    "skipped",
    "removed",
];
/// Most tags the list's tag filter offers.
const MAX_TAGS: i64 = 500;

pub struct Mark {
    pub run_id: String,
    pub state: String,
    pub href: String,
    pub title: String,
}

pub struct DagListRow {
    pub dag_id: String,
    pub enc_id: String,
    pub paused: bool,
    pub owners: String,
    pub tags: Vec<String>,
    pub schedule: String,
    pub next_run: String,
    pub runs: Vec<Mark>,
    pub has_import_errors: bool,
}

#[derive(Template)]
#[template(path = "dags.html")]
struct DagListPage {
    user: String,
    role: String,
    csrf: String,
    rows: Vec<DagListRow>,
    q: String,
    tag: String,
    all_tags: Vec<String>,
    total: i64,
    pager: Pager,
    here: String,
    import_errors: i64,
    live_after: u64,
}

fn list_href(q: &str, tag: &str, page: i64) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", q)
        .append_pair("tag", tag)
        .append_pair("page", &page.to_string())
        .finish();
    format!("/dags?{query}")
}

pub async fn list(State(state): State<AppState>, user: CurrentUser, params: Params) -> PageResult {
    let q = params.get("q").unwrap_or("").trim().to_string();
    let tag = params.get("tag").unwrap_or("").trim().to_string();
    let page = params.int("page", 1, 1)?;
    // Before the reads: changes committed after them reach the page live.
    let live_after = state.live.position();
    let tags = if tag.is_empty() {
        vec![]
    } else {
        vec![tag.clone()]
    };
    let filter = DagFilter {
        paused: None,
        only_active: true,
        dag_id_contains: Some(&q),
        tags: &tags,
    };
    let offset = (page - 1).saturating_mul(PAGE_SIZE);
    let dags = dags::page(&state.pool, &filter, PAGE_SIZE, offset)
        .await
        .map_err(AppError::from)?;
    let (total, dags) = (dags.total, dags.rows);
    let ids: Vec<String> = dags.iter().map(|d| d.dag_id.clone()).collect();
    // One query for the recent runs of every DAG on the page (index dag_run_recent).
    let recent = runs::recent_of_dags(&state.pool, &ids, RECENT_RUNS)
        .await
        .map_err(AppError::from)?;
    let facets = dags::list_facets(&state.pool, MAX_TAGS)
        .await
        .map_err(AppError::from)?;
    let mut runs_by_dag: HashMap<String, Vec<Mark>> = HashMap::new();
    for run in recent {
        runs_by_dag
            .entry(run.dag_id.clone())
            .or_default()
            .push(Mark {
                run_id: run.run_id.clone(),
                href: format!("/dags/{}/runs/{}", enc(&run.dag_id), enc(&run.run_id)),
                title: format!(
                    "{} · {} · {}",
                    run.run_id,
                    fmt_date(Some(run.logical_date)),
                    run.state
                ),
                state: run.state.to_string(),
            });
    }
    let rows = dags
        .iter()
        .map(|d| {
            let mut runs = runs_by_dag.remove(&d.dag_id).unwrap_or_default();
            runs.reverse(); // oldest left, as Airflow
            DagListRow {
                dag_id: d.dag_id.clone(),
                enc_id: enc(&d.dag_id),
                paused: d.is_paused,
                owners: d.owner_list().join(", "),
                tags: d.tags.clone(),
                schedule: d.schedule.clone().unwrap_or_else(|| "None".into()),
                next_run: fmt_date(d.next_dagrun),
                runs,
                has_import_errors: d.has_import_errors,
            }
        })
        .collect();
    let frame = Frame::of(&user);
    render(&DagListPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        rows,
        here: list_href(&q, &tag, page),
        pager: Pager::new(page, total, PAGE_SIZE, |n| list_href(&q, &tag, n)),
        q,
        tag,
        all_tags: facets.tags,
        total,
        import_errors: facets.import_errors,
        live_after,
    })
}

#[derive(Deserialize)]
pub struct PauseForm {
    csrf_token: String,
    is_paused: String,
    next: Option<String>,
}

pub async fn pause(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
    Form(form): Form<PauseForm>,
) -> PageResult {
    user.check_csrf(&form.csrf_token)?;
    user.require(Role::Op)?;
    let paused = match form.is_paused.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(AppError::BadRequest(format!(
                "is_paused must be true or false, got `{other}`"
            ))
            .into());
        }
    };
    set_paused(&state.pool, &user, &dag_id, paused).await?;
    Ok(Redirect::to(&safe_next(form.next.as_deref(), "/dags")).into_response())
}

#[derive(Template)]
#[template(path = "dag.html")]
struct DagPage {
    user: String,
    role: String,
    csrf: String,
    dag_id: String,
    enc_id: String,
    paused: bool,
    description: Option<String>,
    svg: String,
    graph_caption: String,
    /// The run the graph is coloured by.
    graph_run: String,
    grid: Grid,
    /// Daily run states over the last year, for scheduled DAGs.
    calendar: Option<String>,
    legend: &'static [&'static str],
    live_after: u64,
    can_operate: bool,
    params: Vec<ParamField>,
    fileloc: String,
    source_lines: Vec<String>,
    details: Vec<(String, String)>,
    next_run: String,
    owners: String,
    tags: Vec<String>,
    import_error: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(dag_id): ApiPath<String>,
    params: Params,
) -> PageResult {
    // Before the reads: changes committed after them reach the page live.
    let live_after = state.live.position();
    let dag = fetch_dag(&state.pool, &dag_id).await?;
    let version = versions::latest_with_source(&state.pool, &dag_id)
        .await
        .map_err(AppError::from)?;
    let parsed = version.as_ref().and_then(|version| version.dag.as_ref());
    let grid = grid::build(&state.pool, &dag_id, parsed, params.date("before")?).await?;
    let calendar = match dag.schedule {
        Some(_) => Some(calendar_of(&state.pool, &dag_id).await?),
        None => None,
    };
    let latest = grid.newest.as_ref();
    let nodes: Vec<GraphNode> = parsed
        .map(|d| {
            d.tasks
                .iter()
                .map(|task| {
                    let state = latest.and_then(|(_, states)| states.get(&task.task_id));
                    GraphNode {
                        task_id: task.task_id.clone(),
                        upstream: task.upstream.clone(),
                        state: state.map_or("none".into(), |state| state.to_string()),
                        href: latest.filter(|_| state.is_some()).map(|(run_id, _)| {
                            format!(
                                "/dags/{}/runs/{}/tasks/{}",
                                enc(&dag_id),
                                enc(run_id),
                                enc(&task.task_id)
                            )
                        }),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let graph_caption = match latest {
        Some((run_id, _)) => format!("coloured by run {run_id}"),
        None => "no runs yet".into(),
    };
    let params = parsed.map(trigger::fields).unwrap_or_default();
    let mut details = vec![
        (
            "Schedule".to_string(),
            timetable_description(dag.schedule.as_deref(), &dag.timezone),
        ),
        ("Next run".to_string(), fmt_date(dag.next_dagrun)),
        ("Owners".to_string(), dag.owner_list().join(", ")),
        ("Tags".to_string(), dag.tags.join(", ")),
        (
            "Max active runs / tasks".to_string(),
            format!("{} / {}", dag.max_active_runs, dag.max_active_tasks),
        ),
        ("Active".to_string(), dag.is_active.to_string()),
        (
            "Last parsed".to_string(),
            fmt_date(Some(dag.last_parsed_at)),
        ),
    ];
    if let Some(version) = &version {
        details.push(("Version".to_string(), version.version_number.to_string()));
    }
    if let Some(d) = parsed {
        details.push(("Start date".to_string(), fmt_date(d.start_date)));
        details.push(("Catchup".to_string(), d.catchup.to_string()));
    }
    let import_error = match dag.has_import_errors {
        true => import_errors::for_file(&state.pool, &dag.fileloc)
            .await
            .map_err(AppError::from)?
            .map(|error| error.message),
        false => None,
    };
    let import_error = match import_error {
        Some(message) => Some(state.secrets_masker().await?.mask(&message)),
        None => None,
    };
    let frame = Frame::of(&user);
    render(&DagPage {
        user: frame.user,
        role: frame.role,
        csrf: frame.csrf,
        enc_id: enc(&dag_id),
        paused: dag.is_paused,
        description: dag.description.clone(),
        svg: render_svg(&nodes),
        graph_caption,
        graph_run: latest.map(|(run_id, _)| run_id.clone()).unwrap_or_default(),
        grid,
        calendar,
        legend: LEGEND,
        live_after,
        can_operate: user.user.role.allows(Role::Op),
        params,
        fileloc: dag.fileloc.clone(),
        source_lines: version
            .map(|version| version.source.lines().map(str::to_string).collect())
            .unwrap_or_default(),
        details,
        next_run: next_run_line(&dag),
        owners: dag.owner_list().join(", "),
        tags: dag.tags.clone(),
        import_error,
        dag_id,
    })
}

/// The calendar of the DAG's runs over the last year.
async fn calendar_of(pool: &sqlx::PgPool, dag_id: &str) -> Result<String, AppError> {
    let today = chrono::Utc::now().date_naive();
    let since = (today - chrono::Duration::days(371))
        .and_hms_opt(0, 0, 0)
        .map(|start| start.and_utc())
        .unwrap_or_default();
    let days = runs::by_day(pool, dag_id, since)
        .await?
        .into_iter()
        .map(|day| {
            let state = match (day.failed, day.unfinished) {
                (1.., _) => "failed",
                (0, 1..) => "running",
                _ => "success",
            };
            let title = format!(
                "{} success, {} failed, {} unfinished",
                day.success, day.failed, day.unfinished
            );
            Day {
                day: day.day,
                state: state.into(),
                title,
            }
        })
        .collect::<Vec<_>>();
    Ok(calendar(&days, today))
}

/// "Next run …" as Airflow shows it: the logical date and the data interval it covers.
fn next_run_line(dag: &DagView) -> String {
    if dag.is_paused {
        return "Paused: no scheduled runs until unpaused".into();
    }
    match (
        dag.next_dagrun,
        dag.next_dagrun_interval_start,
        dag.next_dagrun_interval_end,
    ) {
        (Some(_), Some(start), Some(end)) => format!(
            "Next run covers {} → {}, created after {}",
            fmt_date(Some(start)),
            fmt_date(Some(end)),
            fmt_date(dag.next_dagrun_create_after.or(Some(end)))
        ),
        (Some(next), ..) => format!("Next run {}", fmt_date(Some(next))),
        _ => "No scheduled runs (triggered only)".into(),
    }
}
