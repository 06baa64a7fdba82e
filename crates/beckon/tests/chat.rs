//! The chat in real headless Chromium against `beckon demo`: a visitor asks the shop's AI agent
//! and gets the knowledge base's answer, is offered a person when it does not know, keeps the
//! conversation across pages, and is routed to a person for a refund.

mod browser_support;

use std::time::Duration;

use beckon_engine::session::Arm;
use browser_support::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(15);

async fn screenshot(c: &fantoccini::Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.png")),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
}

/// Runs `body` (JS) with `root` bound to the widget's shadow root.
fn in_root(body: &str) -> String {
    format!(
        "(function(){{var host=document.getElementById('beckon-root'); var root=host&&host.shadowRoot; if(!root) return null; {body}}})()"
    )
}

/// Types a message into the chat and sends it, as a visitor would with the keyboard.
async fn ask(c: &fantoccini::Client, text: &str) {
    eventually(
        c,
        &in_root("return !!root.querySelector('[data-beckon-input]');"),
        LONG,
    )
    .await;
    c.execute(
        "var root=document.getElementById('beckon-root').shadowRoot; var i=root.querySelector('[data-beckon-input]'); i.focus(); i.value=arguments[0]; i.dispatchEvent(new Event('input')); i.form.requestSubmit();",
        vec![json!(text)],
    )
    .await
    .unwrap();
}

/// The chat's messages as `[from-class, text]`, in order.
const MESSAGES: &str = "return Array.from(root.querySelectorAll('.chat .log .msg')).map(function(m){return [m.className.replace('msg ',''), m.textContent];});";

async fn messages(c: &fantoccini::Client) -> Vec<(String, String)> {
    let v = c
        .execute(&format!("return {};", in_root(MESSAGES)), vec![])
        .await
        .unwrap();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m[0].as_str().unwrap_or("").to_owned(),
                        m[1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for a message from someone other than the visitor holding `needle`.
async fn reply_with(c: &fantoccini::Client, needle: &str) -> String {
    let script = in_root(&format!(
        "var m=Array.from(root.querySelectorAll('.chat .log .msg:not(.me)')).map(function(x){{return x.textContent;}}).filter(function(t){{return t.indexOf({needle:?})>=0;}}); return m.length?m[m.length-1]:null;"
    ));
    match eventually(c, &script, LONG).await {
        Value::String(s) => s,
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_gets_the_knowledge_base_answer_keeps_the_chat_across_pages_and_is_offered_a_person()
 {
    let demo = Demo::start().await;
    let c = demo.browser(HUMAN_UA).await;
    demo.open_as(&c, &demo.visitor_in(Arm::Treated, "chat"), "/category.html")
        .await;
    c.execute("beckon('open');", vec![]).await.unwrap();
    ask(&c, "Do you ship to Canada?").await;
    let answer = reply_with(&c, "Canada").await;
    assert!(answer.contains("5–8 business days"), "{answer}");
    assert!(answer.starts_with("Assistant"), "the AI answers: {answer}");

    ask(&c, "Can I pay in bitcoin?").await;
    let unsure = reply_with(&c, "rather not guess").await;
    assert!(unsure.contains("talk to a person"), "{unsure}");
    let before = messages(&c).await;

    // Another page: the conversation is still there, in order, with nothing repeated.
    c.goto(&format!("{}/pricing.html", demo.base))
        .await
        .unwrap();
    demo.wait_widget(&c).await;
    eventually(
        &c,
        &in_root(&format!(
            "return root.querySelectorAll('.chat .log .msg').length >= {};",
            before.len()
        )),
        LONG,
    )
    .await;
    let after = messages(&c).await;
    let texts = |m: &[(String, String)]| m.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
    assert_eq!(
        texts(&after),
        texts(&before),
        "the same conversation on the next page"
    );
    let open = c
        .execute(
            &format!(
                "return {};",
                in_root("return !root.querySelector('.chat').hidden;")
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        open,
        json!(true),
        "the chat stays open across the navigation"
    );

    // Nobody of the team is online: a refund is routed to people, and the visitor is offered an
    // e-mail follow-up at once instead of waiting.
    ask(&c, "I want a refund for my order").await;
    reply_with(&c, "nobody is free").await;
    eventually(
        &c,
        &in_root("return !!root.querySelector('.chat form.fx input[type=email]');"),
        LONG,
    )
    .await;
    c.execute(
        "var root=document.getElementById('beckon-root').shadowRoot; var f=root.querySelector('.chat form.fx'); f.querySelector('input').value='jo@example.com'; f.requestSubmit();",
        vec![],
    )
    .await
    .unwrap();
    reply_with(&c, "jo@example.com").await;
    screenshot(&c, "chat-visitor").await;
    demo.stop().await;
}
