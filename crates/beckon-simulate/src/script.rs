//! One visitor's script: what they do and when, drawn from the run's seed and their number.
//!
//! A script is data (no ids, no clock), so that the same seed gives the same scripts on every
//! run and every machine, and a test can compare them. Everything random a visit needs is drawn
//! here, including the numbers its reactions and its conversion are decided with: what the
//! visit then does depends only on the script and on what the server sends.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::persona::Persona;
use crate::shop::{self, Page};

/// The user agents of the people: common desktop and phone browsers, none of which the
/// server's bot filter flags.
pub const BROWSERS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];
/// Googlebot's user agent (its rendering service runs the page's scripts).
pub const GOOGLEBOT: &str = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// A headless Chromium's user agent.
pub const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";

/// How many reactions a script holds: more than the interventions a visit can be shown under
/// the default caps (two per session, three a day).
pub const REACTIONS: usize = 4;

/// One visitor's script.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    /// The visitor's number in the run, from 0.
    pub index: u64,
    /// Who they are.
    pub persona: Persona,
    /// Their browser's user agent.
    pub user_agent: &'static str,
    /// What the widget reports about the browser.
    pub context: Context,
    /// What they do, in order.
    pub steps: Vec<Step>,
    /// How they answer each intervention they are shown, in turn.
    pub reactions: [Reaction; REACTIONS],
    /// The uniform number in [0, 1) their conversion is decided with: they convert when it
    /// is below their conversion probability.
    pub conversion_roll: f64,
    /// The value of their order, if they place one.
    pub order_value: f64,
    /// The plan of their trial, if they start one.
    pub plan: (&'static str, f64),
    /// Whether the last batch of each visit goes as a beacon (`POST /v1/events`), as the
    /// widget sends it when the page is hidden, rather than over the socket.
    pub beacon: bool,
}

/// What the widget reports about the browser (`context` in the protocol).
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    /// `navigator.language`.
    pub lang: &'static str,
    /// Minutes east of UTC.
    pub tz_offset: i32,
    /// The screen's size.
    pub screen: (u32, u32),
    /// `navigator.webdriver`.
    pub webdriver: bool,
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Report these events, in one batch.
    Send(Vec<Event>),
    /// Stay on the page this long (interventions pushed meanwhile are answered).
    Wait(Duration),
    /// Decide the conversion and report it if it happens.
    Convert,
    /// Leave the page: the tab is hidden (the visit's last batch), the socket closed.
    Leave,
    /// Come back after this long, in a new session of the same visitor.
    Return(Duration),
}

/// An event of the widget's, without its id and time.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A page view (a new page load).
    Page {
        /// The page.
        page: Page,
        /// Where the visitor came from.
        referrer: &'static str,
    },
    /// The deepest scroll so far on this page, in percent.
    Scroll(u8),
    /// The visitor moved, typed or touched.
    Activity,
    /// A hover over a tracked element.
    Hover {
        /// Its `data-beckon-track`.
        element: &'static str,
        /// Its `data-beckon-item`.
        item: Option<&'static str>,
    },
    /// A click on a tracked element.
    Click {
        /// Its `data-beckon-track`.
        element: &'static str,
        /// Its `data-beckon-item`.
        item: Option<&'static str>,
    },
    /// The cart, as the shop reports it.
    Cart {
        /// Its value.
        value: f64,
        /// Its item count.
        items: u32,
    },
    /// The pointer left through the top of the window.
    ExitIntent,
    /// The tab was shown or hidden.
    Visibility(bool),
}

/// How a visitor answers one intervention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reaction {
    /// How long they look at it before answering.
    pub delay: Duration,
    /// The uniform number in [0, 1) the answer is decided with (engage below the engage
    /// probability, dismiss in the next band, else leave it be).
    pub roll: f64,
}

/// The knobs a script is drawn with.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    /// The run's seed.
    pub seed: u64,
    /// Each persona with its weight in the mix.
    pub mix: &'a [(Persona, f64)],
    /// The pause between a returning visitor's two visits.
    pub return_after: Duration,
}

