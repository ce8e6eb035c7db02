//! The PostgreSQL run store: typed reads and writes of DAGs, runs and task instances.
//!
//! Every write that other processes must react to also runs `pg_notify` on one of the
//! [`channels`], in the same transaction, so schedulers wake at once.

pub mod dags;
pub mod runs;
pub mod state;
pub mod task_instances;
pub mod versions;

pub use state::{RunState, TaskState, allowed, run_allowed};
pub use versions::DagCache;

/// The schema migrations in the workspace's `migrations/`, shared by the binary and the tests.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// NOTIFY channels. Payloads are short texts named below.
pub mod channels {
    /// A DAG changed (parsed, paused, unpaused): payload `dag_id`.
    pub const DAGS: &str = "updraft_dags";
    /// A run was created, cleared or marked: payload `dag_id`.
    pub const RUNS: &str = "updraft_runs";
    /// A task try ended without a local follow-up (retry due later, reaped): payload `dag_id`.
    pub const TASKS: &str = "updraft_tasks";
    /// Task instances became `queued`: payload `dag_id`. Executors claim.
    pub const QUEUED: &str = "updraft_queued";
    pub const ALL: [&str; 4] = [DAGS, RUNS, TASKS, QUEUED];
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid state change of {what}: {from} -> {to}")]
    InvalidTransition {
        what: String,
        from: String,
        to: String,
    },
    #[error("stored DAG version {version_id} cannot be read: {message}")]
    Snapshot { version_id: i64, message: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// `pg_notify(channel, payload)` on any executor (pool, connection or transaction).
pub async fn notify<'e, E>(executor: E, channel: &str, payload: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(executor)
        .await
        .map(|_| ())
}
