//! Regression test of a review finding, fixed since. Before the fix, an intervention a timer fires while no socket is attached goes into
//! the slot's `pending` at once, before its commit. A socket that attaches meanwhile gets
//! `pending` pushed immediately (`ShardMsg::Attach`), without waiting for that commit: the
//! visitor sees an intervention whose commit then fails (no exposure, caps not counted).

use std::sync::Arc;
use std::time::Duration;

use crate::found_support::*;
use crate::support::*;
use beckon_engine::{Policy, SiteId};

const SHOP: &str = "shop";

fn is_tick(b: &beckon_store::WriteBatch) -> bool {
    b.batches
        .iter()
        .any(|x| x.source == beckon_store::Source::Timer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_attaches_gets_no_intervention_before_its_commit_has_landed() {
    let base = memory_store().await;
    let hesitation = checkout_hesitation("1s");
    let policy = Policy {
        holdout_percent: 0.0,
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    install(base.as_ref(), &Site::new(SHOP, &hesitation, policy)).await;
    let hooked = Arc::new(Hooked::new(base.clone()));
    let server = TestServer::start_with(hooked.clone(), one_shard()).await;
    let v = "v_p";
    // The visitor lands on checkout, their pointer moving (over HTTP: the page's socket has
    // not sent anything yet).
    let r = server
        .post_events(&batch(
            SHOP,
            v,
            "s_p",
            vec![
                page("s_p:1", "checkout", "/checkout"),
                bare("s_p:2", "activity"),
            ],
        ))
        .await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{}", r.text);
    let mut ws = server.ws(ORIGIN, SHOP, v, "s_p").await;
    // The socket's first batch is held in the writer until the timer has fired behind it.
    let first = hooked.gate("s_p:3", 1);
    let tick = hooked.gate_if("tick", is_tick, 1);
    ws.send(&frame(vec![bare("s_p:3", "activity")])).await;
    for _ in 0..300 {
        if hooked.entered("tick") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        hooked.entered("tick"),
        0,
        "the tick waits behind the first batch"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // the timer fires: pending
    hooked.fail_commits_if(Some(Box::new(is_tick)));
    first[0].add_permits(1); // the first batch lands; its ack goes out; the socket attaches
    let mut frames = Vec::new();
    while let Some(f) = ws.next_within(Duration::from_millis(1500)).await {
        frames.push(f);
    }
    let got_intervention = frames.iter().any(|f| f["type"] == "intervention");
    let tick_committed = hooked.entered("tick") >= 1;
    tick[0].add_permits(1); // now the tick's commit goes on, and fails
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exposures = base.exposures(&SiteId::parse(SHOP).unwrap()).await.unwrap();
    eprintln!(
        "frames: {frames:?}; tick commit entered before the push: {tick_committed}; exposures stored: {}",
        exposures.len()
    );
    assert!(
        !got_intervention || !exposures.is_empty(),
        "the socket was shown an intervention whose commit never landed"
    );
}
