//! The model client against a real HTTP server speaking the chat-completions wire format:
//! streamed answers, tool calls in fragments, whole answers, retries, refusals and timeouts;
//! and the desk keeping the model inside the site's daily budget.

mod support;

use std::sync::Arc;
use std::time::Duration;

use beckon_agent::budget::Budget;
use beckon_agent::desk::{Desk, NoContext, Opening, Update, VisitorRef};
use beckon_agent::knowledge::Knowledge;
use beckon_agent::model::{ModelConfig, ModelResponder};
use beckon_agent::responder::{Draft, Question, Responder};
use beckon_engine::{Policy, SiteId, Timestamp, VisitorId};
use beckon_store::conversations::{Author, Context, Conversations};
use beckon_store::{SecretDigest, SiteRecord, Store};
use beckon_store_sqlite::SqliteStore;
use support::model_double::ModelDouble;

fn knowledge() -> Knowledge {
    Knowledge::from_files(&[
        (
            "faq.md".to_owned(),
            "## Do you ship to Canada?\n\nYes, in 5–8 business days.\n".to_owned(),
        ),
        (
            "catalog.json".to_owned(),
            r#"[{"sku":"NW-S28","name":"Summit 28 Daypack","price":89,"currency":"USD","stock":6}]"#
                .to_owned(),
        ),
    ])
    .unwrap()
}

fn config(base_url: &str) -> ModelConfig {
    ModelConfig {
        base_url: base_url.to_owned(),
        model: "double-1".to_owned(),
        api_key: Some("sk-test".to_owned()),
        timeout: Duration::from_secs(10),
        retries: 2,
        max_tokens: 200,
        shop: "Northwind".to_owned(),
        orders: None,
    }
}

#[derive(Default)]
struct Drafts(Vec<String>);

impl Draft for Drafts {
    fn progress(&mut self, text: &str) {
        self.0.push(text.to_owned());
    }
}

async fn ask(
    model: &ModelResponder,
    k: &Knowledge,
    text: &str,
    drafts: &mut Drafts,
) -> Result<beckon_agent::responder::Reply, String> {
    let q = Question {
        text,
        history: &[],
        context: &Context::default(),
        knowledge: k,
    };
    model.answer(&q, drafts).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_streamed_answer_arrives_in_pieces_and_its_usage_is_counted() {
    let double = ModelDouble::start().await;
    let model = ModelResponder::new(config(&double.base_url)).unwrap();
    let mut drafts = Drafts::default();
    let reply = ask(&model, &knowledge(), "Hello there", &mut drafts)
        .await
        .unwrap();
    assert_eq!(reply.text, "The model says: you asked \"hello there\".");
    assert!(drafts.0.len() >= 3, "streamed in pieces: {:?}", drafts.0);
    assert!(
        drafts.0.windows(2).all(|w| w[1].starts_with(&w[0])),
        "each draft extends the last"
    );
    assert_eq!(
        (
            reply.usage.calls,
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens
        ),
        (1, 120, 30)
    );
    let sent = &double.requests()[0];
    assert_eq!(sent["model"], "double-1");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert!(
        sent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Never invent a policy")
    );
    assert_eq!(
        double.script.lock().unwrap().auth[0].as_deref(),
        Some("Bearer sk-test")
    );
}

#[tokio::test]
async fn a_tool_call_in_fragments_runs_the_inventory_lookup_and_its_answer_reaches_the_model() {
    let double = ModelDouble::start().await;
    let model = ModelResponder::new(config(&double.base_url)).unwrap();
    let mut drafts = Drafts::default();
    let reply = ask(
        &model,
        &knowledge(),
        "Is the Summit daypack in stock?",
        &mut drafts,
    )
    .await
    .unwrap();
    assert_eq!(
        reply.text,
        "Good news: the Summit 28 Daypack is in stock, 6 left, at 89.0 USD."
    );
    assert_eq!(
        reply.usage.calls, 2,
        "one call for the tool, one for the answer"
    );
    let second = &double.requests()[1];
    let messages = second["messages"].as_array().unwrap();
    let call = messages.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(call["tool_calls"][0]["function"]["name"], "lookup_product");
    assert_eq!(
        call["tool_calls"][0]["function"]["arguments"], r#"{"query":"summit daypack"}"#,
        "fragments joined"
    );
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], "call_1");
    assert!(tool["content"].as_str().unwrap().contains("\"stock\":6"));
    assert_eq!(
        double.requests()[0]["tools"][0]["function"]["name"],
        "lookup_product"
    );
}

