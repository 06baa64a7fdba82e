//! The accounts' story, told by PostgreSQL.

use beckon_store_postgres::testing::Scratch;

#[tokio::test]
async fn postgres_passes_the_accounts_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::accounts_suite::run_all(&store, &store).await;
    scratch.drop().await;
}
