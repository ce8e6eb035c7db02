//! `variable` rows: Airflow's Variables (templates read them with `var('name')`).

use std::collections::BTreeMap;

use sqlx::PgPool;

/// Every variable, by key.
pub async fn all(pool: &PgPool) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let rows = sqlx::query!("SELECT key, val FROM variable")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|row| (row.key, row.val)).collect())
}
