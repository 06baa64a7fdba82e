//! The core's promises off the happy path, over real sockets: a visitor cannot be
//! impersonated, resends are recognised from the durable log however late, a cold visitor's
//! read never holds up the others, rules change live, and an unreadable stored state locks no
//! one out.

mod support;

use std::sync::Arc;
use std::time::Duration;

use beckon_engine::{Arm, Policy, SiteId, VisitorId};
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_store::Applied;
use beckon_store::faults::Faulty;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const SHOP: &str = "shop";

/// A rule whose text shows a visitor trait: what a forger would like to read.
fn greeting_rule() -> String {
    r#"
[[rules]]
id = "hello-by-name"
name = "Greets by e-mail"
status = "live"
when = { all = [ { var = "cart.items", op = "gt", value = 0 }, { var = "behaviour.exit_intent", op = "equals", value = true } ] }
message = { type = "text", text = "Hi {{ visitor.traits.email }}, your cart is waiting" }

[[rules]]
id = "payment-failed"
name = "The backend says a payment failed"
status = "live"
priority = 200
when = { all = [ { var = "event.name", op = "equals", value = "payment_failed" } ] }
message = { type = "text", text = "Your payment did not go through, {{ visitor.traits.email }}" }
"#
    .to_owned()
}

fn roomy() -> Policy {
    Policy {
        max_per_session: 10,
        max_per_visitor_day: 10,
        dismiss_cooldown: Duration::ZERO,
        ..Policy::default()
    }
}

