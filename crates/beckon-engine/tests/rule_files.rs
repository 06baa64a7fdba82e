//! Rule files: what is written is what is read back, and the order rules are tried in.
//!
//! Covers round trips through TOML and JSON of a rule set that uses every message type,
//! schedules, translations, the AI greeting, every kind of goal, durations written as text and
//! as seconds, and conditions with every operator; operator aliases written back under their
//! canonical names; and priority: higher first, ties by id, and the trace of a rule that held
//! but was outranked.

use std::collections::BTreeSet;
use std::time::Duration;

use beckon_engine::rules::{Condition, Goal, Literal, Op, RuleFile, Status};
use beckon_engine::*;

/// A rule set that uses every feature of the file format.
const EVERYTHING: &str = r#"
[[rules]]
id = "every-operator"
name = "Every operator at least once"
status = "live"
priority = 10
when = { all = [
    { var = "page.path", op = "equals", value = "/checkout" },
    { var = "cart.currency", op = "not_equals", value = "USD" },
    { var = "page.title", op = "contains", value = "Shoes" },
    { var = "page.url", op = "not_contains", value = "utm_" },
    { var = "page.path", op = "starts_with", value = "/check" },
    { var = "page.path", op = "ends_with", value = "out" },
    { var = "page.path", op = "matches", value = "^/check(out)?$" },
    { var = "page.type", op = "in", value = ["cart", "checkout"] },
    { var = "device.type", op = "not_in", value = ["mobile", "tablet"] },
    { var = "cart.value", op = "gt", value = 10 },
    { var = "cart.value", op = "gte", value = 10.5 },
    { var = "cart.items", op = "lt", value = 100 },
    { var = "cart.items", op = "lte", value = 99 },
    { var = "time.on_page", op = "between", value = [5, 600.5] },
    { var = "visitor.traits.email", op = "exists" },
    { var = "visitor.traits.banned", op = "exists", value = false },
    { var = "visitor.first_seen", op = "before", value = "2030-01-01" },
    { var = "time.date", op = "after", value = "2026-01-01T09:00:00Z" },
    { var = "time.date", op = "between", value = ["2026-01-01", "2030-12-31T23:59:59+01:00"] },
    { any = [
        { not = { var = "behaviour.hovered", op = "contains", value = "faq" } },
        { var = "behaviour.page_types", op = "not_contains", value = "pricing" },
        { var = "visitor.traits.plan", op = "in", value = ["pro", 3, true] },
        { var = "visitor.traits.amount", op = "between", value = [-5, 1e6] },
    ] },
] }
delay = "10m"
repeat_after = 600
max_per_visitor = 3
schedule = { start = "2026-01-01", end = "2027-01-01T00:00:00Z", hours = { days = ["mon", "wed", "fri"], from = "09:00", to = "17:30" } }
rollout = 50
pages = ["cart", "checkout"]
department = "sales"
goal = "order"
message = { type = "text", text = "Hi {{ visitor.traits.name | default('there') }}, {{ cart.value | money }} in your cart" }
translations.fr = { type = "text", text = "Bonjour, {{ cart.value | money }} dans votre panier" }
translations.pt-BR = { type = "text", text = "Olá" }
ai_greeting = { prompt = "Greet the visitor about their cart, warmly and briefly.", max_chars = 200 }

[[rules]]
id = "card"
name = "A card with every kind of button"
status = "paused"
priority = 5
when = { var = "behaviour.scroll", op = "gte", value = 50 }
delay = 45
goal = "lead"

[rules.message]
type = "card"
title = "Questions about {{ page.product | default('this product') }}?"
body = "We answer in minutes."
image = "https://cdn.example/help.png"
buttons = [
    { label = "Yes", action = "reply", value = "Yes, please" },
    { label = "Shipping", action = "url", value = "/shipping" },
    { label = "Ask", action = "chat", value = "How long does shipping take?" },
]

[rules.translations.de]
type = "card"
title = "Fragen?"
body = ""
buttons = [{ label = "Rabatt", action = "coupon", value = "SAVE10" }]

[[rules]]
id = "offer"
name = "An offer"
status = "live"
priority = 5
when = { var = "behaviour.exit_intent", op = "equals", value = true }
repeat_after = "1h 30m"
goal = "event:trial_started"
message = { type = "offer", text = "10% off today", code = "SAVE10", description = "10% off this order", expires = "2027-12-31" }

