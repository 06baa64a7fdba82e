//! Every guardrail, proved to be the thing that holds a rule back.
//!
//! Each test first plays a story in which the rule fires (the guardrail's condition absent, or
//! the policy loosened), then the same story with the guardrail's condition present: nothing
//! fires, and the decision (`Outcome::Nothing { held }`) or the trace names the guardrail.
//! Where a guardrail lifts with time, the test also checks that it lifts exactly when it says,
//! and that `next_wake` points there, as the server relies on it to wake the session.

mod support;

use std::time::Duration;

use beckon_engine::{Event, PageType, Policy, SessionStart, Suppression, Verdict};
use support::*;

/// One rule, `nudge`: fires as soon as the cart holds something (a cart also lifts the arrival
/// grace, so the rule is ready at once).
fn nudge(extra: &str) -> String {
    rule("nudge", CART_HAS_ITEMS, extra)
}

/// A visitor with the `nudge` rule, on a product page, whose cart fills at `start + 1 s`.
fn shopper<'e>(e: &'e beckon_engine::Engine, id: &str, start: i64) -> (Visitor<'e>, Seen) {
    let mut v = Visitor::arrive(e, id, at(start));
    v.send(page(PageType::Product), at(start));
    let d = v.send(cart(1), at(start + SEC));
    (v, seen(&d))
}

// ---- bots -----------------------------------------------------------------------------------

#[test]
fn a_bot_never_triggers_anything() {
    let e = engine(&nudge(""), policy());
    let (_, person) = shopper(&e, "person", 0);
    assert_eq!(person, fire("nudge"), "a person with a cart is nudged");

    let bot_start = SessionStart {
        bot: true,
        ..SessionStart::default()
    };
    let mut bot = Visitor::arrive_with(&e, "crawler", bot_start, T0);
    bot.send(page(PageType::Product), at(0));
    let (d, trace) = bot.explain(cart(1), at(SEC));
    assert_eq!(seen(&d), held(Suppression::Bot));
    assert_eq!(trace.held, Some(Suppression::Bot));
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::Held {
            by: Suppression::Bot
        })
    );
    assert_eq!(d.next_wake, None, "nothing to wake a bot for");
    // Whatever else it does, for as long as it stays.
    assert_eq!(
        seen(&bot.send(Event::ExitIntent, at(HOUR))),
        held(Suppression::Bot)
    );
    assert_eq!(bot.profile.recent_fires.len(), 0);
}

#[test]
fn a_visit_judged_a_bot_midway_gets_nothing_more() {
    let e = engine(&nudge(""), policy());
    let mut v = Visitor::arrive(&e, "scripted", T0);
    v.send(page(PageType::Product), at(0));
    assert!(!v.session.is_bot());
    // What the session did (its rates, its timing) gave it away before the cart filled.
    v.session.mark_bot();
    assert!(v.session.is_bot());
    let (d, trace) = v.explain(cart(1), at(SEC));
    assert_eq!(seen(&d), held(Suppression::Bot));
    assert_eq!(trace.held, Some(Suppression::Bot));
    assert_eq!(d.next_wake, None);
}

// ---- no one at the page ---------------------------------------------------------------------

#[test]
fn a_visit_with_no_pointer_touch_key_or_scroll_is_shown_nothing_and_logs_no_ghost() {
    let half = Policy {
        holdout_percent: 50.0,
        ..Policy::default()
    };
    let e = engine(&nudge(""), half);
    for holdout in [false, true] {
        // A script's visit: pages, a scroll depth measured at load, a cart its own code sets,
        // and the time that passes; never a pointer, a touch, a key or a scroll.
        let id = visitor_in_arm(&e, "script", holdout);
        let id = beckon_engine::VisitorId::parse(&id).unwrap();
        let mut v = Visitor::untouched(&e, id, SessionStart::default(), T0);
        assert!(!v.session.interacted());
        v.send(page(PageType::Product), at(0));
        v.send(Event::Scroll { depth: 100 }, at(100));
        let (d, trace) = v.explain(cart(1), at(SEC));
        assert_eq!(
            seen(&d),
            held(Suppression::NoInteraction),
            "held out: {holdout}"
        );
        assert_eq!(
            trace.verdict("nudge"),
            Some(&Verdict::Held {
                by: Suppression::NoInteraction
            })
        );
        assert_eq!(d.next_wake, None, "no timer wakes a visit no one is at");
        assert_eq!(
            seen(&v.send(Event::Tick, at(HOUR))),
            held(Suppression::NoInteraction)
        );
        assert!(
            v.profile.recent_fires.is_empty(),
            "no exposure, shown or ghost"
        );
        assert!(
            trace
                .to_string()
                .contains("no pointer, touch, key or scroll"),
            "{trace}"
        );

        // The first sign of a person lifts it at once: the cart already there is offered on
        // the pointer's move (shown, or a ghost for the held-out arm).
        let d = v.send(Event::Activity, at(HOUR + SEC));
        let want = if holdout {
            ghost("nudge")
        } else {
            fire("nudge")
        };
        assert_eq!(seen(&d), want, "held out: {holdout}");
        assert!(v.session.interacted());
    }
    // A delay counts from when the conditions began to hold, not from the first sign of a
    // person: a cart 30 s old is offered on the first move of the pointer, and a younger
    // one when its 30 s are up.
    let e = engine(&nudge("delay = \"30s\""), policy());
    for (moved, fires_at) in [(40 * SEC, 40 * SEC), (10 * SEC, 31 * SEC)] {
        let id = beckon_engine::VisitorId::parse("slow-hand").unwrap();
        let mut v = Visitor::untouched(&e, id, SessionStart::default(), T0);
        v.send(page(PageType::Product), at(0));
        let d = v.send(cart(1), at(SEC));
        assert_eq!(d.next_wake, None, "no timer while no one is there");
        let d = v.send(Event::Activity, at(moved));
        if moved >= 31 * SEC {
            assert_eq!(seen(&d), fire("nudge"), "moved at {moved}");
        } else {
            assert_eq!(d.next_wake, Some(at(fires_at)), "moved at {moved}");
            assert_eq!(seen(&v.send(Event::Tick, at(fires_at))), fire("nudge"));
        }
    }
    // A hover, a click and opening the chat show a person as well; a page view does not.
    for (event, person) in [
        (hover("add-to-cart", "sku-1"), true),
        (Event::ChatOpened, true),
        (page(PageType::Cart), false),
        (Event::Visibility { visible: true }, false),
        (Event::Idle, false),
    ] {
        assert_eq!(event.shows_a_person(), person, "{event:?}");
    }
}

