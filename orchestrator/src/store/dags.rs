//! `dag` rows: what the DAG processor last parsed from each file, pausing, and the next
//! scheduled run the scheduler computed; and the DAG read-models of the web (one DAG, a filtered
//! page of them, the list's facets, the counts of `/metrics`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::{Page, StoreError, channels, notify};
use crate::dag::Dag;

/// A DAG as the processor knows it, to tell whether a file changed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KnownDag {
    pub dag_id: String,
    pub fileloc: String,
    pub source_hash: String,
    pub is_active: bool,
}

/// A DAG's row as written by one sync.
pub struct DagFile<'a> {
    pub dag: &'a Dag,
    pub fileloc: &'a str,
    pub source_hash: &'a str,
    /// The distinct owners of the DAG and its tasks, as Airflow shows them.
    pub owners: &'a str,
}

/// What the scheduler needs to create a DAG's scheduled runs.
#[derive(Debug, Clone)]
pub struct SchedulingRow {
    pub is_active: bool,
    pub is_paused: bool,
    pub latest_version_id: Option<i64>,
    pub next_dagrun_checked_version: Option<i64>,
}

/// The next scheduled run, as `next_run` computed it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NextDagRun {
    pub logical_date: Option<DateTime<Utc>>,
    pub interval_start: Option<DateTime<Utc>>,
    pub interval_end: Option<DateTime<Utc>>,
    pub create_after: Option<DateTime<Utc>>,
}

/// One line of `updraft dags list`.
#[derive(Debug, Clone)]
pub struct DagListRow {
    pub dag_id: String,
    pub is_paused: bool,
    pub is_active: bool,
    pub schedule: Option<String>,
    pub next_dagrun: Option<DateTime<Utc>>,
}

/// Serialises DAG folder syncs across processes (version numbers stay dense).
pub async fn lock_for_sync(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('updraft_dag_processor'))")
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn known(conn: &mut PgConnection) -> Result<HashMap<String, KnownDag>, sqlx::Error> {
    let rows = sqlx::query_as!(
        KnownDag,
        "SELECT dag_id, fileloc, source_hash, is_active FROM dag"
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.dag_id.clone(), row))
        .collect())
}

/// Records a parsed DAG (new or changed file); its next run is left for the scheduler to
/// compute again (the schedule or start date may have changed).
pub async fn upsert(conn: &mut PgConnection, file: &DagFile<'_>) -> Result<(), sqlx::Error> {
    let dag = file.dag;
    sqlx::query!(
        "INSERT INTO dag (dag_id, fileloc, source_hash, is_paused, is_active, description, schedule,
                          timezone, owners, tags, max_active_runs, max_active_tasks, last_parsed_at)
         VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7, $8, $9, $10, $11, now())
         ON CONFLICT (dag_id) DO UPDATE SET
             fileloc = EXCLUDED.fileloc, source_hash = EXCLUDED.source_hash, is_active = TRUE,
             description = EXCLUDED.description, schedule = EXCLUDED.schedule,
             timezone = EXCLUDED.timezone, owners = EXCLUDED.owners, tags = EXCLUDED.tags,
             max_active_runs = EXCLUDED.max_active_runs,
             max_active_tasks = EXCLUDED.max_active_tasks, last_parsed_at = now(),
             next_dagrun = NULL, next_dagrun_interval_start = NULL,
             next_dagrun_interval_end = NULL, next_dagrun_create_after = NULL",
        dag.dag_id,
        file.fileloc,
        file.source_hash,
        dag.is_paused_upon_creation,
        dag.description,
        dag.schedule.as_written(),
        dag.timezone.name(),
        file.owners,
        &dag.tags,
        to_i32(dag.max_active_runs),
        to_i32(dag.max_active_tasks),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn set_latest_version(
    conn: &mut PgConnection,
    dag_id: &str,
    version_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE dag SET latest_version_id = $2 WHERE dag_id = $1",
        dag_id,
        version_id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// DAGs of the folder at `folder_prefix` whose file no longer defines them; `failing` files keep
/// their DAGs active on the last good version (Airflow's behaviour: a typo never stops a DAG).
pub async fn deactivate_missing(
    conn: &mut PgConnection,
    folder_prefix: &str,
    present: &[String],
    failing: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE dag SET is_active = FALSE, next_dagrun = NULL, next_dagrun_interval_start = NULL,
                        next_dagrun_interval_end = NULL, next_dagrun_create_after = NULL
         WHERE is_active AND starts_with(fileloc, $1)
           AND NOT (dag_id = ANY($2)) AND NOT (fileloc = ANY($3))
         RETURNING dag_id",
        folder_prefix,
        present,
        failing,
    )
    .fetch_all(conn)
    .await
}

