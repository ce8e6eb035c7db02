//! `xcom` rows: task outputs (`return_value`) that templates of later tasks read.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgPool;

/// The `return_value` of every task of a run that has one, by task id.
pub async fn return_values(
    pool: &PgPool,
    dag_run_id: i64,
) -> Result<BTreeMap<String, Value>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT t.task_id, x.value FROM xcom x
           JOIN task_instance t ON t.id = x.task_instance_id
          WHERE t.dag_run_id = $1 AND x.key = 'return_value'",
        dag_run_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.task_id, row.value))
        .collect())
}

/// A new try starts without the previous try's outputs (as in Airflow).
pub async fn clear_for_new_try(pool: &PgPool, task_instance_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM xcom WHERE task_instance_id = $1",
        task_instance_id
    )
    .execute(pool)
    .await
    .map(|_| ())
}
