//! `task_log` rows: the lines a try wrote, stored in batches as they come.

use sqlx::PgPool;

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
