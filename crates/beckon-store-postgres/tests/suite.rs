//! The storage story, told by PostgreSQL: each test on a schema of its own.

use beckon_store_postgres::testing::Scratch;

#[tokio::test]
async fn postgres_passes_the_store_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::suite::run_all(&store).await;
    scratch.drop().await;
}
