//! The local stack's Cassandra, from Rust: keyspace, table, insert, read back.

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

#[tokio::test]
async fn cassandra_round_trip() {
    if !testkit::require_cassandra() {
        return;
    }
    let session: Session = SessionBuilder::new()
        .known_nodes(testkit::cassandra_contact_points().split(','))
        .build()
        .await
        .unwrap();
    let keyspace = testkit::unique_name("smoke");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            &[],
        )
        .await
        .unwrap();
    session
        .query_unpaged(
            format!("CREATE TABLE {keyspace}.people (id uuid PRIMARY KEY, name text)"),
            &[],
        )
        .await
        .unwrap();

    let id = uuid::Uuid::new_v4();
    let insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.people (id, name) VALUES (?, ?)"
        ))
        .await
        .unwrap();
    session
        .execute_unpaged(&insert, (id, "Zoë Ünal"))
        .await
        .unwrap();

    let rows = session
        .query_unpaged(
            format!("SELECT id, name FROM {keyspace}.people WHERE id = ?"),
            (id,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (read_id, name): (uuid::Uuid, String) = rows.single_row().unwrap();
    assert_eq!((read_id, name.as_str()), (id, "Zoë Ünal"));

    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[])
        .await
        .unwrap();
}
