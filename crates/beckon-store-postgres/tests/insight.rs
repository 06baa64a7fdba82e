//! The dashboard's reads, told by PostgreSQL.

use beckon_store_postgres::testing::Scratch;

#[tokio::test]
async fn postgres_passes_the_insight_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::suite::run_insight(&store, &store).await;
    scratch.drop().await;
}
