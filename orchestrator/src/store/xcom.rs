//! `xcom` rows: task outputs (`return_value`) that templates of later tasks read, and that the
//! API lists.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::Page;

/// One XCom entry of a task instance.
#[derive(Debug, Clone, PartialEq)]
pub struct XComRow {
    pub key: String,
    pub value: Value,
    pub created_at: DateTime<Utc>,
}

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

/// Stores one entry of a running try (a key besides `return_value`, which the try's end writes).
pub async fn push(
    pool: &PgPool,
    task_instance_id: i64,
    key: &str,
    value: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO xcom (task_instance_id, key, value) VALUES ($1, $2, $3)
         ON CONFLICT (task_instance_id, key) DO UPDATE SET value = EXCLUDED.value",
        task_instance_id,
        key,
        value,
    )
    .execute(pool)
    .await
    .map(|_| ())
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

/// A page of a task instance's entries by key, and how many it has.
pub async fn page(
    pool: &PgPool,
    task_instance_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Page<XComRow>, sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "total!" FROM xcom WHERE task_instance_id = $1"#,
        task_instance_id
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query_as!(
        XComRow,
        "SELECT key, value, created_at FROM xcom WHERE task_instance_id = $1
          ORDER BY key LIMIT $2 OFFSET $3",
        task_instance_id,
        limit,
        offset,
    )
    .fetch_all(pool)
    .await?;
    Ok(Page { rows, total })
}

/// One entry of a task instance.
pub async fn get(
    pool: &PgPool,
    task_instance_id: i64,
    key: &str,
) -> Result<Option<XComRow>, sqlx::Error> {
    sqlx::query_as!(
        XComRow,
        "SELECT key, value, created_at FROM xcom WHERE task_instance_id = $1 AND key = $2",
        task_instance_id,
        key,
    )
    .fetch_optional(pool)
    .await
}
