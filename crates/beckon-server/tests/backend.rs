//! The merchant's backend over a real socket: `POST /v1/conversions` and `POST /v1/track`,
//! authenticated with the site's secret, joining the visitor's current session.

mod support;

use std::time::Duration;

use beckon_engine::Policy;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const SHOP: &str = "shop";
const SECRET: &str = "sk_shop_secret";

fn shop() -> Site {
    let rules = format!(
        "{}\n{}",
        cart_exit_rule("cart-exit"),
        rule(
            "payment-help",
            r#"{ var = "event.tracked", op = "contains", value = "payment_failed" }"#,
            "priority = 200",
        )
    );
    Site::new(
        SHOP,
        &rules,
        Policy {
            arrival_grace: Duration::ZERO,
            ..Policy::default()
        },
    )
}

fn bearer() -> String {
    format!("Bearer {SECRET}")
}

async fn send(server: &TestServer, visitor: &str, session: &str, events: Vec<Value>) -> Vec<Value> {
    let r = server
        .post_events(&batch(SHOP, visitor, session, events))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    r.interventions().clone()
}

fn browsing_with_cart(session: &str) -> Vec<Value> {
    vec![
        page(&format!("{session}:1"), "product", "/products/tent"),
        bare(&format!("{session}:2"), "activity"),
        cart(&format!("{session}:3"), 1, 89.0),
    ]
}

