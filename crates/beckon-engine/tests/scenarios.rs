//! The five moments of the seeds, played end to end against the example rules.
//!
//! Each scenario is a visitor doing what the seed article describes; time passes the way it
//! does in production: the server calls the engine on every event and, in between, only at the
//! `next_wake` the engine asked for (an `Event::Tick`). No instant is guessed: when a rule fires
//! on a timer, it fires at the wake the engine itself scheduled.
//!
//! The last scenario is the seed's "ghost greeter" failure: arriving on any page, nothing fires,
//! and no timer the engine sets fires anything within the arrival grace.

mod support;

use beckon_engine::rules::Message;
use beckon_engine::rules::message::{ButtonAction, render};
use beckon_engine::{Decision, Event, Outcome, PageType, SessionStart};
use support::*;

/// The message `v` sees: the fired message rendered with its session's context.
fn rendered(v: &Visitor, message: &Message) -> Message {
    let context = v.session.template_context(&v.profile);
    render(message, &context).expect("the message renders")
}

/// The message of a decision that fired `rule`; panics with the outcome otherwise.
fn fired<'e>(d: &Decision<'e>, rule: &str) -> &'e Message {
    match &d.outcome {
        Outcome::Fire { rule: r, message } if r.id.as_str() == rule => message,
        other => panic!("expected {rule} to fire, got {other:?}"),
    }
}

/// Ten minutes after `v`'s latest decision: long enough for any example rule's timer.
fn soon(v: &Visitor) -> beckon_engine::Timestamp {
    v.now.plus_ms(10 * MIN)
}

#[test]
fn a_cart_about_to_be_abandoned_gets_the_discount_offer() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "shopper", T0);
    v.send(product_page("boots"), at(0));
    assert_eq!(seen(&v.send(cart(2), at(12 * SEC))), quiet());
    let d = v.send(page_at("/cart", PageType::Cart), at(15 * SEC));
    assert_eq!(seen(&d), quiet());
    assert_eq!(
        d.next_wake, None,
        "on the cart page, only the visitor can change anything"
    );

    let d = v.send(Event::ExitIntent, at(40 * SEC));
    match rendered(&v, fired(&d, "cart-exit-offer")) {
        Message::Offer { text, code, .. } => {
            assert_eq!(code, "STAY10");
            assert!(text.contains("10% off the 2 items"), "{text}");
        }
        other => panic!("expected an offer, got {other:?}"),
    }
}

#[test]
fn leaving_with_an_empty_cart_gets_no_offer() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "browser", T0);
    v.send(page_at("/cart", PageType::Cart), at(0));
    v.send(cart(0), at(10 * SEC));
    assert_eq!(seen(&v.send(Event::ExitIntent, at(20 * SEC))), quiet());
}

#[test]
fn comparing_two_plans_on_the_pricing_page_gets_the_comparison_card() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "prospect", T0);
    v.send(page_at("/pricing", PageType::Pricing), at(0));
    v.send(hover("plan-card", "starter"), at(3 * SEC));
    let d = v.send(hover("plan-card", "growth"), at(6 * SEC));
    assert_eq!(seen(&d), quiet(), "two plans looked at, but only for 6 s");
    assert!(
        d.next_wake.is_some(),
        "the engine asks to look again when 10 s have passed"
    );

    let (when, d) = v.follow_wakes(soon(&v)).expect("the comparison fires");
    assert_eq!(when, at(10 * SEC));
    match fired(&d, "pricing-compare") {
        Message::Comparison { items, .. } => {
            let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
            assert_eq!(names, ["Starter", "Growth"]);
        }
        other => panic!("expected a comparison, got {other:?}"),
    }
}

#[test]
fn one_plan_looked_at_twice_is_not_a_comparison() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "prospect", T0);
    v.send(page_at("/pricing", PageType::Pricing), at(0));
    v.send(hover("plan-card", "growth"), at(3 * SEC));
    v.send(hover("plan-price", "growth"), at(6 * SEC));
    assert!(v.follow_wakes(soon(&v)).is_none());
}

#[test]
fn dwelling_on_a_product_gets_the_common_questions() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "reader", T0);
    assert_eq!(
        seen(&v.send(product_page("boots"), at(0))),
        held_at_arrival()
    );

    let (when, d) = v.follow_wakes(soon(&v)).expect("the questions card fires");
    assert_eq!(
        when,
        at(20 * SEC),
        "20 s on the page, the last 5 without moving"
    );
    match fired(&d, "product-questions") {
        Message::Card { buttons, .. } => {
            assert_eq!(buttons.len(), 3);
            assert!(buttons.iter().all(|b| b.action == ButtonAction::Chat));
        }
        other => panic!("expected a card, got {other:?}"),
    }
}

#[test]
fn a_visitor_busy_on_a_product_page_is_left_alone_until_they_pause() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "busy", T0);
    v.send(product_page("boots"), at(0));
    // Moving every 4 s for 40 s: never idle for 5 s, so never interrupted.
    for i in 1..=10 {
        let next = at(i * 4 * SEC);
        assert!(
            v.follow_wakes(next.plus_ms(-1)).is_none(),
            "interrupted before {next}"
        );
        v.send(Event::Activity, next);
    }
    let (when, d) = v.follow_wakes(soon(&v)).expect("the questions card fires");
    assert_eq!(when, at(45 * SEC), "5 s after the last movement");
    fired(&d, "product-questions");
}

/// The arrival-grace hold at `T0`, with the default grace of 5 s.
fn held_at_arrival() -> Seen {
    held(beckon_engine::Suppression::ArrivalGrace { until: at(5 * SEC) })
}

