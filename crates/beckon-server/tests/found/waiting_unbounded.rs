//! Regression test of a review finding, fixed since. Before the fix, while a visitor's read runs, their later batches wait in the slot's
//! `waiting` queue, which has no bound. The shard drains its bounded queue into it, so the
//! edge never sheds: with the store slow to answer, one visitor's batches (each up to 64 KiB)
//! pile up in memory without limit, long after their requests have timed out.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use beckon_engine::{Policy, VisitorId};
use beckon_server::intake::IntakeError;
use beckon_server::shard::{BatchError, SHARD_QUEUE};
use beckon_store::faults::Faulty;
use futures::StreamExt;

const SHOP: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_visitors_batches_behind_a_slow_read_are_bounded_and_shed() {
    let base = store_with(&Site::new(
        SHOP,
        &cart_exit_rule("cart-exit"),
        Policy::default(),
    ))
    .await;
    let faulty = Arc::new(Faulty::new(base.clone()));
    let faults = faulty.handle();
    let server = Arc::new(
        beckon_server::start(faulty.clone(), one_shard())
            .await
            .unwrap(),
    );
    faults.hold_reads_of(VisitorId::parse("v_slow").unwrap());
    let n = SHARD_QUEUE * 4;
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let s = server.clone();
        pending.push(tokio::spawn(async move {
            let id = format!("s_slow:{i}");
            submit_as(&s, SHOP, "v_slow", "s_slow", vec![bare(&id, "activity")]).await
        }));
    }
    // For two seconds, nothing is answered, and nothing is shed.
    let early = tokio::time::timeout(Duration::from_secs(2), pending.next()).await;
    let shed_early = early.is_ok();
    faults.release_reads();
    let mut shed = 0;
    let mut stored = 0;
    while let Some(r) = pending.next().await {
        match r.unwrap() {
            Ok(_) => stored += 1,
            Err(IntakeError::Batch(BatchError::Overloaded)) => shed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "{n} batches for one visitor behind one held read: {shed} shed, {stored} waited in memory and were stored (answered early: {shed_early})"
    );
    assert!(
        stored <= SHARD_QUEUE,
        "{stored} batches of one visitor waited in memory (shard queue bound {SHARD_QUEUE})"
    );
}
