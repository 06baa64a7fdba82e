//! `POST /v1/events` over a real socket: what fires, what is stored, what is refused and why,
//! bots, the holdout, sites kept apart, CORS, health.

mod support;

use std::time::Duration;

use beckon_engine::{Arm, Event, Policy, SiteId, Suppression, VisitorId};
use beckon_server::replay;
use beckon_store::{Source, Verdict};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const SHOP: &str = "shop";

/// Page, a person's pointer on it, cart of `items`, exit intent: the moment the demo's
/// `cart-exit-offer` is for.
fn leaving_with_cart(session: &str, items: u32) -> Vec<Value> {
    vec![
        page(&format!("{session}:1"), "product", "/products/trail-shoe-x"),
        bare(&format!("{session}:2"), "activity"),
        cart(&format!("{session}:3"), items, 129.0),
        bare(&format!("{session}:4"), "exit_intent"),
    ]
}

async fn demo_shop() -> TestServer {
    TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await
}

#[tokio::test]
async fn a_cart_exit_batch_gets_the_rendered_offer_once_and_a_resend_is_acknowledged_only() {
    let server = demo_shop().await;
    let visitor = server.treated(SHOP, "v_cartexit");
    let session = "s_cartexit";
    let body = batch(SHOP, &visitor, session, leaving_with_cart(session, 3));

    let first = server.post_events(&body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    assert_eq!(
        first
            .headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some(ORIGIN),
        "an allowed origin may read the answer"
    );
    assert_eq!(first.body["accepted"], 4);
    assert_eq!(first.body["duplicates"], 0);
    let interventions = first.interventions();
    assert_eq!(interventions.len(), 1, "{interventions:?}");
    let offer = &interventions[0];
    assert_eq!(offer["rule"], "cart-exit-offer");
    assert_eq!(offer["message"]["type"], "offer");
    assert_eq!(offer["message"]["code"], "STAY10");
    assert_eq!(
        offer["message"]["text"], "Before you go: 10% off the 3 items in your cart.",
        "the template is rendered with the cart's item count"
    );
    let intervention_id = offer["id"].as_str().expect("an intervention id");
    assert!(intervention_id.starts_with("i_"), "{intervention_id}");

    // Stored before the answer: the events in order, and one treated exposure.
    let stored = server.events(SHOP, session).await;
    let kinds: Vec<(&str, &str)> = stored
        .iter()
        .map(|e| (e.id.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("s_cartexit:1", "page"),
            ("s_cartexit:2", "activity"),
            ("s_cartexit:3", "cart"),
            ("s_cartexit:4", "exit_intent")
        ]
    );
    assert!(stored.iter().all(|e| e.visitor.as_str() == visitor));
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1, "{exposures:?}");
    let x = &exposures[0];
    assert_eq!(
        (
            x.id.as_str(),
            x.rule.as_str(),
            x.arm,
            x.visitor.as_str(),
            x.session.as_str()
        ),
        (
            intervention_id,
            "cart-exit-offer",
            Arm::Treated,
            visitor.as_str(),
            session
        )
    );
    assert!(x.message.contains("the 3 items"), "{}", x.message);

    // The widget resends the same batch (it never saw the answer): acknowledged, not re-applied.
    let again = server.post_events(&body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{again:?}");
    assert_eq!(again.body["accepted"], 0);
    assert_eq!(again.body["duplicates"], 4);
    assert!(again.interventions().is_empty(), "{again:?}");
    assert_eq!(server.exposures(SHOP).await.len(), 1);
    assert_eq!(server.events(SHOP, session).await.len(), 4);
    server.shutdown().await;
}

/// A request that must be refused, and the words its error must contain.
struct Refusal {
    what: &'static str,
    origin: Option<&'static str>,
    body: String,
    status: StatusCode,
    words: &'static [&'static str],
}

