//! The benchmark's workload: a rule set and an event stream that look like a real shop's, made
//! from a seed so that every run, every machine and both engines of the comparison see exactly
//! the same work.
//!
//! The rules are the five example rules plus generated ones built from the shapes merchants
//! write (cart thresholds on exit, dwell on a product, comparing plans, deep reads, idle carts,
//! returning visitors), with 2 to 5 conditions nested in all/any/not. Rule `i` depends only on
//! `i`, so the 10-rule set is a prefix of the 50-rule set, which is a prefix of the 200-rule set.
//!
//! The stream simulates one journey per visitor (landing, browsing, carts, checkouts, reading,
//! leaving) with its own clock, then interleaves all journeys by time, the way a server sees
//! them arrive.

use std::collections::BTreeMap;
use std::time::Duration;

use beckon_engine::rules::{Condition, Goal, Literal, Message, Op, RuleFile, RuleSpec, Status};
use beckon_engine::{
    CartUpdate, Device, DeviceType, Engine, Event, PageType, PageView, Policy, Profile, RuleId,
    RuleSet, SessionStart, SiteId, Timestamp, Tracked, Tz, Utm, VisitorId,
};
use fastrand::Rng;

/// The seed used when none is given.
pub const SEED: u64 = 0x6265_636b_6f6e;

/// The example rules shipped with Beckon; every generated rule set starts with them.
pub const DEMO_RULES: &str = include_str!("../../../examples/demo-rules.toml");

/// The site the benchmark engine serves.
pub const SITE: &str = "bench-shop";

/// Where the simulated traffic starts (2026-05-28T08:53:20Z); only differences matter.
const EPOCH: Timestamp = Timestamp::from_secs(1_780_000_000);
/// Visits start spread over this window, so that thousands overlap at any moment.
const ARRIVAL_WINDOW_MS: i64 = 30 * 60 * 1000;

/// One visitor: what the edge knows when the visit starts, and what Beckon remembers of them.
#[derive(Clone, Debug)]
pub struct Visitor {
    /// The visitor id.
    pub id: VisitorId,
    /// Device, language and bot verdict.
    pub start: SessionStart,
    /// The profile before this visit (returning visitors carry history).
    pub profile: Profile,
    /// When the visit starts.
    pub started_at: Timestamp,
}

/// One event of the stream: which session it belongs to, what happened, and when.
#[derive(Clone, Debug)]
pub struct Step {
    /// Index into [`Workload::visitors`].
    pub session: u32,
    /// The event.
    pub event: Event,
    /// The instant the server handles it; increases within a session.
    pub now: Timestamp,
}

/// The visitors and their interleaved events.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The seed it was made from.
    pub seed: u64,
    /// One per session.
    pub visitors: Vec<Visitor>,
    /// Every event of every session, in arrival order.
    pub steps: Vec<Step>,
}

/// `n` live rules in Beckon's form, seeded with [`SEED`]: the example rules first, then
/// generated ones.
pub fn rules(n: usize) -> RuleFile {
    let demo = RuleSet::from_toml(DEMO_RULES, Tz::UTC)
        .expect("the example rules compile")
        .to_file()
        .rules;
    let mut out: Vec<RuleSpec> = demo.into_iter().take(n).collect();
    for i in out.len()..n {
        out.push(generated_rule(i));
    }
    RuleFile { rules: out }
}

/// An engine for [`SITE`] with the default (safe) policy and `rules(n)`.
pub fn engine(n: usize) -> Engine {
    engine_for(rules(n))
}

/// An engine for [`SITE`] with the default policy and these rules.
pub fn engine_for(file: RuleFile) -> Engine {
    let rules = RuleSet::compile(file, Tz::UTC).expect("the generated rules compile");
    Engine::new(
        SiteId::parse(SITE).expect("valid site id"),
        Policy::default(),
        rules,
    )
    .expect("the default policy is valid")
}

/// `count` events over `sessions` visits, seeded with [`SEED`].
pub fn events(sessions: usize, count: usize) -> Workload {
    Workload::generate(sessions, count, SEED)
}

