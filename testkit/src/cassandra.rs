//! Cassandra for tests, on the node of [`crate::cassandra_contact_points`]: a session, keyspaces,
//! and counting rows.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Statement;

/// A session on the contact points; panics if none answers.
pub async fn session() -> Session {
    let nodes = crate::cassandra_contact_points();
    SessionBuilder::new()
        .known_nodes(nodes.split(',').map(str::trim))
        .build()
        .await
        .unwrap_or_else(|error| panic!("no Cassandra session on {nodes}: {error}"))
}

/// Creates `keyspace` (SimpleStrategy, replication factor 1); panics if it fails.
pub async fn create_keyspace(session: &Session, keyspace: &str) {
    let cql = format!(
        "CREATE KEYSPACE {keyspace} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    );
    session
        .query_unpaged(cql, ())
        .await
        .unwrap_or_else(|error| panic!("cannot create keyspace {keyspace}: {error}"));
}

/// Drops `keyspace` if it exists; panics if that fails.
pub async fn drop_keyspace(session: &Session, keyspace: &str) {
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await
        .unwrap_or_else(|error| panic!("cannot drop keyspace {keyspace}: {error}"));
}

/// `SELECT COUNT(*)` of `table` (`keyspace.table`), allowed a minute on a large table; 0 while
/// the table does not exist (a worker creates it when it starts).
pub async fn count_rows(session: &Session, table: &str) -> i64 {
    let mut statement = Statement::new(format!("SELECT COUNT(*) FROM {table}"));
    statement.set_request_timeout(Some(Duration::from_secs(60)));
    match session.query_unpaged(statement, ()).await {
        Ok(result) => result
            .into_rows_result()
            .ok()
            .and_then(|rows| rows.single_row::<(i64,)>().ok())
            .map_or(0, |(n,)| n),
        Err(_) => 0,
    }
}
