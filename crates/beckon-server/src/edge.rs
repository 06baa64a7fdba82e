//! What the edge learns from the request itself: is this a bot, and what device is it.
//!
//! Bots are judged before the engine sees anything: by the user agent against the `isbot`
//! pattern set (a maintained list of crawlers, monitors and headless browsers), by woothee's
//! crawler category, and by the browser's own automation flag (`navigator.webdriver`).

use std::sync::OnceLock;

use beckon_engine::{Device, DeviceType};

/// Whether this user agent (and the widget's report of `navigator.webdriver`) is a bot.
pub fn is_bot(user_agent: &str, webdriver: bool) -> bool {
    bot_reason(user_agent, webdriver).is_some()
}

/// Why this sender is a bot (the layer that said so), or `None` for a person.
pub fn bot_reason(user_agent: &str, webdriver: bool) -> Option<String> {
    static BOTS: OnceLock<isbot::Bots> = OnceLock::new();
    if webdriver {
        return Some("browser: navigator.webdriver is set".to_owned());
    }
    if user_agent.trim().is_empty() {
        return Some("user agent: empty".to_owned());
    }
    if BOTS.get_or_init(isbot::Bots::default).is_bot(user_agent) {
        return Some("user agent: matches the isbot patterns".to_owned());
    }
    woothee::parser::Parser::new()
        .parse(user_agent)
        .filter(|r| r.category == "crawler")
        .map(|r| format!("user agent: crawler {:?}", r.name))
}

/// The device, browser and OS of a user agent.
pub fn device(user_agent: &str) -> Device {
    let Some(r) = woothee::parser::Parser::new().parse(user_agent) else {
        return Device::default();
    };
    let kind = match r.category {
        "smartphone" | "mobilephone" => DeviceType::Mobile,
        _ if user_agent.contains("iPad") || user_agent.contains("Tablet") => DeviceType::Tablet,
        _ => DeviceType::Desktop,
    };
    Device {
        kind,
        browser: r.name.to_owned(),
        browser_version: r
            .version
            .split('.')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        os: r.os.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

    #[test]
    fn crawlers_headless_browsers_and_automation_are_bots() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "",
        ] {
            assert!(is_bot(ua, false), "{ua:?} should be a bot");
        }
        assert!(
            is_bot(CHROME, true),
            "navigator.webdriver makes any browser a bot"
        );
    }

    #[test]
    fn people_are_not_bots_and_their_devices_are_read() {
        assert!(!is_bot(CHROME, false));
        assert!(!is_bot(IPHONE, false));
        let d = device(CHROME);
        assert_eq!(
            (d.kind, d.browser.as_str(), d.browser_version),
            (DeviceType::Desktop, "Chrome", 131)
        );
        assert_eq!(device(IPHONE).kind, DeviceType::Mobile);
    }
}