// ---- conversions ----------------------------------------------------------------------------

#[test]
fn a_visitor_who_converted_is_not_greeted_again_in_that_session() {
    let e = engine(&nudge(""), policy());
    let (_, before) = shopper(&e, "buyer", 0);
    assert_eq!(before, fire("nudge"));

    let mut v = Visitor::arrive(&e, "buyer-2", T0);
    v.send(page(PageType::Checkout), at(0));
    v.send(conversion(), at(SEC));
    let (d, trace) = v.explain(cart(2), at(2 * SEC));
    assert_eq!(seen(&d), held(Suppression::Converted));
    assert_eq!(trace.held, Some(Suppression::Converted));
    assert_eq!(d.next_wake, None);
    assert_eq!(
        seen(&v.send(Event::ExitIntent, at(HOUR))),
        held(Suppression::Converted),
        "for the rest of the session"
    );

    // With no quiet time configured beyond the session, the next visit may be helped again.
    v.return_at(at(DAY));
    v.send(page(PageType::Product), at(DAY));
    assert_eq!(seen(&v.send(cart(1), at(DAY + SEC))), fire("nudge"));
}

#[test]
fn quiet_after_conversion_reaches_across_sessions_and_then_lifts() {
    let story = |policy: Policy| {
        let e = engine(&nudge(""), policy);
        let mut v = Visitor::arrive(&e, "buyer", T0);
        v.send(page(PageType::Checkout), at(0));
        v.send(conversion(), at(10 * SEC));
        v.return_at(at(DAY));
        v.send(page(PageType::Product), at(DAY));
        let d = v.send(cart(1), at(DAY + SEC));
        (seen(&d), d.next_wake)
    };
    assert_eq!(story(policy()).0, fire("nudge"), "no quiet time: nudged");

    let week = Policy {
        quiet_after_conversion: Duration::from_secs(7 * 24 * 3600),
        ..policy()
    };
    let until = at(10 * SEC + 7 * DAY);
    let (outcome, wake) = story(week.clone());
    assert_eq!(outcome, held(Suppression::ConvertedRecently { until }));
    assert_eq!(
        wake,
        Some(until),
        "the rule is ready: wake when the quiet ends"
    );

    // The quiet time ends exactly a week after the order.
    let e = engine(&nudge(""), week);
    let mut v = Visitor::arrive(&e, "buyer", T0);
    v.send(conversion(), at(10 * SEC));
    v.return_at(at(DAY));
    v.send(page(PageType::Product), at(DAY));
    v.send(cart(1), at(DAY + SEC));
    assert_eq!(v.tick_at_wake().map(|d| seen(&d)), Some(fire("nudge")));
    assert_eq!(v.now, until);
}

// ---- caps -----------------------------------------------------------------------------------

#[test]
fn the_session_cap_holds_after_two_interventions() {
    let story = |policy: Policy| {
        let e = engine(&nudge(""), policy);
        let (mut v, first) = shopper(&e, "v", 0);
        // Navigating closes the intervention; the cart still holds, so the rule is ready again.
        let second = seen(&v.send(page(PageType::Category), at(2 * SEC)));
        let (d, trace) = v.explain(page(PageType::Home), at(3 * SEC));
        (vec![first, second, seen(&d)], d.next_wake, trace)
    };
    let (loose, _, _) = story(Policy {
        max_per_session: 3,
        ..policy()
    });
    assert_eq!(loose, vec![fire("nudge"), fire("nudge"), fire("nudge")]);

    let (capped, wake, trace) = story(policy());
    let cap = Suppression::SessionCap { max: 2 };
    assert_eq!(
        capped,
        vec![fire("nudge"), fire("nudge"), held(cap.clone())]
    );
    assert_eq!(trace.held, Some(cap));
    assert_eq!(wake, None, "only a new session lifts a session cap");
}

#[test]
fn the_daily_cap_counts_every_session_of_a_visitor_over_a_rolling_day() {
    let story = |policy: Policy| {
        let e = engine(&nudge(""), policy);
        let (mut v, first) = shopper(&e, "v", 0); // fires at 1 s
        let second = seen(&v.send(page(PageType::Cart), at(2 * SEC)));
        v.return_at(at(2 * HOUR));
        v.send(page(PageType::Product), at(2 * HOUR));
        let third = seen(&v.send(cart(1), at(2 * HOUR + SEC)));
        let d = v.send(page(PageType::Cart), at(2 * HOUR + 2 * SEC));
        (vec![first, second, third, seen(&d)], d.next_wake)
    };
    let (loose, _) = story(Policy {
        max_per_visitor_day: 4,
        ..policy()
    });
    assert_eq!(loose, vec![fire("nudge"); 4]);

    let frees_at = at(SEC + DAY); // the first fire leaves the rolling window
    let (capped, wake) = story(policy());
    let cap = Suppression::DailyCap {
        max: 3,
        until: frees_at,
    };
    assert_eq!(
        capped,
        vec![
            fire("nudge"),
            fire("nudge"),
            fire("nudge"),
            held(cap.clone())
        ],
        "the second session has fired only once, yet the visitor has had three today"
    );
    assert_eq!(wake, Some(frees_at));

    // A visit the next morning, still within 24 h of the first fire: held; at the instant the
    // first fire leaves the window, a slot frees up.
    let e = engine(&nudge(""), policy());
    let (mut v, _) = shopper(&e, "v", 0);
    v.send(page(PageType::Cart), at(2 * SEC));
    v.return_at(at(2 * HOUR));
    v.send(cart(1), at(2 * HOUR + SEC));
    v.return_at(at(DAY));
    v.send(page(PageType::Product), at(DAY));
    let d = v.send(cart(1), at(DAY + SEC / 2));
    assert_eq!(seen(&d), held(cap));
    assert_eq!(d.next_wake, Some(frees_at));
    let d = v.tick_at_wake().expect("a wake");
    assert_eq!(seen(&d), fire("nudge"));
}

