//! Who is at the other end: a person or a bot, and on which device.
//!
//! Bots are judged in layers, before the engine sees anything: the user agent against the
//! pattern list of the `isbot` npm package ([`patterns`]) and uap-core's spiders ([`device`]),
//! then what the browser itself reports of automation, then what the session does
//! ([`behaviour`]). A verdict names its layer and its
//! reason, which the log keeps for the operator.
//!
//! **Architecture invariant**: this crate knows no HTTP, no store and no wire shape. It reads
//! strings and answers verdicts and devices; it is pure but for its vendored lists, compiled once.

pub mod behaviour;
pub mod device;
pub mod patterns;

use std::fmt;

pub use device::{Hints, device};

/// The layer that judged a sender a bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The user agent.
    UserAgent,
    /// The browser's own report of automation.
    Automation,
    /// What the session does.
    Behaviour,
}

impl Layer {
    /// Its name in a reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::UserAgent => "user agent",
            Layer::Automation => "automation",
            Layer::Behaviour => "behaviour",
        }
    }
}

/// Why a sender is a bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The layer that said so.
    pub layer: Layer,
    /// What it saw.
    pub reason: String,
}

impl fmt::Display for Verdict {
    /// `layer: reason`, as the log keeps it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.layer.as_str(), self.reason)
    }
}

/// What the browser reports of itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Automation<'a> {
    /// `navigator.webdriver`.
    pub webdriver: bool,
    /// The marks of automation the widget found in the page ([`MARKERS`]' names).
    pub markers: &'a [String],
}

/// The marks automation tools leave in a page, as the widget looks for them (each a property
/// of `window`): `(name, tool)`.
pub const MARKERS: &[(&str, &str)] = &[
    ("callPhantom", "PhantomJS"),
    ("_phantom", "PhantomJS"),
    ("__nightmare", "Nightmare"),
    ("domAutomation", "Chrome's automation extension"),
    ("domAutomationController", "Chrome's automation extension"),
    ("_selenium", "Selenium"),
    ("callSelenium", "Selenium"),
    ("__playwright__binding__", "Playwright"),
];

/// The most characters of a mark the reason repeats.
const MAX_MARKER_CHARS: usize = 64;

/// Apps whose web view people read pages in, and whose user agent one of the isbot patterns
/// catches by a word of the app's name: `(marker, what else the user agent must hold)`.
const PEOPLE_IN_APPS: &[(&str, &[&str])] = &[
    // Apple News shows articles in Safari's web view; isbot's `news` is for news crawlers.
    (" AppleNews/", &["AppleWebKit/", "like Mac OS X"]),
];

/// Whether `user_agent` is one of [`PEOPLE_IN_APPS`].
fn person_in_app(user_agent: &str) -> bool {
    PEOPLE_IN_APPS.iter().any(|(marker, with)| {
        user_agent.contains(marker) && with.iter().all(|w| user_agent.contains(w))
    })
}

/// The verdict on a user agent alone: empty, one of the isbot patterns (but for the apps of
/// [`PEOPLE_IN_APPS`]), or a device uap-core names a spider.
pub fn judge_user_agent(user_agent: &str) -> Option<Verdict> {
    let verdict = |reason: String| Verdict {
        layer: Layer::UserAgent,
        reason,
    };
    if user_agent.trim().is_empty() {
        return Some(verdict("empty".to_owned()));
    }
    if let Some(pattern) = patterns::Patterns::get()
        .matching(user_agent)
        .filter(|_| !person_in_app(user_agent))
    {
        return Some(verdict(format!("matches the isbot pattern {pattern:?}")));
    }
    (device::parse(user_agent).device == "Spider")
        .then(|| verdict("uap-core names its device a spider".to_owned()))
}

/// Compiles the pattern list and uap-core's regexes now (they compile once, on first use
/// otherwise: a few hundred milliseconds, longer in a debug build).
pub fn warm() {
    patterns::Patterns::get();
    device::parse("");
}

/// The verdict on what a browser reports of its automation: `navigator.webdriver`, or a mark
/// an automation tool left in the page (one the widget does not know of is still a mark:
/// no person's browser reports one).
pub fn judge_automation(automation: Automation) -> Option<Verdict> {
    let verdict = |reason: String| Verdict {
        layer: Layer::Automation,
        reason,
    };
    if automation.webdriver {
        return Some(verdict("navigator.webdriver is set".to_owned()));
    }
    let marker = automation
        .markers
        .iter()
        .map(|m| m.trim())
        .find(|m| !m.is_empty())?;
    let name: String = marker.chars().take(MAX_MARKER_CHARS).collect();
    Some(verdict(match MARKERS.iter().find(|(n, _)| *n == name) {
        Some((_, tool)) => format!("the page holds {name} ({tool})"),
        None => format!("the page holds the automation mark {name:?}"),
    }))
}

/// The verdict on a sender: its user agent, then what its browser reports.
pub fn judge(user_agent: &str, automation: Automation) -> Option<Verdict> {
    judge_user_agent(user_agent).or_else(|| judge_automation(automation))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn crawlers_headless_browsers_and_automation_are_bots_with_their_layer() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "",
        ] {
            let v = judge(ua, Automation::default()).unwrap_or_else(|| panic!("{ua:?} is a bot"));
            assert_eq!(v.layer, Layer::UserAgent, "{ua:?}");
        }
        let v = judge(
            CHROME,
            Automation {
                webdriver: true,
                ..Automation::default()
            },
        )
        .expect("automated");
        assert_eq!(v.to_string(), "automation: navigator.webdriver is set");
        let marks = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let phantom = marks(&["callPhantom", "_phantom"]);
        let v = judge(
            CHROME,
            Automation {
                webdriver: false,
                markers: &phantom,
            },
        )
        .expect("PhantomJS");
        assert_eq!(
            v.to_string(),
            "automation: the page holds callPhantom (PhantomJS)"
        );
        let mut odd = marks(&[""; 20]);
        odd.push("z".repeat(300));
        let v = judge_automation(Automation {
            webdriver: false,
            markers: &odd,
        })
        .expect("a mark the widget does not know is a mark");
        assert_eq!(
            v.reason.len(),
            "the page holds the automation mark \"\"".len() + 64
        );
        assert_eq!(
            judge_automation(Automation {
                webdriver: false,
                markers: &marks(&[" "]),
            }),
            None,
            "nothing named, nothing held"
        );
        assert_eq!(judge(CHROME, Automation::default()), None);
        let apple_news = "Mozilla/5.0 (iPhone; CPU iPhone OS 10_0_2 like Mac OS X) AppleWebKit/602.1.50 (KHTML, like Gecko) AppleNews/608.0.1 Version/2.0.1";
        assert_eq!(
            judge(apple_news, Automation::default()),
            None,
            "a person in Apple News"
        );
        assert!(judge("AppleNews/608.0.1 crawler", Automation::default()).is_some());
    }
}