#[tokio::test]
async fn a_whole_json_answer_from_a_server_that_does_not_stream_is_read_too() {
    let double = ModelDouble::start().await;
    double.script.lock().unwrap().whole = true;
    let model = ModelResponder::new(config(&double.base_url)).unwrap();
    let reply = ask(
        &model,
        &knowledge(),
        "Is the Summit daypack in stock?",
        &mut Drafts::default(),
    )
    .await
    .unwrap();
    assert!(reply.text.contains("6 left"), "{}", reply.text);
}

#[tokio::test]
async fn failures_are_retried_refusals_are_not_and_a_slow_model_times_out() {
    let double = ModelDouble::start().await;
    double.script.lock().unwrap().fail_first = vec![500, 429];
    let model = ModelResponder::new(config(&double.base_url)).unwrap();
    let reply = ask(&model, &knowledge(), "hi", &mut Drafts::default())
        .await
        .unwrap();
    assert!(reply.text.starts_with("The model says"));
    assert_eq!(
        double.requests().len(),
        3,
        "a 500 and a 429 were tried again"
    );

    let double = ModelDouble::start().await;
    double.script.lock().unwrap().fail_first = vec![401];
    let model = ModelResponder::new(config(&double.base_url)).unwrap();
    let e = ask(&model, &knowledge(), "hi", &mut Drafts::default())
        .await
        .unwrap_err();
    assert!(e.contains("401"), "{e}");
    assert_eq!(double.requests().len(), 1, "a refusal is not tried again");

    let double = ModelDouble::start().await;
    double.script.lock().unwrap().delay = Some(Duration::from_secs(3));
    let model = ModelResponder::new(ModelConfig {
        timeout: Duration::from_millis(300),
        ..config(&double.base_url)
    })
    .unwrap();
    let e = ask(&model, &knowledge(), "hi", &mut Drafts::default())
        .await
        .unwrap_err();
    assert!(e.contains("longer than"), "{e}");

    let unreachable = ModelResponder::new(ModelConfig {
        retries: 0,
        ..config("http://127.0.0.1:9/v1")
    })
    .unwrap();
    assert!(
        ask(&unreachable, &knowledge(), "hi", &mut Drafts::default())
            .await
            .is_err()
    );
    assert!(
        ModelResponder::new(config("ftp://x")).is_err(),
        "only http(s)"
    );
}

async fn desk_with(model: Arc<dyn Responder>, budget: Budget) -> (Desk, Arc<SqliteStore>, SiteId) {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.migrate().await.unwrap();
    let site = SiteId::parse("shop").unwrap();
    store
        .put_site(&SiteRecord {
            id: site.clone(),
            secret: SecretDigest::of("sk"),
            origins: vec![],
            policy: Policy::default(),
            version: 0,
        })
        .await
        .unwrap();
    let desk = Desk::new(
        store.clone(),
        Arc::new(NoContext),
        Arc::new(|| Timestamp::from_millis(1_780_000_000_000)),
    );
    desk.configure_site(&site, Arc::new(knowledge()), model, Some(budget))
        .await
        .unwrap();
    (desk, store, site)
}

async fn ai_reply(watch: &mut beckon_agent::desk::VisitorWatch) -> String {
    loop {
        let u = tokio::time::timeout(Duration::from_secs(10), watch.recv())
            .await
            .unwrap()
            .unwrap();
        if let Update::Message { message, .. } = u
            && message.author == Author::Ai
            && !message.text.starts_with("Hi!")
        {
            return message.text;
        }
    }
}

