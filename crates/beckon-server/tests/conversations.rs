//! The engine hears of every conversation that begins or ends, however many open at once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use beckon_agent::Desk;
use beckon_agent::desk::{NoContext, Opening, VisitorRef};
use beckon_engine::{Policy, SiteId, VisitorId};
use beckon_server::Options;
use beckon_store::Store;
use beckon_store_sqlite::SqliteStore;
use support::*;

const SHOP: &str = "shop";

#[tokio::test(flavor = "multi_thread")]
async fn every_conversation_start_reaches_the_engine_even_when_many_open_at_once() {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.migrate().await.unwrap();
    let site = Site::new(SHOP, &cart_exit_rule("cart-exit"), Policy::default());
    install(store.as_ref(), &site).await;
    let desk = Desk::new(
        store.clone(),
        Arc::new(NoContext),
        Arc::new(|| beckon_server::clock::Clock::System.now()),
    );
    let server = TestServer::start_with(
        store.clone(),
        Options {
            desk: Some(desk.clone()),
            ..Options::default()
        },
    )
    .await;
    const N: usize = 1500;
    let opens = (0..N).map(|n| {
        let desk = desk.clone();
        async move {
            let who = VisitorRef {
                site: SiteId::parse(SHOP).unwrap(),
                visitor: VisitorId::parse(&format!("v_many_{n}")).unwrap(),
            };
            desk.open(&who, &Opening::default()).await.unwrap();
        }
    });
    futures::future::join_all(opens).await;
    let site_id = SiteId::parse(SHOP).unwrap();
    let mut told = 0;
    for _ in 0..300 {
        let log = store.log(&site_id, 0, 100_000).await.unwrap();
        told = log
            .iter()
            .flat_map(|(_, b)| b.events.iter())
            .filter(|e| e.kind == "conversation_started")
            .count();
        if told == N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(told, N, "every start was told to the engine");
    server.shutdown().await;
}

/// Found in review: a failed commit must not let a conversation's end reach the engine before
/// its start, and an outage of the store must not lose either.
#[tokio::test(flavor = "multi_thread")]
async fn a_visitors_start_and_end_reach_the_engine_in_order_through_store_trouble() {
    use beckon_store::faults::Faulty;
    let sqlite = Arc::new(SqliteStore::in_memory().await.unwrap());
    sqlite.migrate().await.unwrap();
    let site = Site::new(SHOP, &cart_exit_rule("cart-exit"), Policy::default());
    install(sqlite.as_ref(), &site).await;
    let faulty = Faulty::new(sqlite.clone());
    let faults = faulty.handle();
    let desk = Desk::new(
        sqlite.clone(),
        Arc::new(NoContext),
        Arc::new(|| beckon_server::clock::Clock::System.now()),
    );
    let server = TestServer::start_with(
        Arc::new(faulty),
        Options {
            desk: Some(desk.clone()),
            ..Options::default()
        },
    )
    .await;
    let who = VisitorRef {
        site: SiteId::parse(SHOP).unwrap(),
        visitor: VisitorId::parse("v_ordered").unwrap(),
    };
    // The start's commit fails (twice), then the store is out for a while as the chat ends.
    faults.fail_commits(2);
    desk.open(&who, &Opening::default()).await.unwrap();
    desk.visitor_close(&who).await.unwrap();
    faults.fail_every_commit(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    faults.fail_every_commit(false);
    let site_id = SiteId::parse(SHOP).unwrap();
    let mut told = Vec::new();
    for _ in 0..200 {
        let log = sqlite.log(&site_id, 0, 10_000).await.unwrap();
        told = log
            .iter()
            .filter(|(_, b)| b.visitor.as_str() == "v_ordered")
            .flat_map(|(_, b)| b.events.iter().map(|e| e.kind.clone()))
            .collect();
        if told.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        told,
        vec!["conversation_started", "conversation_ended"],
        "both, in order"
    );
    server.shutdown().await;
}