impl Plan<'_> {
    /// The script of visitor `index`. It depends on the seed, the mix and `index` only (not
    /// on how many visitors the run has), so a shorter run plays the first scripts of a longer
    /// one.
    pub fn script(&self, index: u64) -> Script {
        let mut rng = StdRng::seed_from_u64(mix64(self.seed, index));
        let persona = pick(&mut rng, self.mix);
        let user_agent = match persona {
            Persona::Crawler => GOOGLEBOT,
            Persona::Headless => HEADLESS,
            _ => BROWSERS[rng.random_range(0..BROWSERS.len())],
        };
        let (lang, tz_offset) = [("en-US", -300), ("en-GB", 0), ("fr-FR", 60), ("de-DE", 60)]
            [weighted(&mut rng, &[70, 10, 10, 10])];
        let context = Context {
            lang,
            tz_offset,
            screen: if user_agent.contains("Mobile") {
                (390, 844)
            } else {
                (1440, 900)
            },
            webdriver: persona == Persona::Headless,
        };
        let mut draw = Draw { rng: &mut rng };
        let steps = draw.steps(persona, self.return_after);
        let reactions = std::array::from_fn(|_| Reaction {
            delay: draw.ms(600, 2_500),
            roll: draw.rng.random(),
        });
        let conversion_roll = draw.rng.random();
        let order_value = cart_value_of(&steps).unwrap_or_else(|| draw.value());
        let plan = shop::PLANS[draw.rng.random_range(0..2)];
        let beacon = draw.rng.random_bool(0.25);
        Script {
            index,
            persona,
            user_agent,
            context,
            steps,
            reactions,
            conversion_roll,
            order_value,
            plan,
            beacon,
        }
    }
}

impl Script {
    /// How long the script takes when nothing interrupts it (waits and returns added up).
    pub fn duration(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Wait(d) | Step::Return(d) => *d,
                _ => Duration::ZERO,
            })
            .sum()
    }

    /// A digest of the script, to compare runs by.
    pub fn digest(&self) -> u64 {
        // FNV-1a of the script's debug form: stable for a given build, which is all a
        // comparison of two runs needs.
        format!("{self:?}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }
}

/// The value of the last cart a script reports.
fn cart_value_of(steps: &[Step]) -> Option<f64> {
    steps.iter().rev().find_map(|s| match s {
        Step::Send(events) => events.iter().rev().find_map(|e| match e {
            Event::Cart { value, .. } => Some(*value),
            _ => None,
        }),
        _ => None,
    })
}

/// Draws the parts of a script.
struct Draw<'r> {
    rng: &'r mut StdRng,
}

/// Referrers of landing pages.
const REFERRERS: [&str; 3] = [
    "",
    "https://www.google.com/",
    "https://news.example/trail-gear",
];