/// An engine for `nudge` under `policy`, or `None` if the policy is refused (a refusal is an
/// acceptable answer to a policy the engine cannot honour; ignoring it is not).
fn nudge_engine_if_accepted(policy: Policy) -> Option<beckon_engine::Engine> {
    let rules = beckon_engine::RuleSet::from_toml(&nudge(""), beckon_engine::Tz::UTC).unwrap();
    beckon_engine::Engine::new(beckon_engine::SiteId::parse("shop").unwrap(), policy, rules).ok()
}

#[test]
fn a_daily_cap_of_zero_lets_nothing_through() {
    // "At most this many interventions per visitor in any rolling 24 hours": zero is zero,
    // just as `max_per_session = 0` holds every session.
    let zero_session = engine(
        &nudge(""),
        Policy {
            max_per_session: 0,
            ..policy()
        },
    );
    assert_eq!(
        shopper(&zero_session, "v", 0).1,
        held(Suppression::SessionCap { max: 0 })
    );

    let zero_day = Policy {
        max_per_visitor_day: 0,
        ..policy()
    };
    if let Some(e) = nudge_engine_if_accepted(zero_day) {
        let (_, outcome) = shopper(&e, "v", 0);
        assert!(
            matches!(
                outcome,
                Seen::Nothing(Some(Suppression::DailyCap { max: 0, .. }))
            ),
            "a daily cap of 0 must hold everything, got {outcome:?}"
        );
    }
}

#[test]
fn a_daily_cap_larger_than_the_remembered_fires_still_caps() {
    // The profile remembers a bounded number of recent fires; a daily cap it cannot count up
    // to must either be refused or still hold, never silently stop holding.
    let cap = beckon_engine::profile::MAX_RECENT_FIRES as u32 + 4;
    let roomy = Policy {
        max_per_session: 1_000,
        max_per_visitor_day: cap,
        ..policy()
    };
    let Some(e) = nudge_engine_if_accepted(roomy) else {
        return;
    };
    let (mut v, first) = shopper(&e, "v", 0);
    assert_eq!(first, fire("nudge"));
    let mut fires = 1;
    for i in 0..i64::from(cap) + 10 {
        // Each page view closes the previous intervention; the cart still holds.
        let d = v.send(page(PageType::Product), at(2 * SEC + i * SEC));
        if d.outcome.is_visible() {
            fires += 1;
        }
    }
    assert_eq!(fires, cap, "at most {cap} interventions within one day");
}

#[test]
fn a_lowered_daily_cap_names_the_instant_a_slot_really_frees() {
    // Three interventions under a cap of 3; then the site lowers its cap to 1 (a new engine:
    // sessions and profiles carry over). A slot frees only when all three have left the
    // rolling day, and that instant is what the hold, its explanation and the timer name.
    let roomy = Policy {
        max_per_session: 10,
        ..policy()
    };
    let before = engine(&nudge(""), roomy.clone());
    let after = engine(
        &nudge(""),
        Policy {
            max_per_visitor_day: 1,
            ..roomy
        },
    );
    let (mut v, _) = shopper(&before, "v", 0);
    assert_eq!(
        seen(&v.send(page(PageType::Cart), at(2 * SEC))),
        fire("nudge")
    );
    assert_eq!(
        seen(&v.send(page(PageType::Home), at(3 * SEC))),
        fire("nudge")
    );

    v.engine = &after;
    let frees_at = at(3 * SEC + DAY);
    let d = v.send(page(PageType::Product), at(4 * SEC));
    assert_eq!(
        seen(&d),
        held(Suppression::DailyCap {
            max: 1,
            until: frees_at
        })
    );
    assert_eq!(d.next_wake, Some(frees_at));
}

// ---- dismissals -----------------------------------------------------------------------------

#[test]
fn a_dismissal_cools_the_visitor_down_then_the_cooldown_lifts() {
    let loose = engine(
        &nudge(""),
        Policy {
            dismiss_cooldown: Duration::ZERO,
            ..policy()
        },
    );
    let (mut v, first) = shopper(&loose, "v", 0);
    assert_eq!(first, fire("nudge"));
    assert_eq!(
        seen(&v.send(dismissed("nudge"), at(MIN))),
        fire("nudge"),
        "without a cooldown the rule, still true, comes straight back"
    );

    let e = engine(&nudge(""), policy());
    let (mut v, _) = shopper(&e, "v", 0);
    let until = at(MIN + 10 * MIN);
    let cooldown = Suppression::Cooldown { until };
    let (d, trace) = v.explain(dismissed("nudge"), at(MIN));
    assert_eq!(seen(&d), held(cooldown.clone()));
    assert_eq!(trace.held, Some(cooldown.clone()));
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::Held {
            by: cooldown.clone()
        })
    );
    assert_eq!(
        d.next_wake,
        Some(until),
        "the rule is ready: wake at the end"
    );
    assert_eq!(
        seen(&v.send(Event::Tick, until.plus_ms(-1))),
        held(cooldown.clone())
    );
    assert_eq!(seen(&v.send(Event::Tick, until)), fire("nudge"));

    // The cooldown is the visitor's, not the session's: a new visit inside it is held too.
    let (mut v, _) = shopper(&e, "w", 0);
    v.send(dismissed("nudge"), at(MIN));
    v.return_at(at(3 * MIN));
    v.send(page(PageType::Product), at(3 * MIN));
    let d = v.send(cart(1), at(3 * MIN + SEC));
    assert_eq!(seen(&d), held(cooldown));
    assert_eq!(d.next_wake, Some(until));
}

