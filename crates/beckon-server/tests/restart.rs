//! A server stopped and a new one started on the same database file: guardrails, the holdout
//! arm and pending timers carry over, because every acknowledged batch was stored with the
//! session and profile it produced.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use beckon_engine::{Arm, Event, Policy, Suppression};
use reqwest::StatusCode;
use serde_json::Value;
use support::*;
use tempfile::TempDir;

const SHOP: &str = "shop";

/// A fresh database file holding the site "shop" with `rules` and `policy`.
async fn database(rules: &str, policy: Policy) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("beckon.db");
    let store = file_store(&path).await;
    install(store.as_ref(), &Site::new(SHOP, rules, policy)).await;
    (dir, path)
}

/// A server on the database file at `path`, opened afresh.
async fn serve(path: &std::path::Path) -> TestServer {
    TestServer::start(file_store(path).await).await
}

/// Posts `events` for `visitor` in `session` and returns the interventions.
async fn send(server: &TestServer, visitor: &str, session: &str, events: Vec<Value>) -> Vec<Value> {
    let r = server
        .post_events(&batch(SHOP, visitor, session, events))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    r.interventions().clone()
}

fn leaving_with_cart(session: &str) -> Vec<Value> {
    vec![
        page(&format!("{session}:1"), "product", "/products/tent"),
        bare(&format!("{session}:2"), "activity"),
        cart(&format!("{session}:3"), 2, 310.0),
        bare(&format!("{session}:4"), "exit_intent"),
    ]
}

/// After the restart: the cart changes and the visitor heads for the exit again.
fn leaving_again(session: &str) -> Vec<Value> {
    vec![
        cart(&format!("{session}:20"), 3, 400.0),
        bare(&format!("{session}:21"), "exit_intent"),
    ]
}

#[tokio::test]
async fn a_dismissal_cooldown_survives_a_restart() {
    let (_dir, path) = database(&cart_exit_rule("cart-exit"), Policy::default()).await;
    let before = serve(&path).await;
    let dismisser = before.treated(SHOP, "v_dismiss");
    let control = before.treated(SHOP, "v_control");

    let shown = send(&before, &dismisser, "s_d", leaving_with_cart("s_d")).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    let shown_d = shown[0].clone();
    send(
        &before,
        &dismisser,
        "s_d",
        vec![about("s_d:5", "dismissed", &shown_d)],
    )
    .await;
    // The control visitor saw it too, and navigated away without dismissing it.
    let shown = send(&before, &control, "s_c", leaving_with_cart("s_c")).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    send(
        &before,
        &control,
        "s_c",
        vec![page("s_c:5", "category", "/tents")],
    )
    .await;
    before.shutdown().await;

    let after = serve(&path).await;
    // The widget resends the dismissal it never saw acknowledged: recognised after the
    // restart too, so it is not counted twice.
    let resent = after
        .post_events(&batch(
            SHOP,
            &dismisser,
            "s_d",
            vec![about("s_d:5", "dismissed", &shown_d)],
        ))
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{resent:?}");
    assert_eq!(resent.body["duplicates"], 1, "{resent:?}");
    let refused = send(&after, &dismisser, "s_d", leaving_again("s_d")).await;
    assert!(
        refused.is_empty(),
        "the cooldown was forgotten: {refused:?}"
    );
    let fired = send(&after, &control, "s_c", leaving_again("s_c")).await;
    assert_eq!(
        fired.len(),
        1,
        "the same moment fires for a visitor who did not dismiss"
    );

    let record = after.visitor(SHOP, &dismisser).await.expect("stored");
    assert_eq!(record.profile.dismissals, 1);
    assert!(
        matches!(
            after.held_by(SHOP, &dismisser, &Event::ExitIntent).await,
            Some(Suppression::Cooldown { .. })
        ),
        "what holds the dismisser back is the cooldown"
    );
    let exposures = after.exposures(SHOP).await;
    assert_eq!(
        exposures
            .iter()
            .filter(|x| x.visitor.as_str() == dismisser)
            .count(),
        1
    );
    after.shutdown().await;
}

