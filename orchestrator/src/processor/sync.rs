//! Writes one parse of the DAGs folder to the database: DAGs and their versions, import errors,
//! and DAGs whose file is gone.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use sqlx::PgPool;

use updraft_operators::PluginsLoad;

use crate::dag::{FolderLoad, LoadedDag};
use crate::store::dags::DagFile;
use crate::store::{channels, dags, import_errors, notify, versions};

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
    /// Files read and parsed by this scan (unchanged ones come from the processor's cache).
    pub parsed_files: usize,
    pub parse_time: Duration,
    pub total_time: Duration,
}

pub(super) async fn apply(
    pool: &PgPool,
    folder: &Path,
    load: &FolderLoad,
    plugins: Option<&PluginsLoad>,
) -> Result<SyncReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Several schedulers may share a folder: one sync at a time keeps version numbers dense.
    dags::lock_for_sync(&mut tx).await?;
    let known = dags::known(&mut tx).await?;
    let mut report = SyncReport {
        dags: load.dags.len(),
        import_errors: load.errors.len(),
        ..SyncReport::default()
    };
    let mut refused: Vec<(String, &String, String)> = Vec::new();
    for loaded in &load.dags {
        let fileloc = loaded.path.display().to_string();
        let unchanged = known.get(&loaded.dag.dag_id).is_some_and(|dag| {
            dag.is_active && dag.source_hash == loaded.source_hash && dag.fileloc == fileloc
        });
        if unchanged {
            continue;
        }
        // Each file in a savepoint: one the database refuses is an import error of its own
        // and never stops the others.
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        match store_dag(&mut savepoint, loaded, &fileloc).await {
            Ok(()) => {
                savepoint.commit().await?;
                report.changed.push(loaded.dag.dag_id.clone());
            }
            Err(error) => {
                savepoint.rollback().await?;
                tracing::warn!(file = %fileloc, %error, "the database refused a DAG file");
                refused.push((fileloc, &loaded.source_hash, error.to_string()));
            }
        }
    }
    let prefix = folder_prefix(folder);
    let mut failing = Vec::with_capacity(load.errors.len() + refused.len());
    report.import_errors += refused.len();
    for (fileloc, source_hash, error) in refused {
        let message = format!("{fileloc}:1:1: cannot store this DAG: {error}");
        import_errors::record(&mut tx, &fileloc, source_hash, &message).await?;
        failing.push(fileloc);
    }
    for error in &load.errors {
        let fileloc = error.path.display().to_string();
        let message = error
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        import_errors::record(&mut tx, &fileloc, &error.source_hash, &message).await?;
        failing.push(fileloc);
    }
    import_errors::keep_only(&mut tx, &prefix, &failing).await?;
    if let Some(plugins) = plugins {
        report.import_errors += plugins.errors.len();
        record_plugin_errors(&mut tx, plugins).await?;
    }
    // A file that fails to parse keeps its DAG active on the last good version.
    let present: Vec<String> = load
        .dags
        .iter()
        .map(|loaded| loaded.dag.dag_id.clone())
        .collect();
    report.deactivated = dags::deactivate_missing(&mut tx, &prefix, &present, &failing).await?;
    for dag_id in report.changed.iter().chain(&report.deactivated) {
        notify(&mut *tx, channels::DAGS, dag_id).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// A plugin that did not load is an import error of its manifest, until it loads.
async fn record_plugin_errors(
    conn: &mut sqlx::PgConnection,
    plugins: &PluginsLoad,
) -> Result<(), sqlx::Error> {
    let mut failing = Vec::with_capacity(plugins.errors.len());
    for (file, message) in &plugins.errors {
        let fileloc = std::path::absolute(file)
            .unwrap_or_else(|_| file.clone())
            .display()
            .to_string();
        import_errors::record(&mut *conn, &fileloc, "", message).await?;
        failing.push(fileloc);
    }
    import_errors::keep_only(&mut *conn, &folder_prefix(&plugins.folder), &failing).await
}

/// A DAG that parsed: its row, a new version, and that version as its latest.
async fn store_dag(
    conn: &mut sqlx::PgConnection,
    loaded: &LoadedDag,
    fileloc: &str,
) -> Result<(), sqlx::Error> {
    let file = DagFile {
        dag: &loaded.dag,
        fileloc,
        source_hash: &loaded.source_hash,
        owners: &owners(loaded),
    };
    dags::upsert(&mut *conn, &file).await?;
    let version_id =
        versions::record(&mut *conn, &loaded.dag, &loaded.source_hash, &loaded.source).await?;
    dags::set_latest_version(&mut *conn, &loaded.dag.dag_id, version_id).await
}

/// Airflow shows the distinct owners of a DAG's tasks.
fn owners(loaded: &LoadedDag) -> String {
    let owners: BTreeSet<&str> = std::iter::once(loaded.dag.owner.as_str())
        .chain(loaded.dag.tasks.iter().map(|task| task.owner.as_str()))
        .filter(|owner| !owner.is_empty())
        .collect();
    owners.into_iter().collect::<Vec<_>>().join(", ")
}

fn folder_prefix(folder: &Path) -> String {
    let mut prefix = folder.display().to_string();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    prefix
}