/// Two visits, each with a nudge that is dismissed (at `1 min` and at `1 h + 1 min`), then a
/// third visit two days later with a cart; returns the third visit's decision and wake.
fn dismissed_twice(policy: Policy) -> (Seen, Option<beckon_engine::Timestamp>) {
    let e = engine(&nudge(""), policy);
    let (mut v, first) = shopper(&e, "v", 0);
    assert_eq!(first, fire("nudge"));
    v.send(dismissed("nudge"), at(MIN));
    v.return_at(at(HOUR));
    v.send(page(PageType::Product), at(HOUR));
    assert_eq!(seen(&v.send(cart(1), at(HOUR + SEC))), fire("nudge"));
    v.send(dismissed("nudge"), at(HOUR + MIN));
    v.return_at(at(2 * DAY));
    v.send(page(PageType::Product), at(2 * DAY));
    let d = v.send(cart(1), at(2 * DAY + SEC));
    (seen(&d), d.next_wake)
}

#[test]
fn repeated_dismissals_silence_the_visitor_for_a_long_time_then_it_lifts() {
    let tolerant = Policy {
        dismissals_before_silence: 3,
        ..policy()
    };
    assert_eq!(dismissed_twice(tolerant).0, fire("nudge"));

    let until = at(HOUR + MIN + 30 * DAY);
    let silenced = Suppression::Silenced { until };
    let (outcome, wake) = dismissed_twice(policy());
    assert_eq!(outcome, held(silenced.clone()));
    assert_eq!(wake, Some(until));

    // Thirty days after the second dismissal, the visitor may be helped again.
    let e = engine(&nudge(""), policy());
    let (mut v, _) = shopper(&e, "v", 0);
    v.send(dismissed("nudge"), at(MIN));
    v.return_at(at(HOUR));
    v.send(cart(1), at(HOUR + SEC));
    v.send(dismissed("nudge"), at(HOUR + MIN));
    v.return_at(until.plus_ms(-HOUR));
    v.send(page(PageType::Product), until.plus_ms(-HOUR));
    assert_eq!(
        seen(&v.send(cart(1), until.plus_ms(-HOUR + SEC))),
        held(silenced)
    );
    assert_eq!(seen(&v.tick_at_wake().expect("a wake")), fire("nudge"));
    assert_eq!(v.now, until);
}

#[test]
fn dismissals_further_apart_than_the_silence_window_do_not_silence() {
    // The two dismissals are an hour apart; with a 30-minute window they are not "repeated".
    let short = Policy {
        silence: Duration::from_secs(30 * 60),
        ..policy()
    };
    assert_eq!(dismissed_twice(short).0, fire("nudge"));
    // With a two-hour window they are, and the silence lasts the window.
    let long = Policy {
        silence: Duration::from_secs(2 * 3600),
        ..policy()
    };
    let e = engine(&nudge(""), long.clone());
    let (mut v, _) = shopper(&e, "v", 0);
    v.send(dismissed("nudge"), at(MIN));
    v.return_at(at(HOUR));
    v.send(cart(1), at(HOUR + SEC));
    v.send(dismissed("nudge"), at(HOUR + MIN));
    let d = v.send(Event::Tick, at(HOUR + 20 * MIN));
    assert_eq!(
        seen(&d),
        held(Suppression::Silenced {
            until: at(3 * HOUR + MIN)
        })
    );
}

#[test]
fn a_silence_threshold_larger_than_the_remembered_dismissals_still_silences() {
    // As with the daily cap: the profile remembers a bounded number of dismissals, so a
    // threshold above it must either be refused or still silence the visitor.
    let k = beckon_engine::profile::MAX_RECENT_DISMISSALS as u32 + 4;
    let patient = Policy {
        dismiss_cooldown: Duration::ZERO,
        dismissals_before_silence: k,
        ..policy()
    };
    let Some(e) = nudge_engine_if_accepted(patient) else {
        return;
    };
    let mut v = Visitor::arrive(&e, "v", T0);
    for i in 0..i64::from(k) {
        v.send(dismissed("nudge"), at(i * MIN));
    }
    v.send(page(PageType::Product), at(HOUR));
    let d = v.send(cart(1), at(HOUR + SEC));
    assert!(
        matches!(seen(&d), Seen::Nothing(Some(Suppression::Silenced { .. }))),
        "{k} dismissals within the window must silence, got {:?}",
        seen(&d)
    );
}

#[test]
fn when_two_timed_guardrails_hold_the_timer_is_set_for_when_both_have_lifted() {
    // The daily cap frees a slot at 24 h + 1 s; a dismissal 4 minutes before that cools the
    // visitor down for 10 minutes. The hold names the first guardrail, but the engine asks to
    // be woken only once both have lifted: waking at the end of the first would be for nothing.
    let e = engine(&nudge(""), policy());
    let (mut v, _) = shopper(&e, "v", 0);
    v.send(page(PageType::Cart), at(2 * SEC));
    v.return_at(at(DAY - 5 * MIN));
    v.send(page(PageType::Product), at(DAY - 5 * MIN));
    assert_eq!(
        seen(&v.send(cart(1), at(DAY - 5 * MIN + SEC))),
        fire("nudge")
    );

    let cap_frees = at(DAY + SEC);
    let cooled = at(DAY - 4 * MIN + 10 * MIN);
    let d = v.send(dismissed("nudge"), at(DAY - 4 * MIN));
    assert_eq!(
        seen(&d),
        held(Suppression::DailyCap {
            max: 3,
            until: cap_frees
        })
    );
    assert_eq!(d.next_wake, Some(cooled));
    assert_eq!(
        seen(&v.send(Event::Tick, cap_frees)),
        held(Suppression::Cooldown { until: cooled }),
        "a slot is free, but the visitor is still cooling down"
    );
    assert_eq!(seen(&v.send(Event::Tick, cooled)), fire("nudge"));
}

// ---- what is on screen ----------------------------------------------------------------------

#[test]
fn nothing_fires_while_the_chat_is_open() {
    let e = engine(&nudge(""), policy());
    let mut v = Visitor::arrive(&e, "v", T0);
    v.send(page(PageType::Product), at(0));
    v.send(Event::ChatOpened, at(SEC));
    let (d, trace) = v.explain(cart(1), at(2 * SEC));
    assert_eq!(seen(&d), held(Suppression::ChatOpen));
    assert_eq!(trace.held, Some(Suppression::ChatOpen));
    assert_eq!(d.next_wake, None, "only an event can close the chat");
    assert_eq!(
        seen(&v.send(Event::ChatClosed, at(3 * SEC))),
        fire("nudge"),
        "the same visitor, chat closed: nudged"
    );
}

