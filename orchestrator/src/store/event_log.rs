//! `event_log` rows: the audit log. One row per state change a person made (pause, trigger,
//! clear, mark, a connection or variable changed), with who, from where (UI, API or CLI, and
//! the client's address) and on what. Rows are only ever added.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::Page;

/// Where a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Ui,
    Api,
    Cli,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ui => "ui",
            Source::Api => "api",
            Source::Cli => "cli",
        }
    }
}

/// A change to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// What was done: `pause`, `unpause`, `trigger`, `clear`, `mark_run_success`, ...
    pub event: &'a str,
    /// Who did it: the user's name (the operating-system user for the CLI).
    pub owner: &'a str,
    pub source: Source,
    pub remote_addr: Option<&'a str>,
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    /// What else says what was done (a conf, the tasks cleared, a connection's id).
    pub extra: Option<Value>,
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub logged_at: DateTime<Utc>,
    pub event: String,
    pub owner: String,
    pub source: String,
    pub remote_addr: Option<String>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub extra: Option<Value>,
}

/// Which events to list; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub event: Option<String>,
    pub owner: Option<String>,
    pub after: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
    /// Newest first (the UI) rather than oldest first (the API's default, as Airflow's).
    pub newest_first: bool,
}

pub async fn record(pool: &PgPool, event: &NewEvent<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO event_log (event, owner, source, remote_addr, dag_id, run_id, task_id, extra)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        event.event,
        event.owner,
        event.source.as_str(),
        event.remote_addr,
        event.dag_id,
        event.run_id,
        event.task_id,
        event.extra,
    )
    .fetch_one(pool)
    .await
}

/// Events matching `filter`, in the order it asks for.
pub async fn page(
    pool: &PgPool,
    filter: &EventFilter,
    limit: i64,
    offset: i64,
) -> Result<Page<EventRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        EventRow,
        "SELECT id, logged_at, event, owner, source, remote_addr, dag_id, run_id, task_id, extra
           FROM event_log
          WHERE ($1::text IS NULL OR dag_id = $1) AND ($2::text IS NULL OR run_id = $2)
            AND ($3::text IS NULL OR task_id = $3) AND ($4::text IS NULL OR event = $4)
            AND ($5::text IS NULL OR owner = $5)
            AND ($6::timestamptz IS NULL OR logged_at >= $6)
            AND ($7::timestamptz IS NULL OR logged_at <= $7)
          ORDER BY CASE WHEN $8 THEN -id ELSE id END
          LIMIT $9 OFFSET $10",
        filter.dag_id,
        filter.run_id,
        filter.task_id,
        filter.event,
        filter.owner,
        filter.after,
        filter.before,
        filter.newest_first,
        limit,
        offset,
    )
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM event_log
          WHERE ($1::text IS NULL OR dag_id = $1) AND ($2::text IS NULL OR run_id = $2)
            AND ($3::text IS NULL OR task_id = $3) AND ($4::text IS NULL OR event = $4)
            AND ($5::text IS NULL OR owner = $5)
            AND ($6::timestamptz IS NULL OR logged_at >= $6)
            AND ($7::timestamptz IS NULL OR logged_at <= $7)"#,
        filter.dag_id,
        filter.run_id,
        filter.task_id,
        filter.event,
        filter.owner,
        filter.after,
        filter.before,
    )
    .fetch_one(pool)
    .await?;
    Ok(Page { rows, total })
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<EventRow>, sqlx::Error> {
    sqlx::query_as!(
        EventRow,
        "SELECT id, logged_at, event, owner, source, remote_addr, dag_id, run_id, task_id, extra
           FROM event_log WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await
}
