//! End-to-end in real headless Chromium against `beckon demo`: the five moments of the seeds,
//! and the moments where Beckon must stay quiet.
//!
//! Every test plays a person with a normal desktop Chrome (no HeadlessChrome user agent, no
//! `navigator.webdriver`), except the bot test, which plays a crawler. Time-based rules run in
//! real time: the server's timers fire them, the tests only wait.

mod browser_support;

use std::time::Duration;

use beckon_engine::session::Arm;
use beckon_engine::{Policy, SessionId, SiteId, VisitorId};
use browser_support::*;
use fantoccini::Locator;
use fantoccini::actions::{InputSource, MouseActions, PointerAction};
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

/// Rests the real pointer on each plan card in turn, as someone comparing them does.
async fn compare_plans(c: &fantoccini::Client) {
    let plans = c
        .find_all(Locator::Css("[data-beckon-track=\"plan\"]"))
        .await
        .unwrap();
    assert!(plans.len() >= 2, "the pricing page shows plans");
    let mut mouse = MouseActions::new("mouse".to_owned());
    for plan in plans.into_iter().take(2) {
        c.execute(
            "arguments[0].scrollIntoView({block: 'center'});",
            vec![serde_json::to_value(&plan).unwrap()],
        )
        .await
        .unwrap();
        mouse = mouse
            .then(PointerAction::MoveToElement {
                element: plan,
                duration: Some(Duration::from_millis(100)),
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Pause {
                duration: Duration::from_millis(600),
            });
    }
    c.perform_actions(mouse).await.unwrap();
}

/// Clicks a control of the intervention on screen through the contract's data attribute.
async fn click_action(c: &fantoccini::Client, action: &str) {
    let clicked = c
        .execute(
            "var r = document.getElementById('beckon-root').shadowRoot;
             var b = r.querySelector('[data-beckon-rule] [data-beckon-action=\"' + arguments[0] + '\"]');
             if (b) b.click(); return !!b;",
            vec![json!(action)],
        )
        .await
        .unwrap();
    assert_eq!(
        clicked,
        json!(true),
        "the intervention has a {action} control"
    );
}

async fn stored_kinds(demo: &Demo, c: &fantoccini::Client) -> Vec<String> {
    let sid = c
        .execute("return window.beckon.session()", vec![])
        .await
        .unwrap();
    let site = SiteId::parse("demo").unwrap();
    demo.store
        .session_events(&site, &SessionId::parse(sid.as_str().unwrap()).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cart_and_exit_intent_bring_the_offer_and_its_coupon_applies_in_one_tap() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    let visitor = demo.visitor_in(Arm::Treated, "exit");
    demo.open_as(&c, &visitor, "/cart.html").await;
    fill_cart(&c).await;
    c.refresh().await.unwrap();
    demo.wait_widget(&c).await;
    c.execute(EXIT_INTENT, vec![]).await.unwrap();
    let shown = intervention_within(&c, Duration::from_secs(10)).await;
    assert_eq!(shown["rule"], json!("cart-exit-offer"));
    assert!(
        shown["text"].as_str().unwrap().contains("STAY10"),
        "{shown}"
    );
    assert!(
        shown["text"].as_str().unwrap().contains("1 items"),
        "rendered from the cart: {shown}"
    );
    click_action(&c, "apply-coupon").await;
    eventually(
        &c,
        "document.body.textContent.indexOf('STAY10') >= 0",
        Duration::from_secs(5),
    )
    .await;
    let kinds = stored_kinds(&demo, &c).await;
    assert!(
        kinds.contains(&"shown".to_owned()) && kinds.contains(&"engaged".to_owned()),
        "{kinds:?}"
    );
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn comparing_plans_brings_the_comparison_card_but_not_at_once() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "plans"), "/pricing.html")
        .await;
    compare_plans(&c).await;
    // The rule wants ten seconds on the page: comparing alone is not yet the moment.
    no_intervention_for(&c, Duration::from_secs(5)).await;
    let shown = intervention_within(&c, Duration::from_secs(15)).await;
    assert_eq!(shown["rule"], json!("pricing-compare"));
    let text = shown["text"].as_str().unwrap();
    assert!(
        text.contains("Starter") && text.contains("Growth"),
        "{text}"
    );
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dwelling_on_a_product_brings_the_common_questions() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(
        &c,
        &demo.visitor_in(Arm::Treated, "dwell"),
        "/product-ridgeline-trail-runner.html",
    )
    .await;
    no_intervention_for(&c, Duration::from_secs(15)).await;
    let shown = intervention_within(&c, Duration::from_secs(15)).await;
    assert_eq!(shown["rule"], json!("product-questions"));
    assert!(
        shown["text"].as_str().unwrap().contains("Shipping times"),
        "{shown}"
    );
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_returning_visitor_with_items_in_the_cart_is_welcomed_back() {
    // Visits are normally 30 minutes of inactivity apart; with no gap, the next session id
    // the widget makes is a new visit at once.
    let demo = Demo::start_with(Policy {
        visit_gap: Duration::ZERO,
        ..Policy::default()
    })
    .await;
    let c = demo.browser(HUMAN_UA).await;
    let visitor = demo.visitor_in(Arm::Treated, "back");
    demo.open_as(&c, &visitor, "/category.html").await;
    // The first visit is on record before the visitor leaves.
    let first = c
        .execute("return window.beckon.session()", vec![])
        .await
        .unwrap();
    let site = SiteId::parse("demo").unwrap();
    for _ in 0..100 {
        if !demo
            .store
            .session_events(&site, &SessionId::parse(first.as_str().unwrap()).unwrap())
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fill_cart(&c).await;
    // A new visit: the session ends, the visitor and the shop's cart stay.
    c.execute("sessionStorage.clear();", vec![]).await.unwrap();
    c.goto(&format!("{}/", demo.base)).await.unwrap();
    demo.wait_widget(&c).await;
    let shown = intervention_within(&c, Duration::from_secs(15)).await;
    assert_eq!(shown["rule"], json!("welcome-back-cart"));
    assert!(
        shown["text"].as_str().unwrap().contains("Welcome back"),
        "{shown}"
    );
    let profile = demo
        .store
        .visitor(
            &SiteId::parse("demo").unwrap(),
            &VisitorId::parse(&visitor).unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .profile;
    assert_eq!(profile.visits, 2);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deep_reader_of_the_article_is_offered_the_newsletter() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "read"), "/article.html")
        .await;
    for fraction in [0.2, 0.4, 0.7] {
        c.execute(
            "window.scrollTo(0, (document.documentElement.scrollHeight - innerHeight) * arguments[0]);",
            vec![json!(fraction)],
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let shown = intervention_within(&c, Duration::from_secs(25)).await;
    assert_eq!(shown["rule"], json!("article-email-capture"));
    let form = c
        .execute(
            "return !!document.getElementById('beckon-root').shadowRoot.querySelector('[data-beckon-rule] input[type=email]');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(form, json!(true), "the e-mail capture has an e-mail field");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_fires_on_arrival_on_any_page() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "arrive"), "/")
        .await;
    for page in [
        "/",
        "/category.html",
        "/product-summit-28-daypack.html",
        "/pricing.html",
        "/cart.html",
        "/checkout.html",
        "/article.html",
    ] {
        c.goto(&format!("{}{page}", demo.base)).await.unwrap();
        demo.wait_widget(&c).await;
        // Past the arrival grace (5 s), with no signal, nothing has any reason to appear.
        no_intervention_for(&c, Duration::from_secs(6)).await;
    }
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dismissal_is_followed_by_the_cooldown_even_across_a_reload() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "cool"), "/cart.html")
        .await;
    fill_cart(&c).await;
    c.refresh().await.unwrap();
    demo.wait_widget(&c).await;
    let session = c
        .execute("return window.beckon.session()", vec![])
        .await
        .unwrap();
    c.execute(EXIT_INTENT, vec![]).await.unwrap();
    intervention_within(&c, Duration::from_secs(10)).await;
    click_action(&c, "dismiss").await;
    eventually(
        &c,
        "!document.getElementById('beckon-root').shadowRoot.querySelector('[data-beckon-rule]')",
        Duration::from_secs(5),
    )
    .await;
    // Reload mid-session: same session, and the cooldown still holds on a moment that would
    // otherwise bring the comparison card.
    c.goto(&format!("{}/pricing.html", demo.base))
        .await
        .unwrap();
    demo.wait_widget(&c).await;
    assert_eq!(
        c.execute("return window.beckon.session()", vec![])
            .await
            .unwrap(),
        session
    );
    compare_plans(&c).await;
    no_intervention_for(&c, Duration::from_secs(14)).await;
    let kinds = stored_kinds(&demo, &c).await;
    assert!(kinds.contains(&"dismissed".to_owned()), "{kinds:?}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_conversion_nothing_more() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(
        &c,
        &demo.visitor_in(Arm::Treated, "bought"),
        "/checkout.html",
    )
    .await;
    c.execute(
        "beckon('convert', {order_id: 'NW-TEST-1', value: 89});",
        vec![],
    )
    .await
    .unwrap();
    eventually(&c, "true", Duration::from_secs(1)).await;
    c.goto(&format!("{}/pricing.html", demo.base))
        .await
        .unwrap();
    demo.wait_widget(&c).await;
    compare_plans(&c).await;
    no_intervention_for(&c, Duration::from_secs(14)).await;
    let kinds = stored_kinds(&demo, &c).await;
    assert!(kinds.contains(&"convert".to_owned()), "{kinds:?}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crawler_gets_nothing_and_is_kept_out_of_the_log() {
    let demo = Demo::start().await;
    let c = demo.browser(BOT_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "bot"), "/cart.html")
        .await;
    fill_cart(&c).await;
    c.refresh().await.unwrap();
    demo.wait_widget(&c).await;
    c.execute(EXIT_INTENT, vec![]).await.unwrap();
    no_intervention_for(&c, Duration::from_secs(5)).await;
    assert!(
        stored_kinds(&demo, &c).await.is_empty(),
        "a bot's events are not stored"
    );
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_out_visitor_sees_nothing_while_a_ghost_exposure_is_stored() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    let visitor = demo.visitor_in(Arm::Holdout, "ghost");
    demo.open_as(&c, &visitor, "/cart.html").await;
    fill_cart(&c).await;
    c.refresh().await.unwrap();
    demo.wait_widget(&c).await;
    c.execute(EXIT_INTENT, vec![]).await.unwrap();
    no_intervention_for(&c, Duration::from_secs(5)).await;
    let exposures = demo
        .store
        .exposures(&SiteId::parse("demo").unwrap())
        .await
        .unwrap();
    let ghost = exposures
        .iter()
        .find(|x| x.visitor.as_str() == visitor)
        .expect("a ghost exposure");
    assert_eq!(ghost.arm, Arm::Holdout);
    assert_eq!(ghost.rule.as_str(), "cart-exit-offer");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_on_page_does_not_count_while_the_tab_is_hidden() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(
        &c,
        &demo.visitor_in(Arm::Treated, "hidden"),
        "/pricing.html",
    )
    .await;
    compare_plans(&c).await;
    // Switch to another tab for longer than the rule's ten seconds.
    let shop = c.window().await.unwrap();
    let other = c.new_window(true).await.unwrap();
    c.switch_to_window(other.handle).await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    c.switch_to_window(shop).await.unwrap();
    // Back on the page, its visible time is still short of ten seconds.
    no_intervention_for(&c, Duration::from_secs(4)).await;
    let shown = intervention_within(&c, Duration::from_secs(15)).await;
    assert_eq!(shown["rule"], json!("pricing-compare"));
    let kinds = stored_kinds(&demo, &c).await;
    assert!(
        kinds.contains(&"visibility".to_owned()),
        "the widget reported the hidden tab: {kinds:?}"
    );
    demo.stop().await;
}

/// Measures, in the browser, the time from an exit intent to the offer on screen, for 20
/// visitors. The figure is printed for the closing note; the test asserts every offer came.
#[tokio::test(flavor = "multi_thread")]
async fn exit_intent_to_offer_on_screen_latency() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    let mut samples = Vec::new();
    for i in 0..20 {
        demo.open_as(
            &c,
            &demo.visitor_in(Arm::Treated, &format!("lat{i}x")),
            "/cart.html",
        )
        .await;
        fill_cart(&c).await;
        c.refresh().await.unwrap();
        demo.wait_widget(&c).await;
        // Let the connection settle so the figure is the decision's, not the handshake's.
        eventually(
            &c,
            "window.performance.now() > 1500",
            Duration::from_secs(5),
        )
        .await;
        let ms = c
            .execute_async(
                &format!(
                    "var done = arguments[arguments.length - 1]; var t0 = performance.now(); {EXIT_INTENT}
                     (function check() {{
                       var r = document.getElementById('beckon-root');
                       if (r && r.shadowRoot && r.shadowRoot.querySelector('[data-beckon-rule]')) done(performance.now() - t0);
                       else if (performance.now() - t0 > 10000) done(null);
                       else setTimeout(check, 1);
                     }})();"
                ),
                vec![],
            )
            .await
            .unwrap();
        samples.push(ms.as_f64().expect("the offer appeared"));
    }
    samples.sort_by(f64::total_cmp);
    let median = (samples[9] + samples[10]) / 2.0;
    println!(
        "exit intent → offer on screen: median {median:.1} ms over {} visitors (min {:.1}, max {:.1})",
        samples.len(),
        samples[0],
        samples[19]
    );
    assert_eq!(samples.len(), 20);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_dismisses_the_intervention_without_it_having_taken_the_focus() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "esc"), "/cart.html")
        .await;
    fill_cart(&c).await;
    c.refresh().await.unwrap();
    demo.wait_widget(&c).await;
    c.execute(EXIT_INTENT, vec![]).await.unwrap();
    intervention_within(&c, Duration::from_secs(10)).await;
    // A proactive message must not steal the focus from what the visitor was doing.
    let focus = c
        .execute("return document.activeElement === document.body;", vec![])
        .await
        .unwrap();
    assert_eq!(focus, json!(true), "the focus stayed on the page");
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{e00c}")
        .await
        .unwrap();
    eventually(
        &c,
        "!document.getElementById('beckon-root').shadowRoot.querySelector('[data-beckon-rule]')",
        Duration::from_secs(5),
    )
    .await;
    let mut kinds = Vec::new();
    for _ in 0..50 {
        kinds = stored_kinds(&demo, &c).await;
        if kinds.contains(&"dismissed".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kinds.contains(&"dismissed".to_owned()), "{kinds:?}");
    demo.stop().await;
}