#[test]
fn a_page_change_closes_the_chat_unless_a_conversation_runs() {
    let e = engine(&nudge(""), policy());
    let mut v = Visitor::arrive(&e, "v", T0);
    v.send(page(PageType::Product), at(0));
    v.send(Event::ChatOpened, at(SEC));
    assert_eq!(
        seen(&v.send(cart(1), at(2 * SEC))),
        held(Suppression::ChatOpen)
    );
    // The visitor clicked a chat button, then went on to another page: the widget opens no
    // chat there, so the server must not believe it is still open.
    assert_eq!(
        seen(&v.send(page(PageType::Category), at(3 * SEC))),
        fire("nudge")
    );

    let mut w = Visitor::arrive(&e, "w", T0);
    w.send(page(PageType::Product), at(0));
    w.send(Event::ChatOpened, at(SEC));
    w.send(Event::ConversationStarted, at(SEC));
    w.send(page(PageType::Category), at(3 * SEC));
    w.send(Event::ConversationEnded, at(4 * SEC));
    assert_eq!(
        seen(&w.send(cart(1), at(5 * SEC))),
        held(Suppression::ChatOpen),
        "the chat stayed open across the page change while the conversation ran"
    );
}

#[test]
fn nothing_fires_while_a_conversation_is_running() {
    let e = engine(&nudge(""), policy());
    let mut v = Visitor::arrive(&e, "v", T0);
    v.send(page(PageType::Product), at(0));
    v.send(Event::ConversationStarted, at(SEC));
    let (d, trace) = v.explain(cart(1), at(2 * SEC));
    assert_eq!(seen(&d), held(Suppression::ConversationActive));
    assert_eq!(trace.held, Some(Suppression::ConversationActive));
    assert_eq!(d.next_wake, None);
    assert_eq!(
        seen(&v.send(Event::ConversationEnded, at(3 * SEC))),
        fire("nudge")
    );
}

#[test]
fn an_open_intervention_holds_the_next_until_it_is_dismissed_or_left_even_when_engaged() {
    let roomy = Policy {
        max_per_session: 10,
        max_per_visitor_day: 10,
        dismiss_cooldown: Duration::ZERO,
        dismissals_before_silence: 0,
        ..policy()
    };
    let e = engine(&nudge(""), roomy);
    let (mut v, first) = shopper(&e, "v", 0);
    assert_eq!(first, fire("nudge"));
    let open = held(Suppression::InterventionOpen);

    let (d, trace) = v.explain(cart(2), at(2 * SEC));
    assert_eq!(seen(&d), open);
    assert_eq!(trace.held, Some(Suppression::InterventionOpen));
    assert_eq!(d.next_wake, None);
    // Engaging (an applied coupon, a reply) keeps the intervention on screen: nothing new
    // replaces it under the visitor's hand.
    assert_eq!(seen(&v.send(engaged("nudge"), at(3 * SEC))), open);

    assert_eq!(seen(&v.send(cart(3), at(4 * SEC))), open);
    assert_eq!(
        seen(&v.send(dismissed("nudge"), at(5 * SEC))),
        fire("nudge")
    );

    assert_eq!(seen(&v.send(Event::Activity, at(6 * SEC))), open);
    assert_eq!(seen(&v.send(shown("nudge"), at(7 * SEC))), open);
    assert_eq!(
        seen(&v.send(page(PageType::Cart), at(8 * SEC))),
        fire("nudge"),
        "navigating closes what was on screen"
    );
}

// ---- quiet pages ----------------------------------------------------------------------------

#[test]
fn quiet_page_types_are_never_interrupted() {
    let story = |policy: Policy| {
        let e = engine(&nudge(""), policy);
        let mut v = Visitor::arrive(&e, "v", T0);
        v.send(page(PageType::Checkout), at(0));
        let (d, trace) = v.explain(cart(1), at(SEC));
        let on_cart_page = seen(&v.send(page(PageType::Cart), at(2 * SEC)));
        (seen(&d), trace.held, on_cart_page)
    };
    assert_eq!(story(policy()).0, fire("nudge"));

    let quiet_checkout = Policy {
        quiet_page_types: vec![PageType::Checkout],
        ..policy()
    };
    let (outcome, trace_held, next_page) = story(quiet_checkout);
    assert_eq!(outcome, held(Suppression::QuietPage));
    assert_eq!(trace_held, Some(Suppression::QuietPage));
    assert_eq!(next_page, fire("nudge"), "other page types are not quiet");
}

#[test]
fn quiet_paths_are_never_interrupted() {
    let story = |policy: Policy| {
        let e = engine(&nudge(""), policy);
        let mut v = Visitor::arrive(&e, "v", T0);
        v.send(page_at("/account/orders", PageType::Other), at(0));
        let on_account = seen(&v.send(cart(1), at(SEC)));
        let on_shop = seen(&v.send(page_at("/shop/shoes", PageType::Other), at(2 * SEC)));
        (on_account, on_shop)
    };
    assert_eq!(story(policy()).0, fire("nudge"));

    let quiet_account = Policy {
        quiet_paths: vec!["/account".to_owned()],
        ..policy()
    };
    let (on_account, on_shop) = story(quiet_account);
    assert_eq!(on_account, held(Suppression::QuietPage));
    assert_eq!(on_shop, fire("nudge"));
}

// ---- arrival --------------------------------------------------------------------------------

