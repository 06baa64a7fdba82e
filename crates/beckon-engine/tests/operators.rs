//! The rule language's operators, as a site owner experiences them: a one-rule set is compiled
//! from TOML, a visitor does a few things, and the rule either fires on the last of them or not.
//!
//! Covers every operator of `Op::ALL` (a true case, a false case and the missing-value case for
//! each), the symbolic aliases, `contains` on text, on sets of tracked names and on page types,
//! `in` with page types, dynamic variables (traits, event properties) including a type mismatch
//! at run time, dates with `before` / `after` / `between`, continuously measured variables, and
//! nested `all` / `any` / `not`.

use std::time::Duration;

use beckon_engine::rules::Op;
use beckon_engine::*;

/// 2026-03-10T12:00:00Z, a Tuesday: the instant every visit in this file starts.
const T0_SECS: i64 = 1_773_144_000;
const SECOND: i64 = 1_000;
const DAY: i64 = 24 * 60 * 60 * SECOND;

/// The person at the page moves the pointer as the visit starts, so that the rule under test
/// is not held back for want of a person. An engine without rules decides on it: a condition
/// true from the start must still turn true on a case's own last event.
fn touch(session: &mut Session, profile: &mut Profile, t0: Timestamp) {
    let bare = Engine::new(
        SiteId::parse("shop").unwrap(),
        Policy::default(),
        RuleSet::default(),
    )
    .expect("the default policy is valid");
    bare.decide(session, profile, &Event::Activity, t0);
}

/// Compiles a one-rule set whose conditions are `when_toml` (an inline TOML table).
fn one_rule(when_toml: &str, tz: Tz) -> RuleSet {
    let text = format!(
        r#"
[[rules]]
id = "under-test"
name = "The condition under test"
status = "live"
when = {when_toml}
message = {{ type = "text", text = "Can we help?" }}
"#
    );
    RuleSet::from_toml(&text, tz)
        .unwrap_or_else(|e| panic!("the rule should compile, but: {e}\n{text}"))
}

/// Runs a visit that starts at `T0_SECS` through `setup` (events with their offsets in ms from
/// the start) and returns whether the last decision fired the rule, with its explanation. The
/// rule must not fire before the last event: each case makes its condition turn true exactly
/// there (or never).
fn fires_in(tz: Tz, when_toml: &str, setup: &[(Event, i64)]) -> (bool, Trace) {
    let (last, before) = setup.split_last().expect("a case needs at least one event");
    let policy = Policy {
        holdout_percent: 0.0,
        arrival_grace: Duration::ZERO,
        timezone: tz.name().to_owned(),
        ..Policy::default()
    };
    let engine = Engine::new(
        SiteId::parse("shop").unwrap(),
        policy,
        one_rule(when_toml, tz),
    )
    .expect("the policy is valid");
    let mut profile = Profile::default();
    let t0 = Timestamp::from_secs(T0_SECS);
    let visitor = VisitorId::parse("visitor-1").unwrap();
    let mut session = engine.start_session(visitor, SessionStart::default(), &mut profile, t0);
    touch(&mut session, &mut profile, t0);
    for (i, (event, offset)) in before.iter().enumerate() {
        let (decision, trace) =
            engine.explain(&mut session, &mut profile, event, t0.plus_ms(*offset));
        assert!(
            !decision.outcome.is_visible(),
            "`{when_toml}` fired early, on setup event {i} ({event:?}); a case must make its \
             condition turn true on its last event only\n{trace}"
        );
    }
    let (event, offset) = last;
    let (decision, trace) = engine.explain(&mut session, &mut profile, event, t0.plus_ms(*offset));
    let fired = matches!(
        decision.outcome,
        Outcome::Fire { rule, .. } if rule.id.as_str() == "under-test"
    );
    (fired, trace)
}

/// Checks whether the rule `when_toml` fires on the last of the `setup` events.
fn check(when_toml: &str, setup: &[(Event, i64)], expect_fire: bool) {
    check_in(Tz::UTC, when_toml, setup, expect_fire);
}

/// [`check`], with the rule compiled in the site time zone `tz`.
fn check_in(tz: Tz, when_toml: &str, setup: &[(Event, i64)], expect_fire: bool) {
    let (fired, trace) = fires_in(tz, when_toml, setup);
    assert_eq!(
        fired,
        expect_fire,
        "`{when_toml}` {} after {setup:?}\n{trace}",
        if fired {
            "fired, but should not have"
        } else {
            "did not fire, but should have"
        }
    );
}

// ---- events ---------------------------------------------------------------------------------

fn view(path: &str) -> Event {
    view_typed(path, None)
}

fn view_typed(path: &str, page_type: Option<PageType>) -> Event {
    Event::PageView(PageView {
        url: format!("https://shop.example{path}"),
        path: path.to_owned(),
        title: format!("Shop page {path}"),
        page_type,
        ..PageView::default()
    })
}

