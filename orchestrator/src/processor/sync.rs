//! Writes one parse of the DAGs folder to the database: DAGs and their versions, import errors,
//! and DAGs whose file is gone.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

use crate::dag::{FolderLoad, LoadedDag};

/// What one sync found and changed.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    /// DAGs that parsed.
    pub dags: usize,
    /// DAGs that are new or whose file changed (a new version was recorded).
    pub changed: Vec<String>,
    pub import_errors: usize,
    /// DAGs whose file disappeared.
    pub deactivated: Vec<String>,
    pub parse_time: Duration,
    pub total_time: Duration,
}

struct KnownDag {
    fileloc: String,
    source_hash: String,
    is_active: bool,
}

pub(super) async fn apply(
    pool: &PgPool,
    folder: &Path,
    load: &FolderLoad,
) -> Result<SyncReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Several schedulers may share a folder: one sync at a time keeps version numbers dense.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('updraft_dag_processor'))")
        .execute(&mut *tx)
        .await?;
    let known = known_dags(&mut tx).await?;
    let mut report = SyncReport {
        dags: load.dags.len(),
        import_errors: load.errors.len(),
        ..SyncReport::default()
    };
    for loaded in &load.dags {
        let fileloc = loaded.path.display().to_string();
        let unchanged = known.get(&loaded.dag.dag_id).is_some_and(|dag| {
            dag.is_active && dag.source_hash == loaded.source_hash && dag.fileloc == fileloc
        });
        if !unchanged {
            upsert_dag(&mut tx, loaded, &fileloc).await?;
            report.changed.push(loaded.dag.dag_id.clone());
        }
    }
    record_import_errors(&mut tx, folder, load).await?;
    report.deactivated = deactivate_missing(&mut tx, folder, load).await?;
    for dag_id in report.changed.iter().chain(&report.deactivated) {
        sqlx::query("SELECT pg_notify('updraft_dags', $1)")
            .bind(dag_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(report)
}

async fn known_dags(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<HashMap<String, KnownDag>, sqlx::Error> {
    let rows: Vec<(String, String, String, bool)> =
        sqlx::query_as("SELECT dag_id, fileloc, source_hash, is_active FROM dag")
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(dag_id, fileloc, source_hash, is_active)| {
            (
                dag_id,
                KnownDag {
                    fileloc,
                    source_hash,
                    is_active,
                },
            )
        })
        .collect())
}

/// Records the DAG and, when its content is new, a new version. The next run is left for the
/// scheduler to recompute (the schedule or start date may have changed).
async fn upsert_dag(
    tx: &mut Transaction<'_, Postgres>,
    loaded: &LoadedDag,
    fileloc: &str,
) -> Result<(), sqlx::Error> {
    let dag = &loaded.dag;
    sqlx::query(
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
    )
    .bind(&dag.dag_id)
    .bind(fileloc)
    .bind(&loaded.source_hash)
    .bind(dag.is_paused_upon_creation)
    .bind(&dag.description)
    .bind(dag.schedule.as_written())
    .bind(dag.timezone.name())
    .bind(owners(loaded))
    .bind(&dag.tags)
    .bind(to_i32(dag.max_active_runs))
    .bind(to_i32(dag.max_active_tasks))
    .execute(&mut **tx)
    .await?;
    // A file edited back to an earlier content reuses that version.
    let (version_id,): (i64,) = sqlx::query_as(
        "INSERT INTO dag_version (dag_id, version_number, source_hash, snapshot, source)
         SELECT $1, COALESCE(MAX(version_number), 0) + 1, $2, $3, $4
           FROM dag_version WHERE dag_id = $1
         ON CONFLICT (dag_id, source_hash) DO UPDATE SET source_hash = EXCLUDED.source_hash
         RETURNING id",
    )
    .bind(&dag.dag_id)
    .bind(&loaded.source_hash)
    .bind(dag.snapshot())
    .bind(&loaded.source)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("UPDATE dag SET latest_version_id = $2 WHERE dag_id = $1")
        .bind(&dag.dag_id)
        .bind(version_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Airflow shows the distinct owners of a DAG's tasks.
fn owners(loaded: &LoadedDag) -> String {
    let owners: BTreeSet<&str> = std::iter::once(loaded.dag.owner.as_str())
        .chain(loaded.dag.tasks.iter().map(|task| task.owner.as_str()))
        .filter(|owner| !owner.is_empty())
        .collect();
    owners.into_iter().collect::<Vec<_>>().join(", ")
}

fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// One row per failing file (all its diagnostics); rows of files that now parse, or are gone, go.
async fn record_import_errors(
    tx: &mut Transaction<'_, Postgres>,
    folder: &Path,
    load: &FolderLoad,
) -> Result<(), sqlx::Error> {
    let mut failing = Vec::with_capacity(load.errors.len());
    for error in &load.errors {
        let fileloc = error.path.display().to_string();
        let message = error
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        sqlx::query(
            "INSERT INTO import_error (fileloc, source_hash, message) VALUES ($1, $2, $3)
             ON CONFLICT (fileloc) DO UPDATE SET source_hash = EXCLUDED.source_hash,
                 message = EXCLUDED.message, created_at = now()
             WHERE import_error.source_hash <> EXCLUDED.source_hash
                OR import_error.message <> EXCLUDED.message",
        )
        .bind(&fileloc)
        .bind(&error.source_hash)
        .bind(&message)
        .execute(&mut **tx)
        .await?;
        failing.push(fileloc);
    }
    sqlx::query(
        "DELETE FROM import_error WHERE starts_with(fileloc, $1) AND NOT (fileloc = ANY($2))",
    )
    .bind(folder_prefix(folder))
    .bind(&failing)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// DAGs of this folder whose file no longer defines them. A file that fails to parse keeps its
/// DAG active on the last good version, as Airflow does, so a typo never stops running DAGs.
async fn deactivate_missing(
    tx: &mut Transaction<'_, Postgres>,
    folder: &Path,
    load: &FolderLoad,
) -> Result<Vec<String>, sqlx::Error> {
    let present: Vec<String> = load
        .dags
        .iter()
        .map(|loaded| loaded.dag.dag_id.clone())
        .collect();
    let failing: Vec<String> = load
        .errors
        .iter()
        .map(|error| error.path.display().to_string())
        .collect();
    let rows: Vec<(String,)> = sqlx::query_as(
        "UPDATE dag SET is_active = FALSE, next_dagrun = NULL, next_dagrun_interval_start = NULL,
                        next_dagrun_interval_end = NULL, next_dagrun_create_after = NULL
         WHERE is_active AND starts_with(fileloc, $1)
           AND NOT (dag_id = ANY($2)) AND NOT (fileloc = ANY($3))
         RETURNING dag_id",
    )
    .bind(folder_prefix(folder))
    .bind(&present)
    .bind(&failing)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|(dag_id,)| dag_id).collect())
}

fn folder_prefix(folder: &Path) -> String {
    let mut prefix = folder.display().to_string();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    prefix
}