#[test]
fn nothing_fires_in_the_first_seconds_of_a_visit_without_a_cart_or_an_exit_signal() {
    // `greeter` would greet on every page view: the arrival grace is all that stops it.
    let rules = rule("greeter", ANY_PAGE, "");
    let no_grace = engine(
        &rules,
        Policy {
            arrival_grace: Duration::ZERO,
            ..policy()
        },
    );
    let mut v = Visitor::arrive(&no_grace, "v", T0);
    assert_eq!(seen(&v.send(page(PageType::Home), at(0))), fire("greeter"));

    let e = engine(&rules, policy());
    let mut v = Visitor::arrive(&e, "v", T0);
    let grace = Suppression::ArrivalGrace { until: at(5 * SEC) };
    let (d, trace) = v.explain(page(PageType::Home), at(0));
    assert_eq!(seen(&d), held(grace.clone()));
    assert_eq!(
        trace.verdict("greeter"),
        Some(&Verdict::Held { by: grace.clone() })
    );
    assert_eq!(d.next_wake, Some(at(5 * SEC)));
    assert_eq!(
        seen(&v.send(Event::Activity, at(4_999))),
        held(grace.clone())
    );
    assert_eq!(
        seen(&v.send(cart(0), at(4_999))),
        held(grace),
        "an empty cart is no signal"
    );
    // The grace is over at its end instant.
    let d = v.tick_at_wake().expect("a wake at the end of the grace");
    assert_eq!((v.now, seen(&d)), (at(5 * SEC), fire("greeter")));
}

#[test]
fn a_cart_or_an_exit_signal_lifts_the_arrival_grace() {
    let e = engine(&rule("greeter", ANY_PAGE, ""), policy());

    let mut v = Visitor::arrive(&e, "with-cart", T0);
    v.send(page(PageType::Home), at(0));
    assert_eq!(seen(&v.send(cart(1), at(SEC))), fire("greeter"));

    let mut v = Visitor::arrive(&e, "leaving", T0);
    v.send(page(PageType::Home), at(0));
    assert_eq!(seen(&v.send(Event::ExitIntent, at(SEC))), fire("greeter"));
}

// ---- rule-level limits ----------------------------------------------------------------------

#[test]
fn only_live_rules_fire() {
    for status in ["draft", "paused", "archived"] {
        let toml = nudge("").replace("status = \"live\"", &format!("status = \"{status}\""));
        let e = engine(&toml, policy());
        let (_, outcome, trace) = cart_at(&e, T0);
        assert_eq!(outcome, quiet(), "a {status} rule fired");
        assert!(
            matches!(trace.verdict("nudge"), Some(Verdict::NotLive { .. })),
            "{:?}",
            trace.verdict("nudge")
        );
    }
    let e = engine(&nudge(""), policy());
    assert_eq!(cart_at(&e, T0).1, fire("nudge"));
}

#[test]
fn a_rule_does_not_repeat_within_its_repeat_cycle() {
    let roomy = Policy {
        max_per_session: 10,
        max_per_visitor_day: 10,
        ..policy()
    };
    let e = engine(&nudge(""), roomy.clone());
    let (mut v, _) = shopper(&e, "v", 0);
    assert_eq!(
        seen(&v.send(page(PageType::Cart), at(2 * SEC))),
        fire("nudge"),
        "without a repeat cycle it comes back on the next page"
    );

    let e = engine(&nudge("repeat_after = \"1h\""), roomy);
    let (mut v, first) = shopper(&e, "v", 0);
    assert_eq!(first, fire("nudge"));
    let until = at(SEC + HOUR);
    let (d, trace) = v.explain(page(PageType::Cart), at(2 * SEC));
    assert_eq!(seen(&d), quiet());
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::RepeatCycle { until })
    );
    assert_eq!(d.next_wake, Some(until));
    assert_eq!(seen(&v.send(Event::Tick, until.plus_ms(-1))), quiet());
    assert_eq!(seen(&v.send(Event::Tick, until)), fire("nudge"));
}

#[test]
fn a_rule_stops_at_its_lifetime_cap_per_visitor() {
    let story = |extra: &str| {
        let e = engine(&nudge(extra), policy());
        let (mut v, first) = shopper(&e, "v", 0);
        let mut outcomes = vec![first];
        for day in 1..=2 {
            v.return_at(at(day * DAY));
            v.send(page(PageType::Product), at(day * DAY));
            outcomes.push(seen(&v.send(cart(1), at(day * DAY + SEC))));
        }
        let (d, trace) = v.explain(page(PageType::Cart), at(2 * DAY + 2 * SEC));
        outcomes.push(seen(&d));
        (outcomes, trace)
    };
    let (loose, _) = story("max_per_visitor = 4");
    assert_eq!(loose, vec![fire("nudge"); 4]);

    let (capped, trace) = story("max_per_visitor = 2");
    assert_eq!(
        capped,
        vec![fire("nudge"), fire("nudge"), quiet(), quiet()],
        "twice in a lifetime, even on a new day and a new visit"
    );
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::LifetimeCap { count: 2 })
    );
}

/// How many of `n` visitors (`v0`…) the rule `nudge` with `rollout` percent reaches.
fn reached(rollout: f64, n: u32) -> u32 {
    let e = engine(&nudge(&format!("rollout = {rollout:?}")), policy());
    (0..n)
        .filter(|i| shopper(&e, &format!("v{i}"), 0).1 == fire("nudge"))
        .count() as u32
}

#[test]
fn a_rule_reaches_only_its_rollout_share_of_visitors() {
    assert_eq!(reached(0.0, 1_000), 0, "0%: nobody");
    assert_eq!(reached(100.0, 1_000), 1_000, "100%: everybody");
    let half = reached(50.0, 10_000);
    assert!(
        (4_800..=5_200).contains(&half),
        "50% of 10,000 visitors should be about 5,000, got {half}"
    );

    // The reason is in the trace, and the same visitor stays out on every visit.
    let e = engine(&nudge("rollout = 50"), policy());
    let out = (0..)
        .map(|i| format!("v{i}"))
        .find(|id| shopper(&e, id, 0).1 != fire("nudge"))
        .unwrap();
    let mut v = Visitor::arrive(&e, &out, at(DAY));
    v.send(page(PageType::Product), at(DAY));
    let (d, trace) = v.explain(cart(1), at(DAY + SEC));
    assert_eq!(seen(&d), quiet());
    assert_eq!(trace.verdict("nudge"), Some(&Verdict::NotInRollout));
}

