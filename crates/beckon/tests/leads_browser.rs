//! A lead in real headless Chromium against `beckon demo`: a deep reader of the article fills
//! in the e-mail capture form; the site's webhook (a receiver that checks the signature with the
//! official Standard Webhooks library for Python) gets the lead with its consent and context;
//! the dashboard lists it, overdue once its time limit passes, and a person marks it contacted.

mod browser_support;

#[path = "../../beckon-outbox/tests/support/peers.rs"]
mod peers;

use std::time::Duration;

use beckon_engine::session::Arm;
use browser_support::*;
use fantoccini::Locator;
use peers::Peer;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(25);

/// Runs `body` (JS) with `root` bound to the widget's shadow root.
fn in_root(body: &str) -> String {
    format!(
        "return (function(){{var root=document.getElementById('beckon-root').shadowRoot; {body}}})()"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_who_leaves_an_address_reaches_the_team_and_the_leads_page() {
    let demo = Demo::start().await;
    let (api, csrf) = demo.signed_in().await;
    // A webhook for the demo site, made through the admin API; the receiver knows its secret.
    let made: Value = api
        .post(format!("{}/api/v1/sites/demo/destinations", demo.base))
        .header("origin", &demo.base)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "CRM", "kind": "webhook", "url": "http://127.0.0.1:9/placeholder"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = made["secret"]
        .as_str()
        .expect("a webhook has a secret")
        .to_owned();
    let receiver = Peer::webhook_receiver(&[&secret]);
    let id = made["id"].as_str().unwrap();
    let put = api
        .put(format!("{}/api/v1/sites/demo/destinations/{id}", demo.base))
        .header("origin", &demo.base)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "CRM", "kind": "webhook", "url": receiver.url("/ok")}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "lead"), "/article.html")
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
    let shown = intervention_within(&c, LONG).await;
    assert_eq!(shown["rule"], json!("article-email-capture"));
    // Fill the form as a person would, with markup in the name.
    let filled = c
        .execute(
            &in_root(
                "var f=root.querySelector('[data-beckon-rule] form');
                 f.querySelector('input[type=email]').value='reader@example.com';
                 var n=f.querySelector('input[name=name]'); if(n) n.value='<img src=x onerror=alert(1)>Ada';
                 f.querySelector('input[type=checkbox]').checked=true;
                 f.querySelector('button[type=submit]').click(); return true;",
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(filled, json!(true));

    let records = receiver
        .wait_for(LONG, |r| r.iter().any(|x| x["status"] == 200))
        .await;
    let got = records.iter().find(|x| x["status"] == 200).unwrap();
    assert_eq!(
        got["verified_by"], 0,
        "signed with the destination's secret"
    );
    let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    let lead = &body["data"]["lead"];
    assert_eq!(body["type"], "lead.created");
    assert_eq!(lead["email"], "reader@example.com");
    assert_eq!(lead["source"], "capture");
    assert_eq!(
        lead["consent"]["text"],
        "I agree to receive e-mails from the shop. Unsubscribe any time."
    );
    assert_eq!(lead["context"]["rule"], "article-email-capture");
    assert_eq!(
        lead["context"]["visit"]["pages"][0]["path"],
        "/article.html"
    );
    let lead_id = lead["id"].as_str().unwrap().to_owned();

    // The dashboard lists it; what the visitor typed is text there.
    sign_in(&demo, &c).await;
    c.goto(&format!("{}/dash/sites/demo/leads", demo.base))
        .await
        .unwrap();
    let row = c
        .find(Locator::Css(&format!("a[href$='/leads/{lead_id}']")))
        .await
        .unwrap();
    assert_eq!(row.text().await.unwrap(), "reader@example.com");
    let injected = c
        .execute(
            "return document.querySelectorAll('main img').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "the visitor's markup is not a picture");
    row.click().await.unwrap();
    eventually(&c, "!!document.querySelector('#status')", LONG).await;
    let page = c.source().await.unwrap();
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;Ada"),
        "shown as text"
    );
    assert!(page.contains("msg_"), "its delivery is listed with its key");
    // A person marks it contacted.
    c.execute(
        "document.querySelector('#status').value='contacted'; document.querySelector('.inline-form').submit();",
        vec![],
    )
    .await
    .unwrap();
    eventually(&c, "location.search.indexOf('saved=1') >= 0", LONG).await;
    let stored: Value = api
        .get(format!("{}/api/v1/sites/demo/leads/{lead_id}", demo.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["lead"]["status"], "contacted");
    assert!(stored["lead"]["contacted_at"].is_string());
    let deliveries = stored["deliveries"].as_array().unwrap();
    let of = |topic: &str| deliveries.iter().find(|d| d["topic"] == topic).cloned();
    assert_eq!(of("lead.created").unwrap()["status"], "delivered");
    assert!(
        of("lead.updated").is_some(),
        "the change is announced too: {deliveries:?}"
    );

    // The CSV holds it, its formula-looking name defused.
    let csv = api
        .get(format!("{}/api/v1/sites/demo/leads.csv", demo.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("id,created_at,status"), "{csv}");
    assert!(csv.contains("reader@example.com"));

    // Pictures for the README.
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&format!("{}/dash/sites/demo/leads", demo.base))
        .await
        .unwrap();
    screenshot(&c, "leads").await;
    c.goto(&format!("{}/dash/sites/demo/destinations", demo.base))
        .await
        .unwrap();
    screenshot(&c, "destinations").await;
    demo.stop().await;
}
