//! The install page's live check: events from an allowed origin show as arriving, events from
//! another origin as refused, with the reason — as the edge counted them.

mod browser_support;

use serde_json::json;

#[tokio::test]
async fn the_install_check_shows_arriving_and_refused_origins() {
    let demo = browser_support::Served::demo().await;
    let http = reqwest::Client::new();
    let batch = json!({"session": "s_installcheck", "events": [
        {"id": "s_installcheck:a:1", "type": "exit_intent", "t": 0}]});
    let url = format!("{}/v1/events?site=demo", demo.base);
    let allowed = http
        .post(&url)
        .header("origin", &demo.base)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let refused = http
        .post(&url)
        .header("origin", "https://evil.example")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let (client, _) = demo.signed_in().await;
    let page = client
        .get(format!("{}/dash/sites/demo/install/check", demo.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Attributes come out escaped (`/` as `&#x2f;`).
    let row = |origin: &str| {
        let escaped = origin.replace('/', "&#x2f;");
        page.split("<tr data-origin=")
            .find(|r| r.starts_with(&format!("\"{escaped}\"")))
            .unwrap_or_else(|| panic!("no row for {origin}: {page}"))
            .to_owned()
    };
    assert!(row(&demo.base).contains("arriving"));
    let evil = row("https://evil.example");
    assert!(
        evil.contains("refused") && evil.contains("is not allowed for this site"),
        "{evil}"
    );
    // The whole page draws the same check, and refreshes it by itself.
    let full = client
        .get(format!("{}/dash/sites/demo/install", demo.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(full.contains("hx-trigger=\"every 3s\"") && full.contains("evil.example"));
    demo.stop().await;
}
