//! Shared helpers for the engine's behavioural tests: a visitor that walks through a site
//! (sessions over one profile, with the clock in the test's hands), event builders, and short
//! ways to say what a decision was.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use beckon_engine::{
    CartUpdate, Decision, Engine, Event, Outcome, PageType, PageView, Policy, Profile, RuleId,
    RuleSet, Session, SessionStart, SiteId, Suppression, Timestamp, Trace, Tracked, VisitorId,
};

/// The example rules shipped with Beckon.
pub const DEMO_RULES: &str = include_str!("../../../../examples/demo-rules.toml");

/// A fixed instant for the start of a story: Friday 2027-01-15 10:00:00 UTC.
pub const T0: Timestamp = Timestamp::from_secs(1_800_007_200);

/// One second, in milliseconds.
pub const SEC: i64 = 1_000;
/// One minute, in milliseconds.
pub const MIN: i64 = 60 * SEC;
/// One hour, in milliseconds.
pub const HOUR: i64 = 60 * MIN;
/// One day, in milliseconds.
pub const DAY: i64 = 24 * HOUR;

/// `T0` moved forward by `ms`.
pub fn at(ms: i64) -> Timestamp {
    T0.plus_ms(ms)
}

/// An instant from RFC 3339 text.
pub fn utc(rfc3339: &str) -> Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 instant");
    Timestamp::from_millis(t.timestamp_millis())
}

/// The default policy with no holdout, so that a fire is visible.
pub fn policy() -> Policy {
    Policy {
        holdout_percent: 0.0,
        ..Policy::default()
    }
}

/// An engine for the site "shop" with `rules` (TOML) compiled in the policy's time zone.
pub fn engine(rules: &str, policy: Policy) -> Engine {
    let tz = Engine::timezone(&policy);
    let rules = RuleSet::from_toml(rules, tz).unwrap_or_else(|e| panic!("rules compile: {e}"));
    Engine::new(SiteId::parse("shop").unwrap(), policy, rules).expect("a valid policy")
}

/// The example rules under `policy`.
pub fn demo_engine(policy: Policy) -> Engine {
    engine(DEMO_RULES, policy)
}

/// A live rule in TOML: `id`, its condition (inline TOML), and any extra `key = value` lines.
pub fn rule(id: &str, when: &str, extra: &str) -> String {
    format!(
        "[[rules]]\nid = \"{id}\"\nname = \"{id}\"\nstatus = \"live\"\nwhen = {when}\n{extra}\n\
         message = {{ type = \"text\", text = \"{id} says hello\" }}\n\n"
    )
}

/// A condition that holds as soon as the cart holds something.
pub const CART_HAS_ITEMS: &str = r#"{ var = "cart.items", op = ">", value = 0 }"#;
/// A condition that holds from the first page view on.
pub const ANY_PAGE: &str = r#"{ var = "behaviour.pages", op = ">=", value = 1 }"#;

/// A visitor walking through the site: one profile, the current session, the clock.
pub struct Visitor<'e> {
    pub engine: &'e Engine,
    pub id: VisitorId,
    pub profile: Profile,
    pub session: Session,
    /// The instant of the latest decision.
    pub now: Timestamp,
    /// The latest decision's `next_wake`.
    pub next_wake: Option<Timestamp>,
}

impl<'e> Visitor<'e> {
    /// A first visit starting at `at`, with a default start (not a bot, no language).
    pub fn arrive(engine: &'e Engine, id: &str, at: Timestamp) -> Self {
        Self::arrive_with(engine, id, SessionStart::default(), at)
    }

    /// A first visit starting at `at`.
    pub fn arrive_with(engine: &'e Engine, id: &str, start: SessionStart, at: Timestamp) -> Self {
        let id = VisitorId::parse(id).expect("a valid visitor id");
        let mut v = Self::untouched(engine, id, start, at);
        v.touch();
        v
    }

    /// A first visit starting at `at` in which nothing has shown a person yet.
    pub fn untouched(
        engine: &'e Engine,
        id: VisitorId,
        start: SessionStart,
        at: Timestamp,
    ) -> Self {
        let mut profile = Profile::default();
        let session = engine.start_session(id.clone(), start, &mut profile, at);
        Visitor {
            engine,
            id,
            profile,
            session,
            now: at,
            next_wake: None,
        }
    }

    /// The person moves the pointer at the visit's start (decided on, nothing can fire yet:
    /// a fresh visit has neither a page nor a cart).
    fn touch(&mut self) {
        let d = self.send(Event::Activity, self.now);
        assert!(
            matches!(d.outcome, beckon_engine::Outcome::Nothing { .. }),
            "nothing fires on the first touch"
        );
        self.next_wake = None;
    }

    /// The same visitor comes back: a new session over the same profile.
    pub fn return_at(&mut self, at: Timestamp) {
        self.return_with(SessionStart::default(), at);
    }

    /// The same visitor comes back with `start`.
    pub fn return_with(&mut self, start: SessionStart, at: Timestamp) {
        assert!(at >= self.now, "time only moves forward");
        self.session = self
            .engine
            .start_session(self.id.clone(), start, &mut self.profile, at);
        self.now = at;
        self.next_wake = None;
        self.touch();
    }