#[test]
fn a_rule_scoped_to_page_types_fires_only_on_them() {
    let e = engine(&nudge(""), policy());
    assert_eq!(
        shopper(&e, "v", 0).1,
        fire("nudge"),
        "unscoped: fires on a product page"
    );

    let e = engine(&nudge("pages = [\"pricing\"]"), policy());
    let mut v = Visitor::arrive(&e, "v", T0);
    v.send(page(PageType::Product), at(0));
    let (d, trace) = v.explain(cart(1), at(SEC));
    assert_eq!(seen(&d), quiet());
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::OutOfScope {
            page_type: Some(PageType::Product)
        })
    );
    assert_eq!(
        seen(&v.send(page(PageType::Pricing), at(2 * SEC))),
        fire("nudge")
    );
}

/// The site is in Paris; rules are compiled in its zone.
fn paris() -> Policy {
    Policy {
        timezone: "Europe/Paris".to_owned(),
        ..policy()
    }
}

/// A fresh visitor with a cart at `t`, under `e`: the decision and its trace.
fn cart_at<'e>(
    e: &'e beckon_engine::Engine,
    t: beckon_engine::Timestamp,
) -> (Visitor<'e>, Seen, beckon_engine::Trace) {
    let mut v = Visitor::arrive(e, "v", t);
    v.send(page(PageType::Product), t);
    let (d, trace) = v.explain(cart(1), t.plus_ms(SEC));
    (v, seen(&d), trace)
}

#[test]
fn a_rule_fires_only_between_its_dates_in_the_site_zone() {
    // 2027-01-31 22:30 UTC is 23:30 in Paris: still January 31st there.
    let before = utc("2027-01-31T22:30:00Z");
    let unscheduled = engine(&nudge(""), paris());
    assert_eq!(cart_at(&unscheduled, before).1, fire("nudge"));

    let e = engine(
        &nudge("schedule = { start = \"2027-02-01\", end = \"2027-02-03\" }"),
        paris(),
    );
    let opens = utc("2027-01-31T23:00:00Z"); // midnight in Paris
    let (mut v, outcome, trace) = cart_at(&e, before);
    assert_eq!(outcome, quiet());
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::OutsideSchedule { until: Some(opens) })
    );
    assert_eq!(v.next_wake, Some(opens));
    assert_eq!(seen(&v.tick_at_wake().unwrap()), fire("nudge"));

    assert_eq!(cart_at(&e, utc("2027-02-02T22:58:00Z")).1, fire("nudge"));
    let (v, outcome, trace) = cart_at(&e, utc("2027-02-02T23:00:00Z"));
    assert_eq!(outcome, quiet(), "February 3rd has begun in Paris");
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::OutsideSchedule { until: None })
    );
    assert_eq!(v.next_wake, None, "a schedule that has ended never reopens");
}

#[test]
fn a_rule_fires_only_within_business_hours_in_the_site_zone() {
    let unscheduled = engine(&nudge(""), paris());
    // Friday 2027-01-15, 16:30 UTC = 17:30 in Paris, after hours there (not in UTC).
    let friday_evening = utc("2027-01-15T16:30:00Z");
    assert_eq!(cart_at(&unscheduled, friday_evening).1, fire("nudge"));

    let e = engine(
        &nudge("schedule = { hours = { from = \"09:00\", to = \"17:00\" } }"),
        paris(),
    );
    let monday_opening = utc("2027-01-18T08:00:00Z");
    let (v, outcome, trace) = cart_at(&e, friday_evening);
    assert_eq!(outcome, quiet());
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::OutsideSchedule {
            until: Some(monday_opening)
        })
    );
    assert_eq!(v.next_wake, Some(monday_opening));

    // 08:30 UTC is 09:30 in Paris: open (it would not be in UTC).
    assert_eq!(cart_at(&e, utc("2027-01-15T08:30:00Z")).1, fire("nudge"));
    // 07:30 UTC is 08:30 in Paris: closed until 09:00 there, then it fires.
    let (mut v, outcome, _) = cart_at(&e, utc("2027-01-15T07:30:00Z"));
    assert_eq!(outcome, quiet());
    assert_eq!(v.next_wake, Some(utc("2027-01-15T08:00:00Z")));
    assert_eq!(seen(&v.tick_at_wake().unwrap()), fire("nudge"));
    // Saturday: closed until Monday.
    let (v, outcome, _) = cart_at(&e, utc("2027-01-16T12:00:00Z"));
    assert_eq!(outcome, quiet());
    assert_eq!(v.next_wake, Some(monday_opening));
}

#[test]
fn a_delayed_rule_fires_only_once_its_conditions_held_for_the_whole_delay() {
    let e = engine(&nudge(""), policy());
    assert_eq!(
        shopper(&e, "v", 0).1,
        fire("nudge"),
        "no delay: fires with the cart"
    );

    let e = engine(&nudge("delay = \"30s\""), policy());
    let (mut v, outcome) = shopper(&e, "v", 0);
    assert_eq!(outcome, quiet());
    assert_eq!(
        v.next_wake,
        Some(at(31 * SEC)),
        "wake at the end of the delay"
    );
    let (_, trace) = v.explain(Event::Activity, at(10 * SEC));
    assert_eq!(
        trace.verdict("nudge"),
        Some(&Verdict::Waiting {
            until: at(31 * SEC)
        })
    );
    assert_eq!(seen(&v.send(Event::Tick, at(31 * SEC - 1))), quiet());
    assert_eq!(seen(&v.send(Event::Tick, at(31 * SEC))), fire("nudge"));
}

#[test]
fn a_delay_restarts_when_the_conditions_stop_holding_in_between() {
    let e = engine(&nudge("delay = \"30s\""), policy());
    let (mut v, _) = shopper(&e, "v", 0);
    assert_eq!(v.next_wake, Some(at(31 * SEC)));
    let d = v.send(cart(0), at(10 * SEC));
    assert_eq!(
        (seen(&d), d.next_wake),
        (quiet(), None),
        "emptied: nothing to wait for"
    );
    let d = v.send(cart(2), at(20 * SEC));
    assert_eq!(
        d.next_wake,
        Some(at(50 * SEC)),
        "refilled: the delay starts again"
    );
    // The server's stale timer for the first delay goes off: too early now.
    assert_eq!(seen(&v.send(Event::Tick, at(31 * SEC))), quiet());
    assert_eq!(seen(&v.send(Event::Tick, at(50 * SEC - 1))), quiet());
    assert_eq!(seen(&v.send(Event::Tick, at(50 * SEC))), fire("nudge"));
}