/// A visitor who left items in the cart three days ago comes back (in `language`); the widget
/// restores the cart on arrival. Returns what fires, and when.
fn welcome_back(language: Option<&str>) -> (i64, Message) {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "loyal", T0);
    v.send(product_page("boots"), at(0));
    v.send(cart(2), at(8 * SEC));
    v.send(page_at("/cart", PageType::Cart), at(10 * SEC));

    let back = at(3 * DAY);
    let start = SessionStart {
        language: language.map(str::to_owned),
        ..SessionStart::default()
    };
    v.return_with(start, back);
    assert_eq!(
        seen(&v.send(page(PageType::Home), back)),
        held(beckon_engine::Suppression::ArrivalGrace {
            until: back.plus_ms(5 * SEC)
        })
    );
    assert_eq!(
        seen(&v.send(cart(2), back.plus_ms(500))),
        quiet(),
        "not on arrival"
    );
    let (when, d) = v.follow_wakes(soon(&v)).expect("the welcome back fires");
    let message = rendered(&v, fired(&d, "welcome-back-cart"));
    (when.as_millis() - back.as_millis(), message)
}

#[test]
fn a_returning_visitor_with_items_in_the_cart_is_welcomed_back() {
    let (after, message) = welcome_back(None);
    assert_eq!(after, 5 * SEC, "after 5 s on the site");
    match message {
        Message::Text { text } => assert!(text.starts_with("Welcome back! Your 2 items"), "{text}"),
        other => panic!("expected a text, got {other:?}"),
    }
}

#[test]
fn a_returning_visitor_is_welcomed_back_in_their_language() {
    match welcome_back(Some("fr")).1 {
        Message::Text { text } => {
            assert!(text.starts_with("Bon retour ! Vos 2 articles"), "{text}")
        }
        other => panic!("expected a text, got {other:?}"),
    }
    // A regional variant falls back to its language.
    match welcome_back(Some("fr-CA")).1 {
        Message::Text { text } => assert!(text.starts_with("Bon retour !"), "{text}"),
        other => panic!("expected a text, got {other:?}"),
    }
    // A language without a translation gets the default message.
    match welcome_back(Some("de")).1 {
        Message::Text { text } => assert!(text.starts_with("Welcome back!"), "{text}"),
        other => panic!("expected a text, got {other:?}"),
    }
}

#[test]
fn a_first_time_visitor_with_items_is_not_welcomed_back() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "new", T0);
    v.send(page(PageType::Home), at(0));
    v.send(cart(2), at(SEC));
    assert!(v.follow_wakes(soon(&v)).is_none());
}

#[test]
fn a_deep_reader_of_a_long_article_is_offered_the_newsletter() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "reader", T0);
    v.send(page_at("/blog/choosing-boots", PageType::Article), at(0));
    v.send(Event::Scroll { depth: 30 }, at(4 * SEC));
    let d = v.send(Event::Scroll { depth: 65 }, at(9 * SEC));
    assert_eq!(seen(&d), quiet(), "deep, but only 9 s in");

    let (when, d) = v.follow_wakes(soon(&v)).expect("the e-mail capture fires");
    assert_eq!(when, at(15 * SEC));
    match fired(&d, "article-email-capture") {
        Message::EmailCapture {
            ask_name, consent, ..
        } => {
            assert!(*ask_name);
            assert!(!consent.is_empty());
        }
        other => panic!("expected an e-mail capture, got {other:?}"),
    }
}

#[test]
fn a_skimmer_of_an_article_is_not_offered_the_newsletter() {
    let e = demo_engine(policy());
    let mut v = Visitor::arrive(&e, "skimmer", T0);
    v.send(page_at("/blog/choosing-boots", PageType::Article), at(0));
    v.send(Event::Scroll { depth: 40 }, at(4 * SEC));
    assert!(v.follow_wakes(at(HOUR)).is_none());
}

#[test]
fn no_ghost_greeter_nothing_fires_on_arrival_on_any_page_type() {
    let e = demo_engine(policy());
    let grace_end = at(5 * SEC);
    for page_type in PageType::ALL {
        let mut v = Visitor::arrive(&e, &format!("new-on-{page_type}"), T0);
        let d = v.send(page(page_type), T0);
        assert!(
            d.outcome.rule().is_none(),
            "{page_type}: {:?} on arrival",
            seen(&d)
        );

        // Let the timers run with the visitor doing nothing at all.
        match v.follow_wakes(at(HOUR)) {
            None => {}
            Some((when, d)) => {
                assert!(when > grace_end, "{page_type}: {:?} at {when}", seen(&d));
                // The only page where doing nothing is itself a signal: dwelling on a product.
                assert_eq!(page_type, PageType::Product, "{:?} at {when}", seen(&d));
                assert_eq!((when, seen(&d)), (at(20 * SEC), fire("product-questions")));
            }
        }
    }
}

#[test]
fn no_ghost_greeter_even_for_a_returning_visitor_with_a_cart() {
    // The cart lifts the arrival grace, yet the welcome back waits for 5 s on the site.
    let e = demo_engine(policy());
    for page_type in PageType::ALL {
        let mut v = Visitor::arrive(&e, &format!("back-on-{page_type}"), T0);
        v.send(page(PageType::Home), T0);
        let back = at(2 * DAY);
        v.return_at(back);
        let on_arrival = [v.send(page(page_type), back), v.send(cart(1), back)];
        for d in &on_arrival {
            assert!(
                d.outcome.rule().is_none(),
                "{page_type}: {:?} on arrival",
                seen(d)
            );
        }
        if let Some((when, d)) = v.follow_wakes(back.plus_ms(HOUR)) {
            assert!(
                when >= back.plus_ms(5 * SEC),
                "{page_type}: {:?} at {when}",
                seen(&d)
            );
        }
    }
}
