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
        ("install", "/dash/sites/demo/install", "data-site=\"demo\""),
        ("sites", "/dash/sites", "Northwind Outfitters (demo)"),
        ("tokens", "/dash/tokens", "New token"),
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
