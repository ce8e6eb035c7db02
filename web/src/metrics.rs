//! `/metrics`: the orchestrator's process metrics plus gauges read from the database.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;

pub async fn metrics(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    let runs: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM dag_run GROUP BY state ORDER BY state")
            .fetch_all(&state.pool)
            .await?;
    let tis: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM task_instance GROUP BY state ORDER BY state")
            .fetch_all(&state.pool)
            .await?;
    let (import_errors, dags_active, dags_paused): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM import_error),
                (SELECT count(*) FROM dag WHERE is_active),
                (SELECT count(*) FROM dag WHERE is_active AND is_paused)",
    )
    .fetch_one(&state.pool)
    .await?;
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
    let _ = writeln!(out, "updraft_import_errors {import_errors}");
    let _ = writeln!(out, "# HELP updraft_dags Active DAGs, paused or not");
    let _ = writeln!(out, "# TYPE updraft_dags gauge");
    let _ = writeln!(out, "updraft_dags{{paused=\"true\"}} {dags_paused}");
    let _ = writeln!(
        out,
        "updraft_dags{{paused=\"false\"}} {}",
        dags_active - dags_paused
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

fn gauge(out: &mut String, name: &str, help: &str, rows: &[(String, i64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (state, count) in rows {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {count}");
    }
}
