//! Backtesting a draft rule: over the log of a busy run, the backtest's count of the draft's
//! firings is what running the draft live over the same events gives; a draft that waits for a
//! delay wakes on the backtest's own ticks; and a draft with nothing to match fires nowhere.

mod support;

use std::sync::Arc;
use std::time::Duration;

use beckon_engine::rules::RuleSpec;
use beckon_engine::{Policy, RuleSet, SiteId, Timestamp, Tz};
use beckon_server::Options;
use beckon_server::backtest::{self, BacktestReport};
use beckon_server::limits::Limits;
use beckon_store::Store;
use beckon_store::analytics::Period;
use beckon_store_sqlite::SqliteStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const SHOP: &str = "shop";

/// Rules that decide on events alone (no delay, no time condition), so that two runs of the
/// same events decide the same whatever the machine's speed.
fn base_rules() -> String {
    format!(
        "{}\n{}",
        cart_exit_rule("cart-exit"),
        rule(
            "pricing",
            r#"{ all = [ { var = "page.type", op = "equals", value = "pricing" } ] }"#,
            "priority = 80",
        )
    )
}

/// The draft: deep on a product page. It outranks the pricing rule and is outranked by the
/// cart offer, so it both displaces and is blocked.
fn draft_toml() -> String {
    rule(
        "deep-product",
        r#"{ all = [ { var = "page.type", op = "equals", value = "product" }, { var = "behaviour.scroll", op = "gte", value = 50 } ] }"#,
        "priority = 90",
    )
    .replace("status = \"live\"", "status = \"draft\"")
}

fn draft() -> RuleSpec {
    let set = RuleSet::from_toml(&draft_toml(), Tz::UTC).expect("the draft compiles");
    set.to_file().rules.remove(0)
}

fn policy() -> Policy {
    Policy {
        max_per_session: 3,
        arrival_grace: Duration::ZERO,
        holdout_percent: 30.0,
        ..Policy::default()
    }
}

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
    ("product", "/p/tent"),
    ("cart", "/cart"),
    ("pricing", "/pricing"),
];

fn scroll(id: &str, depth: u64) -> Value {
    let mut v = bare(id, "scroll");
    v["depth"] = json!(depth);
    v
}

/// The same events for the same seed, whatever the server answers (no outcome event refers to
/// what was shown), so that two runs see exactly the same traffic. Each session's first batch
/// opens with a person's pointer on the page (nothing is shown to a visit without one).
async fn drive(server: &TestServer) {
    let visitors: Vec<String> = (0..40).map(|i| format!("v_back{i}")).collect();
    let mut rng = Lcg(11);
    let mut seq = 0;
    let mut started = std::collections::HashSet::new();
    for _round in 0..10 {
        let mut sends = Vec::new();
        for (i, v) in visitors.iter().enumerate() {
            let session = if rng.next(9) == 0 {
                format!("s_back{i}b")
            } else {
                format!("s_back{i}")
            };
            let mut events = Vec::new();
            if started.insert(session.clone()) {
                events.push(bare(&format!("{session}:person"), "activity"));
            }
            for _ in 0..1 + rng.next(3) {
                seq += 1;
                let id = format!("{session}:{seq}");
                events.push(match rng.next(6) {
                    0 | 1 => {
                        let (t, path) = PAGES[rng.next(PAGES.len() as u64) as usize];
                        page(&id, t, path)
                    }
                    2 => scroll(&id, 20 + rng.next(80)),
                    3 => cart(&id, 1 + rng.next(2) as u32, 30.0),
                    4 => bare(&id, "exit_intent"),
                    _ => bare(&id, "activity"),
                });
            }
            let body = batch(SHOP, v, &session, events);
            sends.push(async move { server.post_events(&body).await });
        }
        let bot = batch(
            SHOP,
            "v_backbot",
            "s_backbot",
            vec![page(&format!("s_backbot:{seq}"), "product", "/p/trail")],
        );
        let reply = server
            .post_events_as(
                Some(ORIGIN),
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
                bot.to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        for r in futures::future::join_all(sends).await {
            assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        }
    }
}

/// Runs the traffic against a fresh server with `rules`; the store it wrote.
async fn run(rules: &str) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.migrate().await.unwrap();
    install(store.as_ref(), &Site::new(SHOP, rules, policy())).await;
    let server = TestServer::start_with(
        store.clone() as Arc<dyn Store>,
        Options {
            shards: 2,
            limits: Limits::unthrottled(),
            ..Options::default()
        },
    )
    .await;
    drive(&server).await;
    server.shutdown().await;
    store
}

fn everything() -> Period {
    Period {
        from: Timestamp::from_millis(0),
        to: Timestamp::from_millis(i64::MAX / 2),
    }
}

