//! The log is complete: after a busy run — many visitors at once, timers firing on their own,
//! dismissals, orders, bots, a second tab, a rule change in the middle — replaying the log
//! alone through the engine gives exactly the decisions that were recorded, and every
//! visitor's stored state.

mod support;

use std::time::Duration;

use beckon_engine::{Policy, SiteId};
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_server::replay;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const SHOP: &str = "shop";

/// The demo's rules, and one that fires on its own a moment after a checkout page is seen (so
/// that the server's timer, not a request, makes some of the decisions).
fn rules() -> String {
    format!(
        "{DEMO_RULES}\n{}",
        rule(
            "checkout-help",
            r#"{ all = [ { var = "page.type", op = "equals", value = "checkout" } ] }"#,
            "priority = 50\ndelay = \"300ms\"",
        )
    )
}

/// A tiny deterministic generator, so that a failure can be run again as it was.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const PAGES: [(&str, &str); 5] = [
    ("home", "/"),
    ("product", "/p/trail"),
    ("cart", "/cart"),
    ("checkout", "/checkout"),
    ("pricing", "/pricing"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_log_of_a_busy_run_gives_exactly_the_recorded_decisions() {
    let store = memory_store().await;
    let policy = Policy {
        max_per_session: 4,
        arrival_grace: Duration::ZERO,
        dismiss_cooldown: Duration::from_millis(200),
        holdout_percent: 30.0,
        ..Policy::default()
    };
    install(store.as_ref(), &Site::new(SHOP, &rules(), policy)).await;
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
    let visitors: Vec<String> = (0..30).map(|i| format!("v_busy{i}")).collect();
    let mut rng = Lcg(7);
    let mut shown: Vec<Option<Value>> = vec![None; visitors.len()];
    let mut seq = 0;
    for round in 0..12 {
        if round == 6 {
            // A rule change in the middle of the run, as an import by another process.
            let changed = format!(
                "{}\n{}",
                rules(),
                cart_exit_rule("late-arrival").replace("priority = 100", "priority = 300")
            );
            let set = beckon_engine::RuleSet::from_toml(&changed, beckon_engine::Tz::UTC).unwrap();
            store
                .replace_rules(&SiteId::parse(SHOP).unwrap(), &set.to_file().rules)
                .await
                .unwrap();
            let before = server.sites.get(SHOP).unwrap().version();
            eventually("the change is in force", || async {
                server.sites.get(SHOP).unwrap().version() > before
            })
            .await;
        }
        let mut sends = Vec::new();
        for (i, v) in visitors.iter().enumerate() {
            // A second tab of the same visit now and then.
            let session = if rng.next(8) == 0 {
                format!("s_busy{i}b")
            } else {
                format!("s_busy{i}")
            };
            let mut events = Vec::new();
            for _ in 0..1 + rng.next(4) {
                seq += 1;
                let id = format!("{session}:{seq}");
                events.push(match rng.next(7) {
                    0 | 1 => {
                        let (t, path) = PAGES[rng.next(PAGES.len() as u64) as usize];
                        page(&id, t, path)
                    }
                    2 => cart(&id, 1 + rng.next(3) as u32, 40.0),
                    3 => bare(&id, "exit_intent"),
                    4 => match &shown[i] {
                        Some(iv) => about(&id, "dismissed", iv),
                        None => bare(&id, "activity"),
                    },
                    5 if rng.next(4) == 0 => json!({"id": id, "type": "convert", "order_id": format!("o{seq}"), "value": 25}),
                    _ => bare(&id, "scroll").as_object().map(|o| {
                        let mut o = o.clone();
                        o.insert("depth".into(), json!(50));
                        Value::Object(o)
                    }).unwrap(),
                });
            }
            let body = batch(SHOP, v, &session, events);
            let server = &server;
            sends.push(async move { server.post_events(&body).await });
        }
        // A crawler in the crowd: logged, never decided on.
        let bot = batch(
            SHOP,
            "v_bot",
            "s_bot",
            vec![page(&format!("s_bot:{round}"), "cart", "/cart")],
        );
        let bot_reply = server
            .post_events_as(
                Some(ORIGIN),
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
                bot.to_string(),
            )
            .await;
        assert_eq!(bot_reply.status, StatusCode::ACCEPTED);
        let replies = futures::future::join_all(sends).await;
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
            if let Some(iv) = r.interventions().last() {
                shown[i] = Some(iv.clone());
            }
        }
        // Time for the timers to fire on their own between some rounds.
        if round % 3 == 2 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    server.shutdown().await;

    let site = SiteId::parse(SHOP).unwrap();
    let replayed = replay::replay_site(store.as_ref(), &site)
        .await
        .expect("replays");
    let recorded = replay::recorded(store.as_ref(), &site)
        .await
        .expect("exposures");
    assert!(
        recorded.len() > 20,
        "a busy run decides much: {}",
        recorded.len()
    );
    let from_timer = store
        .log(&site, 0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, b)| b.source == beckon_store::Source::Timer)
        .count();
    assert!(from_timer > 0, "some decisions were the timer's");
    assert!(
        recorded.iter().any(|f| f.rule.as_str() == "late-arrival"),
        "the rule added mid-run fired"
    );
    assert!(
        recorded.iter().any(|f| f.arm == replay::ArmName::Holdout),
        "held-out visitors had ghost exposures"
    );
    assert_eq!(replayed.fired, recorded, "the log rebuilds every decision");
    for v in &visitors {
        let stored = visitor_record(store.as_ref(), SHOP, v)
            .await
            .expect("stored");
        let rebuilt = &replayed.visitors[&beckon_engine::VisitorId::parse(v).unwrap()];
        assert_eq!(stored.profile, rebuilt.profile, "{v}");
    }
    assert!(
        !replayed
            .visitors
            .contains_key(&beckon_engine::VisitorId::parse("v_bot").unwrap()),
        "the bot is in no state"
    );
}