#[tokio::test]
async fn rejections_name_the_problem_and_store_nothing() {
    let mut open = Site::new("open", DEMO_RULES, Policy::default());
    open.origins = vec!["*".to_owned()];
    let server =
        TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default()), open]).await;
    let visitor = server.treated(SHOP, "v_reject");
    let ok = |session: &str| batch(SHOP, &visitor, session, leaving_with_cart(session, 2));

    let mut unknown_site = ok("s_r1");
    unknown_site["site"] = json!("nosuch");
    let mut unknown_type = ok("s_r4");
    unknown_type["events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "s_r4:5", "type": "teleport"}));
    let mut bad_field = ok("s_r5");
    bad_field["events"][2]["items"] = json!("three");
    let mut bad_visitor = ok("s_r6");
    bad_visitor["visitor"] = json!("v_<script>");
    let mut too_many = ok("s_r7");
    for i in 0..97 {
        too_many["events"]
            .as_array_mut()
            .unwrap()
            .push(bare(&format!("s_r7:a{i}"), "activity"));
    }
    let mut too_big = ok("s_r8");
    too_big["padding"] = json!("x".repeat(70 * 1024));

    let cases = [
        Refusal {
            what: "unknown site",
            origin: Some(ORIGIN),
            body: unknown_site.to_string(),
            status: StatusCode::FORBIDDEN,
            words: &["unknown site key", "nosuch"],
        },
        Refusal {
            what: "disallowed origin",
            origin: Some("https://evil.example"),
            body: ok("s_r2").to_string(),
            status: StatusCode::FORBIDDEN,
            words: &["origin", "https://evil.example", "not allowed"],
        },
        Refusal {
            what: "missing origin",
            origin: None,
            body: ok("s_r3").to_string(),
            status: StatusCode::FORBIDDEN,
            words: &["origin", "(none)", "not allowed"],
        },
        Refusal {
            what: "malformed JSON",
            origin: Some(ORIGIN),
            body: r#"{"site": "shop", "visitor": "#.to_owned(),
            status: StatusCode::BAD_REQUEST,
            words: &["malformed batch"],
        },
        Refusal {
            what: "unknown event type",
            origin: Some(ORIGIN),
            body: unknown_type.to_string(),
            status: StatusCode::BAD_REQUEST,
            words: &["events[4].type", "teleport"],
        },
        Refusal {
            what: "bad field type",
            origin: Some(ORIGIN),
            body: bad_field.to_string(),
            status: StatusCode::BAD_REQUEST,
            words: &["events[2].items must be a number"],
        },
        Refusal {
            what: "illegal visitor id",
            origin: Some(ORIGIN),
            body: bad_visitor.to_string(),
            status: StatusCode::BAD_REQUEST,
            words: &["visitor", "'<'"],
        },
        Refusal {
            what: "more than 100 events",
            origin: Some(ORIGIN),
            body: too_many.to_string(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            words: &["101 events", "at most 100"],
        },
        Refusal {
            what: "a body over 64 KiB",
            origin: Some(ORIGIN),
            body: too_big.to_string(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            words: &["larger than 65536 bytes"],
        },
    ];
    for case in cases {
        let r = server.post_events_as(case.origin, CHROME, case.body).await;
        assert_eq!(r.status, case.status, "{}: {r:?}", case.what);
        let error = r.error();
        for w in case.words {
            assert!(
                error.contains(w),
                "{}: {error:?} should name {w:?}",
                case.what
            );
        }
    }

    assert!(server.exposures(SHOP).await.is_empty());
    assert!(server.visitor(SHOP, &visitor).await.is_none());
    for i in 1..=8 {
        let session = format!("s_r{i}");
        assert!(server.events(SHOP, &session).await.is_empty(), "{session}");
    }
    // The same batch from the allowed origin is accepted and fires: the refusals above are the
    // only reason nothing happened.
    let accepted = server.post_events(&ok("s_r9")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");
    assert_eq!(accepted.interventions().len(), 1, "{accepted:?}");
    // A site that allows "*" takes a batch without an Origin header.
    let visitor = server.treated("open", "v_open");
    let body = batch("open", &visitor, "s_open", leaving_with_cart("s_open", 2));
    let no_origin = server.post_events_as(None, CHROME, body.to_string()).await;
    assert_eq!(no_origin.status, StatusCode::ACCEPTED, "{no_origin:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn bots_and_automated_browsers_are_acknowledged_and_logged_but_never_decided_on_or_served() {
    let server = demo_shop().await;
    let bots = [
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            false,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            false,
        ),
        ("curl/8.5.0", false),
        (CHROME, true),
    ];
    let mut seen = Vec::new();
    for (i, (ua, webdriver)) in bots.into_iter().enumerate() {
        let visitor = server.treated(SHOP, &format!("v_bot{i}_"));
        let session = format!("s_bot{i}");
        let mut body = batch(SHOP, &visitor, &session, leaving_with_cart(&session, 2));
        body["context"]["webdriver"] = json!(webdriver);
        let r = server
            .post_events_as(Some(ORIGIN), ua, body.to_string())
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{ua}: {r:?}");
        assert!(r.interventions().is_empty(), "{ua}: {r:?}");
        assert_eq!(r.body["accepted"], 0, "{ua}: nothing is new to the log");
        seen.push((visitor, session));
    }
    for (visitor, session) in &seen {
        assert!(server.visitor(SHOP, visitor).await.is_none(), "{visitor}");
        // Kept for the operator to inspect, marked as never decided on.
        let events = server.events(SHOP, session).await;
        assert_eq!(events.len(), 4, "{session}");
        assert!(
            events
                .iter()
                .all(|e| e.applied == beckon_store::Applied::Logged),
            "{events:?}"
        );
    }
    let log = server
        .store
        .log(&beckon_engine::SiteId::parse(SHOP).unwrap(), 0, 100)
        .await
        .unwrap();
    let reasons: Vec<String> = log
        .iter()
        .filter_map(|(_, b)| match &b.verdict {
            beckon_store::Verdict::Bot { reason } => Some(reason.clone()),
            beckon_store::Verdict::Human => None,
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[3].contains("webdriver"), "{reasons:?}");
    assert!(server.exposures(SHOP).await.is_empty());

    // The same batch from a person fires.
    let visitor = server.treated(SHOP, "v_person");
    let person = server
        .post_events(&batch(
            SHOP,
            &visitor,
            "s_person",
            leaving_with_cart("s_person", 2),
        ))
        .await;
    assert_eq!(person.interventions().len(), 1, "{person:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_beacon_batch_sent_as_text_plain_is_accepted() {
    let server = demo_shop().await;
    let visitor = server.treated(SHOP, "v_beacon");
    let mut body = batch(SHOP, &visitor, "s_beacon", leaving_with_cart("s_beacon", 1));
    body["token"] = json!(server.token(SHOP, &visitor));
    let r = server
        .http
        .post(server.url("/v1/events?site=shop"))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", ORIGIN)
        .header("user-agent", CHROME)
        .body(body.to_string())
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let answer: Value = r.json().await.expect("JSON");
    assert_eq!(answer["accepted"], 4);
    assert_eq!(answer["interventions"][0]["rule"], "cart-exit-offer");
    assert_eq!(server.events(SHOP, "s_beacon").await.len(), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn a_held_out_visitor_sees_nothing_but_a_holdout_exposure_is_logged() {
    let server = demo_shop().await;
    let visitor = server.visitor_in(SHOP, Arm::Holdout, "v_holdout");
    let r = server
        .post_events(&batch(
            SHOP,
            &visitor,
            "s_holdout",
            leaving_with_cart("s_holdout", 2),
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.body["accepted"], 4);
    assert!(r.interventions().is_empty(), "{r:?}");
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1, "{exposures:?}");
    assert_eq!(exposures[0].arm, Arm::Holdout);
    assert_eq!(exposures[0].rule.as_str(), "cart-exit-offer");
    assert_eq!(exposures[0].visitor.as_str(), visitor);
    assert!(exposures[0].message.is_empty(), "a ghost shows nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn two_sites_never_share_a_visitors_state() {
    let rules = cart_exit_rule("cart-exit");
    let server = TestServer::with_sites(&[
        Site::new("alpha", &rules, Policy::default()),
        Site::new("beta", &rules, Policy::default()),
    ])
    .await;
    // One id, treated on both sites (the arm depends on the site).
    let visitor = server.visitor_in_all(&["alpha", "beta"], Arm::Treated, "v_both");
    let session = "s_shared";

    let a = server
        .post_events(&batch(
            "alpha",
            &visitor,
            session,
            leaving_with_cart(session, 1),
        ))
        .await;
    assert_eq!(a.interventions().len(), 1, "{a:?}");
    let dismissed = server
        .post_events(&batch(
            "alpha",
            &visitor,
            session,
            vec![about("s_shared:5", "dismissed", &a.interventions()[0])],
        ))
        .await;
    assert_eq!(dismissed.status, StatusCode::ACCEPTED, "{dismissed:?}");

    // Same visitor id, same session id, same event ids on the other site: all new, and the
    // dismissal on alpha does not cool beta down.
    let b = server
        .post_events(&batch(
            "beta",
            &visitor,
            session,
            leaving_with_cart(session, 1),
        ))
        .await;
    assert_eq!(b.body["accepted"], 4, "{b:?}");
    assert_eq!(b.body["duplicates"], 0, "{b:?}");
    assert_eq!(b.interventions().len(), 1, "{b:?}");

    // While alpha is cooling down after the dismissal.
    let a_again = server
        .post_events(&batch(
            "alpha",
            &visitor,
            session,
            vec![
                bare("s_shared:6", "activity"),
                bare("s_shared:7", "exit_intent"),
            ],
        ))
        .await;
    assert!(a_again.interventions().is_empty(), "{a_again:?}");
    let alpha = server.visitor("alpha", &visitor).await.expect("stored");
    let beta = server.visitor("beta", &visitor).await.expect("stored");
    assert_eq!(alpha.profile.dismissals, 1);
    assert_eq!(beta.profile.dismissals, 0);
    assert_eq!(server.exposures("alpha").await.len(), 1);
    assert_eq!(server.exposures("beta").await.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let server = demo_shop().await;
    let preflight = |origin: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url("/v1/events?site=shop"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .header("user-agent", CHROME)
            .send()
    };
    let allowed = preflight(ORIGIN).await.expect("preflight");
    assert!(allowed.status().is_success(), "{allowed:?}");
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("content-type")
    );

    let refused = preflight("https://evil.example").await.expect("preflight");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "without an allow-origin the browser refuses the request: {refused:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let server = demo_shop().await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = server
            .http
            .get(server.url(path))
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["status"], status, "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn late_events_of_an_ended_visit_are_logged_but_do_not_reopen_it() {
    // No visit gap: every new session id is a new visit.
    let policy = Policy {
        visit_gap: std::time::Duration::ZERO,
        ..Policy::default()
    };
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, policy)]).await;
    let visitor = server.treated(SHOP, "v_late");
    let first = batch(SHOP, &visitor, "s_one", vec![page("s_one:1", "home", "/")]);
    assert_eq!(
        server.post_events(&first).await.status,
        StatusCode::ACCEPTED
    );
    let second = batch(
        SHOP,
        &visitor,
        "s_two",
        vec![
            page("s_two:1", "cart", "/cart"),
            bare("s_two:2", "activity"),
        ],
    );
    assert_eq!(
        server.post_events(&second).await.status,
        StatusCode::ACCEPTED
    );

    // A beacon of the first visit arrives late: a cart and an exit intent that, in the current
    // visit, would bring the offer.
    let late = batch(
        SHOP,
        &visitor,
        "s_one",
        vec![cart("s_one:2", 2, 50.0), bare("s_one:3", "exit_intent")],
    );
    let reply = server.post_events(&late).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(reply.body["accepted"], 2, "stored in the log");
    assert!(reply.interventions().is_empty(), "{reply:?}");
    let record = server.visitor(SHOP, &visitor).await.expect("stored");
    assert_eq!(
        record.profile.visits, 2,
        "the late beacon is not a third visit"
    );
    assert_eq!(record.session.expect("live").id.as_str(), "s_two");
    assert_eq!(server.events(SHOP, "s_one").await.len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn a_refusal_is_readable_by_a_page_of_an_allowed_origin() {
    let server = demo_shop().await;
    let reply = server
        .post_events_to(
            Some(SHOP),
            Some(ORIGIN),
            CHROME,
            "{\"site\": \"shop\",".to_owned(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error().contains("malformed batch"), "{reply:?}");
    assert_eq!(
        reply
            .headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some(ORIGIN),
        "the widget can read why"
    );
    let foreign = server
        .post_events_to(
            Some(SHOP),
            Some("https://evil.example"),
            CHROME,
            "{".to_owned(),
        )
        .await;
    assert!(foreign.headers.get("access-control-allow-origin").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_tab_within_the_visit_gap_continues_the_visit() {
    let server = demo_shop().await;
    let visitor = server.treated(SHOP, "v_tabs");
    let tab_one = batch(SHOP, &visitor, "s_tab1", leaving_with_cart("s_tab1", 2));
    assert_eq!(server.post_events(&tab_one).await.interventions().len(), 1);
    let buy = batch(
        SHOP,
        &visitor,
        "s_tab1",
        vec![json!({"id": "s_tab1:9", "type": "convert", "order_id": "A1", "value": 50.0})],
    );
    assert_eq!(server.post_events(&buy).await.status, StatusCode::ACCEPTED);
    // A second tab gets a fresh session id from its own storage: still the same visit, so
    // the conversion still holds everything back.
    let tab_two = batch(SHOP, &visitor, "s_tab2", leaving_with_cart("s_tab2", 2));
    let reply = server.post_events(&tab_two).await;
    assert!(reply.interventions().is_empty(), "{reply:?}");
    let record = server.visitor(SHOP, &visitor).await.expect("stored");
    assert_eq!(record.profile.visits, 1, "one visit, two tabs");
    assert_eq!(
        server.events(SHOP, "s_tab2").await.len(),
        4,
        "logged under its own id"
    );
    server.shutdown().await;
}

/// The verdict of each of `visitor`'s logged batches, in log order, with where it came from.
async fn verdicts(store: &dyn beckon_store::Store, visitor: &str) -> Vec<(Source, Verdict)> {
    store
        .log(&SiteId::parse(SHOP).unwrap(), 0, 10_000)
        .await
        .expect("the log")
        .into_iter()
        .filter(|(_, b)| b.visitor.as_str() == visitor)
        .map(|(_, b)| (b.source, b.verdict))
        .collect()
}

#[tokio::test]
async fn nothing_is_shown_before_a_sign_of_a_person_and_ten_untouched_pages_are_a_bots_visit_for_good()
 {
    let policy = Policy {
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    let store = memory_store().await;
    install(
        store.as_ref(),
        &Site::new(SHOP, &cart_exit_rule("cart-exit"), policy),
    )
    .await;
    let server = TestServer::start(store.clone()).await;
    let treated = server.treated(SHOP, "v_still");
    let held = server.visitor_in(SHOP, Arm::Holdout, "v_still_held");
    let people = [
        (treated.as_str(), "s_still"),
        (held.as_str(), "s_still_held"),
    ];

    // 1. A page view, a cart and exit intent, but no pointer, touch, key or scroll: the cart
    // offer's moment, and nothing is shown, nor recorded as a ghost for the held-out visitor.
    for (v, s) in people {
        let r = server
            .post_events(&batch(
                SHOP,
                v,
                s,
                vec![
                    page(&format!("{s}:1"), "product", "/products/tent"),
                    cart(&format!("{s}:2"), 2, 120.0),
                    bare(&format!("{s}:3"), "exit_intent"),
                ],
            ))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{v}: {r:?}");
        assert_eq!(r.body["accepted"], 3, "{v}: {r:?}");
        assert!(r.interventions().is_empty(), "{v}: {r:?}");
        assert_eq!(
            server.held_by(SHOP, v, &Event::ExitIntent).await,
            Some(Suppression::NoInteraction),
            "{v}: what holds the offer back is the missing sign of a person"
        );
    }
    let exposures = server.exposures(SHOP).await;
    assert!(
        exposures.is_empty(),
        "neither arm is exposed: {exposures:?}"
    );
    // The first sign of a person, and the visitor heads for the exit again: the offer comes (a
    // ghost, recorded only, for the held-out visitor).
    for (v, s) in people {
        let r = server
            .post_events(&batch(
                SHOP,
                v,
                s,
                vec![
                    bare(&format!("{s}:4"), "activity"),
                    bare(&format!("{s}:5"), "exit_intent"),
                ],
            ))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{v}: {r:?}");
        if v == treated {
            assert_eq!(r.interventions().len(), 1, "{r:?}");
            assert_eq!(r.interventions()[0]["rule"], "cart-exit");
        } else {
            assert!(r.interventions().is_empty(), "a ghost shows nothing: {r:?}");
        }
    }
    let exposures = server.exposures(SHOP).await;
    let arms: Vec<(&str, &str, Arm)> = exposures
        .iter()
        .map(|x| (x.visitor.as_str(), x.rule.as_str(), x.arm))
        .collect();
    assert_eq!(
        arms,
        [
            (treated.as_str(), "cart-exit", Arm::Treated),
            (held.as_str(), "cart-exit", Arm::Holdout)
        ]
    );

    // 2. A script: ten page views in ten batches, at uneven gaps (no timer's beat), a cart
    // filled by the page's script, and no sign of anyone.
    let script = server.treated(SHOP, "v_script");
    let s = "s_script";
    let gaps_ms = [0, 13, 7, 31, 4, 22, 9, 17, 3, 26];
    let mut n = 0;
    let mut next_id = || {
        n += 1;
        format!("{s}:{n}")
    };
    for (i, gap) in gaps_ms.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let mut events = vec![page(&next_id(), "product", "/products/tent")];
        if i == 0 {
            events.push(cart(&next_id(), 2, 120.0));
        }
        let r = server.post_events(&batch(SHOP, &script, s, events)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "page {}: {r:?}", i + 1);
        assert!(r.interventions().is_empty(), "page {}: {r:?}", i + 1);
    }
    let reason = "behaviour: 10 pages with no pointer, touch, key or scroll";
    let bot = Verdict::Bot {
        reason: reason.to_owned(),
    };
    let mut expected = vec![(Source::Browser, Verdict::Human); 9];
    expected.push((Source::Browser, bot.clone()));
    assert_eq!(
        verdicts(store.as_ref(), &script).await,
        expected,
        "a person's until the tenth untouched page, a bot's from it"
    );
    // Now it moves, and heads for the exit with its cart: the moment that brought a person the
    // offer above brings it nothing, and its batch is still a bot's.
    let r = server
        .post_events(&batch(
            SHOP,
            &script,
            s,
            vec![
                bare(&next_id(), "activity"),
                bare(&next_id(), "exit_intent"),
            ],
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.body["accepted"], 2, "logged, as every bot's event is");
    assert!(r.interventions().is_empty(), "{r:?}");
    assert_eq!(
        server.held_by(SHOP, &script, &Event::ExitIntent).await,
        Some(Suppression::Bot)
    );
    let record = server.visitor(SHOP, &script).await.expect("stored");
    let visit = record.session.expect("a visit");
    assert_eq!(visit.id.as_str(), s);
    assert_eq!(
        visit.bot.as_deref(),
        Some(reason),
        "the verdict is kept with the visit"
    );
    assert!(visit.state.interacted(), "it did move, at last");

    // The verdict outlives a restart (the behaviour watched so far does not; the verdict does).
    server.shutdown().await;
    let before_restart = verdicts(store.as_ref(), &script).await.len();
    let server = TestServer::start(store.clone()).await;
    let r = server
        .post_events(&batch(
            SHOP,
            &script,
            s,
            vec![
                page(&next_id(), "cart", "/cart"),
                bare(&next_id(), "activity"),
                cart(&next_id(), 3, 180.0),
                bare(&next_id(), "exit_intent"),
            ],
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert!(r.interventions().is_empty(), "{r:?}");
    expected.push((Source::Browser, bot.clone()));
    expected.push((Source::Browser, bot.clone()));
    let all = verdicts(store.as_ref(), &script).await;
    let browser: Vec<_> = all
        .iter()
        .filter(|(source, _)| *source == Source::Browser)
        .cloned()
        .collect();
    assert_eq!(browser, expected, "a bot's for the rest of the visit");
    // Nothing woke the resumed bot's visit: the one batch since the restart is its own.
    assert_eq!(
        all[before_restart..],
        [(Source::Browser, bot.clone())],
        "{all:?}"
    );
    assert!(
        server
            .exposures(SHOP)
            .await
            .iter()
            .all(|x| x.visitor.as_str() != script),
        "the script is never exposed"
    );
    for (v, _) in people {
        let all = verdicts(store.as_ref(), v).await;
        assert!(
            all.iter().all(|(_, verdict)| *verdict == Verdict::Human),
            "{v}: {all:?}"
        );
    }
    server.shutdown().await;

    // The log's replay rebuilds the decisions and the verdict.
    let site = SiteId::parse(SHOP).unwrap();
    let replayed = replay::replay_site(store.as_ref(), &site)
        .await
        .expect("replays");
    let recorded = replay::recorded(store.as_ref(), &site)
        .await
        .expect("exposures");
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(replayed.fired, recorded, "the log rebuilds every decision");
    for v in [treated.as_str(), held.as_str(), script.as_str()] {
        let stored = server_state(store.as_ref(), v).await;
        let rebuilt = &replayed.visitors[&VisitorId::parse(v).unwrap()];
        assert_eq!(stored.profile, rebuilt.profile, "{v}");
        let rebuilt_visit = rebuilt.visit.as_ref().expect("a visit");
        let stored_visit = stored.session.expect("a visit");
        assert_eq!(rebuilt_visit.bot, stored_visit.bot, "{v}");
        assert_eq!(
            rebuilt_visit.state.is_bot(),
            stored_visit.state.is_bot(),
            "{v}"
        );
        assert_eq!(
            rebuilt_visit.state.interacted(),
            stored_visit.state.interacted(),
            "{v}"
        );
    }
}

async fn server_state(
    store: &dyn beckon_store::Store,
    visitor: &str,
) -> beckon_store::VisitorRecord {
    visitor_record(store, SHOP, visitor)
        .await
        .unwrap_or_else(|| panic!("{visitor} is stored"))
}

#[tokio::test]
async fn a_visit_that_begins_as_a_person_s_and_then_shows_automation_gets_nothing_more() {
    let policy = Policy {
        arrival_grace: Duration::ZERO,
        holdout_percent: 0.0,
        ..Policy::default()
    };
    let store = memory_store().await;
    install(
        store.as_ref(),
        &Site::new(SHOP, &checkout_hesitation("2s"), policy),
    )
    .await;
    let server = TestServer::start(store.clone()).await;
    let (v, s) = ("v_turned", "s_turned");
    let marked = |events: Vec<Value>| {
        let mut b = batch(SHOP, v, s, events);
        b["context"]["automation"] = json!(["__nightmare"]);
        b
    };
    // A person's first batch on checkout: the rule's two seconds begin.
    let r = server
        .post_events(&batch(
            SHOP,
            v,
            s,
            vec![
                page(&format!("{s}:1"), "checkout", "/checkout"),
                bare(&format!("{s}:2"), "activity"),
            ],
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert!(r.interventions().is_empty());
    // Then the page holds Nightmare's mark: the edge judges the batch a bot's, and the
    // visit, already live, is marked before its timer is due.
    let r = server
        .post_events(&marked(vec![bare(&format!("{s}:3"), "activity")]))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let reason = "automation: the page holds __nightmare (Nightmare)";
    eventually("the visit is marked a bot's", || async {
        visitor_record(store.as_ref(), SHOP, v)
            .await
            .and_then(|r| r.session)
            .is_some_and(|s| s.bot.as_deref() == Some(reason) && s.state.is_bot())
    })
    .await;
    // Past the delay: the timer that was set never fires, and a later batch without the mark
    // is still the bot's.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let r = server
        .post_events(&batch(
            SHOP,
            v,
            s,
            vec![bare(&format!("{s}:4"), "activity")],
        ))
        .await;
    assert!(r.interventions().is_empty(), "{r:?}");
    assert!(server.exposures(SHOP).await.is_empty(), "nothing fired");
    let bot = Verdict::Bot {
        reason: reason.to_owned(),
    };
    assert_eq!(
        verdicts(store.as_ref(), v).await,
        [
            (Source::Browser, Verdict::Human),
            (Source::Browser, bot.clone()),
            (Source::Browser, bot),
        ],
        "no timer batch, and the session stays the bot's"
    );
    server.shutdown().await;
    let site = SiteId::parse(SHOP).unwrap();
    let replayed = replay::replay_site(store.as_ref(), &site).await.unwrap();
    let rebuilt = replayed.visitors[&VisitorId::parse(v).unwrap()]
        .visit
        .as_ref()
        .expect("a visit");
    assert!(rebuilt.state.is_bot(), "the log alone marks it too");
    assert_eq!(rebuilt.bot.as_deref(), Some(reason));
    assert!(replayed.fired.is_empty());
}
