//! `/metrics`: the orchestrator's process metrics plus gauges read from the database.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use updraft_orchestrator::store::{dags, runs, task_instances};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;

pub async fn metrics(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    let runs: Vec<(&str, i64)> = runs::count_by_state(&state.pool)
        .await?
        .into_iter()
        .map(|row| (row.state.as_str(), row.count))
        .collect();
    let tis: Vec<(&str, i64)> = task_instances::count_by_state(&state.pool)
        .await?
        .into_iter()
        .map(|row| (row.state.as_str(), row.count))
        .collect();
    let counts = dags::counts(&state.pool).await?;
    let mut out = updraft_orchestrator::metrics::render_prometheus();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    gauge(&mut out, "updraft_dag_runs", "DAG runs by state", &runs);
    gauge(
        &mut out,
        "updraft_task_instances",
        "Task instances by state",
        &tis,
    );
    let _ = writeln!(
        out,
        "# HELP updraft_import_errors Files that failed to parse"
    );
    let _ = writeln!(out, "# TYPE updraft_import_errors gauge");
    let _ = writeln!(out, "updraft_import_errors {}", counts.import_errors);
    let _ = writeln!(out, "# HELP updraft_dags Active DAGs, paused or not");
    let _ = writeln!(out, "# TYPE updraft_dags gauge");
    let _ = writeln!(out, "updraft_dags{{paused=\"true\"}} {}", counts.paused);
    let _ = writeln!(
        out,
        "updraft_dags{{paused=\"false\"}} {}",
        counts.active - counts.paused
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

fn gauge(out: &mut String, name: &str, help: &str, rows: &[(&str, i64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (state, count) in rows {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {count}");
    }
}
