//! The local stack's PostgreSQL from Rust: sqlx runs the migrations and a query.

#[tokio::test]
async fn migrations_run_and_a_query_round_trips() {
    if !testkit::require_postgres() {
        return;
    }
    let database = testkit::TestDatabase::create("smoke").await;
    let pool = sqlx::PgPool::connect(database.url())
        .await
        .expect("connect");
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    // Running them again is a no-op, as `updraft db migrate` on every start relies on.
    updraft_orchestrator::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate again");

    sqlx::query("INSERT INTO variable (key, val) VALUES ($1, $2)")
        .bind("greeting")
        .bind("héllo")
        .execute(&pool)
        .await
        .expect("insert");
    let (value,): (String,) = sqlx::query_as("SELECT val FROM variable WHERE key = $1")
        .bind("greeting")
        .fetch_one(&pool)
        .await
        .expect("select");
    assert_eq!(value, "héllo");
}
