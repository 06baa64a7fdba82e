//! The membership story, told by PostgreSQL on a schema of its own.

use beckon_store_postgres::testing::Scratch;

#[tokio::test]
async fn postgres_passes_the_membership_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::cluster::suite::run_all(&store).await;
    scratch.drop().await;
}
