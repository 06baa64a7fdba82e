//! Time-based rules on tokio's paused clock: the server's clock is part of its state, so a
//! 45-second hesitation is tested without waiting 45 seconds, and to the millisecond.

mod support;

use std::time::Duration;

use beckon_engine::{Policy, SiteId, Timestamp};
use beckon_server::clock::Clock;
use beckon_server::{Options, Server};
use serde_json::Value;
use support::*;

const SHOP: &str = "shop";

async fn send(server: &Server, visitor: &str, events: Vec<Value>) {
    submit_as(server, SHOP, visitor, "s_t", events)
        .await
        .expect("the batch is stored");
}

#[tokio::test]
async fn a_delayed_rule_fires_on_the_servers_own_timer_exactly_when_its_delay_is_over() {
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
            // The earliest timer is always near, so the paused clock moves in small steps.
            watch_sites: Duration::from_secs(1),
            ..one_shard()
        },
    )
    .await
    .expect("starts");
    // From here on time moves only when the runtime has nothing else to do, straight to the
    // next timer. (Paused before the database opens, the pool's own connect timeout would
    // fire while SQLite works on its thread.)
    send(&server, "v_warm", vec![page("s_t:0", "home", "/")]).await;
    tokio::time::pause();
    // A person lands on checkout (their pointer moves as the page opens), then does nothing.
    send(
        &server,
        "v_t",
        vec![
            page("s_t:1", "checkout", "/checkout"),
            bare("s_t:2", "activity"),
        ],
    )
    .await;
    let site = SiteId::parse(SHOP).unwrap();
    let page_at = store.log(&site, 0, 10).await.unwrap()[1].1.at;
    // Minutes of the visitor's time go by in no time of ours: the paused clock jumps from
    // timer to timer whenever the runtime waits (on SQLite's thread, say), so the test looks
    // again every virtual second until the timer's decision has landed.
    let mut exposures = Vec::new();
    for _ in 0..600 {
        exposures = store.exposures(&site).await.unwrap();
        if !exposures.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        exposures.len(),
        1,
        "fired once, by the timer: {exposures:?}"
    );
    let fired = &store.log(&site, 0, 10).await.unwrap()[2].1;
    assert_eq!(
        fired.source,
        beckon_store::Source::Timer,
        "the server's own tick decided"
    );
    let after = exposures[0].at.ms_since(page_at);
    // Never early; late only by the timer wheel's rounding up to its next millisecond slots.
    assert!(
        (45_000..45_010).contains(&after),
        "fired {after} ms after the page view; the delay is 45 s"
    );
    server.stop().await;
}
