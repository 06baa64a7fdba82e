//! Regression test of a review finding, fixed since. Before the fix, a batch with no new events (empty, or all resends) still runs
//! `Visitor::apply`, which may *begin a visit* in memory; but with no events nothing is logged
//! and no visitor state is written. Later batches of that visit are logged with no `begins`,
//! so the log no longer rebuilds the decisions: the replay sees no visit and fires nothing.

use crate::support::*;
use beckon_engine::{Policy, SiteId};
use beckon_server::replay;

const SHOP: &str = "shop";

#[tokio::test]
async fn a_batch_with_nothing_new_begins_no_unlogged_visit() {
    let store = memory_store().await;
    let policy = Policy {
        holdout_percent: 0.0,
        arrival_grace: std::time::Duration::ZERO,
        ..Policy::default()
    };
    install(
        store.as_ref(),
        &Site::new(SHOP, &cart_exit_rule("cart-exit"), policy),
    )
    .await;
    let server = beckon_server::start(store.clone(), one_shard())
        .await
        .unwrap();
    let r = submit_as(&server, SHOP, "v_e", "s_e", vec![]).await;
    assert!(r.is_ok(), "{r:?}");
    let r = submit_as(
        &server,
        SHOP,
        "v_e",
        "s_e",
        vec![
            page("s_e:1", "cart", "/cart"),
            bare("s_e:2", "activity"),
            cart("s_e:3", 2, 80.0),
            bare("s_e:4", "exit_intent"),
        ],
    )
    .await
    .expect("stored");
    eprintln!("fired live: {:?}", r.reply.interventions);
    server.stop().await;
    let site = SiteId::parse(SHOP).unwrap();
    let log = store.log(&site, 0, 100).await.unwrap();
    for (seq, b) in &log {
        eprintln!(
            "batch {seq}: session {:?} begins {:?} events {}",
            b.session,
            b.begins,
            b.events.len()
        );
    }
    let rebuilt = replay::replay_site(store.as_ref(), &site).await.unwrap();
    let recorded = replay::recorded(store.as_ref(), &site).await.unwrap();
    assert_eq!(
        rebuilt.fired, recorded,
        "the log's replay gives other decisions than the live ones"
    );
}
