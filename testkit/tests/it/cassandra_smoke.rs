//! The local stack's Cassandra, from Rust: keyspace, table, insert, read back, count.

#[tokio::test]
async fn cassandra_round_trip() {
    if !testkit::require_cassandra() {
        return;
    }
    let session = testkit::cassandra::session().await;
    let keyspace = testkit::unique_name("smoke");
    testkit::cassandra::create_keyspace(&session, &keyspace).await;
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

    assert_eq!(
        testkit::cassandra::count_rows(&session, &format!("{keyspace}.people")).await,
        1
    );

    testkit::cassandra::drop_keyspace(&session, &keyspace).await;
}