async fn backtest_of(store: &SqliteStore, draft: &RuleSpec) -> BacktestReport {
    let mut calls = Vec::new();
    let report = backtest::backtest(
        store,
        store,
        &SiteId::parse(SHOP).unwrap(),
        draft,
        everything(),
        &mut |done, total| calls.push((done, total)),
    )
    .await
    .expect("backtests");
    let last = calls.last().copied().expect("progress was told");
    assert_eq!(last.0, last.1, "progress ends at its total: {calls:?}");
    assert!(
        calls.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only goes up"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_counts_what_running_the_draft_live_over_the_same_events_fires() {
    let recorded = run(&base_rules()).await;
    let site = SiteId::parse(SHOP).unwrap();
    let report = backtest_of(&recorded, &draft()).await;

    // Live: the same events with the draft launched.
    let live_rules = format!(
        "{}\n{}",
        base_rules(),
        draft_toml().replace("status = \"draft\"", "status = \"live\"")
    );
    let live = run(&live_rules).await;
    let exposures = live.exposures(&site).await.unwrap();
    let live_draft: Vec<_> = exposures
        .iter()
        .filter(|e| e.rule.as_str() == "deep-product")
        .collect();
    let live_visitors: std::collections::HashSet<_> =
        live_draft.iter().map(|e| e.visitor.clone()).collect();

    assert!(
        report.fired > 5,
        "the draft had something to match: {report:?}"
    );
    assert_eq!(
        report.fired,
        live_draft.len() as u64,
        "the backtest fires as the live run did: {report:?}"
    );
    assert_eq!(report.visitors_fired, live_visitors.len() as u64);
    let live_shown = live_draft
        .iter()
        .filter(|e| e.arm == beckon_engine::session::Arm::Treated)
        .count();
    assert_eq!(report.shown, live_shown as u64, "and in the same arms");
    assert_eq!(
        report.with_draft_fired,
        exposures.len() as u64,
        "every rule's firings with the draft, too"
    );

    // Without the draft, the backtest's own run is the recorded one.
    let baseline = recorded.exposures(&site).await.unwrap();
    assert_eq!(
        report.baseline_fired,
        baseline.len() as u64,
        "the baseline run rebuilds the recorded decisions"
    );

    assert_eq!(report.visitors, 40, "people only: the crawler is left out");
    assert!(
        report.pages.iter().all(|(p, _)| p.starts_with("/p/")),
        "it fired on product pages only: {:?}",
        report.pages
    );
    assert_eq!(
        report.pages.iter().map(|(_, n)| n).sum::<u64>(),
        report.fired
    );
    assert!(
        report.displaced.iter().any(|(r, _)| r == "pricing"),
        "it takes the place of the lower-priority rule now and then: {:?}",
        report.displaced
    );
    // What held it back when its conditions held: guardrails of the visit (an offer already
    // showing, the session's cap), each counted once per visitor.
    assert!(!report.blocked_by.is_empty(), "{report:?}");
    for (by, visitors) in &report.blocked_by {
        assert!(
            ["intervention_open", "session_cap", "repeat_after"].contains(&by.as_str())
                || by.starts_with("rule "),
            "{by}"
        );
        assert!(*visitors >= 1 && *visitors <= 40);
    }
}

#[tokio::test]
async fn a_draft_that_waits_wakes_on_the_backtests_own_ticks_and_a_draft_matching_nothing_fires_nowhere()
 {
    // A hand-made log: a checkout page, and ten seconds later the home page.
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.migrate().await.unwrap();
    install(store.as_ref(), &Site::new(SHOP, &base_rules(), policy())).await;
    let server = TestServer::start_with(
        store.clone() as Arc<dyn Store>,
        Options {
            limits: Limits::unthrottled(),
            ..Options::default()
        },
    )
    .await;
    for (i, (kind, path)) in [("checkout", "/checkout"), ("home", "/")]
        .into_iter()
        .enumerate()
    {
        let mut events = vec![page(&format!("s_wait1:{i}"), kind, path)];
        if i == 0 {
            events.push(bare("s_wait1:person", "activity"));
        }
        let body = batch(SHOP, "v_wait1", "s_wait1", events);
        assert_eq!(server.post_events(&body).await.status, StatusCode::ACCEPTED);
        if i == 0 {
            tokio::time::sleep(Duration::from_millis(1_200)).await;
        }
    }
    server.shutdown().await;

    // Nothing in the recorded rules waits, so the log has no tick: the draft's delay must be
    // woken by the backtest itself, while the checkout page was still open.
    let waiting = rule(
        "checkout-wait",
        r#"{ all = [ { var = "page.type", op = "equals", value = "checkout" } ] }"#,
        "priority = 70\ndelay = \"500ms\"",
    );
    let spec = RuleSet::from_toml(&waiting, Tz::UTC)
        .unwrap()
        .to_file()
        .rules
        .remove(0);
    let report = backtest_of(&store, &spec).await;
    assert_eq!(report.fired, 1, "{report:?}");
    assert_eq!(report.pages, vec![("/checkout".to_owned(), 1)]);

    let never = rule(
        "never",
        r#"{ all = [ { var = "page.type", op = "equals", value = "article" } ] }"#,
        "priority = 70",
    );
    let spec = RuleSet::from_toml(&never, Tz::UTC)
        .unwrap()
        .to_file()
        .rules
        .remove(0);
    let report = backtest_of(&store, &spec).await;
    assert_eq!(
        (report.fired, report.visitors_fired, report.batches),
        (0, 0, 2)
    );
    assert!(report.pages.is_empty() && report.displaced.is_empty());
}