    /// `event` happens at `at`.
    pub fn send(&mut self, event: Event, at: Timestamp) -> Decision<'e> {
        assert!(at >= self.now, "time only moves forward");
        let engine = self.engine;
        let d = engine.decide(&mut self.session, &mut self.profile, &event, at);
        self.now = at;
        self.next_wake = d.next_wake;
        d
    }

    /// `event` happens at `at`, with the explanation.
    pub fn explain(&mut self, event: Event, at: Timestamp) -> (Decision<'e>, Trace) {
        assert!(at >= self.now, "time only moves forward");
        let engine = self.engine;
        let (d, trace) = engine.explain(&mut self.session, &mut self.profile, &event, at);
        self.now = at;
        self.next_wake = d.next_wake;
        (d, trace)
    }

    /// `event` happens `ms` after the latest decision.
    pub fn after(&mut self, ms: i64, event: Event) -> Decision<'e> {
        let at = self.now.plus_ms(ms);
        self.send(event, at)
    }

    /// The server's timer: ticks at the latest `next_wake`, if there is one.
    pub fn tick_at_wake(&mut self) -> Option<Decision<'e>> {
        let wake = self.next_wake?;
        Some(self.send(Event::Tick, wake))
    }

    /// The server's timer, followed until something fires (or is ghosted), the engine stops
    /// asking to be woken, or the next wake is after `limit`. Returns the decision that fired
    /// and its instant.
    pub fn follow_wakes(&mut self, limit: Timestamp) -> Option<(Timestamp, Decision<'e>)> {
        for _ in 0..10_000 {
            match self.next_wake {
                Some(wake) if wake <= limit => {
                    let d = self.send(Event::Tick, wake);
                    if d.outcome.rule().is_some() {
                        return Some((wake, d));
                    }
                }
                _ => return None,
            }
        }
        panic!("the engine asked to be woken 10,000 times without anything happening");
    }
}

/// What a decision amounts to, comparable and printable.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// This rule's message is shown.
    Fire(String),
    /// This rule would have fired; the visitor is held out.
    Ghost(String),
    /// Nothing, held by this guardrail (if one held everything).
    Nothing(Option<Suppression>),
}

/// What `d` amounts to.
pub fn seen(d: &Decision) -> Seen {
    match &d.outcome {
        Outcome::Fire { rule, .. } => Seen::Fire(rule.id.to_string()),
        Outcome::Ghost { rule } => Seen::Ghost(rule.id.to_string()),
        Outcome::Nothing { held } => Seen::Nothing(held.clone()),
    }
}

/// `Seen::Fire(rule)`.
pub fn fire(rule: &str) -> Seen {
    Seen::Fire(rule.to_owned())
}

/// `Seen::Ghost(rule)`.
pub fn ghost(rule: &str) -> Seen {
    Seen::Ghost(rule.to_owned())
}

/// `Seen::Nothing(Some(why))`.
pub fn held(why: Suppression) -> Seen {
    Seen::Nothing(Some(why))
}

/// `Seen::Nothing(None)`: nothing fired and no guardrail was the reason.
pub fn quiet() -> Seen {
    Seen::Nothing(None)
}

// ---- events ----

/// A page view of `path` declared as `page_type`.
pub fn page_at(path: &str, page_type: PageType) -> Event {
    Event::PageView(PageView {
        url: format!("https://shop.example{path}"),
        path: path.to_owned(),
        title: format!("{page_type} page"),
        page_type: Some(page_type),
        ..PageView::default()
    })
}

/// A page view of a typical path for `page_type`.
pub fn page(page_type: PageType) -> Event {
    page_at(&format!("/{page_type}"), page_type)
}

/// A product page about `product`.
pub fn product_page(product: &str) -> Event {
    Event::PageView(PageView {
        url: format!("https://shop.example/products/{product}"),
        path: format!("/products/{product}"),
        title: product.to_owned(),
        page_type: Some(PageType::Product),
        product: Some(product.to_owned()),
        ..PageView::default()
    })
}

/// The cart now holds `items` items.
pub fn cart(items: u32) -> Event {
    Event::Cart(CartUpdate {
        value: 25.0 * f64::from(items),
        currency: "EUR".to_owned(),
        items,
    })
}

/// The pointer rests on a tracked element standing for `item`.
pub fn hover(element: &str, item: &str) -> Event {
    Event::Hover(Tracked {
        element: element.to_owned(),
        item: Some(item.to_owned()),
    })
}

/// An order.
pub fn conversion() -> Event {
    Event::Conversion {
        order_id: Some("order-1".to_owned()),
        value: 50.0,
    }
}

fn rule_id(rule: &str) -> RuleId {
    RuleId::parse(rule).expect("a valid rule id")
}

/// The visitor dismissed `rule`'s intervention.
pub fn dismissed(rule: &str) -> Event {
    Event::Dismissed {
        rule: rule_id(rule),
    }
}

/// The visitor engaged with `rule`'s intervention.
pub fn engaged(rule: &str) -> Event {
    Event::Engaged {
        rule: rule_id(rule),
    }
}

/// `rule`'s intervention is on screen.
pub fn shown(rule: &str) -> Event {
    Event::Shown {
        rule: rule_id(rule),
    }
}

/// The tab is shown or hidden.
pub fn visible(visible: bool) -> Event {
    Event::Visibility { visible }
}

/// The first visitor id of the form `{prefix}{i}` that lands in the holdout of `engine`
/// (`want_holdout`) or in its treated arm.
pub fn visitor_in_arm(engine: &Engine, prefix: &str, want_holdout: bool) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| {
            let arm = engine.arm(&VisitorId::parse(id).unwrap());
            (arm == beckon_engine::Arm::Holdout) == want_holdout
        })
        .expect("some visitor lands in each arm")
}
