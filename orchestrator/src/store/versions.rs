//! Parsed DAG versions, cached by id: a version never changes once written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;

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
        let snapshot: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT snapshot FROM dag_version WHERE id = $1")
                .bind(version_id)
                .fetch_optional(executor)
                .await?;
        let snapshot =
            snapshot.ok_or_else(|| StoreError::NotFound(format!("DAG version {version_id}")))?;
        let dag = Dag::from_snapshot(&snapshot).map_err(|error| StoreError::Snapshot {
            version_id,
            message: error.to_string(),
        })?;
        let dag = Arc::new(dag);
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

/// The latest version of a DAG: (version id, parsed DAG).
pub async fn latest(
    pool: &PgPool,
    cache: &DagCache,
    dag_id: &str,
) -> Result<Option<(i64, Arc<Dag>)>, StoreError> {
    let version: Option<Option<i64>> =
        sqlx::query_scalar("SELECT latest_version_id FROM dag WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_optional(pool)
            .await?;
    match version.flatten() {
        Some(id) => Ok(Some((id, cache.get(pool, id).await?))),
        None => Ok(None),
    }
}