fn titled(title: &str) -> Event {
    Event::PageView(PageView {
        url: "https://shop.example/p".to_owned(),
        path: "/p".to_owned(),
        title: title.to_owned(),
        ..PageView::default()
    })
}

fn of_type(page_type: PageType) -> Event {
    view_typed(&format!("/{}", page_type.as_str()), Some(page_type))
}

fn cart(value: f64) -> Event {
    cart_in(value, "EUR")
}

fn cart_in(value: f64, currency: &str) -> Event {
    Event::Cart(CartUpdate {
        value,
        currency: currency.to_owned(),
        items: 1,
    })
}

fn identify(key: &str, value: AttrValue) -> Event {
    Event::Identify {
        traits: vec![(key.to_owned(), value)],
    }
}

fn track(name: &str, props: &[(&str, AttrValue)]) -> Event {
    Event::Track {
        name: name.to_owned(),
        props: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

fn hover(element: &str) -> Event {
    Event::Hover(Tracked {
        element: element.to_owned(),
        item: None,
    })
}

fn click(element: &str) -> Event {
    Event::Click(Tracked {
        element: element.to_owned(),
        item: None,
    })
}

fn text(s: &str) -> AttrValue {
    AttrValue::Str(s.to_owned())
}

/// One event after a second: for conditions about state the visit starts with.
fn tick() -> [(Event, i64); 1] {
    [(Event::Tick, SECOND)]
}

// ---- one test per operator ------------------------------------------------------------------

#[test]
fn equals_holds_for_exactly_the_same_value() {
    let when = r#"{ var = "page.path", op = "equals", value = "/checkout" }"#;
    check(when, &[(view("/checkout"), SECOND)], true);
    check(when, &[(view("/checkout/step-2"), SECOND)], false);
    check(when, &[(view("/cart"), SECOND)], false);
    // Missing: no page has been seen yet.
    check(when, &tick(), false);

    let when = r#"{ var = "cart.value", op = "equals", value = 50 }"#;
    check(when, &[(cart(50.0), SECOND)], true);
    check(when, &[(cart(50.5), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn not_equals_holds_for_a_different_value_and_never_for_a_missing_one() {
    let when = r#"{ var = "cart.currency", op = "not_equals", value = "USD" }"#;
    check(when, &[(cart_in(80.0, "EUR"), SECOND)], true);
    check(when, &[(cart_in(80.0, "USD"), SECOND)], false);
    // Without a cart there is no currency: "not USD" says nothing about it.
    check(when, &tick(), false);
}

#[test]
fn contains_finds_a_substring_of_text() {
    let when = r#"{ var = "page.title", op = "contains", value = "Shoes" }"#;
    check(when, &[(titled("Red Shoes | Shop"), SECOND)], true);
    check(when, &[(titled("Hats | Shop"), SECOND)], false);
    check(when, &[(titled("red shoes"), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn not_contains_holds_when_the_text_lacks_the_substring_and_never_on_a_missing_value() {
    let when = r#"{ var = "page.url", op = "not_contains", value = "utm_" }"#;
    check(when, &[(view("/products?color=red"), SECOND)], true);
    check(when, &[(view("/products?utm_source=news"), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn starts_with_tests_the_beginning_of_text() {
    let when = r#"{ var = "page.path", op = "starts_with", value = "/products/" }"#;
    check(when, &[(view("/products/red-shoes"), SECOND)], true);
    check(when, &[(view("/shop/products/red-shoes"), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn ends_with_tests_the_end_of_text() {
    let when = r#"{ var = "page.path", op = "ends_with", value = "/checkout" }"#;
    check(when, &[(view("/shop/checkout"), SECOND)], true);
    check(when, &[(view("/shop/checkout/done"), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn matches_finds_a_regular_expression_anywhere_in_the_text() {
    let when = r#"{ var = "page.path", op = "matches", value = "^/products/[0-9]+$" }"#;
    check(when, &[(view("/products/42"), SECOND)], true);
    check(when, &[(view("/products/red-shoes"), SECOND)], false);
    check(when, &tick(), false);

    // Unanchored, a pattern matches anywhere.
    let when = r#"{ var = "page.url", op = "matches", value = "sale|promo" }"#;
    check(when, &[(view("/summer-promo/shoes"), SECOND)], true);
    check(when, &[(view("/shoes"), SECOND)], false);
}

#[test]
fn in_holds_for_a_member_of_the_list() {
    let when = r#"{ var = "page.type", op = "in", value = ["cart", "checkout"] }"#;
    check(when, &[(of_type(PageType::Checkout), SECOND)], true);
    check(when, &[(of_type(PageType::Cart), SECOND)], true);
    check(when, &[(of_type(PageType::Product), SECOND)], false);
    // No page yet: no page type.
    check(when, &tick(), false);

    let when = r#"{ var = "cart.currency", op = "in", value = ["EUR", "GBP"] }"#;
    check(when, &[(cart_in(10.0, "GBP"), SECOND)], true);
    check(when, &[(cart_in(10.0, "USD"), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn not_in_holds_outside_the_list_and_never_on_a_missing_value() {
    let when = r#"{ var = "page.type", op = "not_in", value = ["cart", "checkout"] }"#;
    check(when, &[(of_type(PageType::Product), SECOND)], true);
    check(when, &[(of_type(PageType::Cart), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn gt_is_strictly_greater() {
    let when = r#"{ var = "cart.value", op = "gt", value = 50 }"#;
    check(when, &[(cart(80.0), SECOND)], true);
    check(when, &[(cart(50.0), SECOND)], false);
    check(when, &[(cart(12.5), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn gte_includes_the_bound() {
    let when = r#"{ var = "cart.value", op = "gte", value = 50 }"#;
    check(when, &[(cart(50.0), SECOND)], true);
    check(when, &[(cart(49.99), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn lt_is_strictly_less_and_a_missing_value_is_not_zero() {
    let when = r#"{ var = "cart.value", op = "lt", value = 50 }"#;
    check(when, &[(cart(49.99), SECOND)], true);
    check(when, &[(cart(50.0), SECOND)], false);
    // Without a cart the value is missing, not 0: "less than 50" does not hold.
    check(when, &tick(), false);
}

#[test]
fn lte_includes_the_bound_and_a_missing_value_is_not_zero() {
    let when = r#"{ var = "cart.value", op = "lte", value = 50 }"#;
    check(when, &[(cart(50.0), SECOND)], true);
    check(when, &[(cart(50.01), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn between_includes_both_bounds() {
    let when = r#"{ var = "cart.value", op = "between", value = [20, 50] }"#;
    check(when, &[(cart(20.0), SECOND)], true);
    check(when, &[(cart(35.0), SECOND)], true);
    check(when, &[(cart(50.0), SECOND)], true);
    check(when, &[(cart(19.99), SECOND)], false);
    check(when, &[(cart(50.01), SECOND)], false);
    check(when, &tick(), false);

    let when = r#"{ var = "cart.value", op = "between", value = [9.5, 10.25] }"#;
    check(when, &[(cart(10.0), SECOND)], true);
    check(when, &[(cart(10.5), SECOND)], false);
}

#[test]
fn exists_holds_when_the_variable_has_a_value() {
    for when in [
        r#"{ var = "cart.value", op = "exists" }"#,
        r#"{ var = "cart.value", op = "exists", value = true }"#,
    ] {
        check(when, &[(cart(0.0), SECOND)], true);
        check(when, &tick(), false);
    }
}

#[test]
fn exists_false_holds_when_the_variable_has_no_value() {
    let when = r#"{ var = "cart.value", op = "exists", value = false }"#;
    check(when, &tick(), true);
    check(when, &[(cart(30.0), SECOND)], false);

    let when = r#"{ var = "visitor.traits.email", op = "exists", value = false }"#;
    check(when, &tick(), true);
    check(
        when,
        &[(identify("email", text("a@b.example")), SECOND)],
        false,
    );
}

#[test]
fn before_holds_for_an_instant_strictly_earlier_than_the_date() {
    let when = r#"{ var = "time.date", op = "before", value = "2026-03-11" }"#;
    check(when, &tick(), true);
    check(when, &[(Event::Tick, DAY)], false);

    // Strict at the exact instant.
    let when = r#"{ var = "time.date", op = "before", value = "2026-03-10T12:00:01Z" }"#;
    check(when, &[(Event::Tick, 999)], true);
    check(when, &[(Event::Tick, SECOND)], false);

    // A first visit has no previous visit: last_seen is missing.
    let when = r#"{ var = "visitor.last_seen", op = "before", value = "2100-01-01" }"#;
    check(when, &tick(), false);
}

#[test]
fn after_holds_for_an_instant_strictly_later_than_the_date() {
    let when = r#"{ var = "time.date", op = "after", value = "2026-03-11" }"#;
    check(when, &tick(), false);
    check(when, &[(Event::Tick, 2 * DAY)], true);

    let when = r#"{ var = "time.date", op = "after", value = "2026-03-10T12:00:01Z" }"#;
    check(when, &[(Event::Tick, SECOND)], false);
    check(when, &[(Event::Tick, SECOND + 1)], true);

    let when = r#"{ var = "visitor.last_seen", op = "after", value = "2000-01-01" }"#;
    check(when, &tick(), false);
}

/// Every operator except `exists` is false on a value the visitor never gave, whatever it asks.
#[test]
fn no_operator_but_exists_holds_on_a_missing_value() {
    for op in Op::ALL {
        let name = op.as_str();
        let when = match op {
            Op::Equals | Op::NotEquals | Op::Contains | Op::NotContains | Op::StartsWith => {
                format!(r#"{{ var = "visitor.traits.plan", op = "{name}", value = "pro" }}"#)
            }
            Op::EndsWith | Op::Matches => {
                format!(r#"{{ var = "visitor.traits.plan", op = "{name}", value = "o" }}"#)
            }
            Op::In | Op::NotIn => {
                format!(r#"{{ var = "visitor.traits.plan", op = "{name}", value = ["pro"] }}"#)
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                format!(r#"{{ var = "visitor.traits.seats", op = "{name}", value = 3 }}"#)
            }
            Op::Between => {
                r#"{ var = "visitor.traits.seats", op = "between", value = [-1000, 1000] }"#
                    .to_owned()
            }
            Op::Before | Op::After => {
                format!(r#"{{ var = "visitor.last_seen", op = "{name}", value = "2026-01-01" }}"#)
            }
            Op::Exists => {
                check(
                    r#"{ var = "visitor.traits.plan", op = "exists" }"#,
                    &tick(),
                    false,
                );
                check(
                    r#"{ var = "visitor.traits.plan", op = "exists", value = false }"#,
                    &tick(),
                    true,
                );
                continue;
            }
        };
        check(&when, &tick(), false);
        // ... and the same condition does hold once `not` turns it around.
        check(&format!("{{ not = {when} }}"), &tick(), true);
    }
}

// ---- aliases --------------------------------------------------------------------------------

#[test]
fn symbolic_aliases_mean_the_same_as_the_named_operators() {
    let cases: [(&str, f64, bool); 12] = [
        ("==", 50.0, true),
        ("==", 51.0, false),
        ("!=", 51.0, true),
        ("!=", 50.0, false),
        (">", 51.0, true),
        (">", 50.0, false),
        (">=", 50.0, true),
        (">=", 49.0, false),
        ("<", 49.0, true),
        ("<", 50.0, false),
        ("<=", 50.0, true),
        ("<=", 51.0, false),
    ];
    for (symbol, value, expect) in cases {
        let when = format!(r#"{{ var = "cart.value", op = "{symbol}", value = 50 }}"#);
        check(&when, &[(cart(value), SECOND)], expect);
    }
    check(
        r#"{ var = "page.path", op = "==", value = "/cart" }"#,
        &[(view("/cart"), SECOND)],
        true,
    );
    check(
        r#"{ var = "page.path", op = "!=", value = "/cart" }"#,
        &[(view("/cart"), SECOND)],
        false,
    );
}

#[test]
fn the_american_spelling_behavior_reads_the_same_variables() {
    let when = r#"{ var = "behavior.scroll", op = "gte", value = 60 }"#;
    check(when, &[(Event::Scroll { depth: 75 }, SECOND)], true);
    check(when, &[(Event::Scroll { depth: 40 }, SECOND)], false);
}

// ---- contains on sets -----------------------------------------------------------------------

#[test]
fn contains_on_hovered_elements_is_membership_of_a_tracked_name() {
    let when = r#"{ var = "behaviour.hovered", op = "contains", value = "pricing-table" }"#;
    check(when, &[(hover("pricing-table"), SECOND)], true);
    check(
        when,
        &[(hover("faq"), SECOND), (hover("pricing-table"), 2 * SECOND)],
        true,
    );
    check(when, &[(hover("faq"), SECOND)], false);
    // A name, not a substring: another element whose name merely contains it does not count.
    check(when, &[(hover("pricing-table-v2"), SECOND)], false);
    check(when, &[(hover("pricing"), SECOND)], false);
    // A click is not a hover.
    check(when, &[(click("pricing-table"), SECOND)], false);
}

#[test]
fn not_contains_on_hovered_elements_holds_until_the_element_is_hovered() {
    let when = r#"{ var = "behaviour.hovered", op = "not_contains", value = "pricing-table" }"#;
    check(when, &[(hover("faq"), SECOND)], true);
    check(when, &[(hover("pricing-table"), SECOND)], false);
}

#[test]
fn contains_on_clicked_elements_counts_clicks_only() {
    let when = r#"{ var = "behaviour.clicked", op = "contains", value = "add-to-cart" }"#;
    check(when, &[(click("add-to-cart"), SECOND)], true);
    check(when, &[(hover("add-to-cart"), SECOND)], false);
}

#[test]
fn contains_on_tracked_events_is_membership_of_an_event_name() {
    let when = r#"{ var = "event.tracked", op = "contains", value = "trial_started" }"#;
    check(when, &[(track("trial_started", &[]), SECOND)], true);
    check(
        when,
        &[
            (track("pricing_viewed", &[]), SECOND),
            (track("trial_started", &[]), 2 * SECOND),
        ],
        true,
    );
    check(when, &[(track("trial_started_v2", &[]), SECOND)], false);
    check(when, &[(track("trial", &[]), SECOND)], false);
    check(when, &tick(), false);

    let when = r#"{ var = "event.tracked", op = "not_contains", value = "trial_started" }"#;
    check(when, &[(track("pricing_viewed", &[]), SECOND)], true);
    check(when, &[(track("trial_started", &[]), SECOND)], false);
}

#[test]
fn contains_on_page_types_seen_remembers_every_page_of_the_visit() {
    let when = r#"{ var = "behaviour.page_types", op = "contains", value = "pricing" }"#;
    check(when, &[(of_type(PageType::Pricing), SECOND)], true);
    check(
        when,
        &[
            (of_type(PageType::Home), SECOND),
            (of_type(PageType::Product), 2 * SECOND),
        ],
        false,
    );
    check(when, &tick(), false);

    // Seen earlier in the visit, still counted on a later page.
    let when = r#"{ all = [
        { var = "behaviour.page_types", op = "contains", value = "pricing" },
        { var = "page.type", op = "equals", value = "home" },
    ] }"#;
    check(
        when,
        &[
            (of_type(PageType::Pricing), SECOND),
            (of_type(PageType::Home), 2 * SECOND),
        ],
        true,
    );

    let when = r#"{ var = "behaviour.page_types", op = "not_contains", value = "checkout" }"#;
    check(when, &[(of_type(PageType::Cart), SECOND)], true);
    check(when, &[(of_type(PageType::Checkout), SECOND)], false);
}

#[test]
fn page_types_compare_by_name_and_an_undeclared_page_is_other() {
    let when = r#"{ var = "page.type", op = "in", value = ["pricing", "product"] }"#;
    check(when, &[(of_type(PageType::Pricing), SECOND)], true);
    check(when, &[(of_type(PageType::Home), SECOND)], false);

    let when = r#"{ var = "page.type", op = "equals", value = "other" }"#;
    check(when, &[(view("/about"), SECOND)], true);
    check(when, &[(of_type(PageType::Article), SECOND)], false);

    let when = r#"{ var = "page.type", op = "not_equals", value = "checkout" }"#;
    check(when, &[(of_type(PageType::Cart), SECOND)], true);
    check(when, &[(of_type(PageType::Checkout), SECOND)], false);
    check(when, &tick(), false);
}

#[test]
fn weekday_and_device_type_compare_by_name() {
    // The visit starts on a Tuesday, at noon UTC, on a desktop.
    check(
        r#"{ var = "time.weekday", op = "equals", value = "tue" }"#,
        &tick(),
        true,
    );
    check(
        r#"{ var = "time.weekday", op = "in", value = ["sat", "sun"] }"#,
        &tick(),
        false,
    );
    check(
        r#"{ var = "time.hour", op = "between", value = [9, 17] }"#,
        &tick(),
        true,
    );
    check(
        r#"{ var = "device.type", op = "equals", value = "desktop" }"#,
        &tick(),
        true,
    );
    check(
        r#"{ var = "device.type", op = "equals", value = "mobile" }"#,
        &tick(),
        false,
    );
}

// ---- dynamic variables ----------------------------------------------------------------------

#[test]
fn a_trait_from_identify_can_be_tested_like_text() {
    let when = r#"{ var = "visitor.traits.plan", op = "equals", value = "pro" }"#;
    check(when, &[(identify("plan", text("pro")), SECOND)], true);
    check(when, &[(identify("plan", text("free")), SECOND)], false);
    check(when, &tick(), false);

    let when = r#"{ var = "visitor.traits.plan", op = "in", value = ["pro", "team"] }"#;
    check(when, &[(identify("plan", text("team")), SECOND)], true);
    check(when, &[(identify("plan", text("free")), SECOND)], false);

    let when = r#"{ var = "visitor.traits.email", op = "ends_with", value = "@example.com" }"#;
    check(
        when,
        &[(identify("email", text("ann@example.com")), SECOND)],
        true,
    );
    check(
        when,
        &[(identify("email", text("ann@example.org")), SECOND)],
        false,
    );

    // A later identify replaces the trait.
    let when = r#"{ var = "visitor.traits.plan", op = "equals", value = "pro" }"#;
    check(
        when,
        &[
            (identify("plan", text("free")), SECOND),
            (identify("plan", text("pro")), 2 * SECOND),
        ],
        true,
    );
}

/// A trait's type is known only at run time, so a list may mix types; whether a value is outside
/// the list must not depend on the order the list is written in.
#[test]
fn not_in_on_a_trait_with_a_mixed_list_does_not_depend_on_the_order_of_the_list() {
    let free = [(identify("plan", text("free")), SECOND)];
    let pro = [(identify("plan", text("pro")), SECOND)];
    for when in [
        r#"{ var = "visitor.traits.plan", op = "not_in", value = ["pro", 3] }"#,
        r#"{ var = "visitor.traits.plan", op = "not_in", value = [3, "pro"] }"#,
    ] {
        check(when, &free, true);
        check(when, &pro, false);
    }
}

#[test]
fn a_numeric_trait_takes_numeric_operators() {
    let when = r#"{ var = "visitor.traits.seats", op = "gt", value = 5 }"#;
    check(
        when,
        &[(identify("seats", AttrValue::Num(10.0)), SECOND)],
        true,
    );
    check(
        when,
        &[(identify("seats", AttrValue::Num(5.0)), SECOND)],
        false,
    );

    let when = r#"{ var = "visitor.traits.seats", op = "between", value = [2, 10] }"#;
    check(
        when,
        &[(identify("seats", AttrValue::Num(2.0)), SECOND)],
        true,
    );
    check(
        when,
        &[(identify("seats", AttrValue::Num(11.0)), SECOND)],
        false,
    );

    let when = r#"{ var = "visitor.traits.beta", op = "equals", value = true }"#;
    check(
        when,
        &[(identify("beta", AttrValue::Bool(true)), SECOND)],
        true,
    );
    check(
        when,
        &[(identify("beta", AttrValue::Bool(false)), SECOND)],
        false,
    );
}

#[test]
fn a_trait_of_another_type_than_the_condition_expects_is_false_both_ways() {
    // Known only at run time: a number where text was expected, and the reverse.
    let seats_as_text = identify("seats", text("10"));
    check(
        r#"{ var = "visitor.traits.seats", op = "gt", value = 5 }"#,
        &[(seats_as_text.clone(), SECOND)],
        false,
    );
    check(
        r#"{ var = "visitor.traits.seats", op = "lte", value = 5 }"#,
        &[(seats_as_text.clone(), SECOND)],
        false,
    );
    check(
        r#"{ var = "visitor.traits.seats", op = "between", value = [0, 100] }"#,
        &[(seats_as_text, SECOND)],
        false,
    );

    let plan_as_number = identify("plan", AttrValue::Num(3.0));
    for when in [
        r#"{ var = "visitor.traits.plan", op = "equals", value = "pro" }"#,
        r#"{ var = "visitor.traits.plan", op = "not_equals", value = "pro" }"#,
        r#"{ var = "visitor.traits.plan", op = "contains", value = "pro" }"#,
        r#"{ var = "visitor.traits.plan", op = "not_contains", value = "pro" }"#,
        r#"{ var = "visitor.traits.plan", op = "starts_with", value = "p" }"#,
        r#"{ var = "visitor.traits.plan", op = "matches", value = ".*" }"#,
        r#"{ var = "visitor.traits.plan", op = "not_in", value = ["pro", "team"] }"#,
    ] {
        check(when, &[(plan_as_number.clone(), SECOND)], false);
    }
    // It exists, though.
    check(
        r#"{ var = "visitor.traits.plan", op = "exists" }"#,
        &[(plan_as_number, SECOND)],
        true,
    );
}

#[test]
fn an_event_property_is_read_from_the_custom_event_being_handled() {
    let when = r#"{ var = "event.props.amount", op = "gte", value = 100 }"#;
    check(
        when,
        &[(track("quote", &[("amount", AttrValue::Num(150.0))]), SECOND)],
        true,
    );
    check(
        when,
        &[(track("quote", &[("amount", AttrValue::Num(99.0))]), SECOND)],
        false,
    );
    // Missing: an event without the property, or an event that is not a custom one.
    check(
        when,
        &[(track("quote", &[("currency", text("EUR"))]), SECOND)],
        false,
    );
    check(when, &tick(), false);
    // A type mismatch at run time is false.
    check(
        when,
        &[(track("quote", &[("amount", text("150"))]), SECOND)],
        false,
    );

    let when = r#"{ all = [
        { var = "event.name", op = "equals", value = "payment_failed" },
        { var = "event.props.reason", op = "equals", value = "card_declined" },
    ] }"#;
    check(
        when,
        &[(
            track("payment_failed", &[("reason", text("card_declined"))]),
            SECOND,
        )],
        true,
    );
    check(
        when,
        &[(
            track("payment_failed", &[("reason", text("expired"))]),
            SECOND,
        )],
        false,
    );
    check(
        when,
        &[(
            track("checkout_failed", &[("reason", text("card_declined"))]),
            SECOND,
        )],
        false,
    );
}

// ---- dates ----------------------------------------------------------------------------------

#[test]
fn between_on_dates_includes_both_instants() {
    let when = r#"{ var = "time.date", op = "between", value = ["2026-03-01", "2026-03-20"] }"#;
    check(when, &tick(), true);
    check(when, &[(Event::Tick, 11 * DAY)], false);

    let when = r#"{ var = "time.date", op = "between", value = ["2026-03-10T12:00:01Z", "2026-03-10T12:00:02Z"] }"#;
    check(when, &[(Event::Tick, 999)], false);
    check(when, &[(Event::Tick, SECOND)], true);
    check(when, &[(Event::Tick, 2 * SECOND)], true);
    check(when, &[(Event::Tick, 2 * SECOND + 1)], false);

    let when =
        r#"{ var = "visitor.last_seen", op = "between", value = ["2000-01-01", "2100-01-01"] }"#;
    check(when, &tick(), false);
}

#[test]
fn first_seen_is_compared_with_dates() {
    // A first visit: the visitor is first seen when it starts, 2026-03-10T12:00:00Z.
    check(
        r#"{ var = "visitor.first_seen", op = "before", value = "2026-03-11" }"#,
        &tick(),
        true,
    );
    check(
        r#"{ var = "visitor.first_seen", op = "before", value = "2026-03-10" }"#,
        &tick(),
        false,
    );
    check(
        r#"{ var = "visitor.first_seen", op = "after", value = "2026-03-09" }"#,
        &tick(),
        true,
    );
    check(
        r#"{ var = "visitor.first_seen", op = "after", value = "2026-03-10T12:00:00Z" }"#,
        &tick(),
        false,
    );
    check(
        r#"{ var = "visitor.first_seen", op = "between", value = ["2026-03-10", "2026-03-10T12:00:00Z"] }"#,
        &tick(),
        true,
    );
    check(
        r#"{ var = "visitor.first_seen", op = "between", value = ["2026-02-01", "2026-03-01"] }"#,
        &tick(),
        false,
    );
}

#[test]
fn a_date_without_a_time_is_read_in_the_site_time_zone() {
    // The visit starts at 2026-03-10T12:00:00Z, which is already 01:00 on 2026-03-11 in
    // Auckland (UTC+13): before that date in UTC, not in Auckland.
    let auckland: Tz = "Pacific/Auckland".parse().unwrap();
    let when = r#"{ var = "time.date", op = "before", value = "2026-03-11" }"#;
    check_in(auckland, when, &tick(), false);
    check_in(Tz::UTC, when, &tick(), true);
    // An explicit offset is taken as written, whatever the zone.
    let when = r#"{ var = "time.date", op = "after", value = "2026-03-10T13:00:00+01:00" }"#;
    check_in(auckland, when, &tick(), true);
    check_in(Tz::UTC, when, &tick(), true);
}

// ---- continuously measured variables --------------------------------------------------------

#[test]
fn numeric_operators_on_time_on_page_count_visible_seconds() {
    let when = r#"{ var = "time.on_page", op = "gte", value = 30 }"#;
    check(when, &[(view("/p"), 0), (Event::Tick, 29_999)], false);
    check(when, &[(view("/p"), 0), (Event::Tick, 30_000)], true);

    let when = r#"{ var = "time.on_page", op = "between", value = [10, 20] }"#;
    check(when, &[(view("/p"), 0), (Event::Tick, 15_000)], true);
    check(when, &[(view("/p"), 0), (Event::Tick, 25_000)], false);

    let when = r#"{ var = "time.on_page", op = "lt", value = 10 }"#;
    check(when, &[(Event::Tick, 9_000)], true);
    check(when, &[(Event::Tick, 11_000)], false);

    // Hidden time does not count: visible 1 s, hidden almost a minute, visible again 5 s.
    let when = r#"{ var = "time.on_page", op = "gte", value = 6 }"#;
    let visit = [
        (view("/p"), 0),
        (Event::Visibility { visible: false }, SECOND),
        (Event::Visibility { visible: true }, 60 * SECOND),
        (Event::Tick, 65 * SECOND),
    ];
    check(when, &visit, true);
    check(
        r#"{ var = "time.on_page", op = "gte", value = 7 }"#,
        &visit,
        false,
    );
}

// ---- all / any / not ------------------------------------------------------------------------

#[test]
fn all_holds_only_when_every_child_holds() {
    let when = r#"{ all = [
        { var = "cart.value", op = "gt", value = 50 },
        { var = "cart.currency", op = "equals", value = "EUR" },
    ] }"#;
    check(when, &[(cart_in(80.0, "EUR"), SECOND)], true);
    check(when, &[(cart_in(80.0, "USD"), SECOND)], false);
    check(when, &[(cart_in(20.0, "EUR"), SECOND)], false);
}

#[test]
fn any_holds_when_at_least_one_child_holds() {
    let when = r#"{ any = [
        { var = "cart.value", op = "gt", value = 50 },
        { var = "cart.currency", op = "equals", value = "EUR" },
    ] }"#;
    check(when, &[(cart_in(80.0, "USD"), SECOND)], true);
    check(when, &[(cart_in(20.0, "EUR"), SECOND)], true);
    check(when, &[(cart_in(20.0, "USD"), SECOND)], false);
}

#[test]
fn not_around_a_failing_leaf_holds() {
    let when = r#"{ not = { var = "cart.value", op = "gt", value = 100 } }"#;
    check(when, &[(cart(50.0), SECOND)], true);
    check(when, &[(cart(150.0), SECOND)], false);
    // not(false on a missing value) is true: "not a big cart" holds without a cart.
    check(when, &tick(), true);
}

#[test]
fn not_not_is_the_condition_itself() {
    let when = r#"{ not = { not = { var = "cart.value", op = "gt", value = 100 } } }"#;
    check(when, &[(cart(150.0), SECOND)], true);
    check(when, &[(cart(50.0), SECOND)], false);
}

#[test]
fn not_around_any_holds_when_no_child_holds() {
    let when = r#"{ not = { any = [
        { var = "page.type", op = "equals", value = "checkout" },
        { var = "page.type", op = "equals", value = "cart" },
    ] } }"#;
    check(when, &[(of_type(PageType::Product), SECOND)], true);
    check(when, &[(of_type(PageType::Cart), SECOND)], false);
    check(when, &[(of_type(PageType::Checkout), SECOND)], false);
}

#[test]
fn any_holds_when_its_only_true_child_is_deep_inside() {
    // Every shallow child is false; the one that holds is four levels down, under a not.
    let when = r#"{ any = [
        { var = "cart.value", op = "gt", value = 1000 },
        { var = "page.type", op = "equals", value = "checkout" },
        { all = [
            { var = "cart.currency", op = "equals", value = "EUR" },
            { any = [
                { var = "cart.value", op = "lt", value = 5 },
                { not = { all = [
                    { var = "cart.value", op = "gte", value = 10 },
                    { var = "cart.value", op = "lte", value = 20 },
                ] } },
            ] },
        ] },
    ] }"#;
    // 80 EUR: not within [10, 20], so the deep not holds, so the any holds.
    check(when, &[(cart_in(80.0, "EUR"), SECOND)], true);
    // 15 EUR: within [10, 20], so the deep not fails, and nothing else holds.
    check(when, &[(cart_in(15.0, "EUR"), SECOND)], false);
    // 80 USD: the all fails on the currency.
    check(when, &[(cart_in(80.0, "USD"), SECOND)], false);
}

#[test]
fn all_fails_when_its_only_false_child_is_deep_inside() {
    let when = r#"{ all = [
        { var = "cart.value", op = "gt", value = 10 },
        { any = [
            { var = "page.type", op = "equals", value = "home" },
            { all = [
                { var = "cart.currency", op = "equals", value = "EUR" },
                { not = { var = "cart.value", op = "between", value = [40, 60] } },
            ] },
        ] },
    ] }"#;
    check(when, &[(cart_in(80.0, "EUR"), SECOND)], true);
    check(when, &[(cart_in(50.0, "EUR"), SECOND)], false);
}

#[test]
fn a_failed_condition_is_explained_by_its_path_and_the_value_seen() {
    let rules = one_rule(
        r#"{ all = [
            { var = "cart.value", op = "gt", value = 50 },
            { var = "page.type", op = "equals", value = "checkout" },
        ] }"#,
        Tz::UTC,
    );
    let policy = Policy {
        holdout_percent: 0.0,
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    let engine = Engine::new(SiteId::parse("shop").unwrap(), policy, rules).unwrap();
    let mut profile = Profile::default();
    let t0 = Timestamp::from_secs(T0_SECS);
    let mut session = engine.start_session(
        VisitorId::parse("visitor-1").unwrap(),
        SessionStart::default(),
        &mut profile,
        t0,
    );
    touch(&mut session, &mut profile, t0);
    engine.decide(
        &mut session,
        &mut profile,
        &of_type(PageType::Product),
        t0.plus_ms(SECOND),
    );
    let (decision, trace) = engine.explain(
        &mut session,
        &mut profile,
        &cart(80.0),
        t0.plus_ms(2 * SECOND),
    );
    assert!(!decision.outcome.is_visible());
    let Some(Verdict::ConditionFailed { why }) = trace.verdict("under-test") else {
        panic!("expected a failed condition, got {trace}");
    };
    assert!(why.contains("when.all[1]"), "{why}");
    assert!(why.contains("page.type"), "{why}");
    assert!(why.contains("product"), "{why}");
}

#[test]
fn a_date_covers_its_whole_day() {
    // The visit starts at 2026-03-10T12:00:00Z: during March 10th in UTC.
    check(
        r#"{ var = "time.date", op = "after", value = "2026-03-10" }"#,
        &[(Event::Tick, 0)],
        false,
    );
    check(
        r#"{ var = "time.date", op = "after", value = "2026-03-09" }"#,
        &[(Event::Tick, 0)],
        true,
    );
    check(
        r#"{ var = "time.date", op = "before", value = "2026-03-10" }"#,
        &[(Event::Tick, 0)],
        false,
    );
    check(
        r#"{ var = "time.date", op = "between", value = ["2026-03-01", "2026-03-10"] }"#,
        &[(Event::Tick, 0)],
        true,
    );
}

#[test]
fn rules_compiled_for_another_time_zone_are_refused_by_the_engine() {
    let paris: Tz = "Europe/Paris".parse().unwrap();
    let err = Engine::new(
        SiteId::parse("shop").unwrap(),
        Policy::default(),
        one_rule(r#"{ var = "cart.items", op = "gt", value = 0 }"#, paris),
    )
    .unwrap_err();
    assert_eq!(err.field, "timezone");
    assert!(err.reason.contains("Europe/Paris"), "{err}");
}
