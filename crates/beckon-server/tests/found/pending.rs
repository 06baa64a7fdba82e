//! Regression test of a review finding, fixed since. Before the fix, an intervention a timer fires while the visitor has no socket waits in
//! the slot's `pending`; eviction drops the live state but keeps the slot (it is not empty),
//! and nothing ever clears `pending` but the visitor's next browser batch or socket. So the
//! slot leaks for every visitor who left, and one who comes back hours later, in a new visit,
//! is handed the old visit's intervention.

use std::time::Duration;

use crate::support::*;
use beckon_engine::{Policy, SiteId, Timestamp};
use beckon_server::Options;
use beckon_server::clock::Clock;

const SHOP: &str = "shop";

#[tokio::test]
async fn an_old_visits_timer_intervention_is_never_handed_to_a_new_visit() {
    let store = memory_store().await;
    let hesitation = checkout_hesitation("45s");
    let policy = Policy {
        holdout_percent: 0.0,
        ..Policy::default()
    };
    install(store.as_ref(), &Site::new(SHOP, &hesitation, policy)).await;
    let t0 = Timestamp::from_secs(1_800_000_000);
    let server = beckon_server::start(
        store.clone(),
        Options {
            clock: Clock::tokio(t0),
            watch_sites: Duration::from_secs(3600),
            ..one_shard()
        },
    )
    .await
    .expect("starts");
    submit_as(
        &server,
        SHOP,
        "v_warm",
        "s_w",
        vec![page("s_w:0", "home", "/")],
    )
    .await
    .unwrap();
    tokio::time::pause();
    // The visitor (HTTP only: no socket) lands on checkout and leaves.
    submit_as(
        &server,
        SHOP,
        "v_t",
        "s_t",
        vec![
            page("s_t:1", "checkout", "/checkout"),
            bare("s_t:2", "activity"),
        ],
    )
    .await
    .unwrap();
    let site = SiteId::parse(SHOP).unwrap();
    let mut exposures = Vec::new();
    for _ in 0..600 {
        exposures = store.exposures(&site).await.unwrap();
        if !exposures.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(exposures.len(), 1, "the timer fired: {exposures:?}");
    // Two hours later (evicted long ago: IDLE_EVICT is 30 minutes), a new visit.
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    let r = submit_as(
        &server,
        SHOP,
        "v_t",
        "s_t2",
        vec![page("s_t2:1", "home", "/")],
    )
    .await
    .unwrap();
    let log = store.log(&site, 0, 100).await.unwrap();
    let begins = log
        .iter()
        .filter(|(_, b)| b.visitor.as_str() == "v_t" && b.begins.is_some())
        .count();
    eprintln!(
        "visits begun: {begins}; interventions in the new visit's first answer: {:?}",
        r.reply.interventions
    );
    assert!(
        r.reply.interventions.is_empty(),
        "the new visit's first answer carries the old visit's intervention {:?} (fired {} ms earlier)",
        r.reply
            .interventions
            .iter()
            .map(|i| &i.id)
            .collect::<Vec<_>>(),
        server.state.clock.now().ms_since(exposures[0].at)
    );
}
