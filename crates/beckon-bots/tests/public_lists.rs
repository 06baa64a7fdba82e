//! beckon-bots measured on public data, not on examples written here:
//!
//! - **recall** on every instance of the `crawler-user-agents` list (the Python package, 1.67.0,
//!   installed by `scripts/test.sh`): at least 99.5% are judged bots;
//! - **false positives** on the real browsers among uap-core's test fixtures (`test_ua.yaml`, as
//!   they ship in the `ua-parser` crate this one parses with): none is judged a bot;
//! - **device agreement** with the fixtures' devices (`test_device.yaml`): the device type read
//!   from each user agent is the one its fixture's device family, brand and model give, for at
//!   least 98% of them.
//!
//! The real browsers are the fixtures whose family is a browser people browse the web with
//! today (the list [`BROWSERS`]: maintained browsers and the system web views apps show pages
//! in), whose user agent is written as such a browser sends it (beginning `Mozilla/5.0`, with
//! spaces, not the `+` of a URL-encoded log), less [`NOT_PEOPLE`].

use beckon_bots::{Automation, device, judge};
use serde_json::Value;
use support::lists;

mod support;

/// Browser families of uap-core that people browse with today.
const BROWSERS: &[&str] = &[
    "Chrome",
    "Chrome Mobile",
    "Chrome Mobile iOS",
    "Chrome Mobile WebView",
    "Chromium",
    "Firefox",
    "Firefox Mobile",
    "Firefox iOS",
    "Firefox Focus",
    "Safari",
    "Mobile Safari",
    "Mobile Safari UI/WKWebView",
    "Edge",
    "Edge Mobile",
    "Opera",
    "Opera Mobile",
    "Opera Touch",
    "Samsung Internet",
    "UC Browser",
    "Yandex Browser",
    "Brave",
    "Vivaldi",
    "Whale",
    "QQ Browser",
    "QQ Browser Mobile",
    "Baidu Browser",
    "Amazon Silk",
    "MiuiBrowser",
    "Huawei Browser",
    "DuckDuckGo Mobile",
    "Coc Coc",
    "Waterfox",
    "Pale Moon",
    "SeaMonkey",
    "Seznam prohlížeč",
    "Avast Secure Browser",
    "Epiphany",
    "Konqueror",
    "Midori",
    "Falkon",
    "Maxthon",
    "Puffin",
];

/// Fixtures of a browser family that are no person's browser.
const NOT_PEOPLE: &[&str] = &[
    // Google's page-preview renderer, which uap-core counts as Chrome.
    "Google Web Preview",
];

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[test]
fn measured_on_the_public_lists() {
    let lists = lists();
    let person = Automation::default();

    let crawlers: Vec<&str> = lists["crawlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert!(crawlers.len() > 2_000, "{}", crawlers.len());
    let missed: Vec<&str> = crawlers
        .iter()
        .copied()
        .filter(|ua| judge(ua, person).is_none())
        .collect();
    let recall = 1.0 - missed.len() as f64 / crawlers.len() as f64;

    let browsers: Vec<&str> = lists["browsers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| BROWSERS.contains(&text(&c["family"])))
        .map(|c| text(&c["ua"]))
        .filter(|ua| ua.starts_with("Mozilla/5.0 ") && !ua.contains('+'))
        .filter(|ua| !NOT_PEOPLE.iter().any(|n| ua.contains(n)))
        .collect();
    assert!(browsers.len() > 100, "{}", browsers.len());
    let false_positives: Vec<(String, &str)> = browsers
        .iter()
        .filter_map(|ua| judge(ua, person).map(|v| (v.to_string(), *ua)))
        .collect();

    let devices = lists["devices"].as_array().unwrap();
    let people: Vec<&Value> = devices.iter().filter(|c| c["family"] != "Spider").collect();
    let disagree: Vec<(String, &str)> = people
        .iter()
        .filter_map(|c| {
            let ua = text(&c["ua"]);
            let expected = device::kind(
                ua,
                text(&c["family"]),
                c["model"].as_str(),
                &device::parse(ua).os,
            );
            let got = device(ua, Default::default()).kind;
            (got != expected).then(|| (format!("{got} for {expected} {}", c["family"]), ua))
        })
        .collect();
    let agreement = 1.0 - disagree.len() as f64 / people.len() as f64;

    println!(
        "crawler-user-agents {}: recall {:.4} ({} of {} crawler instances judged bots)",
        text(&lists["crawler_user_agents"]),
        recall,
        crawlers.len() - missed.len(),
        crawlers.len()
    );
    println!(
        "uap-core fixtures: {} false positives among {} real browsers; device type agrees for \
         {:.4} of {} devices",
        false_positives.len(),
        browsers.len(),
        agreement,
        people.len()
    );
    for ua in &missed {
        println!("  missed crawler: {ua}");
    }
    assert!(recall >= 0.995, "recall {recall}");
    assert!(false_positives.is_empty(), "{false_positives:#?}");
    assert!(
        agreement >= 0.98,
        "{agreement}: {:#?}",
        &disagree[..disagree.len().min(30)]
    );
}