impl Draw<'_> {
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.random_range(lo..=hi))
    }

    /// An amount between 20 and 200, in cents.
    fn value(&mut self) -> f64 {
        f64::from(self.rng.random_range(2_000..=20_000u32)) / 100.0
    }

    fn product(&mut self) -> Page {
        shop::PRODUCTS[self.rng.random_range(0..shop::PRODUCTS.len())]
    }

    fn landing(&mut self, page: Page) -> Event {
        Event::Page {
            page,
            referrer: REFERRERS[self.rng.random_range(0..REFERRERS.len())],
        }
    }

    fn cart(&mut self) -> Event {
        Event::Cart {
            value: self.value(),
            items: self.rng.random_range(1..=3),
        }
    }

    fn steps(&mut self, persona: Persona, return_after: Duration) -> Vec<Step> {
        let inner = |page: Page| Event::Page { page, referrer: "" };
        match persona {
            Persona::Browser => {
                let first = if self.rng.random_bool(0.5) {
                    shop::HOME
                } else {
                    shop::CATEGORY
                };
                let mut steps = vec![
                    Step::Send(vec![self.landing(first)]),
                    Step::Wait(self.ms(1_000, 2_500)),
                    Step::Send(vec![
                        Event::Scroll(self.rng.random_range(15..=50)),
                        Event::Activity,
                    ]),
                    Step::Wait(self.ms(800, 2_000)),
                    Step::Send(vec![inner(self.product())]),
                    Step::Wait(self.ms(1_000, 2_500)),
                    Step::Send(vec![Event::Scroll(self.rng.random_range(10..=60))]),
                ];
                if self.rng.random_bool(0.5) {
                    steps.extend([
                        Step::Wait(self.ms(800, 2_000)),
                        Step::Send(vec![inner(shop::CATEGORY)]),
                    ]);
                }
                steps.extend([Step::Wait(self.ms(800, 1_500)), Step::Convert, Step::Leave]);
                steps
            }
            Persona::HesitatingBuyer => {
                let product = self.product();
                let cart = self.cart();
                vec![
                    Step::Send(vec![self.landing(product)]),
                    Step::Wait(self.ms(1_000, 2_500)),
                    Step::Send(vec![
                        Event::Scroll(self.rng.random_range(30..=70)),
                        Event::Click {
                            element: "add-to-cart",
                            item: product.product,
                        },
                        cart.clone(),
                    ]),
                    Step::Wait(self.ms(800, 2_000)),
                    Step::Send(vec![inner(shop::CART), cart.clone()]),
                    Step::Wait(self.ms(800, 2_000)),
                    Step::Send(vec![inner(shop::CHECKOUT), cart]),
                    Step::Wait(self.ms(1_000, 3_000)),
                    // With items in the cart the arrival grace does not apply: the offer
                    // comes in answer to this very batch.
                    Step::Send(vec![Event::ExitIntent]),
                    Step::Wait(self.ms(3_000, 4_000)),
                    Step::Convert,
                    Step::Leave,
                ]
            }
            Persona::Comparer => {
                let mut plans = shop::PLANS.map(|(p, _)| p);
                if self.rng.random_bool(0.5) {
                    plans.swap(0, 2);
                }
                let first = self.ms(1_000, 2_000);
                let second = self.ms(1_000, 2_000);
                let third = self.ms(500, 1_500);
                // The rule wants ten seconds on the page; stay two to four more.
                let rest = Duration::from_secs(10) + self.ms(2_500, 4_500) - first - second - third;
                vec![
                    Step::Send(vec![self.landing(shop::PRICING)]),
                    Step::Wait(first),
                    Step::Send(vec![
                        Event::Scroll(self.rng.random_range(20..=40)),
                        Event::Hover {
                            element: "plan",
                            item: Some(plans[0]),
                        },
                    ]),
                    Step::Wait(second),
                    Step::Send(vec![Event::Hover {
                        element: "plan",
                        item: Some(plans[1]),
                    }]),
                    Step::Wait(third),
                    Step::Send(vec![
                        Event::Scroll(self.rng.random_range(50..=80)),
                        Event::Hover {
                            element: "pricing-faq",
                            item: None,
                        },
                    ]),
                    Step::Wait(rest),
                    Step::Convert,
                    Step::Leave,
                ]
            }
            Persona::ProductDweller => {
                let product = self.product();
                let element =
                    shop::PRODUCT_ELEMENTS[self.rng.random_range(0..shop::PRODUCT_ELEMENTS.len())];
                let waits = [
                    self.ms(1_500, 3_000),
                    self.ms(2_000, 4_000),
                    self.ms(2_000, 4_000),
                ];
                // The last interaction comes at most 11 s in, so five idle seconds have
                // passed when the page reaches twenty: stay two to four seconds more.
                let rest = Duration::from_secs(20) + self.ms(2_500, 4_500)
                    - waits.iter().sum::<Duration>();
                vec![
                    Step::Send(vec![self.landing(product)]),
                    Step::Wait(waits[0]),
                    Step::Send(vec![
                        Event::Scroll(self.rng.random_range(20..=40)),
                        Event::Activity,
                    ]),
                    Step::Wait(waits[1]),
                    Step::Send(vec![
                        Event::Hover {
                            element,
                            item: product.product,
                        },
                        Event::Scroll(self.rng.random_range(50..=80)),
                    ]),
                    Step::Wait(waits[2]),
                    Step::Send(vec![Event::Activity]),
                    Step::Wait(rest),
                    Step::Convert,
                    Step::Leave,
                ]
            }
            Persona::Reader => {
                let waits = [
                    self.ms(2_000, 3_000),
                    self.ms(2_000, 3_000),
                    self.ms(2_000, 3_000),
                ];
                // Past 60% within nine seconds; the rule wants fifteen on the page.
                let rest = Duration::from_secs(15) + self.ms(2_500, 4_000)
                    - waits.iter().sum::<Duration>();
                vec![
                    Step::Send(vec![Event::Page {
                        page: shop::ARTICLE,
                        referrer: "https://news.example/trail-gear",
                    }]),
                    Step::Wait(waits[0]),
                    Step::Send(vec![Event::Scroll(self.rng.random_range(20..=35))]),
                    Step::Wait(waits[1]),
                    Step::Send(vec![
                        Event::Scroll(self.rng.random_range(40..=55)),
                        Event::Activity,
                    ]),
                    Step::Wait(waits[2]),
                    Step::Send(vec![Event::Scroll(self.rng.random_range(62..=90))]),
                    Step::Wait(rest),
                    Step::Convert,
                    Step::Leave,
                ]
            }
            Persona::Returning => {
                let product = self.product();
                let cart = self.cart();
                let landing = self.ms(2_000, 3_000);
                vec![
                    // The first visit: a cart, then gone without an exit signal.
                    Step::Send(vec![self.landing(product)]),
                    Step::Wait(self.ms(1_000, 2_000)),
                    Step::Send(vec![
                        Event::Click {
                            element: "add-to-cart",
                            item: product.product,
                        },
                        cart.clone(),
                    ]),
                    Step::Wait(self.ms(1_000, 2_000)),
                    Step::Send(vec![inner(shop::CART), cart.clone()]),
                    Step::Wait(self.ms(500, 1_500)),
                    Step::Leave,
                    Step::Return(return_after),
                    // The second visit: the shop reports the cart kept in its storage on
                    // load; the rule wants five seconds on the site.
                    Step::Send(vec![self.landing(shop::HOME), cart]),
                    Step::Wait(landing),
                    Step::Send(vec![
                        Event::Scroll(self.rng.random_range(20..=50)),
                        Event::Activity,
                    ]),
                    Step::Wait(Duration::from_secs(5) + self.ms(2_500, 4_000) - landing),
                    Step::Convert,
                    Step::Leave,
                ]
            }
            Persona::Converter => {
                let product = self.product();
                let cart = self.cart();
                vec![
                    Step::Send(vec![self.landing(product)]),
                    Step::Wait(self.ms(800, 1_500)),
                    Step::Send(vec![
                        Event::Click {
                            element: "add-to-cart",
                            item: product.product,
                        },
                        cart.clone(),
                    ]),
                    Step::Wait(self.ms(500, 1_000)),
                    Step::Send(vec![inner(shop::CHECKOUT), cart]),
                    Step::Wait(self.ms(1_000, 2_000)),
                    Step::Convert,
                    Step::Leave,
                ]
            }
            Persona::Crawler => vec![
                Step::Send(vec![inner(shop::HOME)]),
                Step::Wait(self.ms(300, 800)),
                Step::Send(vec![inner(shop::CATEGORY)]),
                Step::Wait(self.ms(300, 800)),
                Step::Send(vec![inner(shop::CART), self.cart(), Event::ExitIntent]),
                Step::Wait(self.ms(1_500, 2_000)),
                Step::Send(vec![inner(shop::ARTICLE), Event::Scroll(100)]),
                Step::Wait(self.ms(300, 800)),
                Step::Leave,
            ],
            Persona::Headless => vec![
                Step::Send(vec![inner(shop::HOME)]),
                Step::Wait(self.ms(3_000, 6_000)),
                Step::Leave,
            ],
        }
    }
}