impl Workload {
    /// `count` events over `sessions` visits from `seed`. Every visit gets at least one event
    /// when `count >= sessions`; lengths vary around the mean the way real visits do (many
    /// short ones, a few long ones).
    pub fn generate(sessions: usize, count: usize, seed: u64) -> Workload {
        assert!(sessions > 0, "a workload needs at least one session");
        assert!(
            sessions <= u32::MAX as usize,
            "session indices are stored as u32"
        );
        let lengths = visit_lengths(sessions, count, seed);
        let mut visitors = Vec::with_capacity(sessions);
        let mut steps = Vec::with_capacity(count);
        for (i, &len) in lengths.iter().enumerate() {
            let mut rng = Rng::with_seed(mix(seed, i as u64));
            let visitor = visitor(i, &mut rng);
            Journey::new(i as u32, &visitor, rng, len, &mut steps).run();
            visitors.push(visitor);
        }
        // Arrival order. (now, session) is unique because a session's clock strictly increases,
        // so the order does not depend on the sort algorithm.
        steps.sort_unstable_by_key(|s| (s.now, s.session));
        Workload {
            seed,
            visitors,
            steps,
        }
    }
}

/// A well-spread 64-bit seed for item `i` of a seeded family.
fn mix(seed: u64, i: u64) -> u64 {
    // SplitMix64's finaliser: neighbouring indices give unrelated seeds.
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How many events each visit has: exponential around the mean, then adjusted so that the
/// total is exactly `count`.
fn visit_lengths(sessions: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::with_seed(mix(seed, u64::MAX));
    let mean = count as f64 / sessions as f64;
    let floor = usize::from(count >= sessions);
    let mut lengths: Vec<usize> = (0..sessions)
        .map(|_| {
            let f = (-(1.0 - rng.f64()).ln()).clamp(0.1, 5.0);
            ((mean * f).round() as usize).max(floor)
        })
        .collect();
    let mut total: usize = lengths.iter().sum();
    let mut i = 0;
    while total != count {
        let l = &mut lengths[i % sessions];
        if total < count {
            *l += 1;
            total += 1;
        } else if *l > floor {
            *l -= 1;
            total -= 1;
        }
        i += 1;
    }
    lengths
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

fn leaf(var: &str, op: Op, value: impl Into<Literal>) -> Condition {
    Condition::leaf(var, op, value)
}

fn all(c: Vec<Condition>) -> Condition {
    Condition::All(c)
}

fn any(c: Vec<Condition>) -> Condition {
    Condition::Any(c)
}

fn not(c: Condition) -> Condition {
    Condition::Not(Box::new(c))
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// A threshold in `lo..=hi` rounded to `step`, as merchants write them.
fn round_to(rng: &mut Rng, lo: i32, hi: i32, step: i32) -> i32 {
    rng.i32(lo / step..=hi / step) * step
}

/// Generated rule number `i` (counted from zero, after the example rules).
fn generated_rule(i: usize) -> RuleSpec {
    let mut rng = Rng::with_seed(mix(SEED, 1_000_000 + i as u64));
    let r = &mut rng;
    let (stem, name, pages, mut leaves): (&str, String, Vec<PageType>, Vec<Condition>) =
        match i % 14 {
            0 => {
                let v = round_to(r, 30, 150, 10);
                (
                    "cart-exit",
                    format!("Leaving with a cart over {v}"),
                    vec![],
                    vec![
                        leaf("cart.value", Op::Gte, v),
                        leaf("behaviour.exit_intent", Op::Equals, true),
                    ],
                )
            }
            1 => {
                let el = *pick(r, &["size-guide", "reviews", "shipping-info"]);
                (
                    "product-dwell",
                    format!("Long look at a product, {el} hovered or deep scroll"),
                    vec![PageType::Product],
                    vec![
                        leaf("time.on_page", Op::Gte, round_to(r, 10, 60, 5)),
                        any(vec![
                            leaf("behaviour.scroll", Op::Gte, round_to(r, 40, 90, 10)),
                            leaf("behaviour.hovered", Op::Contains, el),
                        ]),
                    ],
                )
            }
            2 => {
                let el = *pick(r, &["plan-growth", "plan-starter", "faq"]);
                (
                    "pricing-undecided",
                    "Comparing plans for a while".to_owned(),
                    vec![PageType::Pricing],
                    vec![
                        leaf("behaviour.compared", Op::Gte, r.i32(2..=3)),
                        any(vec![
                            leaf("time.on_page", Op::Gte, round_to(r, 10, 40, 5)),
                            leaf("behaviour.hovered", Op::Contains, el),
                        ]),
                    ],
                )
            }
            3 => {
                let prefix = *pick(
                    r,
                    &[
                        "/collections/sale",
                        "/collections/new",
                        "/products/trail-",
                        "/blog/",
                    ],
                );
                (
                    "path-dwell",
                    format!("Lingering under {prefix} on a big screen"),
                    vec![],
                    vec![
                        leaf("page.path", Op::StartsWith, prefix),
                        leaf("time.on_page", Op::Gte, round_to(r, 10, 45, 5)),
                        not(leaf("device.type", Op::In, ["mobile"])),
                    ],
                )
            }
            4 => {
                let re = *pick(
                    r,
                    &[
                        "^/(blog|guides)/[a-z0-9-]+$",
                        "^/guides/",
                        "^/blog/.*(care|fit|size)",
                    ],
                );
                (
                    "deep-read",
                    "Deep reader of a guide".to_owned(),
                    vec![PageType::Article],
                    vec![
                        leaf("page.path", Op::Matches, re),
                        leaf("behaviour.scroll", Op::Gte, round_to(r, 50, 90, 10)),
                        leaf("time.on_page", Op::Gte, round_to(r, 15, 60, 5)),
                    ],
                )
            }
            5 => (
                "mobile-cart-idle",
                "Idle on a phone with items in the cart".to_owned(),
                vec![],
                vec![
                    leaf("device.type", Op::In, ["mobile", "tablet"]),
                    leaf("cart.items", Op::Gte, r.i32(1..=3)),
                    leaf("time.idle", Op::Gte, round_to(r, 5, 20, 5)),
                ],
            ),
            6 => (
                "loyal-browser",
                "Returning visitor browsing with intent".to_owned(),
                vec![],
                vec![
                    leaf("visitor.visits", Op::Gte, r.i32(2..=5)),
                    any(vec![
                        leaf("page.type", Op::In, ["product", "category"]),
                        leaf("cart.value", Op::Gte, round_to(r, 80, 200, 10)),
                    ]),
                    leaf("time.on_site", Op::Gte, round_to(r, 20, 90, 10)),
                ],
            ),
            7 => {
                let lo = round_to(r, 40, 120, 10);
                (
                    "checkout-stall",
                    "Stalled on checkout".to_owned(),
                    vec![PageType::Checkout],
                    vec![
                        leaf("time.idle", Op::Gte, round_to(r, 10, 30, 5)),
                        leaf(
                            "cart.value",
                            Op::Between,
                            [lo, lo + round_to(r, 100, 400, 50)],
                        ),
                    ],
                )
            }
            8 => (
                "shipping-question",
                "Checking shipping terms".to_owned(),
                vec![PageType::Product, PageType::Cart],
                vec![
                    leaf("behaviour.hovered", Op::Contains, "shipping-info"),
                    not(leaf("behaviour.exit_intent", Op::Equals, true)),
                    leaf("time.on_page", Op::Gte, round_to(r, 5, 20, 5)),
                ],
            ),
            9 => (
                "category-scroller",
                "Scrolling a category with an empty cart".to_owned(),
                vec![PageType::Category],
                vec![
                    leaf("behaviour.scroll", Op::Gte, round_to(r, 60, 90, 10)),
                    not(leaf("cart.items", Op::Gt, 0)),
                    leaf("time.on_page", Op::Gte, round_to(r, 10, 30, 5)),
                ],
            ),
            10 => (
                "free-shipping-nudge",
                "Small cart: free shipping is close".to_owned(),
                vec![PageType::Cart],
                vec![
                    leaf("cart.items", Op::Gt, 0),
                    leaf("cart.value", Op::Lt, round_to(r, 30, 60, 5)),
                    leaf("time.idle", Op::Gte, round_to(r, 5, 15, 5)),
                ],
            ),
            11 => (
                "search-help",
                "Searching without finding".to_owned(),
                vec![],
                vec![
                    leaf("page.path", Op::StartsWith, "/search"),
                    any(vec![
                        leaf("time.on_page", Op::Gte, round_to(r, 10, 30, 5)),
                        all(vec![
                            leaf("behaviour.scroll", Op::Gte, 50),
                            leaf("time.idle", Op::Gte, round_to(r, 5, 15, 5)),
                        ]),
                    ]),
                ],
            ),
            12 => (
                "first-visit-welcome",
                "First visit, exploring".to_owned(),
                vec![],
                vec![
                    leaf("visitor.returning", Op::Equals, false),
                    leaf("time.on_site", Op::Gte, round_to(r, 30, 120, 10)),
                    leaf("behaviour.compared", Op::Gte, r.i32(1..=3)),
                    leaf("page.type", Op::In, ["home", "category", "product"]),
                ],
            ),
            _ => (
                "product-comparer",
                "Comparing several products".to_owned(),
                vec![PageType::Product],
                vec![
                    leaf("behaviour.compared", Op::Gte, r.i32(3..=5)),
                    any(vec![
                        leaf("behaviour.exit_intent", Op::Equals, true),
                        leaf("time.idle", Op::Gte, round_to(r, 10, 25, 5)),
                    ]),
                ],
            ),
        };
    // A third of the rules narrow their audience further, as merchants do once a rule works.
    if leaves.len() < 4 && r.u8(..3) == 0 {
        leaves.push(match r.u8(..3) {
            0 => leaf("device.type", Op::In, ["desktop", "tablet"]),
            1 => leaf("visitor.visits", Op::Gte, r.i32(2..=3)),
            _ => leaf("behaviour.scroll", Op::Gte, 20),
        });
    }
    RuleSpec {
        id: format!("{stem}-{i:03}"),
        name,
        status: Status::Live,
        priority: r.i32(1..=99),
        when: all(leaves),
        delay: if r.u8(..5) == 0 {
            Duration::from_secs(r.u64(2..=5))
        } else {
            Duration::ZERO
        },
        repeat_after: Some(Duration::from_secs(*pick(r, &[86_400, 7 * 86_400]))),
        max_per_visitor: if r.bool() { Some(3) } else { None },
        schedule: None,
        rollout: if r.u8(..10) == 0 { 50.0 } else { 100.0 },
        pages,
        department: None,
        goal: Goal::Order,
        message: Message::Text {
            text: format!("Can we help? ({stem})"),
        },
        translations: BTreeMap::new(),
        ai_greeting: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Visitors
// ---------------------------------------------------------------------------------------------

fn visitor(i: usize, rng: &mut Rng) -> Visitor {
    let started_at = EPOCH.plus_ms(rng.i64(0..ARRIVAL_WINDOW_MS));
    let (kind, browser, os) = match rng.u8(..100) {
        0..55 => match rng.bool() {
            true => (DeviceType::Mobile, "Safari", "iOS"),
            false => (DeviceType::Mobile, "Chrome", "Android"),
        },
        55..62 => (DeviceType::Tablet, "Safari", "iPadOS"),
        _ => *pick(
            rng,
            &[
                (DeviceType::Desktop, "Chrome", "Windows"),
                (DeviceType::Desktop, "Safari", "macOS"),
                (DeviceType::Desktop, "Firefox", "Windows"),
                (DeviceType::Desktop, "Edge", "Windows"),
            ],
        ),
    };
    let start = SessionStart {
        device: Device {
            kind,
            browser: browser.to_owned(),
            browser_version: rng.u32(100..=130),
            os: os.to_owned(),
        },
        bot: rng.u8(..100) == 0,
        language: Some((*pick(rng, &["en", "en", "en", "fr", "de"])).to_owned()),
        utc_offset_minutes: *pick(rng, &[0, 60, 120, -300]),
    };
    let mut profile = Profile::default();
    // A third of the visitors have been here before; some of them met a rule or dismissed one.
    if rng.u8(..3) == 0 {
        let hour = 3_600_000;
        profile.visits = rng.u32(1..=8);
        profile.first_seen = Some(started_at.plus_ms(-rng.i64(2..60) * 24 * hour));
        profile.last_active = Some(started_at.plus_ms(-rng.i64(2..24 * 20) * hour));
        if rng.u8(..6) == 0 {
            let rule = RuleId::parse("cart-exit-offer").expect("valid rule id");
            let at = started_at.plus_ms(-rng.i64(1..40) * hour);
            profile.recent_fires.push(at);
            profile.interventions_seen = 1;
            profile.rules.push(beckon_engine::profile::RuleHistory {
                rule,
                last_fired: at,
                count: 1,
            });
        }
        if rng.u8(..10) == 0 {
            profile.dismissals = 1;
            profile
                .recent_dismissals
                .push(started_at.plus_ms(-rng.i64(2..20) * 24 * hour));
        }
    }
    Visitor {
        id: VisitorId::parse(&format!("v{i:07}-{:08x}", mix(i as u64, 7) as u32))
            .expect("valid visitor id"),
        start,
        profile,
        started_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Journeys
// ---------------------------------------------------------------------------------------------

const ORIGIN: &str = "https://shop.example";
const CATEGORIES: &[&str] = &["sale", "new", "shoes", "jackets", "bags", "accessories"];
const PRODUCT_LINES: &[&str] = &["trail", "city", "alpine", "coastal", "urban", "classic"];
const PRODUCT_KINDS: &[&str] = &[
    "runner", "jacket", "backpack", "boot", "tee", "hoodie", "cap", "sock",
];
const TOPICS: &[&str] = &[
    "boot-care",
    "how-to-fit-a-backpack",
    "layering-for-winter",
    "size-guide-explained",
    "trail-running-basics",
    "waterproofing-101",
    "packing-light",
    "jacket-fabrics",
    "choosing-socks",
    "caring-for-leather",
];
const SEARCHES: &[&str] = &["boots", "rain+jacket", "gift", "kids", "returns", "size"];
const DEMO_RULE_IDS: &[&str] = &[
    "cart-exit-offer",
    "pricing-compare",
    "product-questions",
    "welcome-back-cart",
    "article-email-capture",
];

/// What an in-page event can be.
#[derive(Clone, Copy)]
enum Move {
    Scroll,
    Activity,
    Hover,
    Tick,
    Idle,
    Hide,
    Cart,
    Exit,
    Dismiss,
    Convert,
}

/// One visit being simulated: its clock and what the visitor has done so far.
struct Journey<'a> {
    session: u32,
    rng: Rng,
    /// The visit's clock, in ms since the epoch.
    t: i64,
    /// Events still to emit.
    left: usize,
    out: &'a mut Vec<Step>,
    page: PageType,
    url: String,
    /// The current product and its price in cents, on product pages.
    product: Option<(String, u32)>,
    scroll: u8,
    cart_items: u32,
    cart_cents: u32,
    converted: bool,
    returning: bool,
}

impl<'a> Journey<'a> {
    fn new(
        session: u32,
        visitor: &Visitor,
        rng: Rng,
        len: usize,
        out: &'a mut Vec<Step>,
    ) -> Journey<'a> {
        Journey {
            session,
            rng,
            t: visitor.started_at.as_millis(),
            left: len,
            out,
            page: PageType::Home,
            url: String::new(),
            product: None,
            scroll: 0,
            cart_items: 0,
            cart_cents: 0,
            converted: false,
            returning: visitor.profile.visits > 0,
        }
    }

    fn run(mut self) {
        // The widget loads with the landing page, so every visit begins with a page view.
        let landing = match self.rng.u8(..100) {
            0..30 => PageType::Home,
            30..50 => PageType::Category,
            50..80 => PageType::Product,
            80..95 => PageType::Article,
            _ => PageType::Pricing,
        };
        let gap = self.rng.i64(50..400);
        self.view(landing, gap);
        // A returning visitor's cart comes back from the shop's storage right away.
        if self.returning && self.rng.u8(..4) == 0 {
            self.cart_items = self.rng.u32(1..=3);
            self.cart_cents = self.cart_items * self.rng.u32(2_000..12_000);
            let (gap, event) = (self.rng.i64(100..800), self.cart_event());
            self.emit(gap, event);
        }
        while self.left > 0 {
            let (lo, hi) = match self.page {
                PageType::Product => (3, 10),
                PageType::Article => (4, 12),
                PageType::Category => (2, 7),
                _ => (1, 6),
            };
            for _ in 0..self.rng.u32(lo..=hi) {
                if self.left == 0 {
                    return;
                }
                self.in_page();
            }
            let next = self.next_page();
            // Leaving a page often reports the old page's `pagehide` first, so the new page
            // view arrives while the visit is hidden.
            if self.rng.u8(..3) == 0 {
                let gap = self.rng.i64(200..2_000);
                self.emit(gap, Event::Visibility { visible: false });
            }
            let gap = self.rng.i64(300..6_000);
            self.view(next, gap);
        }
    }

    /// Appends an event `gap` ms after the previous one of this visit; false once the visit
    /// has used up its events.
    fn emit(&mut self, gap: i64, event: Event) -> bool {
        if self.left == 0 {
            return false;
        }
        self.t += gap.max(1);
        self.left -= 1;
        self.out.push(Step {
            session: self.session,
            event,
            now: Timestamp::from_millis(self.t),
        });
        true
    }

    fn cart_event(&self) -> Event {
        Event::Cart(CartUpdate {
            value: f64::from(self.cart_cents) / 100.0,
            currency: "EUR".to_owned(),
            items: self.cart_items,
        })
    }

    /// A short gap, with now and then a long pause (reading, a phone call).
    fn gap(&mut self, lo: i64, hi: i64) -> i64 {
        if self.rng.u8(..20) == 0 {
            self.rng.i64(20_000..90_000)
        } else {
            self.rng.i64(lo..hi)
        }
    }

    fn in_page(&mut self) {
        use Move::*;
        let p = self.page;
        let has_cart = self.cart_items > 0;
        let weights: [(Move, u32); 10] = [
            (Scroll, if p == PageType::Article { 48 } else { 28 }),
            (Activity, 20),
            (
                Hover,
                match p {
                    PageType::Product => 18,
                    PageType::Pricing => 22,
                    _ => 12,
                },
            ),
            (Tick, 12),
            (Idle, 5),
            (Hide, 5),
            (
                Cart,
                match p {
                    PageType::Product => 8,
                    PageType::Cart => 8,
                    _ => 0,
                },
            ),
            (
                Exit,
                match p {
                    PageType::Cart | PageType::Checkout => 8,
                    _ => 4,
                },
            ),
            (Dismiss, 1),
            (
                Convert,
                if p == PageType::Checkout && has_cart && !self.converted {
                    10
                } else {
                    0
                },
            ),
        ];
        let total: u32 = weights.iter().map(|w| w.1).sum();
        let mut roll = self.rng.u32(..total);
        let mv = weights
            .iter()
            .find(|(_, w)| {
                if roll < *w {
                    true
                } else {
                    roll -= w;
                    false
                }
            })
            .map(|w| w.0)
            .expect("the roll falls in one bucket");
        match mv {
            Scroll => {
                self.scroll = (self.scroll + self.rng.u8(5..=30)).min(100);
                let g = self.gap(200, 4_000);
                self.emit(g, Event::Scroll { depth: self.scroll });
            }
            Activity => {
                let g = self.gap(200, 4_000);
                self.emit(g, Event::Activity);
            }
            Hover => {
                let t = self.hover_target();
                let g = self.gap(300, 5_000);
                self.emit(g, Event::Hover(t));
            }
            Tick => {
                // The server's timer for a time-based condition.
                let g = self.rng.i64(3_000..20_000);
                self.emit(g, Event::Tick);
            }
            Idle => {
                let g = self.rng.i64(8_000..30_000);
                self.emit(g, Event::Idle);
            }
            Hide => {
                let g = self.gap(500, 6_000);
                if self.emit(g, Event::Visibility { visible: false }) {
                    if self.rng.bool() {
                        let g = self.rng.i64(5_000..30_000);
                        self.emit(g, Event::Tick);
                    }
                    let g = self.rng.i64(2_000..120_000);
                    self.emit(g, Event::Visibility { visible: true });
                }
            }
            Cart => {
                if p == PageType::Product {
                    let price = self.product.as_ref().map_or(3_000, |(_, c)| *c);
                    let qty = if self.rng.u8(..5) == 0 { 2 } else { 1 };
                    self.cart_items += qty;
                    self.cart_cents += qty * price;
                } else if has_cart && self.rng.u8(..3) == 0 {
                    let avg = self.cart_cents / self.cart_items;
                    self.cart_items -= 1;
                    self.cart_cents -= avg;
                } else {
                    self.cart_items += 1;
                    self.cart_cents += self.rng.u32(1_500..9_000);
                }
                let g = self.gap(1_000, 8_000);
                let e = self.cart_event();
                self.emit(g, e);
            }
            Exit => {
                let g = self.gap(500, 10_000);
                self.emit(g, Event::ExitIntent);
            }
            Dismiss => {
                let id: &&str = pick(&mut self.rng, DEMO_RULE_IDS);
                let rule = RuleId::parse(id).expect("valid id");
                let g = self.rng.i64(1_000..6_000);
                self.emit(g, Event::Dismissed { rule });
            }
            Convert => {
                self.converted = true;
                let g = self.rng.i64(5_000..40_000);
                let e = Event::Conversion {
                    order_id: Some(format!("ord-{}", self.session)),
                    value: f64::from(self.cart_cents) / 100.0,
                };
                if self.emit(g, e) {
                    self.cart_items = 0;
                    self.cart_cents = 0;
                    self.page_view(PageType::Other, "/thank-you".to_owned(), None, 800);
                }
            }
        }
    }

    fn hover_target(&mut self) -> Tracked {
        let r = &mut self.rng;
        let (element, item) = match self.page {
            PageType::Product => (
                *pick(
                    r,
                    &[
                        "add-to-cart",
                        "size-guide",
                        "reviews",
                        "shipping-info",
                        "price",
                    ],
                ),
                None,
            ),
            PageType::Pricing => *pick(
                r,
                &[
                    ("plan-starter", Some("starter")),
                    ("plan-growth", Some("growth")),
                    ("plan-scale", Some("scale")),
                    ("faq", None),
                ],
            ),
            PageType::Cart | PageType::Checkout => (
                *pick(r, &["checkout-button", "shipping-info", "coupon-field"]),
                None,
            ),
            PageType::Category => {
                // Hovering a product card compares it with the others.
                let slug = product_slug(r.usize(..product_count()));
                return Tracked {
                    element: "product-card".to_owned(),
                    item: Some(slug),
                };
            }
            _ => (*pick(r, &["newsletter", "related", "nav", "search"]), None),
        };
        Tracked {
            element: element.to_owned(),
            item: item.map(str::to_owned),
        }
    }

    fn next_page(&mut self) -> PageType {
        use PageType::*;
        let table: &[(PageType, u8)] = match self.page {
            Home => &[
                (Category, 45),
                (Product, 25),
                (Article, 15),
                (Pricing, 10),
                (Other, 5),
            ],
            Category => &[
                (Product, 60),
                (Category, 20),
                (Home, 5),
                (Other, 10),
                (Cart, 5),
            ],
            Product if self.cart_items > 0 => &[
                (Product, 30),
                (Category, 15),
                (Cart, 40),
                (Article, 5),
                (Other, 10),
            ],
            Product => &[
                (Product, 45),
                (Category, 30),
                (Pricing, 5),
                (Article, 10),
                (Other, 10),
            ],
            Pricing => &[(Pricing, 20), (Product, 30), (Home, 20), (Other, 30)],
            Cart if self.cart_items > 0 => &[(Checkout, 55), (Product, 30), (Category, 15)],
            Cart => &[(Product, 50), (Category, 50)],
            Checkout => &[(Checkout, 50), (Cart, 30), (Product, 20)],
            Article => &[(Article, 40), (Product, 30), (Home, 20), (Category, 10)],
            Other => &[(Home, 30), (Category, 30), (Product, 40)],
        };
        let mut roll = self.rng.u8(..100);
        for &(page, w) in table {
            if roll < w {
                return page;
            }
            roll -= w;
        }
        table[0].0
    }

    /// Navigates to a page of type `page`.
    fn view(&mut self, page: PageType, gap: i64) {
        let r = &mut self.rng;
        let (path, product) = match page {
            PageType::Home => ("/".to_owned(), None),
            PageType::Category => (format!("/collections/{}", pick(r, CATEGORIES)), None),
            PageType::Product => {
                let n = r.usize(..product_count());
                (format!("/products/{}", product_slug(n)), Some(n))
            }
            PageType::Pricing => ("/pricing".to_owned(), None),
            PageType::Cart => ("/cart".to_owned(), None),
            PageType::Checkout => (
                (*pick(
                    r,
                    &[
                        "/checkout/information",
                        "/checkout/shipping",
                        "/checkout/payment",
                    ],
                ))
                .to_owned(),
                None,
            ),
            PageType::Article => (
                format!("/{}/{}", pick(r, &["blog", "guides"]), pick(r, TOPICS)),
                None,
            ),
            PageType::Other => (
                (*pick(r, &["/search", "/search", "/about", "/account/orders"])).to_owned(),
                None,
            ),
        };
        self.page_view(page, path, product, gap);
    }

    fn page_view(&mut self, page: PageType, path: String, product: Option<usize>, gap: i64) {
        let query = if path == "/search" {
            format!("?q={}", pick(&mut self.rng, SEARCHES))
        } else {
            String::new()
        };
        let url = format!("{ORIGIN}{path}{query}");
        let landing = self.url.is_empty();
        let referrer = if landing {
            (*pick(
                &mut self.rng,
                &["", "https://www.google.com/", "https://www.instagram.com/"],
            ))
            .to_owned()
        } else {
            self.url.clone()
        };
        let utm = if landing && self.rng.u8(..4) == 0 {
            Utm {
                source: Some("newsletter".to_owned()),
                medium: Some("email".to_owned()),
                campaign: Some("summer-sale".to_owned()),
            }
        } else {
            Utm::default()
        };
        let title = match (page, product) {
            (_, Some(n)) => format!("{} | Acme Outfitters", product_title(n)),
            (PageType::Home, _) => "Acme Outfitters: outdoor gear".to_owned(),
            _ => format!("{} | Acme Outfitters", path.trim_start_matches('/')),
        };
        self.product = product.map(|n| (product_slug(n), product_cents(n)));
        self.page = page;
        self.scroll = 0;
        self.url = url.clone();
        self.emit(
            gap,
            Event::PageView(PageView {
                url,
                path,
                title,
                page_type: Some(page),
                referrer,
                product: product.map(product_slug),
                utm,
            }),
        );
    }
}

fn product_count() -> usize {
    PRODUCT_LINES.len() * PRODUCT_KINDS.len() * 5
}

/// The slug of catalogue item `n`, e.g. `alpine-boot-3`.
fn product_slug(n: usize) -> String {
    let line = PRODUCT_LINES[n % PRODUCT_LINES.len()];
    let kind = PRODUCT_KINDS[(n / PRODUCT_LINES.len()) % PRODUCT_KINDS.len()];
    format!(
        "{line}-{kind}-{}",
        n / (PRODUCT_LINES.len() * PRODUCT_KINDS.len()) + 1
    )
}

fn product_title(n: usize) -> String {
    let mut t = product_slug(n).replace('-', " ");
    t[..1].make_ascii_uppercase();
    t
}

/// The price of catalogue item `n` in cents: 15 to 250 euros, fixed per item.
fn product_cents(n: usize) -> u32 {
    1_500 + (mix(n as u64, 11) % 23_500) as u32 / 100 * 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_sets_compile_and_grow_by_prefix() {
        let r10 = rules(10);
        let r50 = rules(50);
        assert_eq!(r10.rules.len(), 10);
        assert_eq!(r10.rules[..], r50.rules[..10]);
        assert!(r50.rules.iter().any(|r| r.id == "cart-exit-offer"));
        assert_eq!(engine(200).rules().len(), 200);
    }

    #[test]
    fn the_stream_is_deterministic_ordered_and_starts_each_visit_with_a_page_view() {
        let a = events(500, 10_000);
        let b = events(500, 10_000);
        assert_eq!(a.steps.len(), 10_000);
        assert!(
            a.steps
                .iter()
                .zip(&b.steps)
                .all(|(x, y)| (x.session, x.now, &x.event) == (y.session, y.now, &y.event))
        );
        let mut last = vec![None; 500];
        for s in &a.steps {
            let prev = &mut last[s.session as usize];
            match prev {
                None => assert!(matches!(s.event, Event::PageView(_))),
                Some(t) => assert!(s.now > *t),
            }
            *prev = Some(s.now);
        }
        assert!(a.steps.windows(2).all(|w| w[0].now <= w[1].now));
    }
}
