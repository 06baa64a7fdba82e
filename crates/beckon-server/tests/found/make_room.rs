//! Regression test of a review finding, fixed since. Before the fix, at the live-session cap, when every other live visitor is pinned (a
//! socket, a write in flight), `make_room` evicts the visitor that was *just loaded* (with its
//! batch still waiting), the batch then loads it again, which evicts it again... The batch
//! is never applied (the request times out) while the shard reads the store in a loop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::found_support::*;
use crate::support::*;
use beckon_engine::Policy;
use beckon_server::Options;
use beckon_server::limits::Limits;

const SHOP: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_visitor_at_the_cap_with_pinned_sessions_is_served() {
    let base = store_with(&Site::new(
        SHOP,
        &cart_exit_rule("cart-exit"),
        Policy::default(),
    ))
    .await;
    let hooked = Arc::new(Hooked::new(base.clone()));
    let server = TestServer::start_with(
        hooked.clone(),
        Options {
            shards: 1,
            limits: Limits {
                max_live_sessions: 2,
                request_timeout: Duration::from_secs(3),
                ..Limits::unthrottled()
            },
            ..Options::default()
        },
    )
    .await;
    // Two visitors with open sockets fill the cap.
    let mut sockets = Vec::new();
    for v in ["v_a", "v_b"] {
        let session = format!("s_{v}");
        let mut ws = server.ws(ORIGIN, SHOP, v, &session).await;
        ws.send(&frame(vec![page(&format!("{session}:1"), "home", "/")]))
            .await;
        let ack = ws.next().await;
        assert_eq!(ack["type"], "ack", "{ack}");
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // the attaches reach the shard
    let reads_before = hooked.visitor_reads.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    let reply = server
        .post_events(&batch(SHOP, "v_c", "s_c", vec![page("s_c:1", "home", "/")]))
        .await;
    let reads = hooked.visitor_reads.load(Ordering::SeqCst) - reads_before;
    eprintln!(
        "third visitor: {} after {:?}, {reads} store reads of its state; body {}",
        reply.status,
        started.elapsed(),
        reply.text
    );
    assert_eq!(
        reply.status,
        reqwest::StatusCode::ACCEPTED,
        "served (or shed with 503), not left looping: {reads} reads"
    );
}
