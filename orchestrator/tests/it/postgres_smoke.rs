//! The local stack's PostgreSQL from Rust: sqlx runs the migrations, and a store statement
//! round-trips.

use updraft_orchestrator::store::users::{self, Role};

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

    // A write and a read through the store, with text that is not ASCII.
    assert!(
        users::insert(&pool, "smoke", "héllo", Role::Viewer)
            .await
            .expect("insert")
    );
    let stored = users::active_credentials(&pool, "smoke")
        .await
        .expect("select")
        .expect("the user just inserted");
    assert_eq!(
        (stored.password_hash.as_str(), stored.role),
        ("héllo", Role::Viewer)
    );
}