#[tokio::test]
async fn a_backend_conversion_leaves_the_visitor_alone_for_the_rest_of_the_session() {
    let server = TestServer::with_sites(&[shop()]).await;
    let buyer = server.treated(SHOP, "v_buyer");
    let control = server.treated(SHOP, "v_control");
    assert!(
        send(&server, &buyer, "s_buyer", browsing_with_cart("s_buyer"))
            .await
            .is_empty()
    );
    assert!(
        send(&server, &control, "s_ctl", browsing_with_cart("s_ctl"))
            .await
            .is_empty()
    );

    let r = server
        .backend(
            "/v1/conversions",
            Some(&bearer()),
            &json!({"site": SHOP, "visitor": buyer, "order_id": "A-1001", "value": 89.0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.body["accepted"], 1);

    let after = send(
        &server,
        &buyer,
        "s_buyer",
        vec![bare("s_buyer:4", "exit_intent")],
    )
    .await;
    assert!(after.is_empty(), "a converted visitor got {after:?}");
    let fired = send(
        &server,
        &control,
        "s_ctl",
        vec![bare("s_ctl:4", "exit_intent")],
    )
    .await;
    assert_eq!(
        fired.len(),
        1,
        "the same moment fires without the conversion"
    );

    // The order joined the session the visitor was in.
    let stored = server.visitor(SHOP, &buyer).await.expect("stored");
    assert_eq!(stored.profile.conversions, 1);
    let session = stored.session.expect("a session");
    assert_eq!(session.id.as_str(), "s_buyer");
    assert!(session.state.converted());
    let kinds: Vec<(String, String)> = server
        .events(SHOP, "s_buyer")
        .await
        .into_iter()
        .map(|e| (e.key, e.kind))
        .collect();
    assert!(
        kinds.contains(&("order:A-1001".to_owned(), "convert".to_owned())),
        "{kinds:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused_and_stores_nothing() {
    let server = TestServer::with_sites(&[shop()]).await;
    let visitor = server.treated(SHOP, "v_auth");
    let conversion = json!({"site": SHOP, "visitor": visitor, "order_id": "A-7", "value": 10.0});
    let track = json!({"site": SHOP, "visitor": visitor, "id": "evt-7", "name": "payment_failed"});
    let wrong = [
        None,
        Some("Bearer sk_shop_wrong".to_owned()),
        Some("Bearer ".to_owned()),
        Some(SECRET.to_owned()),
        Some(format!("Basic {SECRET}")),
    ];
    for (path, body) in [("/v1/conversions", &conversion), ("/v1/track", &track)] {
        for auth in &wrong {
            let r = server.backend(path, auth.as_deref(), body).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} {auth:?}: {r:?}");
            assert!(
                r.error().contains("credentials"),
                "{path} {auth:?}: {}",
                r.error()
            );
        }
    }
    assert!(server.visitor(SHOP, &visitor).await.is_none());
    assert!(server.events(SHOP, "current").await.is_empty());

    // With the secret, the same request is accepted.
    let r = server
        .backend("/v1/conversions", Some(&bearer()), &conversion)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert!(server.visitor(SHOP, &visitor).await.is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn a_tracked_payment_failure_fires_its_rule_on_the_visitors_next_event() {
    let server = TestServer::with_sites(&[shop()]).await;
    let visitor = server.treated(SHOP, "v_payer");
    let none = send(
        &server,
        &visitor,
        "s_pay",
        vec![page("s_pay:1", "checkout", "/checkout")],
    )
    .await;
    assert!(none.is_empty(), "{none:?}");

    let r = server
        .backend(
            "/v1/track",
            Some(&bearer()),
            &json!({"site": SHOP, "visitor": visitor, "id": "pay-1", "name": "payment_failed",
                    "props": {"amount": 49, "reason": "card_declined"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.body["accepted"], 1);

    let next = send(
        &server,
        &visitor,
        "s_pay",
        vec![bare("s_pay:2", "activity")],
    )
    .await;
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0]["rule"], "payment-help");
    assert_eq!(next[0]["message"]["text"], "payment-help says hello");
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1, "{exposures:?}");
    assert_eq!(exposures[0].id, next[0]["id"].as_str().unwrap());
    assert_eq!(exposures[0].session.as_str(), "s_pay");
    // Delivered once: the event after that brings nothing more.
    let later = send(
        &server,
        &visitor,
        "s_pay",
        vec![bare("s_pay:3", "activity")],
    )
    .await;
    assert!(later.is_empty(), "{later:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_tracked_payment_failure_is_pushed_to_an_open_socket() {
    let server = TestServer::with_sites(&[shop()]).await;
    let visitor = server.treated(SHOP, "v_socket");
    let mut ws = server.ws(ORIGIN, SHOP, &visitor, "s_sock").await;
    ws.send(&frame(vec![
        page("s_sock:1", "checkout", "/checkout"),
        bare("s_sock:2", "activity"),
    ]))
    .await;
    assert_eq!(ws.next().await["type"], "ack");

    let r = server
        .backend(
            "/v1/track",
            Some(&bearer()),
            &json!({"site": SHOP, "visitor": visitor, "id": "pay-2", "name": "payment_failed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let pushed = ws.next().await;
    assert_eq!(pushed["type"], "intervention", "{pushed}");
    assert_eq!(pushed["rule"], "payment-help");
    ws.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn retrying_a_backend_event_is_idempotent() {
    let server = TestServer::with_sites(&[shop()]).await;
    let visitor = server.treated(SHOP, "v_retry");
    send(
        &server,
        &visitor,
        "s_retry",
        vec![page("s_retry:1", "product", "/products/tent")],
    )
    .await;
    let track = json!({"site": SHOP, "visitor": visitor, "id": "evt-42", "name": "trial_started"});
    let conversion = json!({"site": SHOP, "visitor": visitor, "order_id": "A-42", "value": 20.0});
    for (path, body) in [("/v1/track", &track), ("/v1/conversions", &conversion)] {
        let first = server.backend(path, Some(&bearer()), body).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
        assert_eq!(
            (&first.body["accepted"], &first.body["duplicates"]),
            (&json!(1), &json!(0))
        );
        let retry = server.backend(path, Some(&bearer()), body).await;
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
        assert_eq!(
            (&retry.body["accepted"], &retry.body["duplicates"]),
            (&json!(0), &json!(1)),
            "{path}"
        );
    }
    let ids: Vec<String> = server
        .events(SHOP, "s_retry")
        .await
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(ids, ["s_retry:1", "server:evt-42", "order:A-42"]);
    let stored = server.visitor(SHOP, &visitor).await.expect("stored");
    assert_eq!(
        stored.profile.conversions, 1,
        "the retried order counted once"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_malformed_backend_body_gets_a_json_error_that_says_what_is_wrong() {
    let server = TestServer::with_sites(&[shop()]).await;
    let http = reqwest::Client::new();
    for path in ["/v1/conversions", "/v1/track"] {
        let r = http
            .post(server.url(path))
            .header("authorization", bearer())
            .header("content-type", "application/json")
            .body("{\"site\": \"shop\", \"visitor\": 42}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST, "{path}");
        let body: serde_json::Value = r.json().await.expect("a JSON error");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("malformed body"), "{path}: {error}");
    }
    server.shutdown().await;
}
