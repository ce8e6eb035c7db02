//! `task_log` rows: the lines a try wrote, stored in batches as they come, and read in pages.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One stored line; `id` orders the lines and is the continuation point of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub id: i64,
    pub logged_at: DateTime<Utc>,
    pub line: String,
}

/// One batch of lines, each with its task instance and try.
pub async fn append(
    pool: &PgPool,
    task_instance_ids: &[i64],
    try_numbers: &[i32],
    lines: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO task_log (task_instance_id, try_number, line)
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[])",
        task_instance_ids,
        try_numbers,
        lines,
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Lines of one try after line id `after`, at most `limit` (index `task_log_by_try`).
pub async fn lines(
    pool: &PgPool,
    task_instance_id: i64,
    try_number: i32,
    after: i64,
    limit: i64,
) -> Result<Vec<LogLine>, sqlx::Error> {
    sqlx::query_as!(
        LogLine,
        "SELECT id, logged_at, line FROM task_log
          WHERE task_instance_id = $1 AND try_number = $2 AND id > $3 ORDER BY id LIMIT $4",
        task_instance_id,
        try_number,
        after,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The last `limit` lines of one try, oldest first (index `task_log_by_try`, backwards).
pub async fn tail(
    pool: &PgPool,
    task_instance_id: i64,
    try_number: i32,
    limit: i64,
) -> Result<Vec<LogLine>, sqlx::Error> {
    let mut lines = sqlx::query_as!(
        LogLine,
        "SELECT id, logged_at, line FROM task_log
          WHERE task_instance_id = $1 AND try_number = $2 ORDER BY id DESC LIMIT $3",
        task_instance_id,
        try_number,
        limit,
    )
    .fetch_all(pool)
    .await?;
    lines.reverse();
    Ok(lines)
}
