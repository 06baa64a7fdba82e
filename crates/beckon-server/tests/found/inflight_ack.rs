//! Regression test of a review finding, fixed since. Before the fix, a resend whose key is still "in flight" from a write of an older load
//! generation is counted as a duplicate and acknowledged, although that older write is fenced
//! and never lands. The event is acknowledged and lost.
//!
//! Timeline (one visitor V, one other visitor W to steer the writer's groups):
//! 1. V sends k0 (committed: V is live, generation g1).
//! 2. The writer is held on W's commit (w1); meanwhile V's P0 {a} and W's {w2} queue up.
//! 3. The writer takes group [P0, w2] and is held on it; V sends P1 {b}, applied on g1 and
//!    queued for the next group.
//! 4. The group fails (it holds `a`); retried alone, P0 fails (fence (V, g1)) and the shard
//!    drops V; w2 alone is held again, so P1 still waits in the writer's queue.
//! 5. V resends {b}: V is reloaded (g2); `b` is in `inflight` (P1) so it is a duplicate; the
//!    resend's (empty) job queues behind P1.
//! 6. The writer goes on: P1 is fenced (never written), the resend's job commits: 202, `b` acked.

use std::sync::Arc;
use std::time::Duration;

use crate::found_support::*;
use crate::support::*;
use beckon_engine::Policy;

const SHOP: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_of_a_key_in_flight_from_a_fenced_write_is_stored_before_it_is_acked() {
    let base = store_with(&Site::new(
        SHOP,
        &cart_exit_rule("cart-exit"),
        Policy::default(),
    ))
    .await;
    let hooked = Arc::new(Hooked::new(base.clone()));
    let server = Arc::new(
        beckon_server::start(hooked.clone(), one_shard())
            .await
            .unwrap(),
    );

    // 1. V is live.
    submit_as(
        &server,
        SHOP,
        "v_victim",
        "s_v",
        vec![bare("s_v:k0", "activity")],
    )
    .await
    .expect("k0 stored");

    let g_w1 = hooked.gate("s_w:w1", 1);
    let g_w2 = hooked.gate("s_w:w2", 2);
    hooked.fail_commits_holding(Some("s_v:a"));

    // 2. Hold the writer on w1; queue P0 {a} and w2 behind it.
    let s = server.clone();
    let w1 = tokio::spawn(async move {
        submit_as(&s, SHOP, "v_other", "s_w", vec![bare("s_w:w1", "activity")]).await
    });
    eventually("w1 commit entered", || async {
        hooked.entered("s_w:w1") == 1
    })
    .await;
    let s = server.clone();
    let p0 = tokio::spawn(async move {
        submit_as(&s, SHOP, "v_victim", "s_v", vec![bare("s_v:a", "activity")]).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = server.clone();
    let w2 = tokio::spawn(async move {
        submit_as(&s, SHOP, "v_other", "s_w", vec![bare("s_w:w2", "activity")]).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 3. The writer takes [P0, w2] and is held on the group; P1 {b} is applied on g1.
    g_w1[0].add_permits(1);
    eventually("group [P0, w2] entered", || async {
        hooked.entered("s_w:w2") == 1
    })
    .await;
    let s = server.clone();
    let p1 = tokio::spawn(async move {
        submit_as(&s, SHOP, "v_victim", "s_v", vec![bare("s_v:b", "activity")]).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 4. The group fails; P0 alone fails (fence); w2 alone is held again.
    g_w2[0].add_permits(1);
    eventually("w2 retried alone", || async {
        hooked.entered("s_w:w2") == 2
    })
    .await;
    let p0 = p0.await.unwrap();
    assert!(p0.is_err(), "P0 failed: {p0:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 5. The client resends {b}.
    let s = server.clone();
    let resend = tokio::spawn(async move {
        submit_as(&s, SHOP, "v_victim", "s_v", vec![bare("s_v:b", "activity")]).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 6. Let the writer go on.
    g_w2[1].add_permits(1);
    hooked.fail_commits_holding(None);
    let p1 = p1.await.unwrap();
    let resend = resend.await.unwrap();
    let _ = w1.await;
    let _ = w2.await;
    eprintln!("P1 (original of b): {:?}", p1.as_ref().map(|s| &s.reply));
    eprintln!("resend of b: {:?}", resend.as_ref().map(|s| &s.reply));

    let keys = logged_keys(base.as_ref(), SHOP).await;
    let b_logged = keys.iter().filter(|(_, k)| k == "s_v:b").count();
    if let Ok(r) = &resend {
        let acked = r.reply.acked.iter().any(|id| id.as_str() == "s_v:b");
        assert!(
            !acked || b_logged == 1,
            "b was acknowledged (reply {:?}) but is in the log {b_logged} times; log: {keys:?}",
            r.reply
        );
    }
}
