//! DAG rows: pausing.

use sqlx::PgPool;

use super::{StoreError, channels, notify};

/// Pauses or unpauses a DAG; `Ok(false)` when it does not exist. Unpausing recomputes the next
/// scheduled run, so a `catchup: false` DAG resumes at the latest interval.
pub async fn set_paused(pool: &PgPool, dag_id: &str, paused: bool) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query(
        "UPDATE dag SET is_paused = $2, \
         next_dagrun_checked_version = CASE WHEN $2 THEN next_dagrun_checked_version END \
         WHERE dag_id = $1",
    )
    .bind(dag_id)
    .bind(paused)
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
