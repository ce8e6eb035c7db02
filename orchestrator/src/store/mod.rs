//! The PostgreSQL run store: the only module that speaks SQL. One module per table or aggregate;
//! rows are typed structs, states are the model's enums (mapped once, in `types.rs`), and every
//! statement is checked against the schema at compile time (`sqlx::query!`, with the offline
//! data in the workspace's `.sqlx/`).
//!
//! The web crate reads through read-models here as well: rows shaped for a page or an API
//! answer (`dags::DagView`, `task_instances::TaskInstanceView`, `runs::RecentRun`, …), each in
//! the module of the aggregate it is about, filters as typed structs, listings as [`Page`]s.
//!
//! The store applies decisions; it does not make them. Which task runs next, when a run ends,
//! when a run is due: those rules live in `crate::dag` and `crate::engine`, and reach the
//! statements here as parameters.
//!
//! Every write that other processes must react to also runs `pg_notify` on one of the
//! [`channels`], in the same transaction, so schedulers wake at once.

pub mod connections;
pub mod dags;
pub mod event_log;
pub mod import_errors;
pub mod logs;
pub mod processes;
pub mod runs;
pub mod sessions;
pub mod task_instances;
mod types;
pub mod users;
pub mod variables;
pub mod versions;
pub mod xcom;

pub use versions::DagCache;

/// One page of a listing, and how many rows match in all (the count is its own statement, so
/// `total` is right even for a page past the end).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub total: i64,
}

/// The schema migrations in the workspace's `migrations/`, shared by the binary and the tests.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// NOTIFY channels. Payloads are short texts named below. SQL never spells these names: they
/// are bound from here.
pub mod channels {
    /// A DAG changed (parsed, paused, unpaused): payload `dag_id`.
    pub const DAGS: &str = "updraft_dags";
    /// A run was created, cleared or marked, or ended: payload `dag_id`.
    pub const RUNS: &str = "updraft_runs";
    /// A task try will be retried (its delay may move the next sweep): payload `dag_id`.
    pub const TASKS: &str = "updraft_tasks";
    /// A `max_active_tasks` slot freed while tasks of the DAG wait for one: payload `dag_id`.
    pub const SLOTS: &str = "updraft_slots";
    /// Task instances became `queued`: payload `dag_id`. Executors claim.
    pub const QUEUED: &str = "updraft_queued";
    /// Task instances of the DAG changed state (claimed, ended): payload `dag_id`, at most once
    /// per DAG every 100 ms per process. For watchers (the UI's live view), not the engine.
    pub const STATES: &str = "updraft_states";
    /// What the run engine listens to.
    pub const ENGINE: [&str; 5] = [DAGS, RUNS, TASKS, SLOTS, QUEUED];
    /// Every channel: a watcher of state changes listens to all of them.
    pub const ALL: [&str; 6] = [DAGS, RUNS, TASKS, SLOTS, QUEUED, STATES];
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
    /// A statement made for several callers failed; each gets its message.
    #[error("{0}")]
    Shared(String),
}

impl StoreError {
    /// A connection-level failure (the database or the network away) or a deadlock, not an
    /// error in the SQL: worth retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            // A deadlock or serialization failure: the statement was rolled back, try again. A
            // connection the server ended (a restart, an administrator) or a connection
            // failure (class 08): another connection may succeed.
            StoreError::Database(sqlx::Error::Database(error)) => {
                error.code().is_some_and(|code| {
                    matches!(&*code, "40P01" | "40001" | "57P01" | "57P02" | "57P03")
                        || code.starts_with("08")
                })
            }
            StoreError::Database(error) => !matches!(
                error,
                sqlx::Error::Database(_)
                    | sqlx::Error::RowNotFound
                    | sqlx::Error::ColumnDecode { .. }
                    | sqlx::Error::TypeNotFound { .. }
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::ColumnIndexOutOfBounds { .. }
                    | sqlx::Error::Decode(_)
                    | sqlx::Error::Encode(_)
            ),
            _ => false,
        }
    }
}

/// Opens a pool on `url` with the session settings the store's statements are planned for.
///
/// Every statement here reads or writes rows by key or through a small partial index, over a
/// working set held in memory. Rows change state thousands of times a second, so table
/// statistics lag behind, and a table whose statistics say it is small (say `dag_run`, bloated
/// by its counter updates) would be scanned whole for one row. `random_page_cost = 1.1`,
/// PostgreSQL's advice for data on SSD or in cache, keeps the key lookup the cheaper plan.
pub async fn connect(url: &str, max_connections: u32) -> Result<sqlx::PgPool, sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options.options([("random_page_cost", "1.1")]))
        .await
}

/// A pool like `pool` (same server, same size, opened lazily) for the run engine's statements,
/// planned once per connection (`plan_cache_mode = force_generic_plan`). They run thousands of
/// times a second with arrays of ids whose length the planner would otherwise plan for anew at
/// every call; and their plans must not depend on the values bound (every one is a key lookup
/// or a small partial-index scan), which a generic plan guarantees. The web's statements, with
/// optional filters, keep parameter-specific plans on their own pool.
pub fn engine_pool(pool: &sqlx::PgPool) -> sqlx::PgPool {
    let options = pool.connect_options().as_ref().clone().options([
        ("plan_cache_mode", "force_generic_plan"),
        ("random_page_cost", "1.1"),
    ]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(pool.options().get_max_connections())
        .connect_lazy_with(options)
}

/// `pg_notify(channel, payload)` on any executor (pool, connection or transaction).
pub async fn notify<'e, E>(executor: E, channel: &str, payload: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query!("SELECT pg_notify($1, $2)", channel, payload)
        .execute(executor)
        .await
        .map(|_| ())
}

/// `pg_notify(channel, payload)` for each of `payloads`, in one statement.
pub async fn notify_each(
    pool: &sqlx::PgPool,
    channel: &str,
    payloads: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payloads(payload)",
        channel,
        payloads
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Waits for notifications on `channels` (a dedicated connection from `pool`'s options).
pub async fn listen(
    pool: &sqlx::PgPool,
    channels: &[&str],
) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen_all(channels.iter().copied()).await?;
    Ok(listener)
}
