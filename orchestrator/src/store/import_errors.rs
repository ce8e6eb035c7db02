//! `import_error` rows: files of the DAGs folder that failed to parse, one row per file with
//! every diagnostic (file:line:col). A row goes when its file is fixed or deleted.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::Page;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportErrorRow {
    pub id: i64,
    pub fileloc: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// Records a failing file; an unchanged error keeps its row (and its timestamp).
pub async fn record(
    conn: &mut PgConnection,
    fileloc: &str,
    source_hash: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO import_error (fileloc, source_hash, message) VALUES ($1, $2, $3)
         ON CONFLICT (fileloc) DO UPDATE SET source_hash = EXCLUDED.source_hash,
             message = EXCLUDED.message, created_at = now()
         WHERE import_error.source_hash <> EXCLUDED.source_hash
            OR import_error.message <> EXCLUDED.message",
        fileloc,
        source_hash,
        message,
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Removes the rows of the folder at `folder_prefix` whose file is not in `failing`.
pub async fn keep_only(
    conn: &mut PgConnection,
    folder_prefix: &str,
    failing: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM import_error WHERE starts_with(fileloc, $1) AND NOT (fileloc = ANY($2))",
        folder_prefix,
        failing,
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Every import error, by file.
pub async fn all(pool: &PgPool) -> Result<Vec<ImportErrorRow>, sqlx::Error> {
    sqlx::query_as!(
        ImportErrorRow,
        "SELECT id, fileloc, message, created_at FROM import_error ORDER BY fileloc"
    )
    .fetch_all(pool)
    .await
}

/// The orders of a page of import errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportErrorOrder {
    Id,
    File,
}

/// A page of import errors, and how many there are.
pub async fn page(
    pool: &PgPool,
    order: ImportErrorOrder,
    limit: i64,
    offset: i64,
) -> Result<Page<ImportErrorRow>, sqlx::Error> {
    let total = count(pool).await?;
    let rows = match order {
        ImportErrorOrder::Id => {
            sqlx::query_as!(
                ImportErrorRow,
                "SELECT id, fileloc, message, created_at FROM import_error
                  ORDER BY id LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
            .fetch_all(pool)
            .await?
        }
        ImportErrorOrder::File => {
            sqlx::query_as!(
                ImportErrorRow,
                "SELECT id, fileloc, message, created_at FROM import_error
                  ORDER BY fileloc LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
            .fetch_all(pool)
            .await?
        }
    };
    Ok(Page { rows, total })
}

async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM import_error"#)
        .fetch_one(pool)
        .await
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<ImportErrorRow>, sqlx::Error> {
    sqlx::query_as!(
        ImportErrorRow,
        "SELECT id, fileloc, message, created_at FROM import_error WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await
}

/// The import error of one file, if it fails to parse.
pub async fn for_file(pool: &PgPool, fileloc: &str) -> Result<Option<ImportErrorRow>, sqlx::Error> {
    sqlx::query_as!(
        ImportErrorRow,
        "SELECT id, fileloc, message, created_at FROM import_error WHERE fileloc = $1",
        fileloc
    )
    .fetch_optional(pool)
    .await
}
