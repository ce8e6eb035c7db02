//! `dag_version` rows: every distinct parsed form of a DAG. Runs point at the version they
//! started with; a version never changes once written, so parsed versions are cached by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::dag::Dag;

#[derive(Default)]
pub struct DagCache {
    versions: Mutex<HashMap<i64, Arc<Dag>>>,
}

impl DagCache {
    pub fn new() -> DagCache {
        DagCache::default()
    }

    /// The parsed snapshot of DAG version `version_id`.
    pub async fn get<'e, E>(&self, executor: E, version_id: i64) -> Result<Arc<Dag>, StoreError>
    where
        E: sqlx::PgExecutor<'e>,
    {
        if let Some(dag) = self.cached(version_id) {
            return Ok(dag);
        }
        let snapshot =
            sqlx::query_scalar!("SELECT snapshot FROM dag_version WHERE id = $1", version_id)
                .fetch_optional(executor)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("DAG version {version_id}")))?;
        self.parsed(version_id, &snapshot)
    }

    /// Version `version_id` from its stored snapshot, parsed once.
    fn parsed(&self, version_id: i64, snapshot: &Value) -> Result<Arc<Dag>, StoreError> {
        if let Some(dag) = self.cached(version_id) {
            return Ok(dag);
        }
        let dag = Arc::new(parse_snapshot(version_id, snapshot)?);
        if let Ok(mut versions) = self.versions.lock() {
            versions.insert(version_id, Arc::clone(&dag));
        }
        Ok(dag)
    }

    fn cached(&self, version_id: i64) -> Option<Arc<Dag>> {
        self.versions
            .lock()
            .ok()
            .and_then(|versions| versions.get(&version_id).cloned())
    }
}

fn parse_snapshot(version_id: i64, snapshot: &Value) -> Result<Dag, StoreError> {
    Dag::from_snapshot(snapshot).map_err(|error| StoreError::Snapshot {
        version_id,
        message: error.to_string(),
    })
}

/// The latest version of a DAG: (version id, parsed DAG); `None` for an unknown DAG. One
/// round trip: the snapshot comes with the id (parsed only when not cached).
pub async fn latest(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
) -> Result<Option<(i64, Arc<Dag>)>, StoreError> {
    let row = sqlx::query!(
        "SELECT v.id, v.snapshot FROM dag d JOIN dag_version v ON v.id = d.latest_version_id
          WHERE d.dag_id = $1",
        dag_id
    )
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(Some((row.id, cache.parsed(row.id, &row.snapshot)?))),
        None => Ok(None),
    }
}

/// The latest version of a DAG as the UI and API show it: its number, YAML source and parsed
/// snapshot.
#[derive(Debug, Clone)]
pub struct LatestVersion {
    pub version_number: i32,
    /// `None` when this build cannot read the stored snapshot (one written by another version
    /// of Updraft): pages then show the rest.
    pub dag: Option<Dag>,
    pub source: String,
}

pub async fn latest_with_source(
    pool: &PgPool,
    dag_id: &str,
) -> Result<Option<LatestVersion>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT v.snapshot, v.source, v.version_number
           FROM dag d JOIN dag_version v ON v.id = d.latest_version_id
          WHERE d.dag_id = $1",
        dag_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| LatestVersion {
        version_number: row.version_number,
        dag: Dag::from_snapshot(&row.snapshot).ok(),
        source: row.source,
    }))
}

/// The numbers of a DAG's versions, in order (a file edited back to earlier content adds none).
pub async fn numbers(pool: &PgPool, dag_id: &str) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT version_number FROM dag_version WHERE dag_id = $1 ORDER BY version_number",
        dag_id
    )
    .fetch_all(pool)
    .await
}

/// Records `dag`'s version (a file edited back to an earlier content reuses that version);
/// returns its id.
pub async fn record(
    conn: &mut PgConnection,
    dag: &Dag,
    source_hash: &str,
    source: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO dag_version (dag_id, version_number, source_hash, snapshot, source)
         SELECT $1, COALESCE(MAX(version_number), 0) + 1, $2, $3, $4
           FROM dag_version WHERE dag_id = $1
         ON CONFLICT (dag_id, source_hash) DO UPDATE SET source_hash = EXCLUDED.source_hash
         RETURNING id",
        dag.dag_id,
        source_hash,
        dag.snapshot(),
        source,
    )
    .fetch_one(conn)
    .await
}