/// Pauses or unpauses a DAG; `Ok(false)` when it does not exist. Unpausing recomputes the next
/// scheduled run, so a `catchup: false` DAG resumes at the latest interval.
pub async fn set_paused(pool: &PgPool, dag_id: &str, paused: bool) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query!(
        "UPDATE dag SET is_paused = $2,
                next_dagrun_checked_version = CASE WHEN $2 THEN next_dagrun_checked_version END
         WHERE dag_id = $1",
        dag_id,
        paused
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if found {
        notify(&mut *tx, channels::DAGS, dag_id).await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Locks the DAG row while its scheduled runs are created; `None` when there is no such DAG.
pub async fn lock_for_scheduling(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<Option<SchedulingRow>, sqlx::Error> {
    sqlx::query_as!(
        SchedulingRow,
        "SELECT is_active, is_paused, latest_version_id, next_dagrun_checked_version
           FROM dag WHERE dag_id = $1 FOR UPDATE",
        dag_id
    )
    .fetch_optional(conn)
    .await
}

/// The limits a DAG's runs start within.
#[derive(Debug, Clone, Copy)]
pub struct StartLimits {
    pub max_active_runs: i32,
    pub max_active_tasks: i32,
}

/// Locks the DAG row while its queued runs are started; `None` unless the DAG exists and is
/// not paused.
pub async fn lock_for_starting(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<Option<StartLimits>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT is_paused, max_active_runs, max_active_tasks FROM dag WHERE dag_id = $1 FOR UPDATE",
        dag_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.filter(|row| !row.is_paused).map(|row| StartLimits {
        max_active_runs: row.max_active_runs,
        max_active_tasks: row.max_active_tasks,
    }))
}

pub async fn set_next_run(
    conn: &mut PgConnection,
    dag_id: &str,
    next: NextDagRun,
    checked_version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE dag SET next_dagrun = $2, next_dagrun_interval_start = $3,
                next_dagrun_interval_end = $4, next_dagrun_create_after = $5,
                next_dagrun_checked_version = $6
          WHERE dag_id = $1",
        dag_id,
        next.logical_date,
        next.interval_start,
        next.interval_end,
        next.create_after,
        checked_version,
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// DAGs with a scheduled run due, or whose next run must be computed again.
pub async fn due_for_scheduling(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT dag_id FROM dag
          WHERE is_active AND NOT is_paused AND latest_version_id IS NOT NULL
            AND (next_dagrun_checked_version IS DISTINCT FROM latest_version_id
                 OR next_dagrun_create_after <= now())"
    )
    .fetch_all(pool)
    .await
}

/// Seconds until the next time-driven event (a retry or a scheduled run); `None` without any.
pub async fn seconds_to_next_event(pool: &PgPool) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT extract(epoch FROM least(
             (SELECT min(next_retry_at) FROM task_instance WHERE state = 'up_for_retry'),
             (SELECT min(next_dagrun_create_after) FROM dag WHERE is_active AND NOT is_paused))
             - now())::float8 AS "seconds""#
    )
    .fetch_one(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<DagListRow>, sqlx::Error> {
    sqlx::query_as!(
        DagListRow,
        "SELECT dag_id, is_paused, is_active, schedule, next_dagrun FROM dag ORDER BY dag_id"
    )
    .fetch_all(pool)
    .await
}

/// A DAG as the UI and API show it: its row, and whether its file has an import error.
#[derive(Debug, Clone)]
pub struct DagView {
    pub dag_id: String,
    pub description: Option<String>,
    pub fileloc: String,
    pub is_active: bool,
    pub is_paused: bool,
    /// The distinct owners, comma-separated (see [`DagView::owner_list`]).
    pub owners: String,
    pub tags: Vec<String>,
    pub schedule: Option<String>,
    pub timezone: String,
    pub max_active_runs: i32,
    pub max_active_tasks: i32,
    pub next_dagrun: Option<DateTime<Utc>>,
    pub next_dagrun_interval_start: Option<DateTime<Utc>>,
    pub next_dagrun_interval_end: Option<DateTime<Utc>>,
    pub next_dagrun_create_after: Option<DateTime<Utc>>,
    pub last_parsed_at: DateTime<Utc>,
    pub has_import_errors: bool,
}

impl DagView {
    pub fn owner_list(&self) -> Vec<String> {
        self.owners
            .split(',')
            .map(str::trim)
            .filter(|owner| !owner.is_empty())
            .map(str::to_string)
            .collect()
    }
}

pub async fn get_view(pool: &PgPool, dag_id: &str) -> Result<Option<DagView>, sqlx::Error> {
    sqlx::query_as!(
        DagView,
        r#"SELECT d.dag_id, d.description, d.fileloc, d.is_active, d.is_paused, d.owners, d.tags,
                  d.schedule, d.timezone, d.max_active_runs, d.max_active_tasks, d.next_dagrun,
                  d.next_dagrun_interval_start, d.next_dagrun_interval_end,
                  d.next_dagrun_create_after, d.last_parsed_at,
                  EXISTS (SELECT 1 FROM import_error e WHERE e.fileloc = d.fileloc)
                      AS "has_import_errors!"
             FROM dag d WHERE d.dag_id = $1"#,
        dag_id
    )
    .fetch_optional(pool)
    .await
}

/// Which DAGs a listing shows.
#[derive(Debug, Clone, Default)]
pub struct DagFilter<'a> {
    pub paused: Option<bool>,
    pub only_active: bool,
    /// A substring of the DAG id, case-insensitive, taken literally (`%` and `_` too); empty
    /// matches every DAG.
    pub dag_id_contains: Option<&'a str>,
    /// DAGs with any of these tags; empty: every DAG.
    pub tags: &'a [String],
}

/// A page of DAGs by id, and how many match `filter`.
pub async fn page(
    pool: &PgPool,
    filter: &DagFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<Page<DagView>, sqlx::Error> {
    let pattern = filter
        .dag_id_contains
        .filter(|text| !text.is_empty())
        .map(like_pattern);
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM dag d
            WHERE ($1::bool IS NULL OR d.is_paused = $1) AND (NOT $2 OR d.is_active)
              AND ($3::text IS NULL OR d.dag_id ILIKE $3)
              AND (cardinality($4::text[]) = 0 OR d.tags && $4)"#,
        filter.paused,
        filter.only_active,
        pattern,
        filter.tags,
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query_as!(
        DagView,
        r#"SELECT d.dag_id, d.description, d.fileloc, d.is_active, d.is_paused, d.owners, d.tags,
                  d.schedule, d.timezone, d.max_active_runs, d.max_active_tasks, d.next_dagrun,
                  d.next_dagrun_interval_start, d.next_dagrun_interval_end,
                  d.next_dagrun_create_after, d.last_parsed_at,
                  EXISTS (SELECT 1 FROM import_error e WHERE e.fileloc = d.fileloc)
                      AS "has_import_errors!"
             FROM dag d
            WHERE ($1::bool IS NULL OR d.is_paused = $1) AND (NOT $2 OR d.is_active)
              AND ($3::text IS NULL OR d.dag_id ILIKE $3)
              AND (cardinality($4::text[]) = 0 OR d.tags && $4)
            ORDER BY d.dag_id LIMIT $5 OFFSET $6"#,
        filter.paused,
        filter.only_active,
        pattern,
        filter.tags,
        limit,
        offset,
    )
    .fetch_all(pool)
    .await?;
    Ok(Page { rows, total })
}

/// Escapes `%`, `_` and `\` so a user's text matches literally inside `ILIKE '%…%'`.
fn like_pattern(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

/// What the DAG list offers beside the page: the number of import errors, and the tags of
/// active DAGs (sorted, at most `max_tags`).
#[derive(Debug, Clone)]
pub struct DagListFacets {
    pub import_errors: i64,
    pub tags: Vec<String>,
}

pub async fn list_facets(pool: &PgPool, max_tags: i64) -> Result<DagListFacets, sqlx::Error> {
    sqlx::query_as!(
        DagListFacets,
        r#"SELECT (SELECT count(*) FROM import_error) AS "import_errors!",
                  ARRAY(SELECT DISTINCT unnest(tags) FROM dag WHERE is_active
                         ORDER BY 1 LIMIT $1) AS "tags!""#,
        max_tags
    )
    .fetch_one(pool)
    .await
}

/// The DAG gauges of `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct DagCounts {
    pub import_errors: i64,
    pub active: i64,
    /// Active and paused.
    pub paused: i64,
}

pub async fn counts(pool: &PgPool) -> Result<DagCounts, sqlx::Error> {
    sqlx::query_as!(
        DagCounts,
        r#"SELECT (SELECT count(*) FROM import_error) AS "import_errors!",
                  (SELECT count(*) FROM dag WHERE is_active) AS "active!",
                  (SELECT count(*) FROM dag WHERE is_active AND is_paused) AS "paused!""#
    )
    .fetch_one(pool)
    .await
}

pub(crate) fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_literal() {
        assert_eq!(like_pattern("a_b%"), "%a\\_b\\%%");
    }
}
