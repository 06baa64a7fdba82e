//! The kinds of visitor the simulator plays, what each is after, and how often each comes.
//!
//! Each human persona is written for one of the demo's rules (`examples/demo-rules.toml`):
//! its visit meets the situation that rule waits for, with the timing the site policy allows
//! (nothing in the first seconds unless a cart or an exit signal). Browsers and converters
//! meet none; bots meet one on purpose, so that a run shows they are filtered.

use std::fmt;
use std::str::FromStr;

/// A kind of visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Persona {
    /// A few pages, some scrolling, gone: no rule is written for them.
    Browser,
    /// A product, a cart with items, the checkout, then an exit signal (`cart-exit-offer`).
    HesitatingBuyer,
    /// The pricing page, two plans or more looked at, ten seconds and more (`pricing-compare`).
    Comparer,
    /// Twenty seconds and more on a product page, the last five idle (`product-questions`).
    ProductDweller,
    /// A long article read past 60% for fifteen seconds and more (`article-email-capture`).
    Reader,
    /// A short first visit that leaves a cart, then a second visit in a new session, the
    /// cart still there, five seconds and more (`welcome-back-cart`).
    Returning,
    /// Straight to a cart and the checkout, and an order: nothing should interrupt them.
    Converter,
    /// A crawler (Googlebot's user agent) whose rendering passes a cart page with a cart and
    /// an exit signal: a person there would be offered `cart-exit-offer`.
    Crawler,
    /// An automated headless browser (`navigator.webdriver` set) that loads a page and does
    /// nothing at all.
    Headless,
}

/// What a persona's conversion is, as the rule written for it counts it (its `goal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// `goal = "order"`: a `convert` event with an order id and a value.
    Order,
    /// `goal = "event:NAME"`: a `track` event of that name.
    Event(&'static str),
    /// `goal = "lead"`: a `lead` event answering an e-mail capture. A visitor who was never
    /// offered the form cannot send one (its `intervention` must be one issued to them), so
    /// they sign up through the site's own form instead: an `identify` with their address.
    Lead,
}

impl Persona {
    /// Every persona, in the order summaries list them.
    pub const ALL: [Persona; 9] = [
        Persona::Browser,
        Persona::HesitatingBuyer,
        Persona::Comparer,
        Persona::ProductDweller,
        Persona::Reader,
        Persona::Returning,
        Persona::Converter,
        Persona::Crawler,
        Persona::Headless,
    ];

    /// Its name on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Persona::Browser => "browser",
            Persona::HesitatingBuyer => "hesitating-buyer",
            Persona::Comparer => "comparer",
            Persona::ProductDweller => "product-dweller",
            Persona::Reader => "reader",
            Persona::Returning => "returning",
            Persona::Converter => "converter",
            Persona::Crawler => "crawler",
            Persona::Headless => "headless",
        }
    }

    /// Whether the server should judge it a bot.
    pub fn is_bot(self) -> bool {
        matches!(self, Persona::Crawler | Persona::Headless)
    }

    /// The demo rule written for this persona's situation, if any.
    pub fn rule(self) -> Option<&'static str> {
        match self {
            Persona::HesitatingBuyer => Some("cart-exit-offer"),
            Persona::Comparer => Some("pricing-compare"),
            Persona::ProductDweller => Some("product-questions"),
            Persona::Reader => Some("article-email-capture"),
            Persona::Returning => Some("welcome-back-cart"),
            Persona::Browser | Persona::Converter | Persona::Crawler | Persona::Headless => None,
        }
    }

    /// What its conversion is.
    pub fn goal(self) -> Goal {
        match self {
            Persona::Comparer => Goal::Event("trial_started"),
            Persona::Reader => Goal::Lead,
            _ => Goal::Order,
        }
    }

    /// Its share of the traffic by default, in parts of 100.
    pub fn default_weight(self) -> f64 {
        match self {
            Persona::Browser => 30.0,
            Persona::HesitatingBuyer => 14.0,
            Persona::Comparer => 10.0,
            Persona::ProductDweller => 10.0,
            Persona::Reader => 10.0,
            Persona::Returning => 8.0,
            Persona::Converter => 8.0,
            Persona::Crawler => 6.0,
            Persona::Headless => 4.0,
        }
    }

    /// The probability that it converts when shown nothing, by default.
    pub fn default_base_rate(self) -> f64 {
        match self {
            Persona::Browser => 0.02,
            Persona::HesitatingBuyer => 0.10,
            Persona::Comparer => 0.08,
            Persona::ProductDweller => 0.05,
            Persona::Reader => 0.03,
            Persona::Returning => 0.15,
            Persona::Converter => 0.85,
            Persona::Crawler | Persona::Headless => 0.0,
        }
    }
}

impl fmt::Display for Persona {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Persona {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Persona::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Persona::ALL.iter().map(|p| p.name()).collect();
                format!("no persona {s:?}; the personas are {}", names.join(", "))
            })
    }
}

/// The true effect of each demo rule on conversion by default: being shown the rule
/// multiplies the visitor's base rate by `1 + effect`.
pub const DEFAULT_EFFECTS: [(&str, f64); 5] = [
    ("cart-exit-offer", 0.25),
    ("pricing-compare", 0.15),
    ("product-questions", 0.10),
    ("welcome-back-cart", 0.20),
    ("article-email-capture", 0.30),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for p in Persona::ALL {
            assert_eq!(p.name().parse::<Persona>(), Ok(p));
        }
        assert!(
            "robot"
                .parse::<Persona>()
                .unwrap_err()
                .contains("hesitating-buyer")
        );
    }

    #[test]
    fn every_rule_written_for_a_persona_has_a_default_effect() {
        for p in Persona::ALL {
            if let Some(rule) = p.rule() {
                assert!(DEFAULT_EFFECTS.iter().any(|(r, _)| *r == rule), "{rule}");
            }
        }
        let total: f64 = Persona::ALL.iter().map(|p| p.default_weight()).sum();
        assert_eq!(total, 100.0);
    }
}
