//! The browser, OS and device of a user agent: uap-rust (the `ua-parser` crate) with uap-core's
//! regexes (0.18.0, Apache-2.0; `data/uap-core/`, converted from its `regexes.yaml` to JSON
//! as is), and the browser's client hints where it sends them.

use std::sync::OnceLock;

use beckon_engine::{Device, DeviceType};

/// uap-core's regexes, as published in its 0.18.0 release.
const REGEXES: &str = include_str!("../data/uap-core/regexes.json");

/// What a browser's client hints say, when it sends them (`Sec-CH-UA-Mobile`,
/// `Sec-CH-UA-Platform`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints<'a> {
    /// `Sec-CH-UA-Mobile`: `?1` for a phone.
    pub mobile: Option<&'a str>,
    /// `Sec-CH-UA-Platform`: `"Android"`, `"Windows"`, `"macOS"`…
    pub platform: Option<&'a str>,
}

/// What uap-core names in a user agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// The browser's family (`Chrome`, `Mobile Safari`, `Firefox`), `Other` when unknown.
    pub browser: String,
    /// Its major version, 0 when unknown.
    pub major: u32,
    /// The OS family (`Windows`, `Mac OS X`, `iOS`, `Android`), `Other` when unknown.
    pub os: String,
    /// The device family (`iPhone`, `iPad`, `Spider`, `Samsung SM-T510`), `Other` for a
    /// computer or an unknown device.
    pub device: String,
    /// The device's brand, when uap-core knows it.
    pub brand: Option<String>,
    /// The device's model, when uap-core knows it.
    pub model: Option<String>,
}

fn extractor() -> &'static ua_parser::Extractor<'static> {
    static EXTRACTOR: OnceLock<ua_parser::Extractor<'static>> = OnceLock::new();
    EXTRACTOR.get_or_init(|| {
        let regexes: ua_parser::Regexes<'static> =
            serde_json::from_str(REGEXES).expect("the vendored uap-core regexes are JSON");
        ua_parser::Extractor::try_from(regexes).expect("the vendored uap-core regexes compile")
    })
}

/// What uap-core reads in `user_agent`.
pub fn parse(user_agent: &str) -> Parsed {
    let (ua, os, dev) = extractor().extract(user_agent);
    let other = || "Other".to_owned();
    Parsed {
        browser: ua.as_ref().map_or_else(other, |u| u.family.to_string()),
        major: ua
            .as_ref()
            .and_then(|u| u.major)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
        os: os.as_ref().map_or_else(other, |o| o.os.to_string()),
        device: dev.as_ref().map_or_else(other, |d| d.device.to_string()),
        brand: dev
            .as_ref()
            .and_then(|d| d.brand.as_ref().map(|b| b.to_string())),
        model: dev
            .as_ref()
            .and_then(|d| d.model.as_ref().map(|m| m.to_string())),
    }
}

/// Whether the device family, brand and model name a tablet.
fn tablet(device: &str, model: Option<&str>) -> bool {
    const TABLETS: &[&str] = &[
        "ipad",
        "kindle",
        "tablet",
        "galaxy tab",
        "sm-t",
        "gt-p",
        "nexus 7",
        "nexus 9",
        "nexus 10",
        "mi pad",
        "mipad",
        "xoom",
        "playbook",
        "surface",
        "mediapad",
        "matepad",
        "lenovo tab",
        "fire hd",
        "lenovo tb",
        "tab ",
    ];
    /// Phones named like a tablet: Microsoft's Surface Duo is a phone (it sends `Mobile`).
    const PHONES: &[&str] = &["surface duo"];
    let text = format!("{} {}", device, model.unwrap_or("")).to_ascii_lowercase();
    TABLETS.iter().any(|t| text.contains(t)) && !PHONES.iter().any(|p| text.contains(p))
}

/// The device type of what uap-core found: a computer when it names no device (`Other`) or a
/// Mac, a tablet when the device is one of the tablets above (or an Android device without
/// `Mobile` in its user agent, as Android's tablets send), a phone for any other device.
pub fn kind(user_agent: &str, device: &str, model: Option<&str>, os: &str) -> DeviceType {
    let android = os == "Android" || user_agent.contains("Android");
    if tablet(device, model) {
        DeviceType::Tablet
    } else if device == "Other" || device == "Mac" {
        if android {
            if user_agent.contains("Mobile") {
                DeviceType::Mobile
            } else {
                DeviceType::Tablet
            }
        } else if matches!(os, "iOS" | "Windows Phone" | "BlackBerry OS" | "Symbian OS")
            || user_agent.contains("Mobile")
        {
            DeviceType::Mobile
        } else {
            DeviceType::Desktop
        }
    } else if android && !user_agent.contains("Mobile") && !user_agent.contains("Phone") {
        DeviceType::Tablet
    } else {
        DeviceType::Mobile
    }
}

/// The visitor's device, from the user agent and the client hints, which win where sent.
pub fn device(user_agent: &str, hints: Hints<'_>) -> Device {
    let p = parse(user_agent);
    let mut kind = kind(user_agent, &p.device, p.model.as_deref(), &p.os);
    if hints.mobile == Some("?1") {
        kind = DeviceType::Mobile;
    }
    let os = match hints.platform.map(|p| p.trim_matches('"')) {
        Some(platform) if !platform.is_empty() && p.os == "Other" => {
            platform.chars().take(32).collect()
        }
        _ => p.os,
    };
    Device {
        kind,
        browser: p.browser,
        browser_version: p.major,
        os,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const GALAXY_TAB: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn browsers_systems_and_devices_are_read() {
        let d = device(CHROME, Hints::default());
        assert_eq!(
            (d.kind, d.browser.as_str(), d.browser_version, d.os.as_str()),
            (DeviceType::Desktop, "Chrome", 131, "Linux")
        );
        let d = device(IPHONE, Hints::default());
        assert_eq!(
            (d.kind, d.browser.as_str(), d.os.as_str()),
            (DeviceType::Mobile, "Mobile Safari", "iOS")
        );
        assert_eq!(device(IPAD, Hints::default()).kind, DeviceType::Tablet);
        assert_eq!(
            device(GALAXY_TAB, Hints::default()).kind,
            DeviceType::Tablet
        );
        let surface_duo = "Mozilla/5.0 (Linux; Android 11; Surface Duo) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
        assert_eq!(
            device(surface_duo, Hints::default()).kind,
            DeviceType::Mobile,
            "a phone"
        );
    }

    #[test]
    fn client_hints_win_where_sent() {
        let hints = Hints {
            mobile: Some("?1"),
            platform: Some("\"Android\""),
        };
        assert_eq!(device(GALAXY_TAB, hints).kind, DeviceType::Mobile);
        // A reduced user agent names no OS uap-core knows; the platform hint does.
        let d = device("Mozilla/5.0 Chrome/131.0.0.0", hints);
        assert_eq!(d.os, "Android");
    }
}
