//! `GET /v1/ws` over a real socket: acknowledgements, interventions in answer to events and
//! pushed by the server's own timers, error frames, and the origin check at upgrade.

mod support;

use std::time::{Duration, Instant};

use beckon_engine::{Arm, Policy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite;

const SHOP: &str = "shop";

fn ids(frame: &Value) -> Vec<&str> {
    frame["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("an ack: {frame}"))
        .iter()
        .map(|v| v.as_str().expect("an id"))
        .collect()
}

#[tokio::test]
async fn an_events_frame_is_acknowledged_with_its_ids_then_the_intervention_follows() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let visitor = server.treated(SHOP, "v_ws");
    let session = "s_ws";
    let mut ws = server.ws(ORIGIN, SHOP, &visitor, session).await;

    ws.send(&frame(vec![
        page("s_ws:1", "product", "/products/trail-shoe-x"),
        cart("s_ws:2", 2, 98.0),
        bare("s_ws:3", "exit_intent"),
    ]))
    .await;
    let ack = ws.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ids(&ack), ["s_ws:1", "s_ws:2", "s_ws:3"]);
    let shown = ws.next().await;
    assert_eq!(shown["type"], "intervention", "{shown}");
    assert_eq!(shown["rule"], "cart-exit-offer");
    assert_eq!(shown["message"]["type"], "offer");
    assert_eq!(
        shown["message"]["text"],
        "Before you go: 10% off the 2 items in your cart."
    );

    // Acknowledged means stored.
    assert_eq!(server.events(SHOP, session).await.len(), 3);
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1);
    assert_eq!(exposures[0].id, shown["id"].as_str().unwrap());
    assert_eq!(exposures[0].arm, Arm::Treated);

    // A resend over the socket is acknowledged again and fires nothing.
    ws.send(&frame(vec![bare("s_ws:3", "exit_intent")])).await;
    let again = ws.next().await;
    assert_eq!(ids(&again), ["s_ws:3"]);
    assert_eq!(ws.next_within(Duration::from_millis(300)).await, None);
    ws.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_timer_pushes_the_intervention_without_any_further_frame() {
    let rules = rule(
        "product-dwell",
        r#"{ var = "time.on_page", op = "gte", value = 1 }"#,
        r#"pages = ["product"]"#,
    );
    let policy = Policy {
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    let server = TestServer::with_sites(&[Site::new(SHOP, &rules, policy)]).await;
    let visitor = server.treated(SHOP, "v_timer");
    let mut ws = server.ws(ORIGIN, SHOP, &visitor, "s_timer").await;

    let sent = Instant::now();
    ws.send(&frame(vec![page("s_timer:1", "product", "/products/tent")]))
        .await;
    let ack = ws.next().await;
    assert_eq!(ids(&ack), ["s_timer:1"]);
    // Nothing else is sent: the server wakes the session itself once a second has passed.
    let pushed = ws
        .next_within(Duration::from_secs(5))
        .await
        .expect("the timer's intervention within 5 s");
    let waited = sent.elapsed();
    assert_eq!(pushed["type"], "intervention", "{pushed}");
    assert_eq!(pushed["rule"], "product-dwell");
    assert_eq!(pushed["message"]["text"], "product-dwell says hello");
    assert!(
        waited >= Duration::from_millis(900),
        "fired after {waited:?}, before the page had been seen for a second"
    );
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1, "{exposures:?}");
    assert_eq!(exposures[0].id, pushed["id"].as_str().unwrap());
    ws.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_malformed_frame_gets_an_error_frame_and_the_socket_stays_usable() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let visitor = server.treated(SHOP, "v_bad");
    let session = "s_bad";
    let mut ws = server.ws(ORIGIN, SHOP, &visitor, session).await;

    let cases: [(String, &[&str]); 4] = [
        ("{not json".to_owned(), &["malformed frame"]),
        (
            json!({"type": "teleport"}).to_string(),
            &["malformed frame", "teleport"],
        ),
        (
            frame(vec![json!({"id": "s_bad:1", "type": "warp"})]).to_string(),
            &["events[0].type", "warp"],
        ),
        (
            frame(vec![
                page("s_bad:1", "product", "/p"),
                json!({"id": "s_bad:2", "type": "scroll", "depth": "deep"}),
            ])
            .to_string(),
            &["events[1].depth must be a number"],
        ),
    ];
    for (text, words) in cases {
        ws.send_text(text.clone()).await;
        let reply = ws.next().await;
        assert_eq!(reply["type"], "error", "{text}: {reply}");
        let error = reply["error"].as_str().expect("an error text");
        for w in words {
            assert!(error.contains(w), "{text}: {error:?} should name {w:?}");
        }
    }
    assert!(server.events(SHOP, session).await.is_empty());

    // The same socket still works.
    ws.send(&frame(vec![page("s_bad:1", "product", "/p")]))
        .await;
    let ack = ws.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ids(&ack), ["s_bad:1"]);
    assert_eq!(server.events(SHOP, session).await.len(), 1);
    ws.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_disallowed_origin_or_unknown_site_is_refused_at_upgrade() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let visitor = server.treated(SHOP, "v_evil");
    for (origin, site) in [("https://evil.example", SHOP), (ORIGIN, "nosuch")] {
        match server.try_ws(origin, site, &visitor, "s_evil").await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin} {site}");
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or(b""))
                    .expect("a JSON error body");
                assert!(body["error"].is_string(), "{body}");
            }
            Err(e) => panic!("{origin} {site}: refused, but not with an HTTP answer: {e}"),
            Ok(_) => panic!("{origin} {site}: the upgrade was accepted"),
        }
    }
    // The allowed origin upgrades.
    server
        .ws(ORIGIN, SHOP, &visitor, "s_evil")
        .await
        .close()
        .await;
    server.shutdown().await;
}