[[rules]]
id = "comparison"
name = "Two plans side by side"
status = "draft"
priority = -1
when = { var = "behaviour.compared", op = "gte", value = 2 }
schedule = { hours = { from = "08:00", to = "20:00" } }

[rules.message]
type = "comparison"
title = "Still deciding?"

[[rules.message.items]]
name = "Starter"
price = "$19/mo"
features = ["1 site", "E-mail support"]
url = "/checkout?plan=starter"

[[rules.message.items]]
name = "Growth"
features = []

[[rules]]
id = "comparison-from-page"
name = "Comparison read from the page"
status = "archived"
when = { var = "page.type", op = "equals", value = "pricing" }
message = { type = "comparison", title = "Compare" }

[[rules]]
id = "email"
name = "Newsletter"
status = "live"
when = { var = "behaviour.scroll", op = "gte", value = 60 }
goal = "lead"
message = { type = "email_capture", text = "Get the next guide", ask_name = true, ask_question = true, consent = "I agree to receive e-mails." }

[[rules]]
id = "chat"
name = "Open the chat"
status = "live"
when = { var = "cart.idle", op = "gte", value = 120 }
message = { type = "open_chat", question = "Can I help you finish your order?", text = "We are online" }
translations.fr = { type = "open_chat", question = "Puis-je vous aider ?" }
"#;

fn compile(toml: &str) -> RuleSet {
    RuleSet::from_toml(toml, Tz::UTC).unwrap_or_else(|e| panic!("should compile: {e}\n{toml}"))
}

/// Every operator used anywhere in a condition tree.
fn operators(c: &Condition, out: &mut BTreeSet<&'static str>) {
    match c {
        Condition::All(kids) | Condition::Any(kids) => kids.iter().for_each(|k| operators(k, out)),
        Condition::Not(kid) => operators(kid, out),
        Condition::Leaf(leaf) => {
            out.insert(leaf.op.as_str());
        }
    }
}

fn ids(rules: &RuleSet) -> Vec<&str> {
    rules.iter().map(|r| r.id.as_str()).collect()
}

// ---- round trips ----------------------------------------------------------------------------

#[test]
fn the_round_trip_fixture_uses_every_operator_and_every_message_type() {
    let file = compile(EVERYTHING).to_file();
    let mut ops = BTreeSet::new();
    for rule in &file.rules {
        operators(&rule.when, &mut ops);
    }
    let all: BTreeSet<&str> = Op::ALL.iter().map(|op| op.as_str()).collect();
    assert_eq!(ops, all);

    let kinds: BTreeSet<&str> = file.rules.iter().map(|r| r.message.kind()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "card",
            "comparison",
            "email_capture",
            "offer",
            "open_chat",
            "text"
        ])
    );
    let goals: Vec<&Goal> = file.rules.iter().map(|r| &r.goal).collect();
    assert!(goals.contains(&&Goal::Order));
    assert!(goals.contains(&&Goal::Lead));
    assert!(goals.contains(&&Goal::Event("trial_started".to_owned())));
    let statuses: BTreeSet<&str> = file.rules.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["archived", "draft", "live", "paused"])
    );
}

#[test]
fn a_rule_set_using_every_feature_round_trips_through_toml() {
    let rules = compile(EVERYTHING);
    let written = rules.to_toml();
    let again = RuleSet::from_toml(&written, Tz::UTC)
        .unwrap_or_else(|e| panic!("the written file should compile: {e}\n{written}"));
    assert_eq!(again.to_file(), rules.to_file(), "written as:\n{written}");
    // Writing what was read back gives the same text: the format has one way to say a thing.
    assert_eq!(again.to_toml(), written);
}

#[test]
fn a_rule_set_using_every_feature_round_trips_through_json() {
    let rules = compile(EVERYTHING);
    let written = rules.to_json();
    let again = RuleSet::from_json(&written, Tz::UTC)
        .unwrap_or_else(|e| panic!("the written JSON should compile: {e}\n{written}"));
    assert_eq!(again.to_file(), rules.to_file(), "written as:\n{written}");
    assert_eq!(again.to_json(), written);
    // And across formats: TOML → JSON → TOML.
    let toml_again = RuleSet::from_toml(&again.to_toml(), Tz::UTC).unwrap();
    assert_eq!(toml_again.to_file(), rules.to_file());
}

