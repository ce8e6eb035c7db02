//! A PostgreSQL database of one's own for a test, dropped when the test ends.

use std::sync::mpsc;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

/// How long dropping a database may take before the test goes on without it.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// An empty database on the server of [`crate::database_url`], dropped (with `FORCE`, so open
/// connections do not keep it alive) when this guard goes out of scope, test failures included.
///
/// Tests that start schedulers or servers each take one, so they never see each other's rows.
pub struct TestDatabase {
    url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a database named after `prefix` (made unique: pid, time and a counter).
    pub async fn create(prefix: &str) -> TestDatabase {
        let server_url = crate::database_url();
        let name = crate::unique_name(prefix).to_lowercase();
        let mut admin = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {server_url}: {error}"));
        admin
            .execute(statement(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
        let _ = admin.close().await;
        let url = match server_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => format!("{server_url}/{name}"),
        };
        TestDatabase { url, name }
    }

    /// The URL of this database (the server's URL with this database's name).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An outage of this database alone (the server keeps serving the others): new connections
    /// are refused and the open ones ended, until [`TestDatabase::end_outage`].
    pub async fn begin_outage(&self) {
        self.admin(&[
            format!(
                "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
                self.name
            ),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ),
        ])
        .await;
    }

    pub async fn end_outage(&self) {
        let allow = format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
            self.name
        );
        self.admin(&[allow]).await;
    }

    /// Runs one schema statement in this database: a test's own rule (a constraint standing
    /// for anything PostgreSQL may refuse) or fault.
    pub async fn alter_schema(&self, sql: &str) {
        let mut connection = PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url));
        connection
            .execute(statement(sql.to_string()))
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        let _ = connection.close().await;
    }

    /// Every row of `table` as PostgreSQL prints it (`row::text`): what is stored, for tests
    /// that must see the raw contents (no secret in plain text at rest).
    pub async fn raw_rows(&self, table: &str) -> Vec<String> {
        let mut connection = PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url));
        let sql = format!("SELECT t::text FROM {table} t");
        let rows: Vec<String> = sqlx::query_scalar(statement(sql.clone()))
            .fetch_all(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        let _ = connection.close().await;
        rows
    }

    async fn admin(&self, statements: &[String]) {
        let server_url = crate::database_url();
        let mut admin = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {server_url}: {error}"));
        for sql in statements {
            admin
                .execute(statement(sql.clone()))
                .await
                .unwrap_or_else(|error| panic!("{sql}: {error}"));
        }
        let _ = admin.close().await;
    }
}

impl Drop for TestDatabase {
    /// `Drop` cannot await, and may run inside a runtime that must not be blocked on itself: the
    /// statement runs on a thread of its own with a small runtime. Failures are reported, never
    /// raised (a panic here would abort a test that is already unwinding).
    fn drop(&mut self) {
        let name = self.name.clone();
        let (done, finished) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("drop {name}"))
            .spawn(move || {
                let _ = done.send(drop_database(&name));
            });
        if let Err(error) = spawned {
            eprintln!("testkit: database {} not dropped: {error}", self.name);
            return;
        }
        match finished.recv_timeout(DROP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("testkit: database {} not dropped: {error}", self.name),
            Err(_) => eprintln!(
                "testkit: database {} not dropped within {DROP_TIMEOUT:?}",
                self.name
            ),
        }
    }
}

fn drop_database(name: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&crate::database_url())
            .await
            .map_err(|error| error.to_string())?;
        let dropped = admin
            .execute(statement(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .await;
        let _ = admin.close().await;
        dropped.map(drop).map_err(|error| error.to_string())
    })
}

/// `CREATE`/`DROP`/`ALTER DATABASE` cannot take bind parameters; the name is ours (a test prefix plus
/// pid, time and a counter), never user input, and schema statements come from tests.
fn statement(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        let mut admin = PgConnection::connect(&crate::database_url())
            .await
            .expect("connect");
        let found = admin
            .fetch_optional(statement(format!(
                "SELECT 1 FROM pg_database WHERE datname = '{name}'"
            )))
            .await
            .expect("look the database up");
        found.is_some()
    }

    #[tokio::test]
    async fn the_database_exists_until_the_guard_drops_even_with_connections_open() {
        if !crate::require_postgres() {
            return;
        }
        let database = TestDatabase::create("testkit_guard").await;
        let name = database.name().to_string();
        assert!(database.url().ends_with(&format!("/{name}")));
        let mut open = PgConnection::connect(database.url())
            .await
            .expect("connect to the test database");
        open.execute("SELECT 1").await.expect("use it");
        assert!(exists(&name).await);
        drop(database);
        assert!(!exists(&name).await, "{name} is still there");
    }
}