#[tokio::test]
async fn the_session_cap_and_a_conversion_survive_a_restart() {
    let policy = Policy {
        max_per_session: 1,
        ..Policy::default()
    };
    let (_dir, path) = database(&cart_exit_rule("cart-exit"), policy).await;
    let before = serve(&path).await;
    let capped = before.treated(SHOP, "v_capped");
    let converted = before.treated(SHOP, "v_converted");
    let control = before.treated(SHOP, "v_control");

    let shown = send(&before, &capped, "s_cap", leaving_with_cart("s_cap")).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    send(
        &before,
        &capped,
        "s_cap",
        vec![page("s_cap:5", "category", "/tents")],
    )
    .await;
    let none = send(
        &before,
        &converted,
        "s_conv",
        vec![
            page("s_conv:1", "checkout", "/checkout"),
            bare("s_conv:2", "activity"),
            cart("s_conv:3", 2, 310.0),
            serde_json::json!({"id": "s_conv:4", "type": "convert", "order_id": "A-1001", "value": 310.0}),
        ],
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    let none = send(
        &before,
        &control,
        "s_ctl",
        vec![
            page("s_ctl:1", "product", "/products/tent"),
            bare("s_ctl:2", "activity"),
            cart("s_ctl:3", 2, 310.0),
        ],
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    before.shutdown().await;

    let after = serve(&path).await;
    assert!(
        send(&after, &capped, "s_cap", leaving_again("s_cap"))
            .await
            .is_empty(),
        "the session cap was forgotten"
    );
    assert!(
        send(&after, &converted, "s_conv", leaving_again("s_conv"))
            .await
            .is_empty(),
        "the conversion was forgotten"
    );
    assert_eq!(
        send(&after, &control, "s_ctl", leaving_again("s_ctl"))
            .await
            .len(),
        1,
        "the same moment fires for a visitor who neither converted nor saw anything"
    );

    let capped_state = after.visitor(SHOP, &capped).await.expect("stored");
    assert_eq!(capped_state.session.expect("a session").state.fired(), 1);
    assert_eq!(
        after.held_by(SHOP, &capped, &Event::ExitIntent).await,
        Some(Suppression::SessionCap { max: 1 })
    );
    let converted_state = after.visitor(SHOP, &converted).await.expect("stored");
    assert_eq!(converted_state.profile.conversions, 1);
    assert!(
        converted_state
            .session
            .expect("a session")
            .state
            .converted()
    );
    assert_eq!(
        after.held_by(SHOP, &converted, &Event::ExitIntent).await,
        Some(Suppression::Converted)
    );
    after.shutdown().await;
}

#[tokio::test]
async fn the_holdout_arm_is_the_same_after_a_restart() {
    // Every new session id is a new visit here, so the arm is computed afresh for it.
    let no_gap = Policy {
        visit_gap: std::time::Duration::ZERO,
        ..Policy::default()
    };
    let (_dir, path) = database(&cart_exit_rule("cart-exit"), no_gap).await;
    let before = serve(&path).await;
    let held = before.visitor_in(SHOP, Arm::Holdout, "v_held");
    let treated = before.treated(SHOP, "v_treated");

    assert!(
        send(&before, &held, "s_h", leaving_with_cart("s_h"))
            .await
            .is_empty()
    );
    assert_eq!(
        send(&before, &treated, "s_t", leaving_with_cart("s_t"))
            .await
            .len(),
        1
    );
    for (visitor, session) in [(&held, "s_h"), (&treated, "s_t")] {
        send(
            &before,
            visitor,
            session,
            vec![page(&format!("{session}:5"), "category", "/tents")],
        )
        .await;
    }
    before.shutdown().await;

    let after = serve(&path).await;
    // The same session, resumed from the database, and a new one, where the arm is computed
    // again: the held-out visitor stays held out, the treated one treated.
    assert!(
        send(&after, &held, "s_h", leaving_again("s_h"))
            .await
            .is_empty()
    );
    assert!(
        send(&after, &held, "s_h2", leaving_with_cart("s_h2"))
            .await
            .is_empty()
    );
    assert_eq!(
        send(&after, &treated, "s_t", leaving_again("s_t"))
            .await
            .len(),
        1
    );
    assert_eq!(
        send(&after, &treated, "s_t2", leaving_with_cart("s_t2"))
            .await
            .len(),
        1
    );
    let exposures = after.exposures(SHOP).await;
    let arms = |v: &str| -> Vec<Arm> {
        exposures
            .iter()
            .filter(|x| x.visitor.as_str() == v)
            .map(|x| x.arm)
            .collect()
    };
    assert_eq!(arms(&held), [Arm::Holdout; 3]);
    assert_eq!(arms(&treated), [Arm::Treated; 3]);
    after.shutdown().await;
}

#[tokio::test]
async fn a_pending_timer_fires_after_a_restart_without_new_events() {
    let rules = rule(
        "product-dwell",
        r#"{ var = "time.on_page", op = "gte", value = 3 }"#,
        r#"pages = ["product"]"#,
    );
    let policy = Policy {
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    let (_dir, path) = database(&rules, policy).await;
    let before = serve(&path).await;
    let visitor = before.treated(SHOP, "v_dwell");
    let none = send(
        &before,
        &visitor,
        "s_dwell",
        vec![
            page("s_dwell:1", "product", "/products/tent"),
            bare("s_dwell:2", "activity"),
        ],
    )
    .await;
    assert!(none.is_empty());
    before.shutdown().await;
    let store = file_store(&path).await;
    assert!(
        exposures(store.as_ref(), SHOP).await.is_empty(),
        "the timer was still pending when the first server stopped"
    );
    drop(store);

    // The new server is only started: no request reaches it.
    let after = serve(&path).await;
    eventually("the resumed session's timer fires", || async {
        !after.exposures(SHOP).await.is_empty()
    })
    .await;
    let exposures = after.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1, "{exposures:?}");
    assert_eq!(exposures[0].rule.as_str(), "product-dwell");
    assert_eq!(exposures[0].arm, Arm::Treated);
    assert_eq!(exposures[0].session.as_str(), "s_dwell");

    // The widget reconnects; the intervention waiting for it comes with the first answer.
    let mut ws = after.ws(ORIGIN, SHOP, &visitor, "s_dwell").await;
    ws.send(&frame(vec![])).await;
    let ack = ws.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let shown = ws.next().await;
    assert_eq!(shown["type"], "intervention", "{shown}");
    assert_eq!(shown["rule"], "product-dwell");
    assert_eq!(shown["id"], exposures[0].id.as_str());
    ws.close().await;
    after.shutdown().await;
}
