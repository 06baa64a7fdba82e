//! A rule's AI-written greeting, end to end: the first visitor of a context gets the rule's own
//! text while the model writes (the decision never waits); later visitors of the same context
//! get the greeting, and the exposure records what was shown.

mod support;

#[path = "../../beckon-agent/tests/support/model_double.rs"]
mod model_double;

use std::sync::Arc;
use std::time::Duration;

use beckon_agent::Desk;
use beckon_agent::budget::Budget;
use beckon_agent::desk::NoContext;
use beckon_agent::knowledge::Knowledge;
use beckon_agent::model::{ModelConfig, ModelResponder};
use beckon_engine::{Policy, Timestamp};
use beckon_server::Options;
use beckon_store::Store;
use beckon_store_sqlite::SqliteStore;
use support::*;

const SHOP: &str = "shop";

fn leaving_with_cart(session: &str) -> Vec<serde_json::Value> {
    vec![
        page(&format!("{session}:1"), "product", "/products/trail-shoe-x"),
        bare(&format!("{session}:2"), "activity"),
        cart(&format!("{session}:3"), 2, 129.0),
        bare(&format!("{session}:4"), "exit_intent"),
    ]
}

#[tokio::test]
async fn the_first_visitor_gets_the_rules_text_and_later_ones_the_greeting_written_for_their_context()
 {
    let double = model_double::ModelDouble::start().await;
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.migrate().await.unwrap();
    let rules = rule(
        "cart-exit",
        r#"{ all = [ { var = "cart.items", op = "gt", value = 0 }, { var = "behaviour.exit_intent", op = "equals", value = true } ] }"#,
        "ai_greeting = { prompt = \"Greet a shopper about to leave with a full cart.\", max_chars = 160 }",
    );
    let site = Site::new(SHOP, &rules, Policy::default());
    install(store.as_ref(), &site).await;
    let clock: Arc<dyn Fn() -> Timestamp + Send + Sync> =
        Arc::new(|| beckon_server::clock::Clock::System.now());
    let desk = Desk::new(store.clone(), Arc::new(NoContext), clock);
    let model = ModelResponder::new(ModelConfig {
        base_url: double.base_url.clone(),
        model: "double-1".to_owned(),
        api_key: None,
        timeout: Duration::from_secs(5),
        retries: 0,
        max_tokens: 100,
        shop: "Trail Shop".to_owned(),
        orders: None,
    })
    .unwrap();
    desk.configure_site(
        &site.id(),
        Arc::new(Knowledge::default()),
        Arc::new(model),
        Some(Budget {
            calls_per_day: 10,
            tokens_per_day: 100_000,
        }),
    )
    .await
    .unwrap();
    let server = TestServer::start_with(
        store.clone(),
        Options {
            desk: Some(desk),
            ..Options::default()
        },
    )
    .await;

    let first = server.treated(SHOP, "v_greet_a");
    let reply = server
        .post_events(&batch(
            SHOP,
            &first,
            "s_greet_a",
            leaving_with_cart("s_greet_a"),
        ))
        .await;
    let shown = &reply.body["interventions"][0]["message"]["text"];
    assert_eq!(
        shown, "cart-exit says hello",
        "the rule's own text while the greeting is written"
    );

    // The model writes it once for the context; a later visitor of the same context gets it.
    let mut greeted = None;
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = server.treated(SHOP, &format!("v_greet_{i}_"));
        let s = format!("s_greet_{i}");
        let reply = server
            .post_events(&batch(SHOP, &v, &s, leaving_with_cart(&s)))
            .await;
        let text = reply.body["interventions"][0]["message"]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if text != "cart-exit says hello" {
            greeted = Some(text);
            break;
        }
    }
    let greeted = greeted.expect("the written greeting is shown");
    assert!(greeted.starts_with("The model says"), "{greeted}");
    assert_eq!(
        double.requests().len(),
        1,
        "written once for the context, not per visitor"
    );
    let prompt = double.requests()[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        prompt.contains("about to leave with a full cart"),
        "{prompt}"
    );
    assert!(
        prompt.contains("cart-exit says hello"),
        "bounded by the rule's text: {prompt}"
    );
    assert!(
        prompt.contains("product page"),
        "written from the context: {prompt}"
    );
    let exposures = server.exposures(SHOP).await;
    assert!(
        exposures
            .iter()
            .any(|e| e.message.contains("The model says")),
        "the exposure records the greeting that was shown"
    );
    server.shutdown().await;
}