#[test]
fn the_round_trip_keeps_what_was_written() {
    let file = compile(EVERYTHING).to_file();
    let rule = file
        .rules
        .iter()
        .find(|r| r.id == "every-operator")
        .unwrap();
    assert_eq!(rule.status, Status::Live);
    assert_eq!(rule.priority, 10);
    assert_eq!(rule.delay, Duration::from_secs(600));
    assert_eq!(rule.repeat_after, Some(Duration::from_secs(600)));
    assert_eq!(rule.max_per_visitor, Some(3));
    assert_eq!(rule.rollout, 50.0);
    assert_eq!(rule.pages, [PageType::Cart, PageType::Checkout]);
    assert_eq!(rule.department.as_deref(), Some("sales"));
    assert_eq!(
        rule.translations
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["fr", "pt-BR"]
    );
    assert_eq!(rule.ai_greeting.as_ref().unwrap().max_chars, 200);
    let schedule = rule.schedule.as_ref().unwrap();
    assert_eq!(schedule.start.as_deref(), Some("2026-01-01"));
    assert_eq!(schedule.hours.as_ref().unwrap().to, "17:30");

    // Numbers keep their value and their kind: a whole number is not written as 10.0, a
    // fraction stays a fraction.
    let Condition::All(leaves) = &rule.when else {
        panic!("expected all, got {:?}", rule.when)
    };
    let value = |i: usize| match &leaves[i] {
        Condition::Leaf(leaf) => leaf.value.clone(),
        other => panic!("expected a leaf, got {other:?}"),
    };
    assert_eq!(value(9), Some(Literal::Num(10.0)));
    assert_eq!(value(10), Some(Literal::Num(10.5)));
    assert_eq!(value(14), None);
    let written = compile(EVERYTHING).to_toml();
    assert!(written.lines().any(|l| l == "value = 10"), "{written}");
    assert!(written.lines().any(|l| l == "value = 10.5"), "{written}");
    assert!(!written.contains("value = 10.0"), "{written}");

    // Defaults: no status is a draft, full rollout, goal order, no delay.
    let minimal = compile(
        r#"[[rules]]
id = "m"
name = "Minimal"
when = { var = "cart.items", op = "gt", value = 0 }
message = { type = "text", text = "Hi" }
"#,
    );
    let m = &minimal.to_file().rules[0];
    assert_eq!(m.status, Status::Draft);
    assert_eq!(m.rollout, 100.0);
    assert_eq!(m.goal, Goal::Order);
    assert_eq!(m.delay, Duration::ZERO);
    let again = compile(&minimal.to_toml());
    assert_eq!(again.to_file(), minimal.to_file());
}

