//! The analytics' story, told by PostgreSQL.

use beckon_store_postgres::testing::Scratch;

#[tokio::test]
async fn postgres_passes_the_analytics_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::analytics_suite::run_all(&store, &store, &store, &store).await;
    scratch.drop().await;
}