#[tokio::test]
async fn the_desk_keeps_the_model_within_its_budget_and_falls_back_to_the_offline_answer() {
    let double = ModelDouble::start().await;
    let model = Arc::new(ModelResponder::new(config(&double.base_url)).unwrap());
    let (desk, store, site) = desk_with(
        model,
        Budget {
            calls_per_day: 1,
            tokens_per_day: 1_000_000,
        },
    )
    .await;
    let me = VisitorRef {
        site: site.clone(),
        visitor: VisitorId::parse("v_budget").unwrap(),
    };
    let mut watch = desk.watch_visitor(&site, &me.visitor);
    let mut drafts_seen = 0;
    desk.say(&me, "m1".to_owned(), "Hello there", &Opening::default())
        .await
        .unwrap();
    let first = loop {
        let u = tokio::time::timeout(Duration::from_secs(10), watch.recv())
            .await
            .unwrap()
            .unwrap();
        match u {
            Update::Draft { .. } => drafts_seen += 1,
            Update::Message { message, .. }
                if message.author == Author::Ai && !message.text.starts_with("Hi!") =>
            {
                break message.text;
            }
            _ => {}
        }
    };
    assert!(first.starts_with("The model says"), "{first}");
    assert!(
        drafts_seen >= 2,
        "the answer streamed to the visitor's tabs ({drafts_seen} drafts)"
    );
    desk.say(
        &me,
        "m2".to_owned(),
        "Do you ship to Canada?",
        &Opening::default(),
    )
    .await
    .unwrap();
    let second = ai_reply(&mut watch).await;
    assert_eq!(
        second, "Yes, in 5–8 business days.",
        "the budget is spent: the offline responder answers"
    );
    assert_eq!(double.requests().len(), 1, "no call past the budget");
    let spend = store
        .model_spend(&site, Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!((spend.calls, spend.tokens), (1, 150));

    // A model that fails: the offline answer, and the failure on record.
    let double = ModelDouble::start().await;
    double.script.lock().unwrap().fail_first = vec![401];
    let model = Arc::new(ModelResponder::new(config(&double.base_url)).unwrap());
    let (desk, store, site) = desk_with(
        model,
        Budget {
            calls_per_day: 100,
            tokens_per_day: 1_000_000,
        },
    )
    .await;
    let me = VisitorRef {
        site: site.clone(),
        visitor: VisitorId::parse("v_fails").unwrap(),
    };
    let mut watch = desk.watch_visitor(&site, &me.visitor);
    desk.say(
        &me,
        "m1".to_owned(),
        "Do you ship to Canada?",
        &Opening::default(),
    )
    .await
    .unwrap();
    assert_eq!(ai_reply(&mut watch).await, "Yes, in 5–8 business days.");
    assert_eq!(
        store
            .model_spend(&site, Timestamp::from_millis(0))
            .await
            .unwrap()
            .calls,
        1,
        "the failed call is counted"
    );
}

#[tokio::test]
async fn a_greeting_is_written_once_per_context_within_the_limits_and_the_budget() {
    use beckon_agent::greeting::GreetingAsk;
    let ask = |max_chars| GreetingAsk {
        prompt: "Greet a visitor looking at trail shoes, briefly.".to_owned(),
        max_chars,
        fixed: "Questions before you buy?".to_owned(),
        context: "on a product page \"Ridgeline Trail Runner\"; cart: empty".to_owned(),
        language: "en".to_owned(),
    };
    let double = ModelDouble::start().await;
    let model = Arc::new(ModelResponder::new(config(&double.base_url)).unwrap());
    let (desk, store, site) = desk_with(
        model,
        Budget {
            calls_per_day: 2,
            tokens_per_day: 1_000_000,
        },
    )
    .await;
    assert_eq!(
        desk.greeting(&site, "rule|product".to_owned(), ask(160)),
        None,
        "never waits for the model"
    );
    let mut written = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(g) = desk.greeting(&site, "rule|product".to_owned(), ask(160)) {
            written = Some(g);
            break;
        }
    }
    let written = written.expect("the greeting is written and cached");
    assert!(written.starts_with("The model says"), "{written}");
    assert_eq!(double.requests().len(), 1, "written once for the context");
    let system = double.requests()[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        system.contains("Greet a visitor looking at trail shoes"),
        "the rule's prompt"
    );
    assert!(
        system.contains("Questions before you buy?"),
        "the rule's text bounds it"
    );
    assert!(system.contains("at most 160 characters"));
    assert!(
        double.requests()[0].get("tools").is_none(),
        "no tools for a greeting"
    );

    // Too long for its limit: refused, and the rule's text stays.
    assert_eq!(desk.greeting(&site, "rule|short".to_owned(), ask(20)), None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        desk.greeting(&site, "rule|short".to_owned(), ask(20)),
        None,
        "refused: out of limits"
    );
    // The budget (two calls) is spent: no third call.
    assert_eq!(
        desk.greeting(&site, "rule|other".to_owned(), ask(160)),
        None
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(double.requests().len(), 2, "no call past the budget");
    let spend = store
        .model_spend(&site, Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!(spend.calls, 2, "greetings count against the budget");
}

#[tokio::test]
async fn the_order_status_tool_asks_the_merchants_endpoint_with_its_token() {
    use beckon_agent::model::OrderEndpoint;
    use std::sync::Mutex;
    // The merchant's endpoint: a real HTTP server that knows one order.
    /// Each request's order id and `Authorization`.
    type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/beckon/order",
        axum::routing::get(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>,
                  h: axum::http::HeaderMap| {
                let record = record.clone();
                async move {
                    let auth = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    record
                        .lock()
                        .unwrap()
                        .push((q.get("order_id").cloned(), auth));
                    axum::Json(serde_json::json!({"order_id": "1042", "status": "shipped"}))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = format!("http://{}/beckon/order", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let double = ModelDouble::start().await;
    let model = ModelResponder::new(ModelConfig {
        orders: Some(OrderEndpoint {
            url: shop,
            token: Some("shop-token".to_owned()),
        }),
        ..config(&double.base_url)
    })
    .unwrap();
    let reply = ask(
        &model,
        &knowledge(),
        "Where is order 1042?",
        &mut Drafts::default(),
    )
    .await
    .unwrap();
    assert_eq!(reply.text, "Your order 1042 is shipped.");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(
            Some("1042".to_owned()),
            Some("Bearer shop-token".to_owned())
        )]
    );
    let tools = &double.requests()[0]["tools"];
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "order_status")
    );
    // Without an endpoint the tool is not offered.
    let plain = ModelResponder::new(config(&double.base_url)).unwrap();
    ask(&plain, &knowledge(), "hello", &mut Drafts::default())
        .await
        .unwrap();
    let last = double.requests().last().unwrap().clone();
    assert!(
        !last["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "order_status")
    );
}

/// Found in review: a message that goes to people spends nothing of the model's budget.
#[tokio::test]
async fn messages_routed_to_people_spend_nothing_of_the_budget() {
    let double = ModelDouble::start().await;
    let model = Arc::new(ModelResponder::new(config(&double.base_url)).unwrap());
    let (desk, _store, site) = desk_with(
        model,
        Budget {
            calls_per_day: 1,
            tokens_per_day: 1_000_000,
        },
    )
    .await;
    for n in 0..3 {
        let who = VisitorRef {
            site: site.clone(),
            visitor: VisitorId::parse(&format!("v_refund_{n}")).unwrap(),
        };
        desk.say(
            &who,
            "m1".to_owned(),
            "I want a refund",
            &Opening::default(),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let me = VisitorRef {
        site: site.clone(),
        visitor: VisitorId::parse("v_asks").unwrap(),
    };
    let mut watch = desk.watch_visitor(&site, &me.visitor);
    desk.say(&me, "m1".to_owned(), "Hello there", &Opening::default())
        .await
        .unwrap();
    let answer = ai_reply(&mut watch).await;
    assert!(
        answer.starts_with("The model says"),
        "the one call of the day is still there: {answer}"
    );
}