#[test]
fn a_duration_written_as_text_or_as_seconds_reads_the_same_and_is_written_as_text() {
    let rule = |delay: &str| {
        compile(&format!(
            r#"[[rules]]
id = "d"
name = "D"
status = "live"
when = {{ var = "cart.items", op = "gt", value = 0 }}
delay = {delay}
repeat_after = {delay}
message = {{ type = "text", text = "Hi" }}
"#
        ))
    };
    let as_text = rule(r#""10m""#);
    let as_seconds = rule("600");
    assert_eq!(as_text.to_file(), as_seconds.to_file());
    let spec = &as_seconds.to_file().rules[0];
    assert_eq!(spec.delay, Duration::from_secs(600));
    assert_eq!(spec.repeat_after, Some(Duration::from_secs(600)));
    let written = as_seconds.to_toml();
    assert!(written.contains(r#"delay = "10m""#), "{written}");
    assert!(written.contains(r#"repeat_after = "10m""#), "{written}");
    assert!(as_seconds.to_json().contains(r#""delay": "10m""#));

    let long = rule(r#""1h 30m""#);
    assert_eq!(long.to_file().rules[0].delay, Duration::from_secs(90 * 60));
    assert_eq!(compile(&long.to_toml()).to_file(), long.to_file());
    let days = rule(r#""30d""#);
    assert_eq!(
        days.to_file().rules[0].delay,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(compile(&days.to_toml()).to_file(), days.to_file());
}

#[test]
fn operator_aliases_are_written_back_under_their_canonical_names() {
    let aliases = [
        ("==", Op::Equals),
        ("!=", Op::NotEquals),
        (">", Op::Gt),
        (">=", Op::Gte),
        ("<", Op::Lt),
        ("<=", Op::Lte),
    ];
    for (symbol, op) in aliases {
        let rules = compile(&format!(
            r#"[[rules]]
id = "alias"
name = "Alias"
when = {{ var = "cart.value", op = "{symbol}", value = 50 }}
message = {{ type = "text", text = "Hi" }}
"#
        ));
        assert_eq!(
            rules.to_file().rules[0].when,
            Condition::leaf("cart.value", op, 50)
        );
        let toml = rules.to_toml();
        assert!(
            toml.contains(&format!(r#"op = "{}""#, op.as_str())),
            "{symbol} should be written as {}:\n{toml}",
            op.as_str()
        );
        assert!(!toml.contains(&format!(r#""{symbol}""#)), "{toml}");
        let json = rules.to_json();
        assert!(
            json.contains(&format!(r#""op": "{}""#, op.as_str())),
            "{json}"
        );
        // Read back, it is the same rule.
        assert_eq!(compile(&toml).to_file(), rules.to_file());
    }
}

#[test]
fn a_json_body_reads_like_the_same_toml_file() {
    let json = r#"{ "rules": [ {
        "id": "cart-exit",
        "name": "Cart exit",
        "status": "live",
        "priority": 3,
        "when": { "all": [
            { "var": "cart.items", "op": ">", "value": 0 },
            { "not": { "var": "page.type", "op": "in", "value": ["checkout"] } }
        ] },
        "delay": 30,
        "message": { "type": "offer", "text": "Wait!", "code": "STAY10" }
    } ] }"#;
    let toml = r#"[[rules]]
id = "cart-exit"
name = "Cart exit"
status = "live"
priority = 3
when = { all = [
    { var = "cart.items", op = "gt", value = 0 },
    { not = { var = "page.type", op = "in", value = ["checkout"] } },
] }
delay = "30s"
message = { type = "offer", text = "Wait!", code = "STAY10" }
"#;
    let from_json = RuleSet::from_json(json, Tz::UTC).unwrap();
    assert_eq!(from_json.to_file(), compile(toml).to_file());
}

#[test]
fn a_rule_read_back_decides_like_the_original() {
    let original = compile(
        r#"[[rules]]
id = "big-cart-exit"
name = "Big cart, leaving"
status = "live"
when = { all = [
    { var = "cart.value", op = ">=", value = 50 },
    { var = "behaviour.exit_intent", op = "==", value = true },
    { not = { var = "visitor.traits.plan", op = "in", value = ["pro"] } },
] }
delay = 2
message = { type = "text", text = "Before you go…" }
"#,
    );
    let read_back = compile(&original.to_toml());
    let run = |rules: RuleSet| {
        let policy = Policy {
            holdout_percent: 0.0,
            ..Policy::default()
        };
        let engine = Engine::new(SiteId::parse("shop").unwrap(), policy, rules).unwrap();
        let mut profile = Profile::default();
        let t0 = Timestamp::from_secs(1_800_000_000);
        let mut session = engine.start_session(
            VisitorId::parse("v").unwrap(),
            SessionStart::default(),
            &mut profile,
            t0,
        );
        // The person moves the pointer (nothing can fire on arrival).
        engine.decide(&mut session, &mut profile, &Event::Activity, t0);
        let events = [
            (
                Event::Cart(CartUpdate {
                    value: 80.0,
                    currency: "EUR".into(),
                    items: 2,
                }),
                10_000,
            ),
            (Event::ExitIntent, 20_000),
            (Event::Tick, 21_000),
            (Event::Tick, 22_000),
        ];
        events
            .into_iter()
            .map(|(event, at)| {
                let d = engine.decide(&mut session, &mut profile, &event, t0.plus_ms(at));
                (d.outcome.rule().map(|r| r.id.to_string()), d.next_wake)
            })
            .collect::<Vec<_>>()
    };
    let expected = run(original);
    assert_eq!(
        expected[3].0.as_deref(),
        Some("big-cart-exit"),
        "{expected:?}"
    );
    assert_eq!(run(read_back), expected);
}

// ---- priority -------------------------------------------------------------------------------

fn prioritised(rules: &[(&str, i32)]) -> String {
    rules
        .iter()
        .map(|(id, priority)| {
            format!(
                r#"[[rules]]
id = "{id}"
name = "Rule {id}"
status = "live"
priority = {priority}
when = {{ var = "cart.items", op = "gt", value = 0 }}
message = {{ type = "text", text = "{id}" }}
"#
            )
        })
        .collect()
}

#[test]
fn higher_priority_rules_come_first() {
    let rules = compile(&prioritised(&[("low", -5), ("high", 100), ("mid", 0)]));
    assert_eq!(ids(&rules), ["high", "mid", "low"]);
    let file: RuleFile = rules.to_file();
    let written: Vec<&str> = file.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(written, ["high", "mid", "low"]);
}

#[test]
fn rules_of_equal_priority_are_ordered_by_id_whatever_the_file_order() {
    let one = compile(&prioritised(&[("b", 1), ("c", 1), ("a", 1), ("z", 2)]));
    let other = compile(&prioritised(&[("a", 1), ("z", 2), ("c", 1), ("b", 1)]));
    assert_eq!(ids(&one), ["z", "a", "b", "c"]);
    assert_eq!(ids(&other), ids(&one));
    assert_eq!(other.to_toml(), one.to_toml());
}

/// Starts a visit and puts items in the cart, which makes every rule of [`prioritised`] hold.
fn decide_with_cart(engine: &Engine) -> (Option<String>, Trace) {
    let mut profile = Profile::default();
    let t0 = Timestamp::from_secs(1_800_000_000);
    let mut session = engine.start_session(
        VisitorId::parse("v").unwrap(),
        SessionStart::default(),
        &mut profile,
        t0,
    );
    engine.decide(&mut session, &mut profile, &Event::Activity, t0);
    let cart = Event::Cart(CartUpdate {
        value: 30.0,
        currency: "EUR".into(),
        items: 1,
    });
    let (decision, trace) = engine.explain(&mut session, &mut profile, &cart, t0.plus_ms(10_000));
    assert!(decision.outcome.is_visible() || decision.outcome.rule().is_none());
    (decision.outcome.rule().map(|r| r.id.to_string()), trace)
}

fn engine(rules: RuleSet) -> Engine {
    let policy = Policy {
        holdout_percent: 0.0,
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    Engine::new(SiteId::parse("shop").unwrap(), policy, rules).unwrap()
}

#[test]
fn when_two_live_rules_hold_the_higher_priority_one_fires_and_the_other_is_outranked() {
    let engine = engine(compile(&prioritised(&[("a-low", 1), ("z-high", 50)])));
    let (fired, trace) = decide_with_cart(&engine);
    assert_eq!(fired.as_deref(), Some("z-high"), "{trace}");
    assert_eq!(trace.verdict("z-high"), Some(&Verdict::Fired), "{trace}");
    assert_eq!(
        trace.verdict("a-low"),
        Some(&Verdict::Outranked {
            by: RuleId::parse("z-high").unwrap()
        }),
        "{trace}"
    );
}

#[test]
fn when_two_live_rules_of_equal_priority_hold_the_smaller_id_fires() {
    let engine = engine(compile(&prioritised(&[("beta", 7), ("alpha", 7)])));
    let (fired, trace) = decide_with_cart(&engine);
    assert_eq!(fired.as_deref(), Some("alpha"), "{trace}");
    assert_eq!(
        trace.verdict("beta"),
        Some(&Verdict::Outranked {
            by: RuleId::parse("alpha").unwrap()
        }),
        "{trace}"
    );
}

#[test]
fn a_rule_that_is_not_live_outranks_nothing() {
    let file = prioritised(&[("draft-high", 100), ("live-low", 1)]).replacen(
        r#"status = "live""#,
        r#"status = "draft""#,
        1,
    );
    let engine = engine(compile(&file));
    let (fired, trace) = decide_with_cart(&engine);
    assert_eq!(fired.as_deref(), Some("live-low"), "{trace}");
    assert_eq!(
        trace.verdict("draft-high"),
        Some(&Verdict::NotLive {
            status: Status::Draft
        }),
        "{trace}"
    );
}
