//! The fault-injecting wrapper, over a real SQLite store: what it says it failed was not
//! written, what it says was written and then failed is in the database.

use std::sync::Arc;

use beckon_engine::{EventId, SessionId, SiteId, Timestamp, VisitorId};
use beckon_store::faults::Faulty;
use beckon_store::{
    Applied, BatchContext, LoggedBatch, LoggedEvent, Source, Store, StoreError, Verdict, WriteBatch,
};
use beckon_store_sqlite::SqliteStore;

async fn faulty() -> Faulty {
    let store = SqliteStore::in_memory().await.unwrap();
    store.migrate().await.unwrap();
    Faulty::new(Arc::new(store))
}

fn site() -> SiteId {
    SiteId::parse("shop").unwrap()
}

fn one(v: &str, key: &str) -> WriteBatch {
    WriteBatch {
        batches: vec![LoggedBatch {
            site: site(),
            visitor: VisitorId::parse(v).unwrap(),
            session: Some(SessionId::parse("s1").unwrap()),
            at: Timestamp::from_millis(1),
            source: Source::Browser,
            context: BatchContext::default(),
            verdict: Verdict::Human,
            rules_version: 1,
            begins: None,
            events: vec![LoggedEvent {
                key: key.to_owned(),
                id: EventId::parse(key).unwrap(),
                kind: "activity".to_owned(),
                body: "{}".to_owned(),
                applied: Applied::Decided,
            }],
        }],
        ..WriteBatch::default()
    }
}

async fn logged(store: &Faulty, v: &str, key: &str) -> bool {
    !store
        .inner()
        .known_keys(&site(), &VisitorId::parse(v).unwrap(), &[key.to_owned()])
        .await
        .unwrap()
        .is_empty()
}

#[tokio::test]
async fn without_faults_it_passes_the_store_suite() {
    beckon_store::suite::run_all(&faulty().await).await;
}

#[tokio::test]
async fn failed_commits_write_nothing_and_are_counted() {
    let store = faulty().await;
    let faults = store.handle();
    faults.fail_commits(2);
    for key in ["a", "b"] {
        assert!(matches!(
            store.commit(&one("v", key)).await,
            Err(StoreError::Database(_))
        ));
        assert!(!logged(&store, "v", key).await);
    }
    store.commit(&one("v", "c")).await.unwrap();
    assert!(logged(&store, "v", "c").await);
    assert_eq!((faults.commits(), faults.failed_commits()), (3, 2));
}

#[tokio::test]
async fn a_commit_can_be_written_and_still_reported_failed() {
    let store = faulty().await;
    let faults = store.handle();
    faults.fail_commits_after_writing(1);
    assert!(store.commit(&one("v", "a")).await.is_err());
    assert!(logged(&store, "v", "a").await, "written despite the error");
    // The resend of a decided event is then a duplicate, as after a real ambiguous failure;
    // it does not use up an injected failure, because the store refused it.
    faults.fail_commits_after_writing(1);
    assert!(matches!(
        store.commit(&one("v", "a")).await,
        Err(StoreError::Duplicate { .. })
    ));
    assert!(store.commit(&one("v", "b")).await.is_err());
    assert!(logged(&store, "v", "b").await);
    store.commit(&one("v", "c")).await.unwrap();
    assert_eq!((faults.commits(), faults.failed_commits()), (4, 3));
}

#[tokio::test]
async fn a_predicate_fails_the_one_commit_it_picks() {
    let store = faulty().await;
    let faults = store.handle();
    faults.fail_commit_if(|b| b.batches.iter().any(|b| b.visitor.as_str() == "target"));
    store.commit(&one("bystander", "a")).await.unwrap();
    assert!(store.commit(&one("target", "a")).await.is_err());
    assert!(!logged(&store, "target", "a").await);
    // One shot: the retry goes through.
    store.commit(&one("target", "a")).await.unwrap();
    assert!(logged(&store, "target", "a").await);
}

#[tokio::test]
async fn reads_fail_the_given_number_of_times() {
    let store = faulty().await;
    let faults = store.handle();
    let v = VisitorId::parse("v").unwrap();
    faults.fail_reads(2);
    assert!(store.visitor(&site(), &v).await.is_err());
    assert!(store.known_keys(&site(), &v, &[]).await.is_err());
    assert!(store.visitor(&site(), &v).await.unwrap().is_none());
    assert!(store.known_keys(&site(), &v, &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_database_fails_every_call() {
    let store = faulty().await;
    let faults = store.handle();
    let v = VisitorId::parse("v").unwrap();
    faults.unreachable(true);
    assert!(store.ping().await.is_err());
    assert!(store.server_key().await.is_err());
    assert!(store.sites().await.is_err());
    assert!(store.site_versions().await.is_err());
    assert!(store.visitor(&site(), &v).await.is_err());
    assert!(store.active_visitors(Timestamp::EPOCH).await.is_err());
    assert!(store.log(&site(), 0, 10).await.is_err());
    assert!(store.prune_log(Timestamp::EPOCH, 10).await.is_err());
    assert!(store.commit(&one("v", "a")).await.is_err());
    assert!(!logged(&store, "v", "a").await);
    faults.unreachable(false);
    store.ping().await.unwrap();
    store.commit(&one("v", "a")).await.unwrap();
    assert_eq!((faults.commits(), faults.failed_commits()), (2, 1));
}