#[test]
fn a_delay_restarts_when_a_guardrail_interrupted_it() {
    // Nobody watched the conditions while the chat was open: the delay counts again after.
    let e = engine(&nudge("delay = \"30s\""), policy());
    let (mut v, _) = shopper(&e, "v", 0);
    v.send(Event::ChatOpened, at(10 * SEC));
    let d = v.send(Event::ChatClosed, at(20 * SEC));
    assert_eq!(d.next_wake, Some(at(50 * SEC)));
    assert_eq!(seen(&v.send(Event::Tick, at(31 * SEC))), quiet());
    assert_eq!(seen(&v.send(Event::Tick, at(50 * SEC))), fire("nudge"));
}

// ---- the holdout ----------------------------------------------------------------------------

#[test]
fn a_held_out_visitor_gets_a_ghost_never_a_fire() {
    let e = engine(&nudge(""), Policy::default()); // 10% holdout
    let treated = visitor_in_arm(&e, "v", false);
    let held_out = visitor_in_arm(&e, "v", true);
    assert_eq!(shopper(&e, &treated, 0).1, fire("nudge"));
    let (_, outcome) = shopper(&e, &held_out, 0);
    assert_eq!(outcome, ghost("nudge"));

    let mut v = Visitor::arrive(&e, &held_out, T0);
    v.send(page(PageType::Product), at(0));
    let (d, trace) = v.explain(cart(1), at(SEC));
    assert!(!d.outcome.is_visible());
    assert_eq!(trace.verdict("nudge"), Some(&Verdict::Ghost));
}

#[test]
fn a_ghost_counts_against_every_cap_exactly_like_a_fire() {
    // One script, played by a treated and by a held-out visitor. A held-out visitor sees
    // nothing, so sends no dismissal: only navigation closes the (invisible) intervention.
    let e = engine(&nudge("max_per_visitor = 4"), Policy::default());
    let play = |id: &str| {
        let mut v = Visitor::arrive(&e, id, T0);
        let mut out = vec![
            seen(&v.send(page(PageType::Product), at(0))),
            seen(&v.send(cart(1), at(SEC))),
            seen(&v.send(Event::Activity, at(2 * SEC))),
            seen(&v.send(page(PageType::Cart), at(3 * SEC))),
            seen(&v.send(page(PageType::Checkout), at(4 * SEC))),
        ];
        v.return_at(at(HOUR));
        out.push(seen(&v.send(page(PageType::Product), at(HOUR))));
        out.push(seen(&v.send(cart(1), at(HOUR + SEC))));
        out.push(seen(&v.send(page(PageType::Cart), at(HOUR + 2 * SEC))));
        v.return_at(at(DAY + HOUR));
        v.send(page(PageType::Product), at(DAY + HOUR));
        out.push(seen(&v.send(cart(1), at(DAY + HOUR + SEC))));
        out.push(seen(
            &v.send(page(PageType::Cart), at(DAY + HOUR + 2 * SEC)),
        ));
        out
    };
    let treated = play(&visitor_in_arm(&e, "v", false));
    let expected = vec![
        held(Suppression::ArrivalGrace { until: at(5 * SEC) }),
        fire("nudge"),
        held(Suppression::InterventionOpen),
        fire("nudge"),
        held(Suppression::SessionCap { max: 2 }),
        held(Suppression::ArrivalGrace {
            until: at(HOUR + 5 * SEC),
        }),
        fire("nudge"),
        held(Suppression::DailyCap {
            max: 3,
            until: at(SEC + DAY),
        }),
        fire("nudge"),
        quiet(), // its lifetime cap of 4
    ];
    assert_eq!(treated, expected);

    let ghosts: Vec<Seen> = expected
        .into_iter()
        .map(|s| match s {
            Seen::Fire(rule) => Seen::Ghost(rule),
            other => other,
        })
        .collect();
    assert_eq!(play(&visitor_in_arm(&e, "v", true)), ghosts);
}

// ---- timers ---------------------------------------------------------------------------------

#[test]
fn a_time_on_page_rule_asks_to_be_woken_when_it_can_hold() {
    let e = engine(
        &rule(
            "reader",
            r#"{ var = "time.on_page", op = ">=", value = 30 }"#,
            "",
        ),
        policy(),
    );
    let mut v = Visitor::arrive(&e, "v", T0);
    let d = v.send(page(PageType::Article), at(0));
    assert_eq!(d.next_wake, Some(at(30 * SEC)));
    assert_eq!(seen(&v.tick_at_wake().unwrap()), fire("reader"));
}

#[test]
fn time_on_page_stops_while_the_tab_is_hidden_and_resumes_where_it_was() {
    let e = engine(
        &rule(
            "reader",
            r#"{ var = "time.on_page", op = ">=", value = 30 }"#,
            "",
        ),
        policy(),
    );
    let mut v = Visitor::arrive(&e, "v", T0);
    v.send(page(PageType::Article), at(0));
    assert_eq!(v.next_wake, Some(at(30 * SEC)));

    let d = v.send(visible(false), at(10 * SEC));
    assert_eq!(
        (seen(&d), d.next_wake),
        (quiet(), None),
        "hidden: nothing to wait for"
    );
    let d = v.send(Event::Idle, at(60 * SEC));
    assert_eq!(
        (seen(&d), d.next_wake),
        (quiet(), None),
        "still hidden, still 10 s"
    );

    // Shown again after 90 s hidden: 20 s remain.
    let d = v.send(visible(true), at(100 * SEC));
    assert_eq!(d.next_wake, Some(at(120 * SEC)));
    assert_eq!(seen(&v.send(Event::Tick, at(120 * SEC - 1))), quiet());
    assert_eq!(seen(&v.send(Event::Tick, at(120 * SEC))), fire("reader"));
}
