//! Regression test of a review finding, fixed since. Before the fix, order keys are unique per *site*, but a visitor whose state is
//! `complete` (born in this process with nothing stored) skips the store's key check, so an
//! order another visitor already reported is decided on, the commit is refused as a
//! duplicate, the visitor is reloaded... as `complete` again. Every resend fails: the batch
//! can never be stored (503 forever), and each attempt fails a whole group commit.
//!
//! Also: a plain event whose *id* starts with `order:` is taken for an order by the store, so
//! any browser can claim an order id with a page view, and the real conversion is then
//! dropped as a duplicate.

use crate::found_support::*;
use crate::support::*;
use beckon_engine::Policy;
use serde_json::json;

const SHOP: &str = "shop";

async fn server() -> (
    std::sync::Arc<dyn beckon_store::Store>,
    beckon_server::Server,
) {
    let base = store_with(&Site::new(
        SHOP,
        &cart_exit_rule("cart-exit"),
        Policy::default(),
    ))
    .await;
    let server = beckon_server::start(base.clone(), one_shard())
        .await
        .unwrap();
    (base, server)
}

#[tokio::test]
async fn a_new_visitor_reporting_an_order_already_logged_is_answered_as_a_duplicate() {
    let (_store, server) = server().await;
    // Visitor A reports order 1001 (say, the widget on the thank-you page).
    submit_as(
        &server,
        SHOP,
        "v_a",
        "s_a",
        vec![json!({"id": "s_a:1", "type": "convert", "order_id": "1001", "value": 10})],
    )
    .await
    .expect("A's conversion is stored");
    // The merchant's backend reports the same order for the visitor id it has (a first sight
    // of that id on this node), and retries as a backend does.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let r = submit_backend(
            &server,
            SHOP,
            "v_b",
            vec![json!({"id": "order:x1001", "type": "convert", "order_id": "1001", "value": 10})],
        )
        .await;
        outcomes.push(
            r.map(|s| (s.reply.accepted, s.reply.duplicates))
                .map_err(|e| e.to_string()),
        );
    }
    eprintln!("backend retries: {outcomes:#?}");
    assert!(
        outcomes.iter().any(|o| o.is_ok()),
        "every retry of an already-counted order failed: {outcomes:?}"
    );
}

#[tokio::test]
async fn a_page_cannot_claim_an_order_by_naming_an_event_after_it() {
    let (store, server) = server().await;
    // A hostile page (the site key is public) sends a page view with id "order:2002": the
    // prefix is the server's own, refused with a message that says so.
    let refused = submit_as(
        &server,
        SHOP,
        "v_attacker",
        "s_x",
        vec![page("order:2002", "home", "/")],
    )
    .await
    .expect_err("a reserved id is refused");
    assert!(refused.to_string().contains("reserved"), "{refused}");
    // A real customer, already known, converts with order 2002.
    submit_as(
        &server,
        SHOP,
        "v_customer",
        "s_c",
        vec![page("s_c:1", "home", "/")],
    )
    .await
    .expect("stored");
    server.stop().await;
    // A restart: the customer's state is read back (not `complete`), so the key is checked.
    let server = beckon_server::start(store.clone(), one_shard())
        .await
        .unwrap();
    let r = submit_as(
        &server,
        SHOP,
        "v_customer",
        "s_c",
        vec![json!({"id": "s_c:2", "type": "convert", "order_id": "2002", "value": 99})],
    )
    .await;
    eprintln!("customer's conversion: {:?}", r.as_ref().map(|s| &s.reply));
    let keys = logged_keys(store.as_ref(), SHOP).await;
    let customer_converted = keys
        .iter()
        .any(|(v, k)| v == "v_customer" && k == "order:2002");
    assert!(
        customer_converted,
        "the customer's real order 2002 is not in the log; a page view's id took it: {keys:?}"
    );
}
