//! The dashboard in real headless Chromium against `beckon demo`: sign in, the pages a
//! marketer uses, each audited with axe-core (no serious or critical violation) and drawn to a
//! screenshot under `target/screenshots/` for people to look at.

mod browser_support;

use std::time::Duration;

use browser_support::*;
use fantoccini::Locator;
use serde_json::Value;

/// axe-core, vendored for the tests only.
const AXE: &str = include_str!("assets/axe.min.js");

/// Runs axe-core on the page; returns the serious and critical violations, described.
async fn audit(c: &fantoccini::Client) -> Vec<String> {
    c.execute(AXE, vec![]).await.expect("axe-core loads");
    let result = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               axe.run(document, { resultTypes: ['violations'] })
                 .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }))))
                 .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));"#,
            vec![],
        )
        .await
        .expect("axe-core runs");
    result
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| {
            format!(
                "{} ({}): {} at {}",
                v["id"], v["impact"], v["help"], v["nodes"]
            )
        })
        .collect()
}

async fn screenshot(c: &fantoccini::Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn text(c: &fantoccini::Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn sign_in(demo: &Demo, c: &fantoccini::Client) {
    c.goto(&format!("{}/dash/", demo.base)).await.unwrap();
    // Not signed in: the form, remembering where we were going.
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/dash/login")
    );
    let problems = audit(c).await;
    assert!(problems.is_empty(), "sign-in page: {problems:#?}");
    screenshot(c, "sign-in").await;
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(&demo.login.0)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(&demo.login.1)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(
        c,
        "location.pathname.endsWith('/rules')",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn a_marketer_signs_in_and_every_page_passes_the_audit() {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;

    // A wrong password: refused, said plainly, nothing else told.
    c.goto(&format!("{}/dash/login", demo.base)).await.unwrap();
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(&demo.login.0)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("not the password")
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = eventually(
        &c,
        "document.getElementById('login-error')?.textContent",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(refused, Value::from("the address or password is wrong"));

    sign_in(&demo, &c).await;
    let pages = [
        (
            "rules",
            "/dash/sites/demo/rules",
            "Cart about to be abandoned",
        ),
        ("settings", "/dash/sites/demo/settings", "Holdout share"),
        (
            "analytics",
            "/dash/sites/demo/analytics",
            "Lift against the holdout",
        ),
        ("install", "/dash/sites/demo/install", "data-site=\"demo\""),
        (
            "conversations",
            "/dash/sites/demo/conversations",
            "Waiting for a person",
        ),
        ("chat-settings", "/dash/sites/demo/chat", "Canned replies"),
        ("sites", "/dash/sites", "Northwind Outfitters (demo)"),
        ("tokens", "/dash/tokens", "New token"),
        ("account", "/dash/account", "Change password"),
        ("api-docs", "/api/docs", "/api/v1/sites/{site}/rules/{rule}"),
    ];
    for (name, path, expect) in pages {
        c.goto(&format!("{}{path}", demo.base)).await.unwrap();
        let body = text(&c).await;
        assert!(body.contains(expect), "{path} shows {expect:?}: {body}");
        let problems = audit(&c).await;
        assert!(problems.is_empty(), "{path}: {problems:#?}");
        screenshot(&c, name).await;
    }

    // Signing out ends the session: the dashboard asks to sign in again.
    c.goto(&format!("{}/dash/sites/demo/rules", demo.base))
        .await
        .unwrap();
    c.find(Locator::Css(".who button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(
        &c,
        "location.pathname.endsWith('/dash/login')",
        Duration::from_secs(10),
    )
    .await;
    c.goto(&format!("{}/dash/sites/demo/rules", demo.base))
        .await
        .unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/dash/login")
    );

    drop(c);
    demo.stop().await;
}

/// Picks `value` in the `select` at `css`, as a person would, and lets its change run.
async fn choose(c: &fantoccini::Client, css: &str, value: &str) {
    let done = c
        .execute(
            "const s = document.querySelector(arguments[0]); if (!s) return false; s.value = arguments[1]; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === arguments[1];",
            vec![css.into(), value.into()],
        )
        .await
        .unwrap();
    assert_eq!(done, Value::Bool(true), "{css} offers {value:?}");
}

/// Clicks the element at `css` once it is in the middle of the window (the editor's sticky
/// action bar covers the bottom edge, where WebDriver would scroll it).
async fn click(c: &fantoccini::Client, css: &str) {
    let field = c.find(Locator::Css(css)).await.unwrap();
    c.execute(
        "arguments[0].scrollIntoView({block: 'center'});",
        vec![serde_json::to_value(&field).unwrap()],
    )
    .await
    .unwrap();
    field.click().await.unwrap();
}

async fn type_into(c: &fantoccini::Client, css: &str, text: &str) {
    let field = c.find(Locator::Css(css)).await.unwrap();
    c.execute(
        "arguments[0].scrollIntoView({block: 'center'});",
        vec![serde_json::to_value(&field).unwrap()],
    )
    .await
    .unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// The text of the intervention on screen in the preview frame, once there is one.
async fn preview_text(c: &fantoccini::Client) -> String {
    let started = std::time::Instant::now();
    loop {
        c.enter_frame(0).await.unwrap();
        let v = c
            .execute(
                &format!("return (function(){{{READ_INTERVENTION}}})();"),
                vec![],
            )
            .await
            .unwrap_or(Value::Null);
        c.enter_parent_frame().await.unwrap();
        if let Some(text) = v["text"].as_str() {
            return text.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no preview appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_rule_built_in_the_editor_fires_on_the_shop_without_a_restart_then_pauses_and_restores() {
    use beckon_engine::session::Arm;
    let demo = Demo::start().await;
    let marketer = demo.browser(HUMAN_UA).await;
    sign_in(&demo, &marketer).await;

    // The rules list leads to a new rule.
    click(&marketer, "#new-rule").await;
    eventually(
        &marketer,
        "location.pathname.endsWith('/rules/new') && !!document.querySelector('#conditions .leaf')",
        Duration::from_secs(10),
    )
    .await;
    type_into(&marketer, "#f-name", "Leaving a product page").await;
    type_into(&marketer, "#f-id", "editor-exit").await;
    type_into(&marketer, "#f-priority", "1000").await;

    // A condition on the page type: its operators and values come from the catalogue.
    choose(&marketer, "[data-field='when.all[0].var']", "page.type").await;
    let ops: Value = marketer
        .execute("return [...document.querySelector(\"[data-field='when.all[0].op']\").options].map(o => o.value);", vec![])
        .await
        .unwrap();
    assert!(ops.as_array().unwrap().iter().any(|o| o == "equals"));
    assert!(
        !ops.as_array().unwrap().iter().any(|o| o == "gt"),
        "a page type offers no ordering: {ops}"
    );
    choose(
        &marketer,
        "[data-field='when.all[0].value'] select",
        "product",
    )
    .await;
    // A nested group: any of exit intent, or a big cart.
    click(
        &marketer,
        "#conditions .group.depth-0 > .group-foot .add-group",
    )
    .await;
    eventually(
        &marketer,
        "!!document.querySelector(\"[data-field='when.all[1]'].group\")",
        Duration::from_secs(5),
    )
    .await;
    click(&marketer, "[data-field='when.all[1]'] .add-condition").await;
    choose(
        &marketer,
        "[data-field='when.all[1].any[1].var']",
        "cart.value",
    )
    .await;
    choose(&marketer, "[data-field='when.all[1].any[1].op']", "gte").await;
    type_into(
        &marketer,
        "[data-field='when.all[1].any[1].value'] input",
        "500",
    )
    .await;

    // The message, and its preview drawn by the real widget in the frame.
    type_into(
        &marketer,
        "#message textarea",
        "Before you go: {{ cart.items }} items are still in your cart",
    )
    .await;
    let shown = preview_text(&marketer).await;
    assert!(
        shown.contains("Before you go: 2 items"),
        "the preview renders the sample cart: {shown}"
    );
    // A backtest of the rule as it stands, from the editor: its figures come back as text.
    click(&marketer, "#bt-run").await;
    let summary = eventually(
        &marketer,
        "document.getElementById('bt-result').hidden ? null : document.getElementById('bt-summary').textContent",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        summary
            .as_str()
            .is_some_and(|s| s.contains("would have fired")),
        "{summary}"
    );
    type_into(&marketer, "#s-items", "5").await;
    let started = std::time::Instant::now();
    while !preview_text(&marketer).await.contains("5 items") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the preview follows the sample"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let problems = audit(&marketer).await;
    assert!(problems.is_empty(), "rule editor: {problems:#?}");
    marketer
        .execute("window.scrollTo(0, document.getElementById('when-title').getBoundingClientRect().top + window.scrollY - 90);", vec![])
        .await
        .unwrap();
    screenshot(&marketer, "rule-editor").await;

    // A mistake is shown beside its field, and nothing is saved.
    type_into(&marketer, "#f-rollout", "250").await;
    click(&marketer, "#launch").await;
    let error = eventually(
        &marketer,
        "document.querySelector('#f-rollout + .field-error')?.textContent",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        error.as_str().unwrap().contains("between 0 and 100"),
        "{error}"
    );
    assert!(
        demo.store
            .rules(&beckon_engine::SiteId::parse("demo").unwrap())
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != "editor-exit")
    );
    type_into(&marketer, "#f-rollout", "100").await;
    // The greeting may be written by the site's model, within the rule's limits.
    click(&marketer, "#f-ai-on").await;
    type_into(
        &marketer,
        "#f-ai-prompt",
        "Greet a shopper about to leave, briefly.",
    )
    .await;
    type_into(&marketer, "#f-ai-max", "120").await;

    // Launch: it fires on the shop, in another browser, without a restart.
    click(&marketer, "#launch").await;
    eventually(
        &marketer,
        "location.search.includes('saved=live')",
        Duration::from_secs(10),
    )
    .await;
    let saved = demo
        .store
        .rules(&beckon_engine::SiteId::parse("demo").unwrap())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == "editor-exit")
        .unwrap();
    let ai = saved
        .ai_greeting
        .expect("the AI greeting is saved with the rule");
    assert_eq!(
        (ai.prompt.as_str(), ai.max_chars),
        ("Greet a shopper about to leave, briefly.", 120)
    );
    let shopper = demo.browser(HUMAN_UA).await;
    let visitor = demo.visitor_in(Arm::Treated, "beckon");
    demo.open_as(&shopper, &visitor, "/product-ridgeline-trail-runner.html")
        .await;
    shopper.execute(EXIT_INTENT, vec![]).await.unwrap();
    let fired = intervention_within(&shopper, Duration::from_secs(10)).await;
    assert_eq!(fired["rule"], "editor-exit", "{fired}");
    assert!(
        fired["text"].as_str().unwrap().contains("Before you go"),
        "{fired}"
    );

    // The session explorer: the shopper is live, their timeline shows the fire, and the engine
    // says why another rule did not fire then.
    marketer
        .goto(&format!("{}/dash/sites/demo/visitors", demo.base))
        .await
        .unwrap();
    let body = eventually(
        &marketer,
        &format!("document.body.innerText.includes('{visitor}') && document.body.innerText"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        body.as_str().unwrap().contains("product"),
        "the live list shows the page type"
    );
    let problems = audit(&marketer).await;
    assert!(problems.is_empty(), "visitors: {problems:#?}");
    let minute = marketer
        .execute("return new Date().toISOString().slice(11, 16);", vec![])
        .await
        .unwrap();
    marketer
        .goto(&format!(
            "{}/dash/sites/demo/visitors/{visitor}?rule=pricing-compare&at={}",
            demo.base,
            minute.as_str().unwrap()
        ))
        .await
        .unwrap();
    let answer = marketer
        .find(Locator::Id("why-answer"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        answer.contains("pricing-compare") && answer.contains("not for product pages"),
        "{answer}"
    );
    let timeline = text(&marketer).await;
    assert!(
        timeline.contains("shown: editor-exit"),
        "the timeline shows the fire: {timeline}"
    );
    let problems = audit(&marketer).await;
    assert!(problems.is_empty(), "session explorer: {problems:#?}");
    marketer.execute("document.querySelectorAll('details.decision').forEach((d, i) => { if (i < 2) d.open = true; });", vec![]).await.unwrap();
    screenshot(&marketer, "session-explorer").await;
    marketer
        .goto(&format!("{}/dash/sites/demo/rules/editor-exit", demo.base))
        .await
        .unwrap();
    eventually(
        &marketer,
        "!!document.querySelector('#conditions .leaf')",
        Duration::from_secs(10),
    )
    .await;

    // Edit the text, then pause: a new visitor leaving a product page sees nothing of it.
    type_into(&marketer, "#message textarea", "Changed text").await;
    click(&marketer, "#save").await;
    eventually(
        &marketer,
        "location.search.includes('saved=draft') || location.search.includes('saved=')",
        Duration::from_secs(10),
    )
    .await;
    click(&marketer, "#pause").await;
    eventually(
        &marketer,
        "location.search.includes('saved=paused')",
        Duration::from_secs(10),
    )
    .await;
    let later = demo.browser(HUMAN_UA).await;
    let other = demo.visitor_in(Arm::Treated, "beckon-2");
    demo.open_as(&later, &other, "/product-ridgeline-trail-runner.html")
        .await;
    later.execute(EXIT_INTENT, vec![]).await.unwrap();
    no_intervention_for(&later, Duration::from_secs(3)).await;

    // The history names every change; restoring the launched version brings its text back.
    let history = text(&marketer).await;
    for line in [
        "created \"editor-exit\"",
        "edited \"editor-exit\"",
        "paused \"editor-exit\"",
    ] {
        assert!(history.contains(line), "history shows {line}: {history}");
    }
    let created = marketer
        .execute(
            "const li = [...document.querySelectorAll('.history li')].find(l => l.textContent.includes('created')); const b = li && li.querySelector('.restore'); if (b) b.setAttribute('id', 'restore-created'); return !!b;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        created,
        Value::Bool(true),
        "the first version can be restored"
    );
    click(&marketer, "#restore-created").await;
    eventually(
        &marketer,
        "location.search.includes('saved=restored')",
        Duration::from_secs(10),
    )
    .await;
    let stored = demo
        .store
        .rules(&beckon_engine::SiteId::parse("demo").unwrap())
        .await
        .unwrap();
    let rule = stored.iter().find(|r| r.id == "editor-exit").unwrap();
    assert_eq!(rule.status.as_str(), "paused", "a restore keeps the status");
    assert!(
        serde_json::to_string(&rule.message)
            .unwrap()
            .contains("Before you go"),
        "restored text: {:?}",
        rule.message
    );

    drop((marketer, shopper, later));
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_explorer_names_the_layer_and_the_reason_of_a_bot_s_batches() {
    use beckon_engine::{SiteId, VisitorId};
    use serde_json::json;
    let served = Served::demo().await;
    let site = SiteId::parse("demo").unwrap();
    let post = |visitor: &str, ua: &str, session: &str, events: Value| {
        let token = served
            .tokens
            .issue(&site, &VisitorId::parse(visitor).unwrap());
        reqwest::Client::new()
            .post(format!("{}/v1/events?site=demo", served.base))
            .header("origin", &served.base)
            .header("user-agent", ua)
            .json(
                &json!({"visitor": visitor, "token": token, "session": session, "events": events}),
            )
            .send()
    };
    let page = |id: String| {
        json!({"id": id, "type": "page", "url": "http://x/", "path": "/", "title": "Home",
               "page_type": "home", "referrer": ""})
    };
    // A crawler, judged by its user agent.
    let r = post(
        "v_explored_crawler",
        BOT_UA,
        "s_explored_crawler",
        json!([page("s_explored_crawler:1".into())]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    // A script that pages through the site without ever touching it, judged by what it does.
    for n in 1..=10 {
        let r = post(
            "v_explored_script",
            HUMAN_UA,
            "s_explored_script",
            json!([page(format!("s_explored_script:{n}"))]),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(30 + 17 * n)).await;
    }
    let (client, _) = served.signed_in().await;
    for (visitor, shown) in [
        (
            "v_explored_crawler",
            "bot: user agent: matches the isbot pattern",
        ),
        (
            "v_explored_script",
            "bot: behaviour: 10 pages with no pointer, touch, key or scroll",
        ),
    ] {
        let html = client
            .get(format!(
                "{}/dash/sites/demo/visitors/{visitor}",
                served.base
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(shown),
            "{visitor}: {shown:?} not in the explorer"
        );
    }
    served.stop().await;
}