#[tokio::test]
async fn a_client_knowing_only_a_visitor_id_receives_nothing_of_theirs_and_changes_nothing() {
    let server = TestServer::with_sites(&[Site::new(SHOP, &greeting_rule(), roomy())]).await;
    let victim = server.treated(SHOP, "v_victim");
    let identify =
        json!({"id": "s_v:2", "type": "identify", "traits": {"email": "victim@example.com"}});
    let r = server
        .post_events(&batch(
            SHOP,
            &victim,
            "s_v",
            vec![
                page("s_v:0", "cart", "/cart"),
                bare("s_v:1", "activity"),
                identify,
                cart("s_v:3", 1, 50.0),
            ],
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let shown = server
        .post_events(&batch(
            SHOP,
            &victim,
            "s_v",
            vec![bare("s_v:4", "exit_intent")],
        ))
        .await;
    let offer = shown.interventions()[0].clone();
    assert!(
        offer["message"]["text"]
            .as_str()
            .unwrap()
            .contains("victim@example.com")
    );
    let before = server.visitor(SHOP, &victim).await.expect("stored");

    // The forger knows the id (it is in the page's storage and in URLs), not the token.
    for token in [
        Value::Null,
        json!("forged-token"),
        json!(server.token(SHOP, "v_other")),
    ] {
        let mut forged = batch(
            SHOP,
            &victim,
            "s_v",
            vec![
                bare(&format!("s_f{}:1", token.is_null()), "exit_intent"),
                json!({"id": format!("s_f{}:2", token.is_null()), "type": "dismissed", "rule": "hello-by-name", "intervention": offer["id"]}),
                json!({"id": format!("s_f{}:3", token.is_null()), "type": "dismissed", "rule": "hello-by-name", "intervention": offer["id"]}),
            ],
        );
        forged["token"] = token.clone();
        let r = server.post_events(&forged).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        let identity = &r.body["identity"];
        let new_id = identity["visitor"].as_str().expect("a new identity");
        assert_ne!(new_id, victim, "{token}: the forger is someone new");
        assert!(
            !r.text.contains("victim@example.com"),
            "{token}: the victim's trait leaked: {}",
            r.text
        );
        // The new identity works as any visitor's: its token is the server's.
        assert_eq!(identity["token"], server.token(SHOP, new_id));
    }
    // The victim's state is untouched: no dismissal, no silence, the same visit.
    let after = server.visitor(SHOP, &victim).await.expect("stored");
    assert_eq!(after.profile, before.profile);
    assert_eq!(after.profile.dismissals, 0);

    // Over the WebSocket: the forger's socket is told it is a new visitor, and a
    // timer-driven or backend-driven intervention for the victim never reaches it.
    let mut forger = server
        .try_ws_with_token(ORIGIN, SHOP, &victim, "nope", "s_f")
        .await
        .expect("upgrade");
    let hello = forger.next().await;
    assert_eq!(hello["type"], "identity", "{hello}");
    assert_ne!(hello["visitor"], victim);
    let mut real = server.ws(ORIGIN, SHOP, &victim, "s_v").await;
    real.send(&frame(vec![bare("s_v:5", "activity")])).await;
    assert_eq!(real.next().await["type"], "ack");
    // The victim dismisses what is open, so that the next rule can show.
    real.send(&frame(vec![about("s_v:6", "dismissed", &offer)]))
        .await;
    assert_eq!(real.next().await["type"], "ack");
    // The backend reports an event that fires for the victim: pushed to the victim's socket.
    let r = server
        .backend(
            "/v1/track",
            Some("Bearer sk_shop_secret"),
            &json!({"site": SHOP, "visitor": victim, "id": "t-1", "name": "payment_failed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let pushed = real.next().await;
    assert_eq!(pushed["rule"], "payment-failed", "{pushed}");
    assert!(
        forger
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "the forger's socket hears nothing"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn outcomes_count_only_for_interventions_issued_to_the_visitor() {
    let server = TestServer::with_sites(&[Site::new(SHOP, &greeting_rule(), roomy())]).await;
    let v = server.treated(SHOP, "v_out");
    let fake = |id: &str, iv: &str| json!({"id": id, "type": "dismissed", "rule": "hello-by-name", "intervention": iv});
    let r = server
        .post_events(&batch(
            SHOP,
            &v,
            "s_o",
            vec![
                page("s_o:1", "cart", "/cart"),
                fake("s_o:2", "i_never"),
                fake("s_o:3", ""),
            ],
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let record = server.visitor(SHOP, &v).await.expect("stored");
    assert_eq!(
        record.profile.dismissals, 0,
        "nothing issued, nothing dismissed"
    );
    let events = server.events(SHOP, "s_o").await;
    assert!(
        matches!(&events[1].applied, Applied::Refused(why) if why.contains("not issued")),
        "{events:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_resend_is_recognised_from_the_log_however_late_and_an_order_counts_once() {
    let mut policy = roomy();
    policy.dismissals_before_silence = 2;
    let server = TestServer::with_sites(&[Site::new(SHOP, &greeting_rule(), policy)]).await;
    let v = server.treated(SHOP, "v_late");
    let shown = server
        .post_events(&batch(
            SHOP,
            &v,
            "s_l",
            vec![
                page("s_l:0", "cart", "/cart"),
                bare("s_l:1", "activity"),
                cart("s_l:2", 1, 9.0),
                bare("s_l:3", "exit_intent"),
            ],
        ))
        .await;
    let offer = shown.interventions()[0].clone();
    let dismissed = about("s_l:4", "dismissed", &offer);
    let r = server
        .post_events(&batch(SHOP, &v, "s_l", vec![dismissed.clone()]))
        .await;
    assert_eq!(r.body["accepted"], 1, "{r:?}");
    // 300 other events, then the same dismissal again (a beacon that arrived late).
    for chunk in 0..3 {
        let events = (0..100)
            .map(|i| bare(&format!("s_l:a{chunk}_{i}"), "activity"))
            .collect();
        let r = server.post_events(&batch(SHOP, &v, "s_l", events)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    }
    let again = server
        .post_events(&batch(SHOP, &v, "s_l", vec![dismissed.clone()]))
        .await;
    assert_eq!(
        (&again.body["accepted"], &again.body["duplicates"]),
        (&json!(0), &json!(1)),
        "{again:?}"
    );
    let record = server.visitor(SHOP, &v).await.expect("stored");
    assert_eq!(record.profile.dismissals, 1, "one dismissal, not two");
    assert_eq!(
        record.profile.silenced_until, None,
        "not silenced by one dismissal"
    );

    // The same order reported by the widget, then by the backend, then retried by the backend
    // after a restart: one conversion.
    let r = server
        .post_events(&batch(
            SHOP,
            &v,
            "s_l",
            vec![json!({"id": "s_l:c1", "type": "convert", "order_id": "A-77", "value": 30})],
        ))
        .await;
    assert_eq!(r.body["accepted"], 1, "{r:?}");
    let order = json!({"site": SHOP, "visitor": v, "order_id": "A-77", "value": 30.0});
    let bearer = "Bearer sk_shop_secret";
    let backend = server
        .backend("/v1/conversions", Some(bearer), &order)
        .await;
    assert_eq!(backend.body["duplicates"], 1, "{backend:?}");
    let store = server.store.clone();
    server.shutdown().await;
    let server = TestServer::start(store).await;
    let retry = server
        .backend("/v1/conversions", Some(bearer), &order)
        .await;
    assert_eq!(retry.body["duplicates"], 1, "{retry:?}");
    let record = server.visitor(SHOP, &v).await.expect("stored");
    assert_eq!(record.profile.conversions, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_backend_event_for_an_unknown_visitor_reaches_the_profile_and_opens_no_session() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let v = server.treated(SHOP, "v_cold");
    let r = server
        .backend(
            "/v1/conversions",
            Some("Bearer sk_shop_secret"),
            &json!({"site": SHOP, "visitor": v, "order_id": "B-1", "value": 5.0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let record = server.visitor(SHOP, &v).await.expect("stored");
    assert_eq!(record.profile.conversions, 1);
    assert!(
        record.session.is_none(),
        "no session is made up: {:?}",
        record.session.map(|s| s.id)
    );
    // The browser's first batch starts the visit under its own session id.
    let r = server
        .post_events(&batch(
            SHOP,
            &v,
            "s_cold",
            vec![page("s_cold:1", "home", "/")],
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let record = server.visitor(SHOP, &v).await.expect("stored");
    assert_eq!(record.session.expect("a visit").id.as_str(), "s_cold");
    assert_eq!(record.profile.conversions, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_cold_visitors_read_holds_up_no_one_else_and_an_unreadable_state_starts_afresh() {
    let base = store_with(&Site::new(SHOP, DEMO_RULES, Policy::default())).await;
    let faulty = Faulty::new(base.clone());
    let faults = faulty.handle();
    faults.hold_reads_of(VisitorId::parse("v_slow").unwrap());
    faults.undecodable(VisitorId::parse("v_broken").unwrap());
    let gated = Arc::new(faulty);
    // One shard: every visitor shares it.
    let server = TestServer::start_with(gated, one_shard()).await;
    let slow = {
        let body = batch(
            SHOP,
            "v_slow",
            "s_slow",
            vec![page("s_slow:1", "home", "/")],
        );
        let server = &server;
        async move { server.post_events(&body).await }
    };
    let others = async {
        // The slow visitor's read has begun, and holds, while these are answered on the same
        // shard.
        eventually("the slow read has begun", || async {
            faults.held_reads() == 1
        })
        .await;
        for i in 0..5 {
            let v = format!("v_quick{i}");
            let s = format!("s_quick{i}");
            let r = server
                .post_events(&batch(
                    SHOP,
                    &v,
                    &s,
                    vec![page(&format!("{s}:1"), "home", "/")],
                ))
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        }
        // Only now may the slow read finish.
        faults.release_reads();
    };
    let (slow, ()) = tokio::join!(slow, others);
    assert_eq!(slow.status, StatusCode::ACCEPTED, "{slow:?}");

    // An unreadable stored state: the visitor is served, starting afresh.
    let r = server
        .post_events(&batch(
            SHOP,
            "v_broken",
            "s_b",
            vec![page("s_b:1", "home", "/")],
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let fresh = visitor_record(base.as_ref(), SHOP, "v_broken")
        .await
        .expect("a fresh state is written");
    assert_eq!(fresh.profile.visits, 1);
    assert_eq!(fresh.session.expect("a visit").id.as_str(), "s_b");
    // ... and the problem is counted.
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("beckon_undecodable_states_total"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn rules_written_to_the_database_take_effect_in_a_running_server_and_no_socket_undoes_them() {
    let store = memory_store().await;
    let quiet = rule(
        "quiet",
        r#"{ all = [ { var = "cart.items", op = "gt", value = 999 } ] }"#,
        "",
    );
    install(store.as_ref(), &Site::new(SHOP, &quiet, roomy())).await;
    let server = TestServer::start_with(
        store.clone(),
        Options {
            shards: 2,
            limits: Limits::unthrottled(),
            watch_sites: Duration::from_millis(50),
            ..Options::default()
        },
    )
    .await;
    let v = server.treated(SHOP, "v_swap");
    // A socket opened under the old rules.
    let mut ws = server.ws(ORIGIN, SHOP, &v, "s_swap").await;
    ws.send(&frame(vec![
        page("s_swap:1", "cart", "/cart"),
        bare("s_swap:2", "activity"),
        cart("s_swap:3", 1, 5.0),
    ]))
    .await;
    assert_eq!(ws.next().await["type"], "ack");
    let version_before = server.sites.get(SHOP).unwrap().version();

    // Another process (`beckon rules import`) writes new rules into the same database.
    let loud = cart_exit_rule("loud");
    let rules = beckon_engine::RuleSet::from_toml(&loud, beckon_engine::Tz::UTC).unwrap();
    store
        .replace_rules(&SiteId::parse(SHOP).unwrap(), &rules.to_file().rules)
        .await
        .unwrap();
    eventually("the new rules are in force", || async {
        server.sites.get(SHOP).unwrap().version() > version_before
    })
    .await;
    // The socket opened before the swap decides under the new rules.
    ws.send(&frame(vec![bare("s_swap:4", "exit_intent")])).await;
    assert_eq!(ws.next().await["type"], "ack");
    let shown = ws.next().await;
    assert_eq!(shown["rule"], "loud", "{shown}");
    // And its next batch does not bring the old rules back.
    ws.send(&frame(vec![bare("s_swap:5", "activity")])).await;
    assert_eq!(ws.next().await["type"], "ack");
    assert!(
        server
            .sites
            .get(SHOP)
            .unwrap()
            .engine
            .rules()
            .get("loud")
            .is_some()
    );
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1);
    assert_eq!(exposures[0].arm, Arm::Treated);
    server.shutdown().await;
}
