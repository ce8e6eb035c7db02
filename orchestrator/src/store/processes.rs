//! `scheduler_process` rows: live scheduler processes, for /health and for telling who owns
//! what. Claims themselves carry the owner; this table only describes it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Records (or refreshes) this process.
pub async fn register(
    pool: &PgPool,
    owner: &str,
    hostname: &str,
    pid: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO scheduler_process (id, hostname, pid) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
        owner,
        hostname,
        pid,
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Refreshes this process's heartbeat; `false` when its row is gone (forgotten after a long
/// silence), to be registered again.
pub async fn beat(pool: &PgPool, owner: &str) -> Result<bool, sqlx::Error> {
    let beaten = sqlx::query!(
        "UPDATE scheduler_process SET heartbeat_at = now() WHERE id = $1",
        owner
    )
    .execute(pool)
    .await?;
    Ok(beaten.rows_affected() > 0)
}

/// Forgets processes silent for longer than `silence`.
pub async fn forget_silent(pool: &PgPool, silence: Duration) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM scheduler_process WHERE heartbeat_at < now() - make_interval(secs => $1)",
        silence.as_secs_f64(),
    )
    .execute(pool)
    .await
    .map(|_| ())
}

pub async fn unregister(pool: &PgPool, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM scheduler_process WHERE id = $1", owner)
        .execute(pool)
        .await
        .map(|_| ())
}

/// The latest heartbeat of any scheduler process.
pub async fn latest_heartbeat(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!("SELECT max(heartbeat_at) FROM scheduler_process")
        .fetch_one(pool)
        .await
}