/// Nothing a test starts may outlive it: not when it passes (`Demo::stop` checks), and not when
/// it fails, which is when orphaned browsers used to pile up and starve the next run.
#[tokio::test(flavor = "multi_thread")]
async fn no_browser_outlives_its_test_even_when_the_test_panics() {
    // A test that fails with its demo and two browsers open.
    let (tell, told) = std::sync::mpsc::channel();
    let failed = tokio::spawn(async move {
        let demo = Demo::start().await;
        let a = demo.browser(HUMAN_UA).await;
        let b = demo.browser(BOT_UA).await;
        a.goto(&format!("{}/", demo.base)).await.unwrap();
        b.goto(&format!("{}/", demo.base)).await.unwrap();
        let profiles = demo.profiles();
        let running = chromium_processes(&profiles);
        let ours = running
            .iter()
            .all(|pid| descends_from(*pid, std::process::id()));
        tell.send((profiles, running, ours, demo.driver_pid()))
            .unwrap();
        panic!("an assertion fails with everything open");
    })
    .await;
    assert!(failed.unwrap_err().is_panic());
    let (profiles, running, ours, driver) = told.recv().unwrap();
    assert_eq!(profiles.len(), 2);
    // What is counted is this test's own: while they ran, every process found by its profile
    // descended from this test process (through chromedriver).
    assert!(
        !running.is_empty(),
        "the browsers were found while they ran"
    );
    assert!(ours, "{running:?} all descend from this test");
    let left = wait_no_chromium(&profiles, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "Chromium outlived a failed test: {left:?}");
    assert!(
        profiles.iter().all(|p| !p.exists()),
        "profiles removed: {profiles:?}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{driver}")).exists(),
        "chromedriver ended and was reaped"
    );

    // A browser dropped in the middle of a test closes its session at once; the others go on.
    let demo = Demo::start().await;
    let kept = demo.browser(HUMAN_UA).await;
    drop(demo.browser(HUMAN_UA).await);
    let profiles = demo.profiles();
    assert!(
        wait_no_chromium(&profiles[1..], Duration::from_secs(10))
            .await
            .is_empty()
            && !profiles[1].exists(),
        "the dropped browser is gone with its profile"
    );
    kept.goto(&format!("{}/", demo.base)).await.unwrap();
    assert!(!chromium_processes(&profiles[..1]).is_empty());
    demo.stop().await;
}

/// Whether `ancestor` is among `pid`'s parents.
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    while pid > 1 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            return false;
        };
        if ppid == ancestor {
            return true;
        }
        pid = ppid;
    }
    false
}
