//! End-to-end in real headless Chromium against `beckon demo`: the moments of the seeds, and
//! the moments where Beckon must stay quiet.

mod browser_support;

use std::time::Duration;

use beckon_engine::session::Arm;
use browser_support::*;
use serde_json::json;

/// Puts one product in the shop's cart (its own first-party storage), as adding it on a
/// product page would; the shop reports it to Beckon on the next page load.
async fn fill_cart(c: &fantoccini::Client) {
    c.execute(
        "localStorage.setItem('northwind:cart', JSON.stringify([{sku: 'NW-S28-02', name: 'Summit 28 Daypack', price: 89, qty: 1}]));",
        vec![],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cart_and_exit_intent_bring_the_offer() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    let visitor = demo.visitor_in(Arm::Treated, "exit");
    demo.open_as(&c, &visitor, "/cart.html").await;
    fill_cart(&c).await;
    c.goto(&format!("{}/cart.html", demo.base)).await.unwrap();
    demo.wait_widget(&c).await;
    c.execute(EXIT_INTENT, vec![]).await.unwrap();
    let shown = intervention_within(&c, Duration::from_secs(10)).await;
    assert_eq!(shown["rule"], json!("cart-exit-offer"));
    assert!(
        shown["text"].as_str().unwrap().contains("STAY10"),
        "{shown}"
    );
    c.close().await.unwrap();
    demo.stop().await;
}
