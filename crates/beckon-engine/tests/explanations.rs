//! Explanations stay true when a guardrail stops everything: each rule still says whether it
//! was out of scope, outside its schedule, failing a condition, or held.

use std::time::Duration;

use beckon_engine::*;

#[test]
fn a_lasting_guardrail_still_explains_each_rule_for_what_it_is() {
    let rules = RuleSet::from_toml(
        r#"
[[rules]]
id = "pricing-only"
name = "Pricing only"
status = "live"
pages = ["pricing"]
when = { var = "cart.items", op = "gte", value = 0 }
message = { type = "text", text = "Plans?" }

[[rules]]
id = "holds"
name = "Holds"
status = "live"
when = { var = "cart.items", op = "gte", value = 0 }
message = { type = "text", text = "Hi" }

[[rules]]
id = "fails"
name = "Fails"
status = "live"
when = { var = "cart.items", op = "gt", value = 5 }
message = { type = "text", text = "Big cart" }
"#,
        Tz::UTC,
    )
    .unwrap();
    let policy = Policy {
        holdout_percent: 0.0,
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    let engine = Engine::new(SiteId::parse("shop").unwrap(), policy, rules).unwrap();
    let mut profile = Profile::default();
    let t0 = Timestamp::from_secs(1_800_000_000);
    let visitor = VisitorId::parse("v").unwrap();
    let mut session = engine.start_session(visitor, SessionStart::default(), &mut profile, t0);
    let cart_page = Event::PageView(PageView {
        path: "/cart".into(),
        page_type: Some(PageType::Cart),
        ..PageView::default()
    });
    // A chat with a conversation running stays open across the page change below.
    engine.decide(&mut session, &mut profile, &Event::ChatOpened, t0);
    engine.decide(&mut session, &mut profile, &Event::ConversationStarted, t0);
    let (decision, trace) =
        engine.explain(&mut session, &mut profile, &cart_page, t0.plus_ms(1000));
    assert!(matches!(
        decision.outcome,
        Outcome::Nothing {
            held: Some(Suppression::ChatOpen)
        }
    ));
    assert_eq!(
        trace.verdict("pricing-only"),
        Some(&Verdict::OutOfScope {
            page_type: Some(PageType::Cart)
        })
    );
    assert_eq!(
        trace.verdict("holds"),
        Some(&Verdict::Held {
            by: Suppression::ChatOpen
        })
    );
    assert!(
        matches!(trace.verdict("fails"), Some(Verdict::ConditionFailed { why }) if why.contains("cart.items"))
    );
}
