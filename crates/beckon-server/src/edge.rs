//! What the edge learns from the request itself: is this a bot, and what device is it.
//!
//! The judging is `beckon-bots`'. This module reads it from the request (the `User-Agent`, the
//! client hints, the widget's report of automation) and caches what a user agent gives, so
//! that each visitor's user agent is matched and parsed once, not at every batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::HeaderMap;
use beckon_bots::{Automation, Hints};
use beckon_engine::{Device, SessionId, SiteId};

/// The most user agents whose verdict and device are kept: past it the cache starts afresh
/// (a hostile sender varying its user agent costs a parse per batch, never memory).
pub const MAX_CACHED_USER_AGENTS: usize = 10_000;

/// The longest user agent a person's browser is taken to send (the log keeps this much): a
/// longer one is a bot's, and the cache holds at most [`MAX_CACHED_USER_AGENTS`] of this size.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// The client hints a browser sends of itself, where it sends them.
#[derive(Clone, Debug, Default)]
pub struct ClientHints {
    /// `Sec-CH-UA-Mobile`.
    pub mobile: Option<String>,
    /// `Sec-CH-UA-Platform`.
    pub platform: Option<String>,
    /// `Accept-Language`: the language when the widget names none.
    pub accept_language: Option<String>,
}

impl ClientHints {
    /// The hints among `headers` (each cut to 64 characters).
    pub fn from_headers(headers: &HeaderMap) -> ClientHints {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(64).collect())
        };
        ClientHints {
            mobile: get("sec-ch-ua-mobile"),
            platform: get("sec-ch-ua-platform"),
            accept_language: get("accept-language"),
        }
    }

    fn hints(&self) -> Hints<'_> {
        Hints {
            mobile: self.mobile.as_deref(),
            platform: self.platform.as_deref(),
        }
    }
}

/// What a user agent (with its hints) gives, once worked out.
pub struct Seen {
    /// The user-agent layer's verdict (`user agent: …`), if a bot's.
    pub verdict: Option<String>,
    /// The device, browser and OS.
    pub device: Device,
}

impl Seen {
    /// Why the sender is a bot (`layer: reason`): its user agent, else what its browser
    /// reports of automation; `None` for a person.
    pub fn bot_reason(&self, automation: Automation) -> Option<String> {
        self.verdict
            .clone()
            .or_else(|| beckon_bots::judge_automation(automation).map(|v| v.to_string()))
    }
}

/// A user agent with its hints, as the cache keys it.
type Key = (String, Option<String>, Option<String>);

/// What `user_agent` with `hints` gives: matched and parsed once, then cached.
pub fn seen(user_agent: &str, hints: &ClientHints) -> Arc<Seen> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Arc<Seen>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    // No browser sends a user agent this long; a marker padded past it would not be read.
    if user_agent.chars().nth(MAX_USER_AGENT_CHARS).is_some() {
        return Arc::new(Seen {
            verdict: Some(format!(
                "user agent: longer than {MAX_USER_AGENT_CHARS} characters"
            )),
            device: Device::default(),
        });
    }
    let key = (
        user_agent.to_owned(),
        hints.mobile.clone(),
        hints.platform.clone(),
    );
    if let Some(s) = cache.lock().expect("the cache's lock").get(&key) {
        return s.clone();
    }
    let s = Arc::new(Seen {
        verdict: beckon_bots::judge_user_agent(user_agent).map(|v| v.to_string()),
        device: beckon_bots::device(user_agent, hints.hints()),
    });
    let mut cache = cache.lock().expect("the cache's lock");
    if cache.len() >= MAX_CACHED_USER_AGENTS {
        cache.clear();
    }
    cache.insert(key, s.clone());
    s
}

/// The visitor's language: the widget's (`navigator.languages`' first, as it sends it), else the
/// first of `Accept-Language` (`fr-CH, fr;q=0.9` gives `fr`); a primary subtag of two or three
/// letters, lower case, or none.
pub fn language(widget: Option<&str>, accept_language: Option<&str>) -> Option<String> {
    let primary = |tag: &str| {
        let tag = tag.split(';').next().unwrap_or("").trim();
        let primary = tag.split('-').next().unwrap_or("");
        ((2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic()))
            .then(|| primary.to_ascii_lowercase())
    };
    widget.and_then(primary).or_else(|| {
        accept_language
            .and_then(|a| a.split(',').next())
            .and_then(primary)
    })
}

/// The most sessions whose edge verdict is kept: past it the memory starts afresh.
pub const MAX_JUDGED_SESSIONS: usize = 100_000;