/// A persona drawn by weight.
fn pick(rng: &mut StdRng, mix: &[(Persona, f64)]) -> Persona {
    let total: f64 = mix.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (persona, weight) in mix {
        if x < *weight {
            return *persona;
        }
        x -= weight;
    }
    // Rounding at the very top of the range.
    mix.iter()
        .rev()
        .find(|(_, w)| *w > 0.0)
        .map_or(Persona::Browser, |(p, _)| *p)
}

/// An index drawn by integer weights.
fn weighted(rng: &mut StdRng, weights: &[u32]) -> usize {
    let mut x = rng.random_range(0..weights.iter().sum::<u32>());
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// splitmix64 of the seed and the index: neighbouring visitors get unrelated streams.
fn mix64(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix() -> Vec<(Persona, f64)> {
        Persona::ALL
            .iter()
            .map(|p| (*p, p.default_weight()))
            .collect()
    }

    fn plan(seed: u64, mix: &[(Persona, f64)]) -> Plan<'_> {
        Plan {
            seed,
            mix,
            return_after: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_scripts_and_another_seed_others() {
        let mix = mix();
        let a: Vec<_> = (0..200).map(|i| plan(7, &mix).script(i)).collect();
        let b: Vec<_> = (0..200).map(|i| plan(7, &mix).script(i)).collect();
        let c: Vec<_> = (0..200).map(|i| plan(8, &mix).script(i)).collect();
        assert_eq!(a, b);
        assert_eq!(
            a.iter().map(Script::digest).collect::<Vec<_>>(),
            b.iter().map(Script::digest).collect::<Vec<_>>()
        );
        assert_ne!(a, c);
    }

    #[test]
    fn the_mix_is_followed() {
        let mix = mix();
        let n = 20_000;
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..n {
            *counts
                .entry(plan(1, &mix).script(i).persona)
                .or_insert(0u64) += 1;
        }
        for p in Persona::ALL {
            let share = counts[&p] as f64 / n as f64 * 100.0;
            // Binomial noise over 20 000 draws is below half a point.
            assert!((share - p.default_weight()).abs() < 1.5, "{p}: {share:.1}%");
        }
        let only = [(Persona::Reader, 1.0), (Persona::Browser, 0.0)];
        assert!((0..100).all(|i| plan(1, &only).script(i).persona == Persona::Reader));
    }

    /// Each persona's script meets its rule's timing with a margin, and never ends before the
    /// intervention could come.
    #[test]
    fn scripts_stay_long_enough_for_their_rules() {
        let mix = mix();
        for i in 0..2_000 {
            let s = plan(3, &mix).script(i);
            let d = s.duration().as_secs_f64();
            let least = match s.persona {
                Persona::Comparer => 12.5,
                Persona::ProductDweller => 22.5,
                Persona::Reader => 17.5,
                Persona::Returning => 2.0 + 7.5,
                _ => 0.0,
            };
            assert!(d >= least, "{}: {d} s", s.persona);
            assert!(d < 40.0, "{}: {d} s", s.persona);
            assert!(matches!(s.steps.last(), Some(Step::Leave)));
            assert!(
                matches!(s.steps.first(), Some(Step::Send(e)) if matches!(e[0], Event::Page { .. }))
            );
            assert_eq!(s.context.webdriver, s.persona == Persona::Headless);
            assert!((20.0..=200.0).contains(&s.order_value));
            if s.persona == Persona::ProductDweller {
                // Time on the page up to the last interaction is at most 11 s.
                let before_quiet: Duration = s
                    .steps
                    .iter()
                    .take_while(|st| !matches!(st, Step::Send(e) if e == &vec![Event::Activity]))
                    .map(|st| match st {
                        Step::Wait(d) => *d,
                        _ => Duration::ZERO,
                    })
                    .sum();
                assert!(before_quiet <= Duration::from_secs(11), "{before_quiet:?}");
            }
        }
    }
}
