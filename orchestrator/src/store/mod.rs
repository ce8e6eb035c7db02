//! The PostgreSQL run store.

/// The schema migrations in the workspace's `migrations/`, shared by the binary and the tests.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