/// The verdict on a browser's batch of `session` (the session id as sent), given this
/// batch's own (`verdict`): the one the edge gave an earlier batch of the session holds for
/// the rest of it (a page whose automation marks come and go stays a bot's).
pub fn session_verdict(
    site: &SiteId,
    session: Option<&SessionId>,
    verdict: Option<String>,
) -> Option<String> {
    type Judged = HashMap<(SiteId, SessionId), String>;
    static JUDGED: OnceLock<Mutex<Judged>> = OnceLock::new();
    let Some(session) = session else {
        return verdict;
    };
    let judged = JUDGED.get_or_init(Mutex::default);
    let key = (site.clone(), session.clone());
    let mut judged = judged.lock().expect("the lock");
    if let Some(earlier) = judged.get(&key) {
        return Some(earlier.clone());
    }
    let reason = verdict?;
    if judged.len() >= MAX_JUDGED_SESSIONS {
        judged.clear();
    }
    judged.insert(key, reason.clone());
    Some(reason)
}

/// The device, browser and OS of a user agent, with the client hints where sent.
pub fn device_with(user_agent: &str, hints: &ClientHints) -> Device {
    seen(user_agent, hints).device.clone()
}

/// The device, browser and OS of a user agent.
pub fn device(user_agent: &str) -> Device {
    device_with(user_agent, &ClientHints::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use beckon_engine::DeviceType;

    #[test]
    fn the_language_is_the_widget_s_else_the_browser_s_first() {
        assert_eq!(language(Some("de-AT"), Some("fr")).as_deref(), Some("de"));
        assert_eq!(
            language(None, Some("fr-CH, fr;q=0.9, en;q=0.8")).as_deref(),
            Some("fr")
        );
        assert_eq!(language(Some(""), Some("es;q=0.9")).as_deref(), Some("es"));
        assert_eq!(language(Some("x"), Some("*")), None);
        assert_eq!(language(None, None), None);
    }

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn a_verdict_names_its_layer_and_a_device_is_read_once_and_kept() {
        let driven = Automation {
            webdriver: true,
            ..Automation::default()
        };
        assert_eq!(
            bot_reason(CHROME, driven).as_deref(),
            Some("automation: navigator.webdriver is set")
        );
        assert!(
            bot_reason("curl/8.5.0", NONE).is_some_and(|r| r.starts_with("user agent: ")),
            "{:?}",
            bot_reason("curl/8.5.0", NONE)
        );
        assert_eq!(bot_reason(CHROME, NONE), None);
        let hints = ClientHints {
            mobile: Some("?1".into()),
            ..ClientHints::default()
        };
        assert_eq!(device(CHROME).kind, DeviceType::Desktop);
        assert_eq!(device_with(CHROME, &hints).kind, DeviceType::Mobile);
        assert!(Arc::ptr_eq(&seen(CHROME, &hints), &seen(CHROME, &hints)));
        // A crawler's marker padded past 512 characters does not get it through.
        let padded = format!("{CHROME}{} Googlebot/2.1", " ".repeat(600));
        assert_eq!(
            bot_reason(&padded, NONE).as_deref(),
            Some("user agent: longer than 512 characters")
        );
        let longest = format!("{CHROME}{}", "x".repeat(512 - CHROME.len()));
        assert_eq!(bot_reason(&longest, NONE), None, "512 characters are read");
    }

    fn bot_reason(user_agent: &str, automation: Automation) -> Option<String> {
        seen(user_agent, &ClientHints::default()).bot_reason(automation)
    }

    const NONE: Automation = Automation {
        webdriver: false,
        markers: &[],
    };

    #[test]
    fn the_widget_looks_for_the_marks_beckon_bots_knows() {
        let js = crate::routes::assets::WIDGET_JS;
        let start = js.find("marks = [").expect("the widget's list of marks") + "marks = [".len();
        let list = &js[start..start + js[start..].find(']').unwrap()];
        let widget: Vec<&str> = list
            .split(',')
            .map(|n| n.trim().trim_matches('\''))
            .collect();
        let known: Vec<&str> = beckon_bots::MARKERS.iter().map(|(n, _)| *n).collect();
        assert_eq!(widget, known);
    }

    #[test]
    fn a_session_the_edge_judged_a_bot_s_stays_one_when_its_marks_go() {
        let site = SiteId::parse("shop").unwrap();
        let (s1, s2) = (
            SessionId::parse("s_marked").unwrap(),
            SessionId::parse("s_clean").unwrap(),
        );
        let marks = vec!["__nightmare".to_owned()];
        let marked = Automation {
            webdriver: false,
            markers: &marks,
        };
        let want = Some("automation: the page holds __nightmare (Nightmare)".to_owned());
        let judge = |site: &SiteId, s: &SessionId, a: Automation| {
            session_verdict(site, Some(s), bot_reason(CHROME, a))
        };
        assert_eq!(judge(&site, &s1, marked), want);
        // The next page of the same session shows no mark: still the bot's session.
        assert_eq!(judge(&site, &s1, NONE), want);
        // Another session, or the same id on another site, is judged on its own.
        assert_eq!(judge(&site, &s2, NONE), None);
        let other = SiteId::parse("other-shop").unwrap();
        assert_eq!(judge(&other, &s1, NONE), None);
    }
}
