//! The storage story, told by SQLite: in memory and on a real file.

use beckon_store::Store;
use beckon_store_sqlite::SqliteStore;

#[tokio::test]
async fn sqlite_in_memory_passes_the_store_suite() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.migrate().await.unwrap();
    beckon_store::suite::run_all(&store).await;
}

#[tokio::test]
async fn sqlite_on_disk_passes_the_store_suite_and_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        beckon_store::suite::run_all(&store).await;
    }
    let reopened = SqliteStore::open(&path).await.unwrap();
    reopened.migrate().await.unwrap();
    assert!(!reopened.sites().await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_passes_the_accounts_suite() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.migrate().await.unwrap();
    beckon_store::accounts_suite::run_all(&store, &store).await;
}

#[tokio::test]
async fn sqlite_passes_the_insight_suite() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.migrate().await.unwrap();
    beckon_store::suite::run_insight(&store, &store).await;
}

#[tokio::test]
async fn sqlite_passes_the_conversations_suite() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.migrate().await.unwrap();
    beckon_store::conversations_suite::run_all(&store, &store, &store).await;
}

#[tokio::test]
async fn sqlite_passes_the_outbox_suite() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.migrate().await.unwrap();
    beckon_store::outbox_suite::run_all(&store, &store, &store).await;
}

#[tokio::test]
async fn sqlite_passes_the_analytics_suite() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.migrate().await.unwrap();
    beckon_store::analytics_suite::run_all(&store, &store, &store, &store).await;
}
